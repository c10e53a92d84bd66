"""Reusing a recent face check (``clients[].reuse_within``, stepup/reuse.py) over real HTTP.

A client with ``reuse_within`` gets a code at once for a request from the browser that passed
a face check of the same subject, for that client, at the same or a higher level, within the
window; every other request gets a new face check (or, with prompt=none, login_required).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer
from joserfc import jwt
from redis.asyncio import Redis

from idenfy_stepup.stepup.limits import address_identity
from idenfy_stepup.stepup.reuse_cookie import SALT, ReuseCookies
from idenfy_stepup.store import tag

from ..harness.redis import KEYS, lock_key, open_key, reuse_key
from ..harness.rp import Flow, authorize, query, redeem_code
from ..harness.servers import Stack, StackPool
from ..harness.settings import REDIRECT_URI, client_entry, merge
from ..harness.vendor import vendor_sessions
from .test_token import userinfo

pytestmark = pytest.mark.asyncio(loop_scope="module")

FACE = "urn:idenfy:stepup:face"
LIVENESS = "urn:idenfy:stepup:liveness"
WINDOW = 300
HINTS = ["login_hint"]
SETTINGS: dict[str, Any] = {
    "acr": {
        "levels": {FACE: {"method": "FACE_MATCHING"}, LIVENESS: {"method": "ACTIVE_LIVENESS"}},
        "default": FACE,
    },
    "idenfy": {
        "simulator": {"scan_refs": {"SCAN-DAVE": "AUTHENTICATION", "SCAN-ERIN": "AUTHENTICATION"}}
    },
    "directory": {"static": {"dave": "SCAN-DAVE", "erin": "SCAN-ERIN"}},
    "challenge": {"limits": {"spoof_lockout_seconds": 600}},
    "authorization_details": {
        "types": {
            "payment_initiation": {
                "schema": {"type": "object", "properties": {"amount": {"type": "string"}}},
                "display": "Pay {{ amount }}",
            }
        }
    },
    "clients": [
        client_entry(
            "shop",
            subject_hints=HINTS,
            reuse_within=WINDOW,
            authorization_details_types=["payment_initiation"],
        ),
        client_entry("other", subject_hints=HINTS, reuse_within=WINDOW),
        client_entry("plain", subject_hints=HINTS),  # reuse_within: the default, 0
    ],
}
LOOPBACK_OPEN = open_key(tag(address_identity("127.0.0.1")))


async def stepped_up(stack: Stack, **params: str | None) -> tuple[Flow, dict[str, Any]]:
    """A face check in a new browser (alice at shop unless ``params`` says otherwise), approved:
    the flow and its id_token's claims."""
    flow = await authorize(stack, **{"login_hint": "alice", **params})
    result = await flow.approve()
    response = await redeem_code(
        stack, result["code"], client_id=flow.params["client_id"], verifier=flow.verifier
    )
    assert response.status_code == 200, response.text
    return flow, await id_token_claims(stack, response)


async def id_token_claims(stack: Stack, response: httpx.Response) -> dict[str, Any]:
    return dict(jwt.decode(response.json()["id_token"], await stack.jwks()).claims)


async def again(first: Flow, **params: str | None) -> Flow:
    """A new authorization request from the first flow's browser (its cookies)."""
    merged = {"login_hint": "alice", "client_id": first.params["client_id"], **params}
    return await authorize(first.stack, browser=first.browser, **merged)


def reused_code(flow: Flow) -> str:
    """The code /authorize answered at once: no challenge, straight to the RP."""
    assert flow.token == "", flow.response.headers.get("location")
    result = flow.redirect
    assert flow.response.headers["location"].startswith(REDIRECT_URI)
    assert result["state"] == flow.state and result["iss"] == flow.stack.issuer, result
    assert "error" not in result, result
    return result["code"]


def new_check(flow: Flow) -> None:
    """/authorize opened a new face check (the challenge page), not a code."""
    assert flow.token, (flow.response.status_code, flow.response.headers.get("location"))


