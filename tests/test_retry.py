"""The retry branch of the challenge state machine (docs/architecture.md, "Retries"):
DENIED(retryable, attempts left) → "try again" → new token.

Also the other ways out of the retry screen and the challenge page: attempts exhausted, give up,
and our own cancel control.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from .harness.redis import RedisProcess, challenge_key
from .harness.rp import Flow, challenge, query
from .harness.servers import TLS, Stack, StackPool
from .harness.settings import REDIRECT_URI
from .harness.vendor import simulator_session, vendor_sessions

pytestmark = pytest.mark.asyncio(loop_scope="module")

TWO_ATTEMPTS = {"challenge": {"max_attempts": 2}}


async def failed(stack: Stack, attempt: Flow, reason: str) -> httpx.Response:
    """Deliver a FAILED webhook and finish: the retry screen or the RP's error."""
    delivered = await stack.outcome(attempt.token, "FAILED", reason)
    assert delivered.json()["delivered"] == 200
    return await attempt.finish()


async def retry(attempt: Flow, token: str | None = None) -> httpx.Response:
    return await attempt.browser.post(f"/challenge/{token or attempt.token}/retry")


def next_token(response: httpx.Response) -> str:
    assert response.status_code == 303, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith("/challenge/"), location
    return location.removeprefix("/challenge/")


def assert_rp_error(response: httpx.Response, attempt: Flow, stack: Stack, code: str) -> None:
    assert response.status_code == 303, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    result = query(location)
    assert "code" not in result
    assert result["error"] == "access_denied"
    assert result["stepup_error"] == code
    assert result["error_description"]
    assert result["state"] == attempt.state
    assert result["iss"] == stack.issuer


async def test_retry_then_success_on_the_new_token(stack: Stack) -> None:
    attempt = await challenge(stack)
    first = attempt.token
    page = await failed(stack, attempt, "FACE_TOO_SMALL")
    assert page.status_code == 200
    assert 'data-action="retry"' in page.text
    assert 'data-action="give-up"' in page.text
    assert "closer" in page.text  # the plain-language hint for FACE_TOO_SMALL
    assert "2 attempts left" in page.text

    response = await retry(attempt)
    second = next_token(response)
    assert second != first
    cookie = response.headers["set-cookie"]
    assert f"Path=/challenge/{second}" in cookie and "HttpOnly" in cookie

    # The new challenge page, for a new vendor session of the same person and level.
    attempt.token = second
    shown = await attempt.browser.get(f"/challenge/{second}")
    assert shown.status_code == 200
    assert f"token={second}" in shown.text
    assert "Attempt 2 of 3" in shown.text
    before = await simulator_session(stack, first)
    after = await simulator_session(stack, second)
    assert (after["scanRef"], after["method"]) == (before["scanRef"], before["method"])

    # The old token now forwards to the new one.
    old = await attempt.browser.get(f"/challenge/{first}/finish")
    assert old.status_code == 303 and old.headers["location"] == f"/challenge/{second}"

    await stack.outcome(second, "SUCCESS")
    result = await attempt.result()
    assert result["state"] == attempt.state
    assert result["iss"] == stack.issuer
    claims = await attempt.id_token(result["code"])
    assert claims["sub"] == "alice"
    assert claims["nonce"] == attempt.nonce  # the same OIDC request throughout


async def test_attempts_exhausted_redirect_with_the_last_reason(pool: StackPool) -> None:
    stack = await pool.get(settings=TWO_ATTEMPTS)
    attempt = await challenge(stack)
    page = await failed(stack, attempt, "FACE_TOO_SMALL")
    assert "1 attempt left" in page.text
    attempt.token = next_token(await retry(attempt))
    assert (await attempt.browser.get(f"/challenge/{attempt.token}")).status_code == 200

    sessions = len(await vendor_sessions(stack))
    response = await failed(stack, attempt, "FACE_TOO_CLOSE")
    assert_rp_error(response, attempt, stack, "face_too_close")
    # No third attempt, even if asked for: the finish URL repeats the last outcome.
    again = await retry(attempt)
    assert again.status_code == 303 and "set-cookie" not in again.headers
    assert again.headers["location"] == f"/challenge/{attempt.token}/finish"
    assert len(await vendor_sessions(stack)) == sessions
    assert_rp_error(await attempt.finish(), attempt, stack, "face_too_close")


async def test_give_up_redirects_with_the_failures_own_error(stack: Stack) -> None:
    attempt = await challenge(stack)
    page = await failed(stack, attempt, "FACE_CROPPED")
    assert page.status_code == 200
    response = await attempt.browser.post(f"/challenge/{attempt.token}/give-up")
    assert_rp_error(response, attempt, stack, "face_cropped")
    # Given up is final: no new attempt; a repeated finish repeats the same outcome.
    sessions = len(await vendor_sessions(stack))
    await retry(attempt)
    assert len(await vendor_sessions(stack)) == sessions
    assert_rp_error(await attempt.finish(), attempt, stack, "face_cropped")


