"""The push channel knows the challenge's deadline: an abandoned check is never a dead end.

No webhook is ever sent here. The challenge's ``expires_at`` is moved close to now in Redis
(the test's set-up: ``idenfy.token_lifetime`` is at least 60 s), and the stream must say
"done" once the finish URL answers ``challenge_expired``, which then reaches the RP with
``state`` and ``iss``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from idenfy_stepup.store import EXPIRY_SKEW_SECONDS

from .harness.redis import challenge_key
from .harness.rp import Flow, challenge, query
from .harness.servers import Stack
from .harness.settings import REDIRECT_URI
from .test_push import events_url, finish_url_of, next_event, wait_for_done

pytestmark = pytest.mark.asyncio(loop_scope="module")

LEAD = 2  # seconds from opening the stream to the challenge's deadline


async def expire_in(stack: Stack, attempt: Flow, seconds: float) -> float:
    """Move the challenge's deadline (expiry + skew) ``seconds`` from now; returns it."""
    expires_at = int(time.time() + seconds) - EXPIRY_SKEW_SECONDS
    async with Redis.from_url(stack.settings.redis.url) as redis:
        await redis.hset(challenge_key(attempt.token), "expires_at", expires_at)
    return float(expires_at + EXPIRY_SKEW_SECONDS)


def assert_expired_redirect(location: str, attempt: Flow, stack: Stack) -> None:
    assert location.startswith(REDIRECT_URI), location
    got = query(location)
    assert got["error"] == "access_denied", got
    assert got["stepup_error"] == "challenge_expired", got
    assert got["state"] == attempt.state
    assert got["iss"] == stack.issuer
    assert "code" not in got


async def test_push_says_done_at_the_deadline_without_any_webhook(stack: Stack) -> None:
    attempt = await challenge(stack)
    deadline = await expire_in(stack, attempt, LEAD)
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert await next_event(lines) == ["retry: 500"]
        # Not at a keep-alive (push_keepalive, 30 s): at the deadline itself.
        async with asyncio.timeout(LEAD + 8):
            block = await wait_for_done(lines)
    assert time.time() >= deadline  # not before the finish URL says expired
    finished = await attempt.browser.get(finish_url_of(block))
    assert finished.status_code == 303
    assert_expired_redirect(finished.headers["location"], attempt, stack)


async def test_push_says_done_at_once_when_the_deadline_has_passed(stack: Stack) -> None:
    """A stream (re)opened after the deadline, e.g. by EventSource after a cut connection."""
    attempt = await challenge(stack)
    await expire_in(stack, attempt, -1)
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        async with asyncio.timeout(5):
            block = await wait_for_done(response.aiter_lines())
    finished = await attempt.browser.get(finish_url_of(block))
    assert_expired_redirect(finished.headers["location"], attempt, stack)


async def test_within_the_skew_finish_still_waits_for_a_late_webhook(stack: Stack) -> None:
    """After the vendor session's expiry but before expiry + skew, finish still says "pending"
    (a late webhook may land), and so the stream has not fired yet."""
    attempt = await challenge(stack)
    await expire_in(stack, attempt, EXPIRY_SKEW_SECONDS - 2)  # expired 2 s ago at the vendor
    finished = await attempt.finish()
    assert finished.status_code == 303
    assert finished.headers["location"] == f"/challenge/{attempt.token}"


async def test_a_webhook_just_before_the_deadline_still_wins(stack: Stack) -> None:
    attempt = await challenge(stack)
    await expire_in(stack, attempt, LEAD + 3)
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        lines = response.aiter_lines()
        await next_event(lines)
        await stack.outcome(attempt.token, "SUCCESS")
        async with asyncio.timeout(5):
            block = await wait_for_done(lines)
    finished = await attempt.browser.get(finish_url_of(block))
    assert "code" in query(finished.headers["location"])


async def test_unreadable_expiry_sends_the_browser_to_finish_at_once(stack: Stack) -> None:
    """The finish script reads an unreadable expiry as "start again"; the stream must not
    keep the page waiting on it."""
    attempt = await challenge(stack)
    async with Redis.from_url(stack.settings.redis.url) as redis:
        await redis.hset(challenge_key(attempt.token), "expires_at", "soon")
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        async with asyncio.timeout(5):
            block = await wait_for_done(response.aiter_lines())
    assert (await attempt.browser.get(finish_url_of(block))).status_code == 410