def assert_login_required(flow: Flow) -> None:
    result = flow.redirect
    assert result["error"] == "login_required" and result["stepup_error"] == "login_required"
    assert result["state"] == flow.state and result["iss"] == flow.stack.issuer, result
    assert "code" not in result


def reuse_cookie(browser: httpx.AsyncClient, client_id: str) -> str:
    value = browser.cookies.get(ReuseCookies.name(client_id), path="/authorize")
    assert value, browser.cookies
    return value


def reuse_secret(browser: httpx.AsyncClient, client_id: str) -> str:
    """The secret inside the browser's reuse cookie (read without the provider's key)."""
    _, payload = URLSafeTimedSerializer("unknown").loads_unsafe(reuse_cookie(browser, client_id))
    assert isinstance(payload, dict) and payload["c"] == client_id
    return str(payload["s"])


async def age_record(redis: Redis, flow: Flow, seconds: int) -> int:
    """Make the browser's reuse record ``seconds`` old (its TTL kept); its new auth_time."""
    key = reuse_key(reuse_secret(flow.browser, flow.params["client_id"]))
    record = json.loads(await redis.get(key))
    record["auth_time"] = int(time.time()) - seconds
    await redis.set(key, json.dumps(record), keepttl=True)
    return int(record["auth_time"])


# -- reuse within the window ---------------------------------------------------------------------


async def test_recent_face_check_in_the_same_browser_answers_with_a_code_at_once(
    stack: Stack, redis: Redis
) -> None:
    first, claims = await stepped_up(stack)
    sessions, open_before = len(await vendor_sessions(stack)), await redis.zcard(LOOPBACK_OPEN)

    second = await again(first)
    code = reused_code(second)
    # No vendor session, nothing added to the address's open challenges.
    assert len(await vendor_sessions(stack)) == sessions
    assert await redis.zcard(LOOPBACK_OPEN) == open_before
    response = await redeem_code(stack, code, verifier=second.verifier)
    assert response.status_code == 200, response.text
    reused = await id_token_claims(stack, response)
    assert reused["auth_time"] == claims["auth_time"]  # the original check's
    assert reused["sub"] == "alice" and reused["acr"] == FACE and reused["amr"] == ["face"]
    assert reused["nonce"] == second.nonce != first.nonce


async def test_reuse_is_answered_before_the_open_challenge_cap(
    pool: StackPool, redis: Redis
) -> None:
    capped = merge(SETTINGS, {"challenge": {"limits": {"open_challenges_per_ip": 1}}})
    stack = await pool.get(settings=capped)
    await redis.delete(LOOPBACK_OPEN)  # this test's own count of the loopback's open checks
    first, _ = await stepped_up(stack)  # ended: it no longer counts
    held = await authorize(stack, login_hint="alice")  # left open: the address is at its cap
    new_check(held)
    try:
        reused_code(await again(first))
        refused = (await authorize(stack, login_hint="alice")).redirect
        assert refused["stepup_error"] == "rate_limited" and "code" not in refused
    finally:
        await redis.delete(LOOPBACK_OPEN)


async def test_lower_level_is_reused_with_the_requested_acr(stack: Stack) -> None:
    first, claims = await stepped_up(stack, acr_values=LIVENESS)
    assert claims["acr"] == LIVENESS
    second = await again(first, acr_values=FACE)
    response = await redeem_code(stack, reused_code(second), verifier=second.verifier)
    reused = await id_token_claims(stack, response)
    assert reused["acr"] == FACE and reused["auth_time"] == claims["auth_time"]


async def test_reuse_record_lives_until_auth_time_plus_reuse_within(
    stack: Stack, redis: Redis
) -> None:
    first, claims = await stepped_up(stack)
    key = reuse_key(reuse_secret(first.browser, "shop"))
    record = json.loads(await redis.get(key))
    expected = {"client_id": "shop", "subject": "alice", "acr": FACE}
    assert record == {**expected, "auth_time": claims["auth_time"]}
    assert 0 < await redis.ttl(key) <= claims["auth_time"] + WINDOW - int(time.time()) + 1
    assert "SCAN-ALICE" not in json.dumps(record)  # never the scanRef


