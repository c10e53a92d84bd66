"""Fixtures: real redis-server processes, and the provider + simulator on real loopback ports."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis import Redis

from idenfy_stepup.store import redis_server_binary

from .stack import Stack, StackPool, free_socket, start_stack, stop_process


class RedisProcess:
    """One real redis-server on a loopback port, in its own folder."""

    def __init__(self, *extra: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="stepup-redis-"))
        with contextlib.closing(free_socket()) as s:
            self.port = s.getsockname()[1]
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--daemonize", "no",
                "--loglevel", "warning", *self.extra]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with Redis(port=self.port, socket_timeout=0.5) as r:
                    r.ping()
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None

    def client(self) -> Redis:
        return Redis(port=self.port)


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisProcess]:
    proc = RedisProcess()
    proc.start()
    yield proc
    proc.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool(redis_proc: RedisProcess) -> AsyncIterator[StackPool]:
    """Stacks shared by a module's tests, one per configuration, in the module's event loop."""
    stacks = StackPool(redis_proc.url)
    yield stacks
    await stacks.stop()


@pytest.fixture
def redis_url(redis_proc: RedisProcess) -> str:
    with redis_proc.client() as r:
        r.flushall()
    return redis_proc.url


@pytest.fixture
async def stack_factory(
    redis_url: str,
) -> AsyncIterator[Callable[..., Any]]:
    stacks: list[Stack] = []

    async def make(**overrides: Any) -> Stack:
        stack = await start_stack(redis_url, **overrides)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        await stack.stop()


@pytest.fixture
async def stack(stack_factory: Callable[..., Any]) -> Stack:
    made: Stack = await stack_factory()
    return made
