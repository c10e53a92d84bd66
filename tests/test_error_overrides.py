"""Every row of the outcome table, overridden under ``errors:``, reaches whoever sees it.

One stack configuration overrides EVERY row (``error``, ``stepup_error``, ``description`` and
``hint``); each case drives its row's real trigger end to end — the simulator's signed webhook,
a subject the directory or the vendor does not know, a vendor that is down, a Redis that is
down, a limit, a bad request — and checks that the RP's redirect (or, for the rows shown before
a client is validated and on the challenge's own pages, the page or JSON) carries the override,
not the default. For a retryable row, the retry page shows the overridden hint and
description, and giving up sends the overridden triple to the RP.

A guard test fails when a row is added to the table without a case here.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from idenfy_stepup.stepup.outcomes import DEFAULTS, PROTOCOL_ERRORS

from .harness.redis import RedisProcess
from .harness.rp import Flow, authorize, challenge, query, signed_subject
from .harness.servers import Stack, StackPool, running_stack
from .harness.settings import LIMITS_OFF, REDIRECT_URI, client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _override(name: str) -> dict[str, str]:
    low = name.lower()
    return {
        "error": f"x_{low}",
        "stepup_error": f"y_{low}",
        "description": f"Operator description of {name}.",
        "hint": f"Operator hint of {name}.",
    }


OVERRIDES = {name: _override(name) for name in DEFAULTS}
BASE: dict[str, Any] = {"errors": OVERRIDES}
OFF = LIMITS_OFF


def with_settings(**sections: dict[str, Any]) -> dict[str, Any]:
    return {**BASE, **sections}


def limits(**on: Any) -> dict[str, Any]:
    return {"challenge": {"limits": {**OFF, **on}}}


# -- what each audience sees ----------------------------------------------------------------------


def assert_redirect_overridden(
    response: httpx.Response, name: str, state: str, stack: Stack
) -> None:
    """The RP's redirect carries the operator's error, stepup_error and description."""
    assert response.status_code == 303, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    result = query(location)
    want = OVERRIDES[name]
    assert result["error"] == want["error"], result
    assert result["stepup_error"] == want["stepup_error"], result
    assert result["error_description"] == want["description"], result
    assert result["state"] == state and result["iss"] == stack.issuer, result
    assert "code" not in result


def assert_page_overridden(response: httpx.Response, status: int, name: str) -> None:
    """A page (no redirect) showing the operator's code and text, none of the defaults."""
    assert response.status_code == status, (response.status_code, response.text)
    assert "location" not in response.headers
    text = html.unescape(response.text)
    want, default = OVERRIDES[name], DEFAULTS[name]
    assert f"<code>{want['stepup_error']}</code>" in text, text
    assert want["description"].rstrip(".") in text or want["hint"] in text, text
    assert f"<code>{default.stepup_error}</code>" not in text


async def finish_overridden(attempt: Flow, name: str) -> None:
    response = await attempt.finish()
    assert_redirect_overridden(response, name, attempt.state, attempt.stack)


async def begin(stack: Stack, **params: str | None) -> tuple[Flow, httpx.Response]:
    """Alice's authorization request (unless ``params`` says otherwise) and its first answer."""
    flow = await authorize(stack, **{"login_hint": "alice", **params})
    return flow, flow.response


async def approved_code(stack: Stack) -> tuple[Flow, str]:
    attempt = await challenge(stack)
    assert (await stack.outcome(attempt.token, "SUCCESS")).json()["delivered"] == 200
    return attempt, (await attempt.result())["code"]


async def alice_id_token(stack: Stack) -> str:
    attempt, code = await approved_code(stack)
    response = await attempt.redeem(code)
    assert response.status_code == 200, response.text
    id_token: str = response.json()["id_token"]
    return id_token


# -- the cases, one per row ---------------------------------------------------------------------

Case = Callable[[StackPool, str], Awaitable[None]]


