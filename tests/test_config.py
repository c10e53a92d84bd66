"""Settings: the minimal file works; broken files fail with a message naming the key."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from idenfy_stepup.settings import ConfigError, Settings, load_settings, parse_settings
from idenfy_stepup.settings.lint import unsafe_settings

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {
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


@pytest.mark.parametrize("name", ["minimal.yaml", "demo.yaml"])
def test_shipped_files_load(name: str) -> None:
    settings = load_settings(ROOT / "config" / name)
    assert settings.idenfy.mode == "simulator"
    assert settings.redis.url == "embedded"


def test_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("IDENFY_API_KEY", "IDENFY_API_SECRET", "STEPUP_SIGNING_KEY_PEM"):
        monkeypatch.setenv(var, "x")
    monkeypatch.setenv("IDENFY_WEBHOOK_SIGNING_KEY", "k" * 40)
    monkeypatch.setenv("STEPUP_COOKIE_SECRET", "c" * 40)
    monkeypatch.setenv("GATEWAY_CLIENT_SECRET", "g" * 40)
    settings = load_settings(ROOT / "config" / "example.yaml")
    assert settings.idenfy.mode == "live"
    assert settings.keys.signing[0].kid == "2026-11"


# -- config/example.yaml documents every key -----------------------------------------------------
#
# A key path names a key through the settings models: ``keys.signing[].kid`` (a list of models),
# ``errors.*.hint`` (a mapping whose values are models). Mappings of data (``directory.static``,
# ``idenfy.risk_tags``, a client's ``jwks``) are values: their keys are not settings.
HOW = {"model": ".", "items": "[].", "values": ".*."}


def models_in(annotation: Any) -> list[tuple[str, type[BaseModel]]]:
    """The models an annotation holds, and how: as itself, as list items or as mapping values."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("model", annotation)]
    if origin in (typing.Union, types.UnionType):
        return [found for arg in args for found in models_in(arg)]
    if origin in (tuple, list):
        return [("items", m) for arg in args if arg is not Ellipsis for _, m in models_in(arg)]
    if origin is dict:
        return [("values", m) for _, m in models_in(args[1])]
    return []


