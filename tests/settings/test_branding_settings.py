"""``ui:``: the operator's folders must exist, the logo is a plain file name in them, and
``check-config`` names every page override that does not render, lacks a hook or breaks the CSP."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from idenfy_stepup.boot.preflight import preflight
from idenfy_stepup.boot.runtime import template_dir, template_env
from idenfy_stepup.boot.startup import BAD_CONFIG, StartupError
from idenfy_stepup.cli import main
from idenfy_stepup.settings import ConfigError, Settings, parse_settings
from idenfy_stepup.settings.lint import load_errors, unsafe_settings
from idenfy_stepup.web.page_hooks import REQUIRED_HOOKS, SAMPLES, Hook, check_pages

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "branding"
MINIMAL: dict[str, Any] = {
    "issuer": "http://127.0.0.1:8000",
    "idenfy": {"mode": "simulator"},
    "clients": [
        {
            "client_id": "shop",
            "client_secret": "change-me-to-32-random-characters",
            "redirect_uris": ["http://127.0.0.1:9000/callback"],
        }
    ],
}


def with_ui(**ui: Any) -> Settings:
    return parse_settings({**MINIMAL, "ui": ui})


def problems(**ui: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        with_ui(**ui)
    return info.value.problems


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["templates_dir", "static_dir"])
def test_a_folder_that_does_not_exist_is_a_settings_error_naming_the_key(
    tmp_path: Path, key: str
) -> None:
    missing = tmp_path / "nowhere"
    assert problems(**{key: str(missing)}) == [
        (f"ui.{key}", f"{missing} is not an existing folder")
    ]


@pytest.mark.parametrize("key", ["templates_dir", "static_dir"])
def test_a_file_where_a_folder_belongs_is_a_settings_error(tmp_path: Path, key: str) -> None:
    file = tmp_path / "base.html"
    file.write_text("<p>")
    assert problems(**{key: str(file)}) == [(f"ui.{key}", f"{file} is not an existing folder")]


def test_folders_are_resolved_when_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "brand").mkdir()
    monkeypatch.chdir(tmp_path)
    ui = with_ui(templates_dir="brand", static_dir="./brand/../brand").ui
    assert ui.templates_dir == ui.static_dir == (tmp_path / "brand").resolve()


@pytest.mark.parametrize(
    "logo",
    [
        "../logo.svg",
        "/etc/logo.svg",
        ".logo.svg",
        "brand/../logo.svg",
        "a//b.svg",
        "logo.svg?x",
        "logo svg",
        "brand\\logo.svg",
        "",
    ],
)
def test_a_logo_that_is_not_a_plain_file_name_is_refused(logo: str) -> None:
    [(where, message)] = problems(logo=logo)
    assert where == "ui.logo" and message.startswith("must be a file name in the static folders")


def test_defaults_keep_our_pages_as_they_were() -> None:
    ui = parse_settings(MINIMAL).ui
    assert (ui.templates_dir, ui.static_dir, ui.site_name, ui.logo) == (
        None,
        None,
        None,  # our name, "Identity check", in the page's language
        None,
    )


def test_a_logo_no_static_folder_has_stops_the_service(tmp_path: Path) -> None:
    assert load_errors(with_ui(logo="missing.svg")) == [
        "ui.logo: missing.svg is not among the provider's static files"
    ]
    assert load_errors(with_ui(logo="missing.svg", static_dir=str(tmp_path))) == [
        "ui.logo: missing.svg is in neither ui.static_dir nor the provider's static files"
    ]
    (tmp_path / "brand").mkdir()
    (tmp_path / "brand" / "logo.svg").write_text("<svg/>")
    assert load_errors(with_ui(logo="brand/logo.svg", static_dir=str(tmp_path))) == []
    assert load_errors(with_ui(logo="favicon.svg")) == []  # one of ours


# -- check-config: the hooks -----------------------------------------------------------------------


def hook_cases() -> list[Any]:
    """Each attribute of each hook in the table (its own or its enclosing element's)."""
    cases = []
    for page, hooks in REQUIRED_HOOKS.items():
        for hook in hooks:
            for attribute in [*hook.attrs, *hook.within]:
                cases.append(pytest.param(page, hook, attribute, id=f"{page}-{hook}-{attribute}"))
    return cases


def our_page(page: str) -> str:
    """Our page as it renders with the sample context: a template with no Jinja left in it."""
    return template_env().get(None).get_template(page).render(**SAMPLES[page])


def attr_text(name: str, value: str | None) -> str:
    return re.escape(name) + (r'="[^"]*"' if value is None else re.escape(f'="{value}"'))


def without(html: str, element: Mapping[str, str | None], attribute: str) -> str:
    """``html`` with ``attribute`` of the one start tag that carries all of ``element`` removed,
    or given another value when the hook needs a value (a ``<script>`` without its src would
    be an inline one)."""
    tags = [
        match
        for match in re.finditer(r"<[a-z][^>]*>", html)
        if all(re.search(rf"\s{attr_text(n, v)}", match[0]) for n, v in element.items())
    ]
    assert len(tags) == 1, (element, tags)
    value = element[attribute]
    other = "" if value is None else f' {attribute}="changed"'
    tag = re.sub(rf"\s{attr_text(attribute, value)}", other, tags[0][0], count=1)
    return html[: tags[0].start()] + tag + html[tags[0].end() :]


@pytest.mark.parametrize(("page", "hook", "attribute"), hook_cases())
def test_check_config_warns_about_an_override_that_lacks_a_hook(
    tmp_path: Path, page: str, hook: Hook, attribute: str
) -> None:
    element = hook.attrs if attribute in hook.attrs else hook.within
    (tmp_path / page).write_text(without(our_page(page), element, attribute))
    settings = with_ui(templates_dir=str(tmp_path))
    assert unsafe_settings(settings) == [
        f"ui.templates_dir: {page} lacks {hook} (see docs/branding.md)"
    ]
    assert load_errors(settings) == []  # it renders: a warning, not a refusal


def test_an_override_of_the_layout_without_the_scripts_block_loses_the_challenge_script(
    tmp_path: Path,
) -> None:
    """The check renders each page through the same loader as the service: an operator's
    base.html counts for the pages that extend it, though the pages are ours."""
    layout = (template_dir() / "base.html").read_text()
    (tmp_path / "base.html").write_text(layout.replace("{% block scripts %}{% endblock %}", ""))
    assert unsafe_settings(with_ui(templates_dir=str(tmp_path))) == [
        'ui.templates_dir: challenge.html lacks <script src="/static/challenge.js"> '
        "(see docs/branding.md)"
    ]


def test_our_own_templates_and_the_example_carry_every_hook(tmp_path: Path) -> None:
    ours = check_pages(template_env().get(None))
    assert (ours.failures, ours.missing) == ({}, {})
    assert sorted(ours.rendered) == sorted(REQUIRED_HOOKS)
    for folder in (tmp_path, EXAMPLE / "templates"):  # an empty override folder, the example
        settings = with_ui(templates_dir=str(folder), static_dir=str(EXAMPLE / "static"))
        assert unsafe_settings(settings) == []
        assert load_errors(settings) == []


def test_every_page_of_the_table_has_a_sample_and_is_one_of_ours() -> None:
    assert REQUIRED_HOOKS.keys() == SAMPLES.keys()
    assert all((template_dir() / page).is_file() for page in REQUIRED_HOOKS)


# -- check-config: templates that do not render, the CSP, our script -------------------------

BROKEN = [
    ("challenge.html", "{% extends 'base.html' %}{% block content %}<main>", ["challenge.html"]),
    ("retry.html", "{{ attempts_left.nope.deeper }}", ["retry.html"]),
    ("error.html", "{{ detail | no_such_filter }}", ["error.html"]),
    ("base.html", "<title>{% block title %}</title>", list(REQUIRED_HOOKS)),
]


@pytest.mark.parametrize(("name", "text", "failing"), BROKEN, ids=[b[0] for b in BROKEN])
def test_an_override_that_does_not_render_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, failing: list[str]
) -> None:
    (tmp_path / name).write_text(text)
    errors = load_errors(with_ui(templates_dir=str(tmp_path)))
    assert [e.split(" does not render: ")[0] for e in errors] == [
        f"ui.templates_dir: {page}" for page in failing
    ]
    config = tmp_path / "stepup.yaml"
    config.write_text(
        "issuer: http://127.0.0.1:8000\nidenfy: {mode: simulator}\n"
        f"ui: {{templates_dir: {tmp_path}}}\n"
    )
    assert main(["check-config", str(config)]) == 2
    assert f"error: ui.templates_dir: {failing[0]} does not render" in capsys.readouterr().err


