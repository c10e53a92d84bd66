"""The push channel (docs/architecture.md, "The flow"): ``/challenge/T/events`` says "done"
when it is done.

Server-Sent Events over real HTTP: the browser holds the stream open while the simulator's
webhook lands; no polling anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from redis.asyncio import Redis

from .harness.redis import RedisProcess
from .harness.rp import Flow, challenge, query
from .harness.servers import TLS, Stack, StackPool, running_stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUICK = 2.0  # seconds within which a pushed "done" must arrive


def events_url(attempt: Flow, stack: Stack | None = None) -> str:
    base = (stack or attempt.stack).issuer
    return f"{base}/challenge/{attempt.token}/events"


async def next_event(lines: AsyncIterator[str]) -> list[str]:
    """The lines of the next SSE block (up to its blank line); [] when the stream ends."""
    block: list[str] = []
    async for line in lines:
        if line == "":
            if block:
                return block
            continue
        block.append(line)
    return block


async def wait_for_done(lines: AsyncIterator[str]) -> list[str]:
    while True:
        block = await next_event(lines)
        assert block, "the stream ended without 'done'"
        if "event: done" in block:
            return block


def finish_url_of(block: list[str]) -> str:
    data = next(line for line in block if line.startswith("data: "))
    finish: str = json.loads(data.removeprefix("data: "))["finish"]
    return finish


async def test_push_says_done_soon_after_the_webhook_lands(stack: Stack) -> None:
    attempt = await challenge(stack)
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-store"
        lines = response.aiter_lines()
        assert await next_event(lines) == ["retry: 500"]  # the stream is open and waiting

        started = time.monotonic()
        outcome = asyncio.create_task(stack.outcome(attempt.token, "SUCCESS"))
        async with asyncio.timeout(QUICK):
            block = await wait_for_done(lines)
        pushed_after = time.monotonic() - started
        assert (await outcome).json()["delivered"] == 200
    assert pushed_after < 1.0, pushed_after  # the webhook round trip, not a polling interval
    assert finish_url_of(block) == f"/challenge/{attempt.token}/finish"

    finished = await attempt.browser.get(finish_url_of(block))
    assert "code" in query(finished.headers["location"])


@pytest.mark.parametrize(("status", "reason"), [("FAILED", "FACE_MISMATCH"), ("CANCELED", None)])
async def test_push_says_done_for_denials_too(
    stack: Stack, status: str, reason: str | None
) -> None:
    attempt = await challenge(stack)
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        lines = response.aiter_lines()
        await next_event(lines)
        outcome = asyncio.create_task(stack.outcome(attempt.token, status, reason))
        async with asyncio.timeout(QUICK):
            await wait_for_done(lines)
        await outcome
    assert "error" in await attempt.result()


async def test_the_stream_carries_the_security_headers_and_its_request_id(stack: Stack) -> None:
    """The push stream skips the routing and exception layers (a frame each, held for the
    whole wait) but not what every response carries; other methods still get the router's
    405, and a path that only looks like a stream's still gets 404."""
    attempt = await challenge(stack)
    headers = {"X-Request-ID": "push-stream-request-1"}
    async with attempt.browser.stream("GET", events_url(attempt), headers=headers) as response:
        assert response.status_code == 200
        for name in (
            "content-security-policy",
            "permissions-policy",
            "x-content-type-options",
            "referrer-policy",
            "x-frame-options",
        ):
            assert name in response.headers, name
        assert response.headers["x-request-id"] == "push-stream-request-1"
    refused = await attempt.browser.get(
        f"{stack.issuer}/challenge/{attempt.token}/events", headers={"Cookie": ""}
    )
    assert refused.status_code == 403
    assert refused.headers["x-frame-options"] == "DENY"
    posted = await attempt.browser.post(events_url(attempt))
    assert posted.status_code == 405
    nested = await attempt.browser.get(f"{stack.issuer}/challenge/a/b/events")
    assert nested.status_code == 404


async def test_push_needs_the_challenge_cookie(stack: Stack) -> None:
    attempt = await challenge(stack)
    cookie = next(c.value for c in attempt.browser.cookies.jar if c.name == "stepup_challenge")
    assert cookie is not None
    forged = cookie[:-8] + ("A" * 8 if not cookie.endswith("A" * 8) else "B" * 8)
    for headers in ({}, {"Cookie": f"stepup_challenge={forged}"}):
        async with httpx.AsyncClient(headers=headers, verify=TLS) as other:
            response = await other.get(events_url(attempt))
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("application/json")
    async with httpx.AsyncClient(verify=TLS) as other:
        bad = await other.get(f"{stack.issuer}/challenge/not!a*token/events")
    assert bad.status_code == 404


async def test_push_says_done_at_once_when_already_terminal(stack: Stack) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_TOO_SMALL")
    started = time.monotonic()
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        async with asyncio.timeout(QUICK):
            block = await wait_for_done(response.aiter_lines())
    assert time.monotonic() - started < 1.0
    assert finish_url_of(block) == f"/challenge/{attempt.token}/finish"
    retry_screen = await attempt.browser.get(finish_url_of(block))
    assert 'data-action="retry"' in retry_screen.text


