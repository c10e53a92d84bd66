"""The in-process tier: the provider's ASGI app in this process, called through
``httpx.ASGITransport``, with the session's real redis-server and the vendor faked at the
network edge (``tests/harness/fake_vendor.py``). No port, no server, no simulator: each test
takes milliseconds. The tests run in their own (function) event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from idenfy_stepup.app import create_app
from idenfy_stepup.settings import Settings, parse_settings

from ..harness.fake_vendor import FakeIdenfy, live_mode
from ..harness.redis import RedisProcess
from ..harness.settings import TEST_ENCRYPTION_KEY, base_settings, merge

# The issuer's port is never listened on: requests reach the app without a socket.
PORT = 8000


@pytest.fixture
def redis_url(redis_proc: RedisProcess) -> Iterator[str]:
    """The session's redis-server, flushed before the test and after it: ``mode: live`` keeps
    its generated secrets encrypted, which the simulator-mode stacks of later modules (no
    encryption key) would refuse to start with."""
    with redis_proc.client() as r:
        r.flushall()
    yield redis_proc.url
    with redis_proc.client() as r:
        r.flushall()


@pytest.fixture
def vendor() -> FakeIdenfy:
    """iDenfy's partner API as this test's provider sees it; tests may change what it knows."""
    return FakeIdenfy()


@pytest.fixture
def settings(redis_url: str) -> Settings:
    """The suite's base settings in ``mode: live``, pointed at the fake vendor."""
    live = {**live_mode(), "keys": {"encryption_key": TEST_ENCRYPTION_KEY}}
    return parse_settings(merge(base_settings(PORT, PORT + 1, redis_url), live))


@pytest.fixture
async def client(settings: Settings, vendor: FakeIdenfy) -> AsyncIterator[httpx.AsyncClient]:
    """A browser (and RP) calling the app from 127.0.0.1, inside the app's lifespan (which
    connects Redis and builds the runtime, as a server would at start-up)."""
    app = create_app(settings, vendor_fetch=vendor.fetch)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url=settings.issuer, follow_redirects=False
        ) as browser,
    ):
        yield browser