async def webhook_ending(pool: StackPool, name: str) -> None:
    """The simulator's signed webhook ends the check with this row; the browser finishes."""
    stack = await pool.get(settings=BASE)
    attempt = await challenge(stack)
    if name in ("CANCELED", "EXPIRED"):
        status, reason = name, None
    else:
        status, reason = "FAILED", (None if name == "UNKNOWN" else name)
    assert (await stack.outcome(attempt.token, status, reason)).json()["delivered"] == 200
    if not DEFAULTS[name].retryable:
        await finish_overridden(attempt, name)
        return
    page = await attempt.finish()  # attempts left: the retry page, with the operator's text
    assert page.status_code == 200, page.text
    text = html.unescape(page.text)
    assert OVERRIDES[name]["hint"] in text and OVERRIDES[name]["description"] in text, text
    assert DEFAULTS[name].hint not in text
    given_up = await attempt.browser.post(f"/challenge/{attempt.token}/give-up")
    assert_redirect_overridden(given_up, name, attempt.state, stack)


async def success_denied(pool: StackPool, name: str) -> None:
    """A SUCCESS the policy denies: for its riskTags, or (``deny``) for its ipAddress."""
    extra = {"idenfy": {"webhook_ip_policy": "deny"}} if name == "IP_MISMATCH" else {}
    stack = await pool.get(settings=with_settings(**extra))
    attempt = await challenge(stack)
    sent = {
        "RISK_UNTRUSTED_ENVIRONMENT": {"riskTags": ["UNTRUSTED_ENVIRONMENT"]},
        "RISK_FLAGGED": {"riskTags": ["SOME_NEW_VENDOR_TAG"]},
        "IP_MISMATCH": {"ipAddress": "203.0.113.9"},
    }[name]
    assert (await stack.outcome(attempt.token, "SUCCESS", **sent)).json()["delivered"] == 200
    await finish_overridden(attempt, name)


async def refused_at_authorize(pool: StackPool, name: str) -> None:
    """A request the provider refuses at /authorize, straight back to the RP."""
    params: dict[str, str] = {
        "INVALID_REQUEST": {"response_mode": "fragment"},
        "PKCE_REQUIRED": {"code_challenge": "", "code_challenge_method": ""},
        "INVALID_SCOPE": {"scope": "profile"},
        "UNSUPPORTED_RESPONSE_TYPE": {"response_type": "token"},
        "LOGIN_REQUIRED": {"prompt": "none"},
        "REQUEST_URI_NOT_SUPPORTED": {"request_uri": "https://rp.example/ro.jwt"},
        "SUBJECT_REQUIRED": {"login_hint": ""},
        "INVALID_ID_TOKEN_HINT": {"login_hint": "", "id_token_hint": "not.a.token"},
        "ACR_UNSUPPORTED": {"acr_values": "urn:nope"},
        "NOT_ENROLLED": {"login_hint": "bob"},  # the vendor says IDENTIFICATION: not enrolled
        "INVALID_AUTHORIZATION_DETAILS": {"authorization_details": "[]"},
    }[name]
    stack = await pool.get(settings=BASE)
    attempt, response = await begin(stack, **params)
    assert_redirect_overridden(response, name, attempt.state, stack)


async def enrollment_refused(pool: StackPool, name: str) -> None:
    stack = await pool.get(settings=with_settings(idenfy={"allow_enrollment": False}))
    attempt, response = await begin(stack, login_hint="carol")  # check-status: ENROLLMENT
    assert_redirect_overridden(response, name, attempt.state, stack)


async def subject_conflict(pool: StackPool, name: str) -> None:
    stack = await pool.get(settings=BASE)
    hint = await alice_id_token(stack)
    attempt, response = await begin(stack, login_hint="bob", id_token_hint=hint)
    assert_redirect_overridden(response, name, attempt.state, stack)


async def request_object_replayed(pool: StackPool, name: str) -> None:
    stack = await pool.get(settings=BASE)
    params = signed_subject(stack)
    first, response = await begin(stack, **params)
    assert first.token, response.text
    again, response = await begin(stack, **params)
    assert_redirect_overridden(response, name, again.state, stack)


async def vendor_down(pool: StackPool, name: str) -> None:
    """No vendor answers where the simulator would be (``simulator=False``): iDenfy is down."""
    stack = await pool.get(settings=BASE, simulator=False)
    attempt, response = await begin(stack)
    assert_redirect_overridden(response, name, attempt.state, stack)


