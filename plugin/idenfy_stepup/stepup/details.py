"""Rich Authorization Requests (RFC 9396): what the person approves, checked and shown.

An operator configures each detail ``type`` it accepts with a JSON Schema and a short display
text (``authorization_details.types``). Both are compiled once, at load time
(:func:`compile_type`): a bad schema or a template that does not parse is a settings error, so a
request can only ever meet templates that compiled.

Every schema is made *closed*: an object schema that does not say ``additionalProperties`` gets
``additionalProperties: false``, and one that allows other members (``true``, a schema,
``patternProperties``, ``unevaluatedProperties``, ...) is refused at load time; every value must
be constrained (a ``type``, ``const``, ``enum``, ``$ref`` or ``anyOf``/``oneOf``/``allOf`` of
such) and an array must have one ``items`` schema. This holds for every subschema: under
``properties``, ``items``, the combinators and ``$defs``. A member the person is not shown
cannot ride along with what they approve. The ``type`` member (RFC 9396 §2) is always declared
and required.

At ``/authorize``, :func:`parse_details` takes the parameter's value only (a query, a form, a
request object's claim or a pushed request all give the same text) and either returns the
validated details or raises :class:`DetailsError` with an ASCII description that never echoes
the request beyond a configured type name. Each detail is rendered there, in every configured
language, so the challenge page cannot meet a render failure for a request it accepted.

Display texts run in Jinja's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` (a
sandbox in which a template cannot change the values it shows) with autoescape:
values from the request are HTML-escaped, and a template naming an attribute that starts with
``_`` (``''.__class__``) is refused at load time (the sandbox would refuse it at render time).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match
from markupsafe import Markup

from ..web.jsontext import has_lone_surrogate, json_depth

DEFAULT_MAX_BYTES = 8192
# A detail is an object of objects ({"instructedAmount": {"amount": ...}}): a few levels suffice;
# anything deeper is refused before a validator walks it.
MAX_DEPTH = 8
MAX_DETAILS = 16  # entries in one request: each is shown to the person
FALLBACK_LANGUAGE = "en"
TYPE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PATH_PART = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# Keywords that let a value carry members or items its schema does not name, that accept a
# value by what it is not, or that hold subschemas the closing walk does not visit
# (``definitions``: use ``$defs``). A closed schema (see compile_schema) uses none of them.
_OPENING_KEYWORDS = (
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "dependentSchemas",
    "prefixItems",
    "unevaluatedItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "definitions",
)
# What a (sub)schema needs to constrain its value: without one of them it accepts anything.
_CONSTRAINING = ("type", "const", "enum", "$ref", "anyOf", "oneOf", "allOf")


class DetailsError(ValueError):
    """A refused ``authorization_details``; ``str(self)`` is its public description."""


class DetailTypeError(ValueError):
    """A type definition that cannot be used (a settings error)."""


@dataclass(frozen=True)
class DetailType:
    """One configured type: its closed schema's validator and its display templates."""

    name: str
    validator: Draft202012Validator
    displays: Mapping[str, Any]  # language tag -> compiled jinja2 Template
    # language tag -> the top-level members its text names (for check-config's warning)
    shown: Mapping[str, frozenset[str]] = field(default_factory=dict)
    members: frozenset[str] = frozenset()  # the schema's top-level members but ``type``

    def unshown(self) -> dict[str, list[str]]:
        """Per language, the schema's top-level members its display text never names."""
        found = {lang: sorted(self.members - names) for lang, names in self.shown.items()}
        return {lang: missing for lang, missing in found.items() if missing}

    def render(self, detail: Mapping[str, Any], language: str | None = None) -> Markup:
        """The display text in ``language`` (its primary subtag, else ``en``), HTML-escaped."""
        template = self.displays[pick_language(self.displays, language)]
        # An autoescaped sandbox rendered it: the operator's text with the values escaped.
        return Markup(template.render(dict(detail)).strip())  # noqa: S704

    def render_all(self, detail: Mapping[str, Any]) -> None:
        """Render in every language: raises what a template raises, or ValueError when a text
        comes out empty (a detail shown as nothing is not shown: the sandbox renders a refused
        attribute, ``''.__class__``, as nothing)."""
        for template in self.displays.values():
            if not template.render(dict(detail)).strip():
                raise ValueError("the display text is empty")


def pick_language(available: Mapping[str, Any], language: str | None) -> str:
    if language:
        tag = language.lower()
        for candidate in (tag, tag.split("-")[0]):
            found = next((k for k in available if k.lower() == candidate), None)
            if found is not None:
                return found
    return FALLBACK_LANGUAGE