async def test_give_up_while_pending_is_not_an_outcome(stack: Stack) -> None:
    attempt = await challenge(stack)
    response = await attempt.browser.post(f"/challenge/{attempt.token}/give-up")
    assert response.status_code == 303
    assert response.headers["location"] == f"/challenge/{attempt.token}"


async def test_cancel_redirects_user_canceled(stack: Stack) -> None:
    attempt = await challenge(stack)
    response = await attempt.browser.post(f"/challenge/{attempt.token}/cancel")
    assert_rp_error(response, attempt, stack, "user_canceled")
    # A late SUCCESS cannot revive a canceled challenge: finish repeats the cancel.
    await stack.outcome(attempt.token, "SUCCESS")
    assert_rp_error(await attempt.finish(), attempt, stack, "user_canceled")


async def test_cancel_on_the_retry_screen(stack: Stack) -> None:
    attempt = await challenge(stack)
    await failed(stack, attempt, "EYES_CLOSED")
    response = await attempt.browser.post(f"/challenge/{attempt.token}/cancel")
    assert_rp_error(response, attempt, stack, "user_canceled")


async def test_retry_is_refused_without_a_retryable_failure(stack: Stack) -> None:
    sessions = len(await vendor_sessions(stack))
    pending = await challenge(stack)
    refused = await retry(pending)
    assert refused.headers["location"] == f"/challenge/{pending.token}"

    approved = await challenge(stack)
    await stack.outcome(approved.token, "SUCCESS")
    refused = await retry(approved)
    assert refused.headers["location"] == f"/challenge/{approved.token}"
    assert "code" in await approved.result()  # the approval was not spent by the refusal
    assert len(await vendor_sessions(stack)) == sessions + 2


async def test_double_retry_click_creates_one_vendor_session(stack: Stack) -> None:
    attempt = await challenge(stack)
    await failed(stack, attempt, "FACE_TOO_SMALL")
    sessions = len(await vendor_sessions(stack))
    # The first click's answer never reaches the browser (the second click aborted it): it is
    # replayed from a copy of the browser's cookies, and the browser only sees the second.
    async with httpx.AsyncClient(
        base_url=stack.issuer, cookies=attempt.browser.cookies, verify=TLS
    ) as lost:
        first = await lost.post(f"/challenge/{attempt.token}/retry")
    second = await retry(attempt)
    token = next_token(first)
    assert next_token(second) == token
    assert len(await vendor_sessions(stack)) == sessions + 1
    assert f"Path=/challenge/{token}" in second.headers["set-cookie"]
    page = await attempt.browser.get(f"/challenge/{token}")
    assert page.status_code == 200, page.text


async def test_concurrent_retry_clicks_create_one_vendor_session(stack: Stack) -> None:
    attempt = await challenge(stack)
    await failed(stack, attempt, "FACE_TOO_SMALL")
    sessions = len(await vendor_sessions(stack))
    responses = await asyncio.gather(*(retry(attempt) for _ in range(4)))
    assert len(await vendor_sessions(stack)) == sessions + 1
    created = {r.headers["location"] for r in responses if r.headers.get("set-cookie")}
    assert len(created) == 1, [(r.status_code, r.headers.get("location")) for r in responses]
    # A browser that follows any one of the answers reaches the new challenge page.
    for response in responses:
        assert response.status_code == 303, (response.status_code, response.text)
        page = await attempt.browser.get(response.headers["location"], follow_redirects=True)
        assert page.status_code == 200, (response.headers["location"], page.url)
        assert str(page.url).endswith(next(iter(created))), page.url


async def test_retry_with_the_vendor_down_reports_vendor_unavailable(pool: StackPool) -> None:
    stack = await pool.fresh()
    attempt = await challenge(stack)
    await failed(stack, attempt, "FACE_TOO_SMALL")
    simulator, task = stack.servers.pop()  # stop the simulator: its port now refuses
    simulator.should_exit = True
    await task
    response = await retry(attempt)
    assert response.status_code == 303
    result = query(response.headers["location"])
    assert result["error"] == "temporarily_unavailable"
    assert result["stepup_error"] == "vendor_unavailable"
    assert result["state"] == attempt.state and result["iss"] == stack.issuer
    # The failed retry is final: nothing is left to finish.
    again = await attempt.finish()
    assert "code" not in query(again.headers.get("location", ""))


async def test_page_during_a_retry_in_flight_does_not_loop(
    stack: Stack, redis_proc: RedisProcess
) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_TOO_SMALL")
    # A retry claimed by another tab whose vendor call has not returned yet.
    with redis_proc.client() as r:
        r.hset(
            challenge_key(attempt.token),
            mapping={"state": "RETRYING", "retry_at": int(time.time())},
        )
    page = await attempt.browser.get(f"/challenge/{attempt.token}")
    assert page.status_code == 202
    assert page.headers["refresh"] == f"2; url=/challenge/{attempt.token}/finish"