# -- no reuse ------------------------------------------------------------------------------------
# Each case first shows the same browser's plain request reused (so it fails where nothing is
# ever reused), then the one difference that forces a new face check.


async def test_another_browser_gets_a_new_face_check(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first))
    new_check(await authorize(stack, login_hint="alice"))
    assert_login_required(await authorize(stack, login_hint="alice", prompt="none"))


async def test_reuse_cookie_of_one_client_does_not_serve_another(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first))
    other = stack.browser()
    # Client shop's cookie presented to client other, under other's cookie name.
    other.cookies.set(ReuseCookies.name("other"), reuse_cookie(first.browser, "shop"))
    flow = await authorize(stack, browser=other, client_id="other", login_hint="alice")
    new_check(flow)
    # And the browser holding shop's record gets none for other.
    new_check(await again(first, client_id="other"))


async def test_another_subject_gets_a_new_face_check(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first))
    new_check(await again(first, login_hint="dave"))


async def test_higher_level_gets_a_new_face_check(stack: Stack) -> None:
    first, _ = await stepped_up(stack)  # FACE_MATCHING
    reused_code(await again(first, acr_values=FACE))
    new_check(await again(first, acr_values=LIVENESS))


async def test_after_the_window_a_new_face_check(stack: Stack, redis: Redis) -> None:
    first, _ = await stepped_up(stack)
    await age_record(redis, first, WINDOW - 5)
    reused_code(await again(first))
    await age_record(redis, first, WINDOW)
    new_check(await again(first))
    assert_login_required(await again(first, prompt="none"))


async def test_client_without_reuse_within_sets_no_reuse_cookie(stack: Stack) -> None:
    first, _ = await stepped_up(stack, client_id="plain")
    assert first.browser.cookies.get(ReuseCookies.name("plain"), path="/authorize") is None
    new_check(await again(first))
    assert_login_required(await again(first, prompt="none"))
    # The same browser, after a check for a client that reuses: that client only.
    await (await again(first, client_id="shop")).approve()
    reused_code(await again(first, client_id="shop"))
    new_check(await again(first))


async def test_max_age_smaller_than_the_age_forces_a_new_face_check(
    stack: Stack, redis: Redis
) -> None:
    first, _ = await stepped_up(stack)
    auth_time = await age_record(redis, first, 100)
    second = await again(first, max_age="1000")
    response = await redeem_code(stack, reused_code(second), verifier=second.verifier)
    assert (await id_token_claims(stack, response))["auth_time"] == auth_time
    new_check(await again(first, max_age="50"))
    assert_login_required(await again(first, max_age="50", prompt="none"))


async def test_max_age_zero_always_forces_a_new_face_check(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first, max_age="3600"))
    new_check(await again(first, max_age="0"))
    assert_login_required(await again(first, max_age="0", prompt="none"))


async def test_prompt_login_forces_a_new_face_check_and_consent_changes_nothing(
    stack: Stack,
) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first, prompt="consent"))
    new_check(await again(first, prompt="login"))


async def test_authorization_details_force_a_new_face_check(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first))
    details = json.dumps([{"type": "payment_initiation", "amount": "10.00"}])
    new_check(await again(first, authorization_details=details))
    assert_login_required(await again(first, authorization_details=details, prompt="none"))


async def test_tampered_or_forged_reuse_cookie_is_ignored(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    genuine = reuse_cookie(first.browser, "shop")
    name = ReuseCookies.name("shop")
    # The first character: all of its bits are data (a base64 text's last one may carry
    # padding bits only, which decode to the same signature).
    tampered = ("A" if genuine[0] != "A" else "B") + genuine[1:]
    forged = URLSafeTimedSerializer("not-the-cookie-secret", salt=SALT).dumps(
        {"c": "shop", "s": reuse_secret(first.browser, "shop")}
    )
    for value, answered in ((genuine, reused_code), (tampered, new_check), (forged, new_check)):
        browser = stack.browser()
        browser.cookies.set(name, value, path="/authorize")
        answered(await authorize(stack, browser=browser, login_hint="alice"))


async def test_reuse_record_removed_from_redis_ends_reuse(stack: Stack, redis: Redis) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first))
    await redis.delete(reuse_key(reuse_secret(first.browser, "shop")))
    new_check(await again(first))


