"""stepup/details.py: authorization_details (RFC 9396) types, parsing and display.

Types are compiled from the settings (``authorization_details.types``), so refusals of a bad
type are settings errors naming the key; request-time refusals are ``DetailsError`` with an
ASCII description that echoes no more than a configured type name.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2.exceptions import SecurityError

from idenfy_stepup.settings import ConfigError, parse_settings
from idenfy_stepup.stepup.details import (
    DetailsError,
    DetailType,
    DetailTypeError,
    compile_display,
    compile_schema,
    compile_type,
    display_items,
    mask,
    parse_details,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())["authorization_details"]
PAYMENT = {
    "type": "payment_initiation",
    "instructedAmount": {"amount": "500.00", "currency": "EUR"},
    "creditorName": "ACME Ltd",
}
BASE: dict[str, Any] = {
    "issuer": "http://127.0.0.1:8000",
    "idenfy": {"mode": "simulator"},
    "authorization_details": EXAMPLE,
    "clients": [
        {
            "client_id": "shop",
            "client_secret": "change-me-to-32-random-characters",
            "redirect_uris": ["http://127.0.0.1:9000/callback"],
            "authorization_details_types": ["payment_initiation"],
        }
    ],
}


def types() -> dict[str, DetailType]:
    return parse_settings(BASE).authorization_details.compiled()


def parse(value: Any, allowed: tuple[str, ...] = ("payment_initiation",), **kw: Any) -> Any:
    raw = value if isinstance(value, str) else json.dumps(value)
    return parse_details(raw, types(), allowed, **kw)


def refusal(value: Any, **kw: Any) -> str:
    with pytest.raises(DetailsError) as info:
        parse(value, **kw)
    text = str(info.value)
    assert text.isascii()
    return text


# -- parsing ----------------------------------------------------------------------------------


def test_absent_is_no_details_and_valid_details_come_back_as_sent() -> None:
    assert parse_details(None, types(), ("payment_initiation",)) == []
    assert parse([PAYMENT]) == [PAYMENT]


def test_unknown_members_are_refused_at_the_top_and_nested() -> None:
    assert "has a member its type does not define" in refusal([{**PAYMENT, "fee": "1"}])
    nested = {**PAYMENT, "instructedAmount": {"amount": "1", "currency": "EUR", "x": 1}}
    assert refusal([nested]).endswith("does not define at instructedAmount.")


def test_schema_values_are_checked() -> None:
    bad = {**PAYMENT, "instructedAmount": {"amount": "1e3", "currency": "EUR"}}
    assert "not allowed at instructedAmount.amount" in refusal([bad])
    assert "lacks a required member" in refusal([{"type": "payment_initiation"}])


def test_a_type_the_client_may_not_use_or_nobody_configured() -> None:
    admin = {"type": "admin_action", "action": "x", "target": "y"}
    assert "type admin_action, which this client may not use" in refusal([admin])
    # An unconfigured name is not echoed: it is the caller's text.
    assert "<b>" not in refusal([{"type": "<b>"}])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("{", "not valid JSON"),
        ("[Infinity]", "not valid JSON"),
        ("[]", "non-empty JSON array"),
        ("  ", "non-empty JSON array"),
        ('{"type": "payment_initiation"}', "non-empty JSON array"),
        ('["payment_initiation"]', "entry 1 is not a JSON object"),
        ('[{"type": null}]', "no string type"),
        ('[{"type": "a", "type": "payment_initiation"}]', "duplicate member"),
        ('[{"type": "payment_initiation", "x": ' + "[" * 10 + "]" * 10 + "}]", "nested too deeply"),
        (
            json.dumps([{"type": "payment_initiation", "creditorName": "\ud800"}]),
            "not valid Unicode",
        ),
    ],
)
def test_malformed_values_are_refused(raw: str, expected: str) -> None:
    assert expected in refusal(raw)


def test_deep_nesting_under_the_size_cap_does_not_exhaust_the_recursion_limit() -> None:
    assert "not valid JSON" in refusal("[" * 5000 + "]" * 5000, max_bytes=65536)


def test_the_size_cap_names_the_limit() -> None:
    big = [{**PAYMENT, "creditorName": "x" * 200}]
    assert refusal(big, max_bytes=256) == (
        "The authorization_details parameter is larger than 256 bytes."
    )


# -- display ----------------------------------------------------------------------------------


def test_display_renders_the_example_and_masks_the_account() -> None:
    detail = {
        **PAYMENT,
        "creditorAccount": {"iban": "DE89370400440532013000"},
        "remittanceInformationUnstructured": "Invoice 42",
    }
    text = types()["payment_initiation"].render(detail)
    assert text == 'Pay 500.00 EUR to ACME Ltd (•••• 3000), reference "Invoice 42"'


def test_html_in_values_is_escaped() -> None:
    text = types()["payment_initiation"].render({**PAYMENT, "creditorName": "<img src=x>"})
    assert "&lt;img src=x&gt;" in text and "<img" not in text


def test_display_falls_back_to_en_and_picks_a_primary_subtag() -> None:
    kind = types()["payment_initiation"]
    assert kind.render(PAYMENT, "de-AT").startswith("500.00 EUR an ACME Ltd zahlen")
    assert kind.render(PAYMENT, "pt").startswith("Pay 500.00 EUR")  # no pt text: en
    assert kind.render(PAYMENT, None).startswith("Pay 500.00 EUR")


def test_mask_shows_the_last_four_characters_only() -> None:
    assert mask("DE89 3704 0044 0532 0130 00") == "•••• 3000"
    assert mask("123") == "••••"
    assert mask(None) == "••••"


def test_a_render_failure_is_a_refusal_not_an_exception() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fragile = compile_type("fragile", schema, "{{ a.b.c }}")
    with pytest.raises(DetailsError, match="cannot be displayed"):
        parse_details('[{"type": "fragile"}]', {"fragile": fragile}, ("fragile",))


def test_the_sandbox_renders_an_unsafe_subscript_as_nothing_and_it_is_refused() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    prying = compile_type("prying", schema, "{{ a['__class__'] }}")
    assert prying.render({"type": "prying", "a": "x"}) == ""
    with pytest.raises(DetailsError, match="cannot be displayed"):
        parse_details('[{"type": "prying", "a": "x"}]', {"prying": prying}, ("prying",))


def test_a_display_cannot_change_the_detail_it_shows() -> None:
    inner = {"type": "object", "properties": {"x": {"type": "integer"}}}
    schema = {"type": "object", "properties": {"a": inner}}
    changing = compile_type("changing", schema, "{{ a.update({'x': 1}) }}shown")
    raw = '[{"type": "changing", "a": {"x": 0}}]'
    with pytest.raises(DetailsError, match="cannot be displayed"):
        parse_details(raw, {"changing": changing}, ("changing",))
    detail = {"type": "changing", "a": {"x": 0}}
    with pytest.raises(SecurityError):
        changing.render(detail)
    assert detail == {"type": "changing", "a": {"x": 0}}


def test_display_items_show_a_detail_that_no_longer_renders_as_its_json() -> None:
    items = display_items([{"type": "gone", "note": "<x>"}], types())
    assert items == [
        ("gone", "{&#34;note&#34;: &#34;&lt;x&gt;&#34;, &#34;type&#34;: &#34;gone&#34;}")
    ]


# -- type definitions -------------------------------------------------------------------------


def test_a_schema_is_closed_and_declares_type() -> None:
    inner = {"type": "object", "properties": {"b": {"type": "string"}}}
    listed = {"type": "array", "items": {"type": "object"}}
    either = {"anyOf": [{"type": "object"}, {"type": "string"}]}
    closed = compile_schema(
        {"type": "object", "properties": {"a": inner, "l": listed, "e": either}}
    )
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["additionalProperties"] is False
    assert closed["properties"]["l"]["items"]["additionalProperties"] is False
    assert closed["properties"]["e"]["anyOf"][0]["additionalProperties"] is False
    assert closed["properties"]["type"] == {"type": "string"}
    assert "type" in closed["required"]


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "additionalProperties": True},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "patternProperties": {"^x": {}}},
        {"type": "object", "properties": {"a": {"type": "object", "additionalProperties": True}}},
        {"type": "array"},
        {"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}},
        {"type": "object", "properties": {"a": {"type": "nope"}}},
        {"type": "object", "properties": {"a": {}}},
        {"type": "object", "properties": {"a": True}},
        {"type": "object", "properties": {"a": {"type": "array"}}},
        {"type": "object", "properties": {"a": {"not": {"type": "string"}}}},
        {"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {}]}}},
        {"type": "object", "$defs": {"d": {"type": "object", "additionalProperties": True}}},
        "not a schema",
    ],
)
def test_schemas_that_admit_other_members_or_are_invalid_are_refused(schema: Any) -> None:
    with pytest.raises(DetailTypeError):
        compile_schema(schema)


@pytest.mark.parametrize(
    "display",
    [
        "{{ ''.__class__ }}",
        "{{ a.__init__.__globals__ }}",
        "{% if %}",
        {"de": "Zahlen"},
        {"en": ""},
    ],
)
def test_displays_that_do_not_compile_or_pry_are_refused(display: Any) -> None:
    with pytest.raises(DetailTypeError):
        compile_display(display)


def setting_error(change: Any) -> str:
    data = copy.deepcopy(BASE)
    change(data)
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    return str(info.value)


def test_settings_errors_name_their_key_path() -> None:
    def bad_schema(d: Any) -> None:
        d["authorization_details"]["types"]["admin_action"]["schema"]["additionalProperties"] = True

    def bad_display(d: Any) -> None:
        d["authorization_details"]["types"]["admin_action"]["display"] = "{{ broken"

    def unknown_type(d: Any) -> None:
        d["clients"][0]["authorization_details_types"] = ["payment_initiation", "wire"]

    def unknown_key(d: Any) -> None:
        d["authorization_details"]["types"]["admin_action"]["shown"] = "x"

    assert "authorization_details.types.admin_action.schema: additionalProperties" in (
        setting_error(bad_schema)
    )
    assert "authorization_details.types.admin_action.display: template error on line 1" in (
        setting_error(bad_display)
    )
    assert "clients[0].authorization_details_types: wire is not a type" in (
        setting_error(unknown_type)
    )
    assert "authorization_details.types.admin_action.shown: unknown key" in (
        setting_error(unknown_key)
    )


def test_without_the_section_there_are_no_types_and_clients_may_send_none() -> None:
    settings = parse_settings(
        {k: v for k, v in BASE.items() if k != "authorization_details"}
        | {"clients": [{**BASE["clients"][0], "authorization_details_types": []}]}
    )
    assert settings.authorization_details.compiled() == {}
    assert settings.authorization_details.max_bytes == 8192
    assert settings.clients[0].authorization_details_types == ()