def mask(value: Any) -> str:
    """An account shown by its last four characters only (``•••• 1234``)."""
    text = "".join(str(value or "").split())
    return f"•••• {text[-4:]}" if len(text) > 4 else "••••"


def _environment() -> ImmutableSandboxedEnvironment:
    # Immutable: a display cannot change the detail it shows (``x.update(...)`` is refused),
    # so what is stored and returned is what the RP sent.
    env = ImmutableSandboxedEnvironment(autoescape=True, auto_reload=False)
    env.filters["mask"] = mask
    return env


_ENV = _environment()


def compile_schema(schema: Any) -> dict[str, Any]:
    """The schema, closed and with the ``type`` member declared; raises DetailTypeError."""
    if not isinstance(schema, dict):
        raise DetailTypeError("must be a JSON Schema object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise DetailTypeError(
            f"not a valid JSON Schema{' at ' + where if where else ''}: {exc.message}"
        ) from None
    closed = copy.deepcopy(schema)
    if closed.get("type", "object") != "object":
        raise DetailTypeError("must describe an object (type: object)")
    closed["type"] = "object"
    _close(closed, "")
    _refuse_remote_refs(closed)
    properties = closed.setdefault("properties", {})
    properties["type"] = {"type": "string"}
    required = closed.setdefault("required", [])
    if "type" not in required:
        required.append("type")
    return closed


def _close(schema: dict[str, Any], where: str) -> None:
    """Close every subschema (properties, items, combinator branches, ``$defs``): an object
    gets ``additionalProperties: false``, an array must say what its items are, and every value
    must be constrained (a ``type``, ``const``, ``enum``, ``$ref`` or a combinator of such).
    A keyword that admits members or values the schema does not name is refused."""
    todo: list[tuple[Any, str]] = [(schema, where)]
    while todo:
        node, at = todo.pop()
        label = f"{at}: " if at else ""
        if node is False:
            continue  # never valid: admits nothing
        if not isinstance(node, dict):  # the schema ``true`` accepts any value
            raise DetailTypeError(f"{label}must be a schema that constrains its value")
        for keyword in _OPENING_KEYWORDS:
            if keyword in node:
                raise DetailTypeError(f"{label}{keyword} is not allowed (it admits other values)")
        if not any(k in node for k in _CONSTRAINING):
            raise DetailTypeError(f"{label}needs a type (or const, enum, $ref, anyOf, oneOf)")
        kinds = node.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "object" in kinds or "properties" in node:
            if node.get("additionalProperties", False) is not False:
                raise DetailTypeError(f"{label}additionalProperties must be false (or left out)")
            node["additionalProperties"] = False
        if "array" in kinds and not isinstance(node.get("items"), dict):
            raise DetailTypeError(f"{label}an array needs items (one schema for every item)")
        for name, sub in (node.get("properties") or {}).items():
            todo.append((sub, _join(at, f"properties.{name}")))
        if isinstance(node.get("items"), dict):
            todo.append((node["items"], _join(at, "items")))
        for keyword in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(node.get(keyword) or []):
                todo.append((sub, _join(at, f"{keyword}[{i}]")))
        for name, sub in (node.get("$defs") or {}).items():
            todo.append((sub, _join(at, f"$defs.{name}")))


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _refuse_remote_refs(schema: Any) -> None:
    """Only references inside the schema: nothing is fetched, at load time or per request."""
    todo = [schema]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            for key in ("$ref", "$dynamicRef"):
                ref = node.get(key)
                if isinstance(ref, str) and not ref.startswith("#"):
                    raise DetailTypeError(f"{key} {ref!r}: only references within the schema")
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)


def compile_display(display: str | Mapping[str, str]) -> dict[str, Any]:
    """One text, or a mapping language tag -> text with ``en``; raises DetailTypeError."""
    return _compile_display(display)[0]


def _compile_display(
    display: str | Mapping[str, str],
) -> tuple[dict[str, Any], dict[str, frozenset[str]]]:
    """The compiled templates and, per language, the top-level names each one uses."""
    texts = {FALLBACK_LANGUAGE: display} if isinstance(display, str) else dict(display)
    if FALLBACK_LANGUAGE not in texts:
        raise DetailTypeError(f"a display per language needs {FALLBACK_LANGUAGE!r}")
    compiled, shown = {}, {}
    for language, text in texts.items():
        label = "" if isinstance(display, str) else f"{language}: "
        if not isinstance(text, str) or not text.strip():
            raise DetailTypeError(f"{label}must be a non-empty text")
        try:
            tree = _ENV.parse(text)
        except TemplateSyntaxError as exc:
            raise DetailTypeError(
                f"{label}template error on line {exc.lineno}: {exc.message}"
            ) from None
        for node in tree.find_all(nodes.Getattr):
            if node.attr.startswith("_"):
                raise DetailTypeError(f"{label}attribute {node.attr!r} is not allowed")
        compiled[language] = _ENV.from_string(text)
        shown[language] = frozenset(meta.find_undeclared_variables(tree))
    return compiled, shown


