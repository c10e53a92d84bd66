"""Transaction-bound step-up: Rich Authorization Requests (RFC 9396) over real HTTP.

The RP sends ``authorization_details`` (query, form, or a signed request object); the person is
shown each detail on the challenge page; the token response and the id_token carry them back
with ``txn``, this step-up's own id. Every refusal is an ``invalid_authorization_details``
redirect (RFC 9396 §5) with ``state`` and ``iss`` (docs/transactions.md).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from redis.asyncio import Redis

from .harness.redis import stored_request
from .harness.rp import Flow, authorize, challenge, decode_id_token, redeem_code, request_object
from .harness.servers import Stack, StackPool
from .harness.settings import client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT = Path(__file__).resolve().parents[1]
# The documented examples themselves (payment_initiation, admin_action), and one whose display
# fails at render time for some valid details (refused at /authorize, never a page error).
EXAMPLE = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())["authorization_details"]
FRAGILE = {
    "schema": {"type": "object", "properties": {"note": {"type": "object"}}},
    "display": "Note {{ note.text.upper() }}",
}
PRYING = {
    "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
    "display": "{{ name['__class__'] }}",
}
TYPES = {**EXAMPLE["types"], "fragile": FRAGILE, "prying": PRYING}
ALL_TYPES = ["payment_initiation", "admin_action", "fragile", "prying"]
SETTINGS: dict[str, Any] = {
    "authorization_details": {"types": TYPES, "max_bytes": 1024},
    "challenge": {"max_attempts": 2},
    "clients": [
        client_entry(
            "shop", name="Shop", subject_hints=["login_hint"], authorization_details_types=ALL_TYPES
        ),
        client_entry(
            "admin_only", subject_hints=["login_hint"], authorization_details_types=["admin_action"]
        ),
        client_entry("plain", subject_hints=["login_hint"]),
        client_entry("signed", authorization_details_types=["payment_initiation"]),
    ],
}

PAYMENT = {
    "type": "payment_initiation",
    "instructedAmount": {"amount": "500.00", "currency": "EUR"},
    "creditorName": "ACME Ltd",
    "creditorAccount": {"iban": "DE89370400440532013000"},
    "remittanceInformationUnstructured": "Invoice 42",
}
SHOWN = 'Pay 500.00 EUR to ACME Ltd (•••• 3000), reference "Invoice 42"'


def details(*items: dict[str, Any]) -> str:
    return json.dumps(list(items) or [PAYMENT])


def payment(**changes: Any) -> dict[str, Any]:
    return {**PAYMENT, **changes}


def assert_refused(flow: Flow, stack: Stack, description: str = "") -> None:
    """An invalid_authorization_details redirect (RFC 9396 §5), with state and iss."""
    result = flow.redirect
    assert result["error"] == "invalid_authorization_details", result
    assert result["stepup_error"] == "invalid_authorization_details", result
    assert result["state"] == flow.params["state"]
    assert result["iss"] == stack.issuer
    assert "code" not in result
    assert description in result["error_description"], result
    assert result["error_description"].isascii()


async def approved(flow: Flow) -> tuple[dict[str, Any], dict[str, Any]]:
    """Approve the face check; the token response and the id_token's claims."""
    result = await flow.approve()
    client_id = flow.params["client_id"]
    response = await redeem_code(
        flow.stack, result["code"], client_id=client_id, verifier=flow.verifier
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return body, (await decode_id_token(flow.stack, body["id_token"]))[1]


def shown_details(page: httpx.Response) -> str:
    start = page.text.index('<ul id="authorization-details">')
    return page.text[start : page.text.index("</ul>", start)]


# -- what comes back --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_details_are_shown_and_come_back_in_token_response_and_id_token(
    stack: Stack, method: str
) -> None:
    flow = await authorize(
        stack, method=method, login_hint="alice", authorization_details=details()
    )
    page = await flow.browser.get(f"/challenge/{flow.token}")
    assert page.status_code == 200
    listed = shown_details(page)
    assert '<li data-type="payment_initiation">' in listed
    assert SHOWN.replace('"', "&#34;") in listed or SHOWN in listed
    assert "DE89370400440532013000" not in page.text  # the account is shown masked only
    assert page.text.index('id="authorization-details"') < page.text.index('id="idenfy-iframe"')

    body, claims = await approved(flow)
    assert body["authorization_details"] == [PAYMENT]  # RFC 9396 §7: as granted
    assert claims["authorization_details"] == [PAYMENT]
    assert isinstance(claims["txn"], str) and len(claims["txn"]) >= 16