def model_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path the settings models accept."""
    paths = set()
    for name, info in model.model_fields.items():
        path = prefix + (info.alias or name)
        paths.add(path)
        for how, sub in models_in(info.annotation):
            paths |= model_keys(sub, path + HOW[how])
    return paths


def file_keys(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> set[str]:
    """Every key path a parsed settings file sets."""
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    paths = set()
    for key, value in data.items():
        path = prefix + str(key)
        paths.add(path)
        info = fields.get(str(key))
        for how, sub in models_in(info.annotation) if info is not None else []:
            if how == "model":
                found = [value]
            else:
                found = list(value if how == "items" else value.values()) if value else []
            for item in found:
                if isinstance(item, dict):
                    paths |= file_keys(sub, item, path + HOW[how])
    return paths


# A commented-out key (an alternative that cannot be set beside the one shown, or a field shown
# with its use): ``# key: value`` at the indentation of the keys around it.
COMMENTED_KEY = re.compile(r"^(?P<indent>\s*)# (?P<key>[a-z_]+):(?: |$)")


def documented_keys(text: str) -> set[str]:
    """The key paths ``text`` sets, and those its commented-out keys would set: each such line
    is uncommented on its own; one that does not add exactly one known key is prose."""
    known = model_keys(Settings)
    paths = file_keys(Settings, yaml.safe_load(text))
    lines = text.splitlines()
    for number, line in enumerate(lines):
        match = COMMENTED_KEY.match(line)
        if match is None:
            continue
        uncommented = [*lines[:number], match["indent"] + line[match.end("indent") + 2 :]]
        try:
            data = yaml.safe_load("\n".join([*uncommented, *lines[number + 1 :]]))
        except yaml.YAMLError:
            continue
        added = file_keys(Settings, data) - paths if isinstance(data, dict) else set()
        if len(added) == 1 and added <= known:
            paths |= added
    return paths


def test_example_documents_every_key_and_no_other() -> None:
    text = (ROOT / "config" / "example.yaml").read_text()
    documented, known = documented_keys(text), model_keys(Settings)
    assert sorted(known - documented) == [], "settings keys config/example.yaml does not show"
    assert sorted(documented - known) == [], "keys in config/example.yaml that no setting has"


def test_example_documents_the_authorization_details_keys() -> None:
    documented = documented_keys((ROOT / "config" / "example.yaml").read_text())
    assert {
        "authorization_details.max_bytes",
        "authorization_details.types.*.schema",
        "authorization_details.types.*.display",
        "clients[].authorization_details_types",
    } <= documented & model_keys(Settings)


def test_the_key_comparison_sees_a_missing_an_extra_and_a_commented_key() -> None:
    """The comparison above, on texts whose answers are known: it can fail."""
    text = (ROOT / "config" / "example.yaml").read_text()
    assert "keys.signing[].private_key_file" in documented_keys(text)  # commented out
    without = "\n".join(x for x in text.splitlines() if not x.startswith("  keep_alive_timeout:"))
    assert model_keys(Settings) - documented_keys(without) == {"server.keep_alive_timeout"}
    extra = text.replace("\nserver:\n", "\nserver:\n  keep_alive_timout: 5\n", 1)
    assert documented_keys(extra) - model_keys(Settings) == {"server.keep_alive_timout"}
    prose = text.replace("\nserver:\n", "\nserver:\n  # note: this is prose\n", 1)
    assert documented_keys(prose) == documented_keys(text)


def test_defaults_are_safe() -> None:
    settings = parse_settings(MINIMAL)
    client = settings.clients[0]
    assert client.require_pkce and client.iss_on_error
    assert client.subject_hints == ("request_object", "id_token_hint")
    assert settings.challenge.max_attempts == 3
    assert settings.challenge.code_lifetime <= 60


BROKEN = [
    ("issuer: [oops\n", "not valid YAML"),
    ("- a list\n", "the file must be a YAML mapping"),
    ("idenfy: {mode: simulator}\n", "issuer: required key is missing"),
    ("issuer: http://x\nidenfy: {mode: live}\n", "idenfy: mode 'live' requires api_key"),
    ("issuer: http://x\nidenfy: {mode: psychic}\n", "idenfy.mode"),
    ("issuer: http://x\nidenfy: {mode: simulator}\nserver: {port: 99999}\n", "server.port"),
    ("issuer: http://x\nidenfy: {mode: simulator}\nbogus: 1\n", "bogus: unknown key"),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "clients: [{client_id: a, redirect_uris: []}]\n",
        "clients[0].redirect_uris",
    ),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "clients: [{client_id: a, redirect_uris: ['http://a/cb']}]\n",
        "clients[0]: client_secret_basic requires client_secret",
    ),
    (
        "issuer: http://x\nidenfy: {mode: simulator, api_key: '${STEPUP_UNSET_VAR}'}\n",
        "idenfy.api_key: environment variable STEPUP_UNSET_VAR is not set",
    ),
    ("issuer: http://x\nidenfy: {mode: simulator}\nacr: {default: nope}\n", "acr: default"),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "keys: {signing: [{kid: e, alg: ES256, private_key: x}]}\n",
        "keys: signing needs an active RS256 key",
    ),
    ("issuer: http://x/\nidenfy: {mode: simulator}\n", "trailing slash"),
    ("issuer: http://x\nidenfy: {mode: simulator}\nerrors: {NOPE: {}}\n", "unknown outcome"),
    ("issuer: http://x\nidenfy: {mode: simulator}\nredis: {url: 'mysql://x'}\n", "redis"),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "authorization_details: {types: {pay: {schema: {type: object, properties: {a: {}}},"
        " display: x}}}\n",
        "authorization_details.types.pay.schema: properties.a: needs a type",
    ),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "authorization_details: {types: {pay: {schema: {type: object}, display: '{% if %}'}}}\n",
        "authorization_details.types.pay.display: template error on line 1",
    ),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\n"
        "clients: [{client_id: a, client_secret: s, redirect_uris: ['http://a/cb'],"
        " authorization_details_types: [pay]}]\n",
        "clients[0].authorization_details_types: pay is not a type",
    ),
    (
        "issuer: http://x\nidenfy: {mode: simulator}\nauthorization_details: {max_bytes: 10}\n",
        "authorization_details.max_bytes",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN)
def test_broken_files_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert expected in str(info.value)


def test_env_interpolation_with_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPUP_TEST_SECRET", "s" * 40)
    data = {**MINIMAL, "cookies": {"secret": "${STEPUP_TEST_SECRET}"}}
    data["redis"] = {"url": "${STEPUP_TEST_UNSET:-embedded}"}
    settings = parse_settings(data)
    assert settings.cookies.secret is not None
    assert settings.cookies.secret.get_secret_value() == "s" * 40
    assert settings.redis.url == "embedded"
    assert "s" * 40 not in repr(settings)


def test_check_config_warnings() -> None:
    data = {
        **MINIMAL,
        "issuer": "http://stepup.example.com",
        "cookies": {"secret": "short"},
        "clients": [{**MINIMAL["clients"][0], "require_pkce": False, "client_secret": "x"}],
    }
    warnings = "\n".join(unsafe_settings(parse_settings(data)))
    assert "issuer uses http" in warnings
    assert "cookies.secret is shorter" in warnings
    assert "PKCE is disabled" in warnings
    assert "client_secret is shorter" in warnings
    assert "simulator on a non-loopback issuer" in warnings
    assert unsafe_settings(parse_settings(MINIMAL)) == []


def test_check_config_warns_of_a_display_that_does_not_show_a_member() -> None:
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "string"}, "payee": {"type": "string"}},
    }
    types = {
        "pay": {
            "schema": schema,
            "display": {"en": "Pay {{ amount }}", "de": "{{ amount }} an {{ payee }}"},
        }
    }
    data = {**MINIMAL, "authorization_details": {"types": types}}
    assert unsafe_settings(parse_settings(data)) == [
        "authorization_details.types.pay.display.en: does not show payee"
    ]
    example = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    shipped = {**MINIMAL, "authorization_details": example["authorization_details"]}
    assert unsafe_settings(parse_settings(shipped)) == []
