"""Push stream caps: a few concurrent streams per challenge, a bounded number per address.

Past the challenge's cap a new stream ends the oldest one (``: superseded``, told to come back
late); past the address' cap the answer is a 429 with a JSON error and ``Retry-After``. Every
way a stream ends gives its slot back (shown with a cap of one: the next stream is accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from idenfy_stepup.store import EXPIRY_SKEW_SECONDS
from idenfy_stepup.web.push_slots import PushSlots

from .harness.redis import RedisProcess, challenge_key
from .harness.rp import Flow, challenge
from .harness.servers import Stack, StackPool, running_stack
from .test_push import events_url, next_event, wait_for_done

pytestmark = pytest.mark.asyncio(loop_scope="module")


def slots_of(stack: Stack) -> PushSlots:
    slots: PushSlots = stack.servers[0][0].config.app.state.runtime.push_slots
    return slots


@contextlib.asynccontextmanager
async def open_stream(attempt: Flow) -> AsyncIterator[httpx.Response]:
    """A push stream of ``attempt``'s browser, held open (its first event read) until the
    block ends; a refused one is yielded as it is. ``rest`` reads what follows."""
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        if response.status_code != 200:
            await response.aread()
            yield response
            return
        # Kept until the block ends: a dropped line iterator closes the connection.
        lines = response.aiter_lines()
        assert await next_event(lines) == ["retry: 500"]
        response.extensions["lines"] = lines
        yield response


async def rest(response: httpx.Response) -> str:
    """The rest of a stream ``open_stream`` opened, up to its end."""
    return "\n".join([line async for line in response.extensions["lines"]])


def assert_refused(response: httpx.Response, stack: Stack, whose: str) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["retry-after"] == str(stack.settings.challenge.push_keepalive)
    body = response.json()
    assert body["error"] == "too_many_streams"
    assert whose in body["error_description"]


async def test_a_fourth_stream_of_a_challenge_ends_its_oldest_one(pool: StackPool) -> None:
    """A browser that switched networks leaves a stream the server cannot tell from a live
    one; the stream it opens now is the one that is there, so it is never refused."""
    stack = await pool.get()  # the default: push_streams_per_challenge = 3
    attempt = await challenge(stack)
    async with contextlib.AsyncExitStack() as held:
        streams = [await held.enter_async_context(open_stream(attempt)) for _ in range(3)]
        assert all(response.status_code == 200 for response in streams)
        async with open_stream(attempt) as fourth:
            assert fourth.status_code == 200
            async with asyncio.timeout(5):
                oldest = await rest(streams[0])
            assert oldest.split("\n")[:2] == [
                f"retry: {stack.settings.challenge.push_keepalive * 1000}",
                ": superseded",
            ]
            assert slots_of(stack).open_streams(attempt.token) == 3
            # The newest stream is the one the outcome reaches.
            await stack.outcome(attempt.token, "SUCCESS")
            async with asyncio.timeout(5):
                assert "event: done" in await rest(fourth)


async def test_an_address_holds_at_most_push_streams_per_ip(pool: StackPool) -> None:
    stack = await pool.get(settings={"challenge": {"push_streams_per_ip": 4}})
    first, second = await challenge(stack), await challenge(stack)
    async with contextlib.AsyncExitStack() as held:
        for attempt in (first, first, first, second):
            response = await held.enter_async_context(open_stream(attempt))
            assert response.status_code == 200
        async with open_stream(second) as fifth:
            assert_refused(fifth, stack, "this address")
    async with open_stream(second) as again:
        assert again.status_code == 200


async def test_a_refused_stream_changes_nothing(pool: StackPool) -> None:
    stack = await pool.get(settings={"challenge": {"push_streams_per_ip": 1}})
    attempt, other = await challenge(stack), await challenge(stack)
    async with open_stream(attempt) as held:
        assert held.status_code == 200
        for _ in range(5):
            async with open_stream(other) as refused:
                assert refused.status_code == 429
        assert slots_of(stack).open_streams(attempt.token) == 1
        assert slots_of(stack).open_streams(other.token) == 0
    await stack.outcome(attempt.token, "SUCCESS")
    assert "code=" in (await attempt.finish()).headers["location"]


# -- every ending gives the slot back (a cap of one: the next stream is accepted) -----------------

ONE = {"challenge": {"push_streams_per_challenge": 1}}


async def assert_slot_free(stack: Stack, attempt: Flow) -> None:
    for _ in range(200):  # the server notices a closed connection within moments
        if slots_of(stack).open_streams(attempt.token) == 0:
            break
        await asyncio.sleep(0.01)
    assert slots_of(stack).open_streams(attempt.token) == 0
    async with open_stream(attempt) as next_stream:
        assert next_stream.status_code == 200


async def test_the_slot_is_given_back_when_the_browser_leaves(pool: StackPool) -> None:
    stack = await pool.get(settings=ONE)
    attempt = await challenge(stack)
    async with open_stream(attempt) as response:
        assert response.status_code == 200
    await assert_slot_free(stack, attempt)


async def test_the_slot_is_given_back_when_a_newer_stream_supersedes_it(
    pool: StackPool,
) -> None:
    stack = await pool.get(settings=ONE)
    attempt = await challenge(stack)
    async with open_stream(attempt) as first, open_stream(attempt) as second:
        assert second.status_code == 200
        async with asyncio.timeout(5):
            assert ": superseded" in await rest(first)
        assert slots_of(stack).open_streams(attempt.token) == 1
        assert slots_of(stack).open_streams(address="127.0.0.1") == 1
    await assert_slot_free(stack, attempt)


async def test_the_slot_is_given_back_after_done(pool: StackPool) -> None:
    stack = await pool.get(settings=ONE)
    for ending in ("webhook", "deadline"):
        attempt = await challenge(stack)
        if ending == "deadline":  # the deadline two seconds after the stream opens
            async with Redis.from_url(stack.settings.redis.url) as redis:
                expires_at = int(time.time()) + 2 - EXPIRY_SKEW_SECONDS
                await redis.hset(challenge_key(attempt.token), "expires_at", expires_at)
        async with attempt.browser.stream("GET", events_url(attempt)) as response:
            lines = response.aiter_lines()
            await next_event(lines)
            if ending == "webhook":
                await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH")
            async with asyncio.timeout(10):
                await wait_for_done(lines)
        await assert_slot_free(stack, attempt)


async def test_the_slot_is_given_back_when_redis_fails(own_redis: RedisProcess) -> None:
    async with running_stack(own_redis.url, settings=ONE) as stack:
        attempt = await challenge(stack)
        async with open_stream(attempt) as response:
            own_redis.stop()  # the subscription breaks: the stream reads, fails and ends
            async with asyncio.timeout(5):
                body = await rest(response)
        assert ": store unavailable" in body
        assert slots_of(stack).open_streams() == 0


async def test_the_slots_are_given_back_when_the_server_stops(pool: StackPool) -> None:
    stack = await pool.fresh(settings=ONE)
    attempts = [await challenge(stack) for _ in range(3)]
    bodies: list[Any] = []
    async with contextlib.AsyncExitStack() as held:
        streams = [await held.enter_async_context(open_stream(a)) for a in attempts]
        assert slots_of(stack).open_streams() == 3
        stack.servers[0][0].config.app.state.runtime.notifier.close_waiters()
        async with asyncio.timeout(5):
            bodies = [await rest(s) for s in streams]
    assert all(": server stopping" in body for body in bodies)
    assert slots_of(stack).open_streams() == 0
