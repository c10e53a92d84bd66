"""The elements each page must carry, whoever wrote its template, and the check that finds them.

challenge.js finds the challenge page's parts by these ids and ``data-*`` attributes, the forms
post to these endpoints, and browser tests and monitoring find the controls by ``data-action``.
An operator's template (``ui.templates_dir``) that drops one still renders but no longer works;
``check-config`` renders every page with a sample context, through the same loader as the
service (so ``{% extends %}`` and ``{% include %}`` count), and names each hook it lacks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from jinja2 import Environment, TemplateSyntaxError
from markupsafe import Markup

TOKEN = "sample-token"
BASE = f"/challenge/{TOKEN}"
IFRAME_ORIGIN = "https://frame.example"
# What the person approves (RFC 9396), as endpoints/challenge.py passes it: (type, shown text).
DETAILS = [("payment_initiation", Markup("Pay 10.00 EUR to Sample Payee"))]

# What each page is rendered with: the names the endpoints pass (endpoints/challenge.py,
# web/responses.py), with values the hooks below look for.
SAMPLES: dict[str, dict[str, Any]] = {
    "challenge.html": {
        "token": TOKEN,
        "iframe_src": f"{IFRAME_ORIGIN}/?token={TOKEN}",
        "iframe_origin": IFRAME_ORIGIN,
        "finish_url": f"{BASE}/finish",
        "events_url": f"{BASE}/events",
        "cancel_url": f"{BASE}/cancel",
        "client_name": "Sample Bank",
        "attempt": 1,
        "max_attempts": 3,
        "details": DETAILS,
    },
    "retry.html": {
        "client_name": "Sample Bank",
        "hint": "Move closer to the camera.",
        "description": "The face was too small.",
        "attempt": 1,
        "max_attempts": 3,
        "attempts_left": 2,
        "retry_url": f"{BASE}/retry",
        "give_up_url": f"{BASE}/give-up",
        "details": DETAILS,
    },
    "error.html": {
        "title": "This check has ended",
        "message": "Return to the application and start again.",
        "status_code": 410,
        "detail": "challenge_expired",
    },
}
# Attribute values compared without regard to case, as HTML does.
_ANY_CASE = frozenset({"method"})


@dataclass(frozen=True)
class Hook:
    """One element: its tag (None: any), the attributes it carries (a value of None: any
    value) and, when ``within`` is set, those of an element it must be inside."""

    attrs: Mapping[str, str | None]
    tag: str | None = None
    within: Mapping[str, str | None] = field(default_factory=dict)

    def __str__(self) -> str:
        shown = _show(self.tag or "", self.attrs)
        return f"{shown} inside {_show('', self.within)}" if self.within else shown


def _show(tag: str, attrs: Mapping[str, str | None]) -> str:
    shown = (name if value is None else f'{name}="{value}"' for name, value in attrs.items())
    parts = [tag, *shown]
    return "<" + " ".join(p for p in parts if p) + ">"


def _post_to(url: str) -> dict[str, str | None]:
    return {"action": url, "method": "post"}


_CHALLENGE = SAMPLES["challenge.html"]
_RETRY = SAMPLES["retry.html"]

# Each authorization detail the person approves, inside the list browser tests and the
# person's assistive technology find it by (templates/_details.html).
_APPROVING = Hook({"data-type": DETAILS[0][0]}, tag="li", within={"id": "authorization-details"})

# Template name → the hooks it must carry.
REQUIRED_HOOKS: dict[str, tuple[Hook, ...]] = {
    "challenge.html": (
        Hook(
            {
                "id": "challenge",
                "data-finish-url": _CHALLENGE["finish_url"],
                "data-events-url": _CHALLENGE["events_url"],
                "data-iframe-origin": IFRAME_ORIGIN,
            }
        ),
        Hook({"id": "idenfy-iframe", "src": _CHALLENGE["iframe_src"]}, tag="iframe"),
        Hook({"id": "challenge-status"}),
        Hook({"id": "challenge-continue"}),
        Hook({"data-action": "continue", "href": _CHALLENGE["finish_url"]}, tag="a"),
        Hook({"data-action": "cancel"}, within=_post_to(_CHALLENGE["cancel_url"])),
        Hook({"src": "/static/challenge.js"}, tag="script"),
        _APPROVING,
    ),
    "retry.html": (
        _APPROVING,
        Hook({"data-action": "retry"}, within=_post_to(_RETRY["retry_url"])),
        Hook({"data-action": "give-up"}, within=_post_to(_RETRY["give_up_url"])),
    ),
    "error.html": (Hook({"id": "error", "data-status": "410"}),),
}

# Elements that never have an end tag: they are never the enclosing element of another.
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


@dataclass
class _Element:
    tag: str
    attrs: dict[str, str]
    ancestors: tuple[dict[str, str], ...]


class _Elements(HTMLParser):
    """Every element of a page with its attributes and those of the elements around it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[_Element] = []
        self._open: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.found.append(_Element(tag, values, tuple(a for _, a in self._open)))
        if tag not in _VOID:
            self._open.append((tag, values))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.found.append(_Element(tag, values, tuple(a for _, a in self._open)))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                return


def _carries(attrs: Mapping[str, str], wanted: Mapping[str, str | None]) -> bool:
    for name, value in wanted.items():
        have = attrs.get(name)
        if have is None:
            return False
        if value is not None and name in _ANY_CASE:
            have, value = have.lower(), value.lower()
        if value is not None and have != value:
            return False
    return True


def _present(hook: Hook, elements: list[_Element]) -> bool:
    return any(
        (hook.tag is None or e.tag == hook.tag)
        and _carries(e.attrs, hook.attrs)
        and (not hook.within or any(_carries(a, hook.within) for a in e.ancestors))
        for e in elements
    )


def elements_of(html: str) -> list[_Element]:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser.found


def missing_hooks(html: str, hooks: tuple[Hook, ...]) -> list[Hook]:
    elements = elements_of(html)
    return [hook for hook in hooks if not _present(hook, elements)]


@dataclass
class PageCheck:
    """Each page rendered through ``env`` with its sample: what failed, what lacks a hook."""

    failures: dict[str, str] = field(default_factory=dict)  # page → why it does not render
    missing: dict[str, list[Hook]] = field(default_factory=dict)
    rendered: dict[str, str] = field(default_factory=dict)


def check_pages(env: Environment) -> PageCheck:
    check = PageCheck()
    for page, hooks in REQUIRED_HOOKS.items():
        try:
            html = env.get_template(page).render(**SAMPLES[page])
        except TemplateSyntaxError as exc:
            where = f" ({exc.filename or exc.name}, line {exc.lineno})"
            check.failures[page] = f"{exc.message}{where}"
            continue
        except Exception as exc:  # an operator's template may raise anything while rendering
            check.failures[page] = f"{type(exc).__name__}: {exc}"
            continue
        check.rendered[page] = html
        lacking = missing_hooks(html, hooks)
        if lacking:
            check.missing[page] = lacking
    return check
