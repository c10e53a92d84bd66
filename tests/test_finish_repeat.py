"""Never a dead end: a repeated finish answers as the first did; HEAD changes nothing.

The browser navigates twice, a proxy retries, the tab reloads, or the response is lost after the
finish script ran: the browser that owns the challenge gets the same redirect again — the same
code, still redeemable once — for as long as that code lives. A HEAD (a prefetch, a link checker)
neither opens a challenge nor consumes one.
"""

from __future__ import annotations

import httpx
import pytest
from redis.asyncio import Redis

from .harness.redis import challenge_key
from .harness.rp import Flow, authorize_params, challenge, pkce, query
from .harness.servers import Stack
from .harness.settings import REDIRECT_URI
from .harness.vendor import vendor_sessions

pytestmark = pytest.mark.asyncio(loop_scope="module")


def rp(response: httpx.Response) -> dict[str, str]:
    location = response.headers.get("location", "")
    assert response.status_code == 303 and location.startswith(REDIRECT_URI), (
        response.status_code,
        location,
    )
    return query(location)


async def approved(stack: Stack) -> tuple[Flow, dict[str, str]]:
    attempt = await challenge(stack)
    assert (await stack.outcome(attempt.token, "SUCCESS")).json()["delivered"] == 200
    return attempt, rp(await attempt.finish())


async def test_a_lost_finish_response_is_answered_again_with_the_same_code(stack: Stack) -> None:
    attempt, first = await approved(stack)
    again = rp(await attempt.finish())
    assert again == first  # code, state and iss: the same redirect
    token = await attempt.redeem(first["code"])
    assert token.status_code == 200, token.text
    # Still one code: a second redemption fails (and revokes, as ever).
    assert (await attempt.redeem(first["code"])).status_code == 400


async def test_once_the_code_is_redeemed_a_repeated_finish_says_the_check_is_complete(
    stack: Stack,
) -> None:
    attempt, first = await approved(stack)
    assert (await attempt.redeem(first["code"])).status_code == 200
    late = await attempt.finish()
    assert late.status_code == 410 and "location" not in late.headers
    assert "complete" in late.text and first["code"] not in late.text


async def test_an_expired_code_is_not_handed_out_again(stack: Stack, redis: Redis) -> None:
    attempt, first = await approved(stack)
    await redis.hset(challenge_key(attempt.token), "code_exp", 1)
    late = await attempt.finish()
    assert late.status_code == 410 and first["code"] not in late.headers.get("location", "")


async def test_another_browser_never_gets_the_code(stack: Stack) -> None:
    attempt, first = await approved(stack)
    async with httpx.AsyncClient(base_url=stack.issuer) as intruder:
        response = await intruder.get(f"/challenge/{attempt.token}/finish")
    assert response.status_code == 403 and first["code"] not in response.text
    assert "location" not in response.headers


@pytest.mark.parametrize(
    ("status", "reason", "stepup_error"),
    [
        ("FAILED", "FACE_MISMATCH", "face_mismatch"),
        ("EXPIRED", None, "challenge_expired"),
        ("CANCELED", None, "user_canceled"),
    ],
)
async def test_a_repeated_finish_after_a_refusal_repeats_the_refusal(
    stack: Stack, status: str, reason: str | None, stepup_error: str
) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, status, reason)
    first = rp(await attempt.finish())
    assert first["stepup_error"] == stepup_error
    for _ in range(2):
        assert rp(await attempt.finish()) == first


async def test_head_on_finish_consumes_nothing(stack: Stack) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "SUCCESS")
    head = await attempt.browser.head(f"/challenge/{attempt.token}/finish")
    assert head.status_code == 405 and "location" not in head.headers
    result = rp(await attempt.finish())  # the approval is still there
    assert "code" in result
    assert (await attempt.redeem(result["code"])).status_code == 200


async def test_head_on_authorize_opens_no_challenge(stack: Stack) -> None:
    before = len(await vendor_sessions(stack))
    _, code_challenge = pkce()
    async with httpx.AsyncClient(base_url=stack.issuer) as browser:
        head = await browser.head("/authorize", params=authorize_params(code_challenge))
    assert head.status_code == 405 and "set-cookie" not in head.headers
    assert len(await vendor_sessions(stack)) == before