async def test_push_stream_outlives_its_keep_alives_and_reads_nothing_for_them(
    pool: StackPool,
) -> None:
    """A stream lasts as long as its challenge waits: keep-alive comments every
    push_keepalive seconds, none of them a Redis read, and the webhook that lands after them
    reaches the same stream (no reconnect, so no reconnect gap to land in)."""
    stack = await pool.get(settings={"challenge": {"push_keepalive": 5}})
    attempt = await challenge(stack)
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        lines = response.aiter_lines()
        assert await next_event(lines) == ["retry: 500"]
        async with Redis.from_url(stack.settings.redis.url) as redis, redis.monitor() as monitor:
            seen: list[str] = []

            async def watch() -> None:
                async for command in monitor.listen():
                    seen.append(str(command.get("command", "")))

            watching = asyncio.create_task(watch())
            started = time.monotonic()
            async with asyncio.timeout(14):
                first, second = await next_event(lines), await next_event(lines)
            elapsed = time.monotonic() - started
            watching.cancel()
        assert first == second == [": keep-alive"]
        assert 8.5 <= elapsed < 13, elapsed  # two keep-alives, five seconds apart
        assert not [c for c in seen if attempt.token in c], seen
        outcome = asyncio.create_task(stack.outcome(attempt.token, "SUCCESS"))
        async with asyncio.timeout(QUICK):
            await wait_for_done(lines)
        await outcome
    assert "code" in query((await attempt.finish()).headers["location"])


async def test_a_stream_that_ends_says_when_to_come_back_spread_out(pool: StackPool) -> None:
    """Streams ended together (the server stopping) do not come back together: each one's
    last retry: is drawn from a spread."""
    stack = await pool.fresh()
    attempts = [await challenge(stack) for _ in range(6)]
    bodies = []
    async with contextlib.AsyncExitStack() as held:
        streams = []
        for attempt in attempts:
            response = await held.enter_async_context(
                attempt.browser.stream("GET", events_url(attempt))
            )
            lines = response.aiter_lines()
            assert await next_event(lines) == ["retry: 500"]
            streams.append(lines)
        stack.servers[0][0].config.app.state.runtime.notifier.close_waiters()
        async with asyncio.timeout(5):
            for lines in streams:
                bodies.append(await next_event(lines))
    retries = [int(block[0].removeprefix("retry: ")) for block in bodies]
    assert all(block[1:] == [": server stopping"] for block in bodies), bodies
    assert all(250 <= r <= 3000 for r in retries), retries
    assert len(set(retries)) > 1, retries


async def test_push_reaches_a_browser_waiting_on_another_instance(pool: StackPool) -> None:
    """Two provider instances on one Redis: the webhook lands on one, the browser waits on the
    other (the simulator of instance A delivers to A; the stream is held open on B)."""
    a = await pool.get()
    b = await pool.fresh()
    attempt = await challenge(a)
    # Cookies are not port-bound, and both instances share the cookie secret through Redis.
    async with attempt.browser.stream("GET", events_url(attempt, b)) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        await next_event(lines)
        outcome = asyncio.create_task(a.outcome(attempt.token, "SUCCESS"))
        async with asyncio.timeout(QUICK):
            block = await wait_for_done(lines)
        await outcome
    finished = await attempt.browser.get(f"{b.issuer}{finish_url_of(block)}")
    assert finished.status_code == 303
    assert "code" in query(finished.headers["location"])


async def test_push_with_redis_down_ends_without_done(own_redis: RedisProcess) -> None:
    async with running_stack(own_redis.url) as stack:
        attempt = await challenge(stack)
        own_redis.stop()
        async with attempt.browser.stream("GET", events_url(attempt)) as response:
            assert response.status_code == 200
            async with asyncio.timeout(QUICK):
                body = (await response.aread()).decode()
        # Not "done" (which would send the browser to finish for nothing): the stream ends and
        # EventSource reconnects by itself.
        assert "event: done" not in body
        assert ": store unavailable" in body


async def test_a_browser_that_leaves_is_forgotten_at_once(stack: Stack) -> None:
    """The stream notices the browser going away (not only at its next keep-alive, up to
    push_keepalive later): its wake-up registration is gone within moments."""
    notifier = stack.servers[0][0].config.app.state.runtime.notifier
    attempt = await challenge(stack)
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        assert await next_event(response.aiter_lines()) == ["retry: 500"]
        assert await soon(lambda: attempt.token in notifier._waiters)
    # Leaving the block closed the connection.
    assert await soon(lambda: attempt.token not in notifier._waiters)
    # And the challenge is untouched: a webhook still completes it.
    await stack.outcome(attempt.token, "SUCCESS")
    assert (await attempt.finish()).status_code == 303


async def soon(condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` holds within QUICK seconds."""
    for _ in range(int(QUICK / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()