async def test_serve_and_a_reload_refuse_an_override_that_does_not_render(tmp_path: Path) -> None:
    """Their preflight: nothing starts serving pages that would all fail."""
    (tmp_path / "base.html").write_text("{% block content %}")
    with pytest.raises(StartupError) as info:
        await preflight(with_ui(templates_dir=str(tmp_path)))
    assert info.value.exit_code == BAD_CONFIG
    assert str(info.value).startswith("ui.templates_dir: challenge.html does not render: ")


def test_check_config_warns_about_what_the_content_security_policy_blocks(tmp_path: Path) -> None:
    page = our_page("error.html").replace(
        "</main>",
        '<img src="https://cdn.example/logo.png" alt="x"><p style="color: red" onclick="f()">'
        "<script>alert(1)</script><style>p {}</style>"
        '<img src="http://127.0.0.1:8000/static/favicon.svg" alt="ours"></main>',
    )
    (tmp_path / "error.html").write_text(page)
    blocked = "which the Content-Security-Policy blocks"
    assert unsafe_settings(with_ui(templates_dir=str(tmp_path))) == [
        f"ui.templates_dir: error.html has {what}, {blocked}"
        for what in (
            "<img src> from another origin (https://cdn.example/logo.png)",
            "an event-handler attribute (onclick) on <p>",
            "a style attribute on <p>",
            "an inline <script>",
            "a <style> element",
        )
    ]


def test_check_config_warns_when_the_static_folder_replaces_the_challenge_script(
    tmp_path: Path,
) -> None:
    (tmp_path / "brand.css").write_text("")
    assert unsafe_settings(with_ui(static_dir=str(tmp_path))) == []
    (tmp_path / "challenge.js").write_text("")
    assert unsafe_settings(with_ui(static_dir=str(tmp_path))) == [
        "ui.static_dir: challenge.js replaces the challenge page's script (push channel, status, "
        "finish)"
    ]


def test_docs_list_exactly_the_hooks_check_config_checks() -> None:
    text = (ROOT / "docs" / "branding.md").read_text()
    documented = re.findall(r"^\| `([a-z]+\.html)` \| `(<.+?>)` \|", text, flags=re.MULTILINE)
    assert sorted(documented) == sorted(
        (page, str(hook)) for page, hooks in REQUIRED_HOOKS.items() for hook in hooks
    )