async def test_several_details_are_each_shown_and_all_granted(stack: Stack) -> None:
    admin = {"type": "admin_action", "action": "delete_user", "target": "bob@example.com"}
    flow = await challenge(stack, authorization_details=details(PAYMENT, admin))
    page = await flow.browser.get(f"/challenge/{flow.token}")
    listed = shown_details(page)
    assert '<li data-type="admin_action">Delete user bob@example.com</li>' in listed
    assert listed.index("payment_initiation") < listed.index("admin_action")
    body, claims = await approved(flow)
    assert body["authorization_details"] == claims["authorization_details"] == [PAYMENT, admin]


async def test_html_in_a_detail_is_shown_as_text(stack: Stack) -> None:
    flow = await challenge(
        stack, authorization_details=details(payment(creditorName="<b>ACME</b> <script>x</script>"))
    )
    page = await flow.browser.get(f"/challenge/{flow.token}")
    listed = shown_details(page)
    assert "&lt;b&gt;ACME&lt;/b&gt; &lt;script&gt;x&lt;/script&gt;" in listed
    assert "<b>" not in listed and "<script>x" not in page.text


async def test_without_details_the_page_is_as_before_and_only_txn_is_added(stack: Stack) -> None:
    flow = await challenge(stack)
    page = await flow.browser.get(f"/challenge/{flow.token}")
    assert "authorization-details" not in page.text
    assert "You are approving" not in page.text
    body, claims = await approved(flow)
    assert "authorization_details" not in body
    assert "authorization_details" not in claims
    assert claims["txn"]