async def test_locked_out_subject_is_refused_not_served_from_reuse(
    stack: Stack, redis: Redis
) -> None:
    first, _ = await stepped_up(stack, login_hint="erin")
    reused_code(await again(first, login_hint="erin"))
    await redis.set(lock_key("erin"), "1", ex=600)
    try:
        for prompt in (None, "none"):
            result = (await again(first, login_hint="erin", prompt=prompt)).redirect
            assert result["stepup_error"] == "subject_locked" and "code" not in result
    finally:
        await redis.delete(lock_key("erin"))


async def test_subject_no_longer_in_the_directory_is_not_served_from_reuse(
    stack: Stack, redis: Redis
) -> None:
    await redis.set(KEYS.subject_key("frank"), "SCAN-ALICE")
    first, _ = await stepped_up(stack, login_hint="frank")
    reused_code(await again(first, login_hint="frank"))
    await redis.delete(KEYS.subject_key("frank"))
    result = (await again(first, login_hint="frank")).redirect
    assert result["stepup_error"] == "not_enrolled" and "code" not in result


async def test_flagged_face_check_is_not_remembered(stack: Stack) -> None:
    # An approval from another address (webhook_ip_policy: log) says stepup_ip in its id_token;
    # a reuse would answer without it.
    flow = await authorize(stack, login_hint="alice")
    delivered = await stack.outcome(flow.token, "SUCCESS", ipAddress="203.0.113.9")
    assert delivered.json()["delivered"] == 200
    assert "code" in query((await flow.finish()).headers["location"])
    assert flow.browser.cookies.get(ReuseCookies.name("shop"), path="/authorize") is None
    second = await again(flow)
    new_check(second)
    # The same browser's next, unflagged check is remembered.
    await second.approve()
    reused_code(await again(flow))


# -- prompt=none ---------------------------------------------------------------------------------


async def test_prompt_none_gets_a_code_when_reuse_applies(stack: Stack) -> None:
    first, claims = await stepped_up(stack)
    second = await again(first, prompt="none")
    response = await redeem_code(stack, reused_code(second), verifier=second.verifier)
    assert (await id_token_claims(stack, response))["auth_time"] == claims["auth_time"]


async def test_prompt_none_without_any_cookie_is_login_required(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first, prompt="none"))
    assert_login_required(await authorize(stack, login_hint="alice", prompt="none"))


async def test_prompt_none_with_another_value_stays_invalid_request(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    reused_code(await again(first, prompt="none"))
    flow = await again(first, prompt="none login")
    result = flow.redirect
    assert result["error"] == "invalid_request" and result["state"] == flow.state, result
    assert "code" not in result


# -- the reused code at /token -------------------------------------------------------------------


async def test_reused_code_is_client_bound_single_use_and_a_replay_revokes(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    second = await again(first)
    code = reused_code(second)
    wrong_client = await redeem_code(stack, code, client_id="other", verifier=second.verifier)
    assert wrong_client.status_code == 400 and wrong_client.json()["error"] == "invalid_grant"

    redeemed = await redeem_code(stack, code, verifier=second.verifier)
    assert redeemed.status_code == 200, redeemed.text
    access_token = redeemed.json()["access_token"]
    assert (await userinfo(stack, token=access_token)).json() == {"sub": "alice"}
    replay = await redeem_code(stack, code, verifier=second.verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert (await userinfo(stack, token=access_token)).status_code == 401


async def test_reused_code_needs_its_own_requests_pkce_verifier(stack: Stack) -> None:
    first, _ = await stepped_up(stack)
    second = await again(first)
    # The first request's verifier does not redeem the second request's code.
    response = await redeem_code(stack, reused_code(second), verifier=first.verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