async def store_down(pool: StackPool, name: str) -> None:
    """A Redis of its own, stopped under the running provider."""
    own = RedisProcess()
    own.start()
    try:
        async with running_stack(own.url, settings=BASE) as stack:
            own.stop()
            attempt, response = await begin(stack)
            assert_redirect_overridden(response, name, attempt.state, stack)
    finally:
        own.stop()


async def rate_limited(pool: StackPool, name: str) -> None:
    """One refused request from the address, then the next is over ``failures_per_ip``
    (a Redis of its own: the counters must not leak into the other cases)."""
    own = RedisProcess()
    own.start()
    settings = with_settings(**limits(failures_per_ip={"count": 1, "seconds": 600}))
    try:
        async with running_stack(own.url, settings=settings) as stack:
            await begin(stack, login_hint="bob")  # not_enrolled: one failure
            attempt, response = await begin(stack)
            assert_redirect_overridden(response, name, attempt.state, stack)
    finally:
        own.stop()


async def subject_locked(pool: StackPool, name: str) -> None:
    """A spoof in a check a signed hint asked for locks the subject (a Redis of its own)."""
    own = RedisProcess()
    own.start()
    try:
        async with running_stack(
            own.url, settings=with_settings(**limits(spoof_lockout_seconds=900))
        ) as stack:
            attempt = await challenge(stack, **signed_subject(stack))
            delivered = await stack.outcome(attempt.token, "FAILED", "FAKE_FACE")
            assert delivered.json()["delivered"] == 200
            again, response = await begin(stack, **signed_subject(stack))
            assert_redirect_overridden(response, name, again.state, stack)
    finally:
        own.stop()


async def par_required(pool: StackPool, name: str) -> None:
    """A client that must push its requests sends one to /authorize directly."""
    shop = client_entry("shop", subject_hints=["login_hint"])
    pushes = {**shop, "require_pushed_authorization_requests": True}
    stack = await pool.get(settings=with_settings(clients=[pushes]))
    attempt, response = await begin(stack)
    assert_redirect_overridden(response, name, attempt.state, stack)


async def unknown_request_uri(pool: StackPool, name: str) -> None:
    """A request_uri /par never issued (or one spent or expired): a page."""
    stack = await pool.get(settings=BASE)
    uri = "urn:ietf:params:oauth:request_uri:" + secrets.token_urlsafe(32)
    _, response = await begin(stack, request_uri=uri)
    assert_page_overridden(response, 400, name)


async def unknown_client(pool: StackPool, name: str) -> None:
    """Shown before any client is validated: a page."""
    stack = await pool.get(settings=BASE)
    _, response = await begin(stack, client_id="nobody")
    assert_page_overridden(response, 400, name)


async def wrong_browser(pool: StackPool, name: str) -> None:
    """Another browser opens the challenge page, and its push stream (JSON)."""
    stack = await pool.get(settings=BASE)
    attempt = await challenge(stack)
    other = stack.browser()
    assert_page_overridden(await other.get(f"/challenge/{attempt.token}"), 403, name)
    events = await other.get(f"/challenge/{attempt.token}/events")
    assert events.status_code == 403
    assert events.json() == {
        "error": OVERRIDES[name]["error"],
        "error_description": OVERRIDES[name]["description"],
    }


async def challenge_gone(pool: StackPool, name: str) -> None:
    stack = await pool.get(settings=BASE)
    response = await stack.browser().get(f"/challenge/{secrets.token_urlsafe(24)}")
    assert_page_overridden(response, 410, name)


async def challenge_consumed(pool: StackPool, name: str) -> None:
    """The RP redeemed the code; the browser finishes once more."""
    stack = await pool.get(settings=BASE)
    attempt, code = await approved_code(stack)
    assert (await attempt.redeem(code)).status_code == 200
    assert_page_overridden(await attempt.finish(), 410, name)