async def test_the_outcome_log_line_names_the_txn(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    flow = await challenge(stack, authorization_details=details())
    with caplog.at_level(logging.INFO, logger="idenfy_stepup"):
        _, claims = await approved(flow)
    outcomes = [r for r in caplog.records if getattr(r, "event", None) == "stepup.outcome"]
    found = [(getattr(r, "result", None), getattr(r, "txn", None)) for r in outcomes]
    assert found == [("approved", claims["txn"])]
    assert "ACME" not in caplog.text  # what was approved is the RP's to log, not ours


async def test_two_step_ups_have_different_txn(stack: Stack) -> None:
    first = await challenge(stack, authorization_details=details())
    second = await challenge(stack, authorization_details=details())
    txns = {(await approved(flow))[1]["txn"] for flow in (first, second)}
    assert len(txns) == 2


async def test_redis_holds_the_details_and_txn_in_the_short_form(
    stack: Stack, redis: Redis
) -> None:
    flow = await challenge(stack, authorization_details=details())
    stored = json.loads(await stored_request(redis, flow.token))
    assert stored["ad"] == [PAYMENT]
    assert isinstance(stored["x"], str) and stored["x"]
    assert "authorization_details" not in stored and "txn" not in stored
    _, claims = await approved(flow)
    assert claims["txn"] == stored["x"]


async def test_a_retry_keeps_the_details_and_the_txn(stack: Stack, redis: Redis) -> None:
    flow = await challenge(stack, authorization_details=details())
    first_txn = json.loads(await stored_request(redis, flow.token))["x"]
    await stack.outcome(flow.token, "FAILED", "FACE_TOO_SMALL")
    retry_page = await flow.finish()
    assert retry_page.status_code == 200, retry_page.text
    assert SHOWN.split(" (")[0] in shown_details(retry_page)
    moved = await flow.browser.post(f"/challenge/{flow.token}/retry")
    assert moved.status_code == 303, moved.text
    flow.token = moved.headers["location"].removeprefix("/challenge/")
    page = await flow.browser.get(f"/challenge/{flow.token}")
    assert "Attempt 2 of 2" in page.text
    assert SHOWN.split(" (")[0] in shown_details(page)
    body, claims = await approved(flow)
    assert claims["txn"] == first_txn
    assert claims["authorization_details"] == body["authorization_details"] == [PAYMENT]


# -- a signed request object ------------------------------------------------------------------


def signed(stack: Stack, **claims: Any) -> str:
    return request_object(stack, "signed", login_hint="alice", **claims)


async def test_details_in_a_request_object_are_bound(stack: Stack) -> None:
    obj = signed(stack, authorization_details=[PAYMENT])
    flow = await authorize(stack, client_id="signed", request=obj)
    body, claims = await approved(await flow.show_challenge())
    assert body["authorization_details"] == claims["authorization_details"] == [PAYMENT]


async def test_an_unsigned_query_copy_beside_a_request_object_is_ignored(stack: Stack) -> None:
    obj = signed(stack, authorization_details=[PAYMENT])
    other = details(payment(creditorName="Mallory"))
    flow = await authorize(stack, client_id="signed", request=obj, authorization_details=other)
    page = await flow.browser.get(f"/challenge/{flow.token}")
    assert "Mallory" not in page.text and "ACME Ltd" in shown_details(page)
    _, claims = await approved(flow)
    assert claims["authorization_details"] == [PAYMENT]


async def test_a_query_copy_beside_a_request_object_without_details_adds_none(
    stack: Stack,
) -> None:
    flow = await authorize(
        stack, client_id="signed", request=signed(stack), authorization_details="not json"
    )
    page = await flow.browser.get(f"/challenge/{flow.token}")
    assert "authorization-details" not in page.text
    _, claims = await approved(flow)
    assert "authorization_details" not in claims


async def test_details_as_a_string_in_a_request_object_are_refused(stack: Stack) -> None:
    obj = signed(stack, authorization_details=details())
    flow = await authorize(stack, client_id="signed", request=obj)
    assert_refused(flow, stack, "must be a JSON array")


async def test_a_request_object_detail_that_fails_its_schema_is_refused(stack: Stack) -> None:
    obj = signed(stack, authorization_details=[payment(extra="x")])
    flow = await authorize(stack, client_id="signed", request=obj)
    assert_refused(flow, stack, "has a member its type does not define")


# -- refusals ---------------------------------------------------------------------------------

REFUSED = [
    ("not json", "is not valid JSON"),
    ("[NaN]", "is not valid JSON"),
    ("", "must be a non-empty JSON array"),
    ("[]", "must be a non-empty JSON array"),
    (json.dumps(PAYMENT), "must be a non-empty JSON array"),
    ("[1]", "entry 1 is not a JSON object"),
    (json.dumps([{"creditorName": "x"}]), "entry 1 has no string type"),
    (json.dumps([{"type": 7}]), "entry 1 has no string type"),
    (json.dumps([{"type": "<script>"}]), "entry 1 has a type this provider does not support"),
    (details(payment(extra="x")), "has a member its type does not define"),
    (
        details(payment(instructedAmount={"amount": "5", "currency": "EUR", "fee": "1"})),
        "has a member its type does not define at instructedAmount",
    ),
    (
        details(payment(instructedAmount={"amount": "5,00", "currency": "EUR"})),
        "(payment_initiation) has a value that is not allowed at instructedAmount.amount",
    ),
    (
        details(payment(instructedAmount={"amount": "5.00", "currency": "euro"})),
        "not allowed at instructedAmount.currency",
    ),
    (details({"type": "payment_initiation", "creditorName": "x"}), "lacks a required member"),
    (details(PAYMENT, {"type": "admin_action"}), "entry 2 (admin_action) lacks a required"),
    ('[{"type": "admin_action", "action": "a", "target": "b", "target": "c"}]', "duplicate member"),
    ("[" * 12 + "]" * 12, "nested too deeply"),
    (
        json.dumps([{"type": "admin_action", "action": "a", "target": "b\ud800"}]),
        "not valid Unicode",
    ),
    (details(*[{"type": "admin_action", "action": "a", "target": "b"}] * 17), "more than 16"),
    (
        details({"type": "admin_action", "action": "a", "target": "x" * 1100}),
        "larger than 1024 bytes",
    ),
    (details({"type": "fragile", "note": {}}), "entry 1 (fragile) cannot be displayed"),
    (details({"type": "prying", "name": "x"}), "entry 1 (prying) cannot be displayed"),
]


@pytest.mark.parametrize(("value", "description"), REFUSED)
async def test_invalid_details_are_refused_with_state_and_iss(
    stack: Stack, redis: Redis, value: str, description: str
) -> None:
    before = await open_requests(redis)
    flow = await authorize(stack, login_hint="alice", authorization_details=value)
    assert_refused(flow, stack, description)
    assert await open_requests(redis) == before  # no challenge, no vendor session


async def open_requests(redis: Redis) -> set[bytes]:
    return {key async for key in redis.scan_iter(match="stepup:{*}:challenge", count=1000)}


async def test_a_form_post_with_invalid_details_is_refused(stack: Stack) -> None:
    flow = await authorize(stack, method="POST", login_hint="alice", authorization_details="[]")
    assert_refused(flow, stack, "must be a non-empty JSON array")


async def test_a_client_not_allowed_the_type_is_refused(stack: Stack) -> None:
    flow = await authorize(
        stack, client_id="admin_only", login_hint="alice", authorization_details=details()
    )
    assert_refused(flow, stack, "type payment_initiation, which this client may not use")


async def test_a_client_with_no_types_may_send_none(stack: Stack) -> None:
    flow = await authorize(
        stack, client_id="plain", login_hint="alice", authorization_details=details()
    )
    assert_refused(flow, stack, "which this client may not use")


async def test_a_repeated_authorization_details_parameter_is_refused(stack: Stack) -> None:
    response = await stack.browser().get(
        "/authorize",
        params=[
            ("response_type", "code"),
            ("client_id", "shop"),
            ("redirect_uri", "http://127.0.0.1:9/callback"),
            ("scope", "openid"),
            ("state", "s1"),
            ("login_hint", "alice"),
            ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
            ("code_challenge_method", "S256"),
            ("authorization_details", details()),
            ("authorization_details", details(payment(creditorName="Mallory"))),
        ],
    )
    assert response.status_code == 303
    location = response.headers["location"]
    assert "error=invalid_request" in location and "authorization_details" in location
    assert "state=s1" in location


async def test_the_refusal_is_a_row_an_operator_may_override(pool: StackPool) -> None:
    overridden = {
        **SETTINGS,
        "errors": {"INVALID_AUTHORIZATION_DETAILS": {"description": "Ask the shop again."}},
    }
    other = await pool.get(settings=overridden)
    flow = await authorize(other, login_hint="alice", authorization_details="[]")
    assert_refused(flow, other)
    assert flow.redirect["error_description"] == "Ask the shop again."


async def test_discovery_lists_the_configured_types(stack: Stack) -> None:
    async with httpx.AsyncClient() as c:
        data = (await c.get(f"{stack.issuer}/.well-known/openid-configuration")).json()
    assert data["authorization_details_types_supported"] == list(TYPES)
    assert {"authorization_details", "txn"} <= set(data["claims_supported"])
