"""The suite's fixtures: real redis-server processes, and the provider + simulator on loopback.

Two kinds of async fixtures live here, and a test must use the kind of its event loop:

- module loop (``pytestmark = pytest.mark.asyncio(loop_scope="module")`` in the module):
  ``stack`` (shared by the module's tests, one per ``SETTINGS``), ``redis`` (an async client
  of the session's redis-server), ``pool`` (more stacks, one per configuration);
- function loop (the default): ``stack_factory`` (stacks of one test's own, on a flushed
  Redis) and ``redis_url``.

``own_redis`` and ``aof_redis`` are private redis-servers a test may stop or restart.
See tests/README.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from .harness.redis import RedisProcess
from .harness.servers import Stack, StackPool, start_stack


def _module_loop_only(request: pytest.FixtureRequest, fixture: str) -> None:
    """A module-loop fixture used from a function-loop test would hang on a loop that never
    runs: say so, and what to use instead."""
    marker = request.node.get_closest_marker("asyncio")
    if marker is None or marker.kwargs.get("loop_scope") != "module":
        raise pytest.UsageError(
            f"the {fixture!r} fixture runs in the module's event loop: put "
            "pytestmark = pytest.mark.asyncio(loop_scope='module') in the test module, "
            "or use stack_factory / redis_url"
        )


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisProcess]:
    """The redis-server the whole session shares."""
    proc = RedisProcess()
    proc.start()
    yield proc
    proc.stop()


def _private_redis(*extra: str) -> Iterator[RedisProcess]:
    proc = RedisProcess(*extra)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test's own: it may flush or stop it without disturbing others."""
    yield from _private_redis()


@pytest.fixture
def aof_redis() -> Iterator[RedisProcess]:
    """A redis-server of this test's own with an append-only file (it may stop and restart it)."""
    yield from _private_redis("--appendonly", "yes")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(redis_proc: RedisProcess) -> AsyncIterator[StackPool]:
    """Stacks shared by a module's tests, one per configuration, in the module's event loop."""
    stacks = StackPool(redis_proc.url)
    yield stacks
    await stacks.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def stack(request: pytest.FixtureRequest, pool: StackPool) -> Stack:
    """The module's shared stack, started with the module's ``SETTINGS`` (if it has any)."""
    _module_loop_only(request, "stack")
    settings: dict[str, Any] | None = getattr(request.module, "SETTINGS", None)
    return await pool.get(settings=settings)


@pytest_asyncio.fixture(loop_scope="module")
async def redis(request: pytest.FixtureRequest, redis_proc: RedisProcess) -> AsyncIterator[Redis]:
    """An async client of the session's redis-server (where the shared stacks keep state)."""
    _module_loop_only(request, "redis")
    client = Redis.from_url(redis_proc.url)
    yield client
    await client.aclose()


@pytest.fixture
def redis_url(redis_proc: RedisProcess) -> Iterator[str]:
    """The session's redis-server, flushed for this test and again after it: what a test leaves
    behind (sealed secrets, locks, counters) must not reach the stacks later modules start."""
    with redis_proc.client() as r:
        r.flushall()
    yield redis_proc.url
    with redis_proc.client() as r:
        r.flushall()


@pytest.fixture
async def stack_factory(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    """``await stack_factory(settings=..., simulator=...)``: stacks of this test's own."""
    stacks: list[Stack] = []

    async def make(**overrides: Any) -> Stack:
        stack = await start_stack(redis_url, **overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.stop()