CASES: dict[str, Case] = {
    **{name: webhook_ending for name, row in DEFAULTS.items() if row.vendor_fail_reason},
    "CANCELED": webhook_ending,
    "EXPIRED": webhook_ending,
    "UNKNOWN": webhook_ending,
    "RISK_UNTRUSTED_ENVIRONMENT": success_denied,
    "RISK_FLAGGED": success_denied,
    "IP_MISMATCH": success_denied,
    **dict.fromkeys(
        [
            "INVALID_REQUEST",
            "PKCE_REQUIRED",
            "INVALID_SCOPE",
            "UNSUPPORTED_RESPONSE_TYPE",
            "LOGIN_REQUIRED",
            "REQUEST_URI_NOT_SUPPORTED",
            "SUBJECT_REQUIRED",
            "INVALID_ID_TOKEN_HINT",
            "ACR_UNSUPPORTED",
            "NOT_ENROLLED",
            "INVALID_AUTHORIZATION_DETAILS",
        ],
        refused_at_authorize,
    ),
    "ENROLLMENT_REFUSED": enrollment_refused,
    "SUBJECT_CONFLICT": subject_conflict,
    "INVALID_REQUEST_OBJECT": request_object_replayed,
    "VENDOR_UNAVAILABLE": vendor_down,
    "STORE_UNAVAILABLE": store_down,
    "RATE_LIMITED": rate_limited,
    "SUBJECT_LOCKED": subject_locked,
    "INVALID_CLIENT": unknown_client,
    "PAR_REQUIRED": par_required,
    "INVALID_REQUEST_URI": unknown_request_uri,
    "WRONG_BROWSER": wrong_browser,
    "CHALLENGE_GONE": challenge_gone,
    "CHALLENGE_CONSUMED": challenge_consumed,
}


@pytest.mark.parametrize("name", sorted(CASES), ids=sorted(CASES))
async def test_an_errors_override_reaches_whoever_sees_the_row(pool: StackPool, name: str) -> None:
    await CASES[name](pool, name)


async def test_every_row_of_the_table_has_a_case() -> None:
    assert set(CASES) == set(DEFAULTS)


async def test_every_protocol_error_names_a_row() -> None:
    assert set(PROTOCOL_ERRORS.values()) <= set(DEFAULTS)
    for code, name in PROTOCOL_ERRORS.items():
        assert DEFAULTS[name].error == code


async def test_a_specific_description_is_used_unless_the_operator_set_one(pool: StackPool) -> None:
    """Without an ``errors:`` description, a refusal's own description reaches the RP; an
    operator's other fields still apply to it."""
    stack = await pool.get(settings={"errors": {"INVALID_REQUEST": {"stepup_error": "bad_one"}}})
    attempt, response = await begin(stack, response_mode="fragment")
    result = query(response.headers["location"])
    assert result["stepup_error"] == "bad_one" and result["error"] == "invalid_request"
    assert result["error_description"] == "Only response_mode=query is supported."
    assert result["state"] == attempt.state


# -- the README's table is the product's table ----------------------------------------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_rows() -> dict[str, tuple[str, str, bool]]:
    """``{row name: (error, stepup_error, retry offered)}`` from the README's "Error codes"."""
    text = README.read_text()
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str, bool]] = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        names, _, error, codes, retry = (cell.strip() for cell in line.strip("|").split("|"))
        names_ = [n.strip().strip("`") for n in names.split("·")]
        codes_ = [c.strip() for c in codes.split("·")]
        assert len(names_) == len(codes_), line
        for name, code in zip(names_, codes_, strict=True):
            assert name not in rows, f"{name} twice in the README"
            rows[name] = (error.split()[0], code, retry.startswith("yes"))
    return rows


async def test_the_readme_error_table_is_the_outcome_table() -> None:
    table = {n: (r.error, r.stepup_error, r.retryable) for n, r in DEFAULTS.items()}
    assert readme_rows() == table


async def test_the_architecture_outcome_table_is_the_outcome_table() -> None:
    doc = (README.parent / "docs" / "architecture.md").read_text()
    section = doc.split("## Outcomes and errors", 1)[1].split("\n###", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            name, error, code, retry, _ = (cell.strip() for cell in line.strip("|").split("|"))
            rows[name.strip("`")] = (error, code, retry == "yes")
    assert rows == {n: (r.error, r.stepup_error, r.retryable) for n, r in DEFAULTS.items()}