def compile_type(name: str, schema: Any, display: str | Mapping[str, str]) -> DetailType:
    if not TYPE_NAME.match(name):
        raise DetailTypeError(f"type name {name!r}: 1-64 letters, digits, _ . : -")
    closed = compile_schema(schema)
    displays, shown = _compile_display(display)
    members = frozenset(closed["properties"]) - {"type"}
    return DetailType(name, Draft202012Validator(closed), displays, shown, members)


def parse_details(
    raw: str | None,
    types: Mapping[str, DetailType],
    allowed: frozenset[str] | tuple[str, ...],
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> list[dict[str, Any]]:
    """The ``authorization_details`` parameter (RFC 9396 §2), validated; [] when absent.

    ``types`` are the configured types, ``allowed`` the names this client may use.
    """
    if raw is None:
        return []
    if len(raw.encode("utf-8", "surrogatepass")) > max_bytes:
        raise DetailsError(f"The authorization_details parameter is larger than {max_bytes} bytes.")
    value = _decode(raw) if raw.strip() else None
    if not isinstance(value, list) or not value:
        raise DetailsError("The authorization_details parameter must be a non-empty JSON array.")
    if len(value) > MAX_DETAILS:
        raise DetailsError(
            f"The authorization_details parameter has more than {MAX_DETAILS} entries."
        )
    if json_depth(value) > MAX_DEPTH:
        raise DetailsError("The authorization_details parameter is nested too deeply.")
    if has_lone_surrogate(value):
        raise DetailsError(
            "The authorization_details parameter has text that is not valid Unicode."
        )
    for number, detail in enumerate(value, 1):
        _check_detail(number, detail, types, allowed)
    return value


def _decode(raw: str) -> Any:
    try:
        return json.loads(raw, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except DetailsError:
        raise
    except (ValueError, RecursionError):
        raise DetailsError("The authorization_details parameter is not valid JSON.") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        # Which copy a reader keeps must never be a question: what is shown is what is bound.
        raise DetailsError("The authorization_details parameter has a duplicate member.")
    return found


def _no_constant(name: str) -> Any:
    raise DetailsError("The authorization_details parameter is not valid JSON.")


def _check_detail(
    number: int,
    detail: Any,
    types: Mapping[str, DetailType],
    allowed: frozenset[str] | tuple[str, ...],
) -> None:
    where = f"authorization_details entry {number}"
    if not isinstance(detail, dict):
        raise DetailsError(f"The {where} is not a JSON object.")
    name = detail.get("type")
    if not isinstance(name, str):
        raise DetailsError(f"The {where} has no string type.")
    kind = types.get(name)
    if kind is None:
        # Not echoed: only a configured name is known to be safe to repeat.
        raise DetailsError(f"The {where} has a type this provider does not support.")
    if name not in allowed:
        raise DetailsError(f"The {where} has type {name}, which this client may not use.")
    error = best_match(kind.validator.iter_errors(detail))
    if error is not None:
        raise DetailsError(f"The {where} ({name}) {_schema_problem(error)}.")
    try:
        kind.render_all(detail)
    except Exception:  # any failure of an operator's template: refused, never a 500
        raise DetailsError(f"The {where} ({name}) cannot be displayed.") from None


def _schema_problem(error: Any) -> str:
    path = list(error.absolute_path)
    safe = all(isinstance(p, int) or _PATH_PART.match(str(p)) for p in path)
    at = f" at {'.'.join(str(p) for p in path)}" if path and safe else ""
    problem = {
        "additionalProperties": "has a member its type does not define",
        "required": "lacks a required member",
        "type": "has a value of the wrong JSON type",
    }.get(error.validator, "has a value that is not allowed")
    return f"{problem}{at}"


def display_items(
    details: list[dict[str, Any]], types: Mapping[str, DetailType], language: str | None = None
) -> list[tuple[str, Markup]]:
    """(type, text) for each detail, as the challenge and retry pages show them.

    The settings may have changed since /authorize accepted the request (a reload): a detail
    whose type is gone, or whose text no longer renders, is shown as its JSON, escaped, so the
    page never fails and never hides what is being approved.
    """
    items = []
    for detail in details:
        name = str(detail.get("type", ""))
        kind = types.get(name)
        try:
            if kind is None:
                raise KeyError(name)
            text = kind.render(detail, language)
        except Exception:
            text = Markup.escape(json.dumps(detail, ensure_ascii=False, sort_keys=True))
        items.append((name, text))
    return items
