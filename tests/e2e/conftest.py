"""The browser fixtures the challenge-page modules share: one Chromium and the sites it visits
per module, and the contexts each test opened closed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from redis.asyncio import Redis

from ..harness.servers import StackPool
from .browser import chromium
from .test_challenge_page import Sites


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sites(pool: StackPool, redis_proc: Any) -> AsyncIterator[Sites]:
    redis = Redis.from_url(redis_proc.url)
    try:
        async with chromium() as browser:
            shared = Sites(pool, browser, redis)
            try:
                yield shared
            finally:
                await shared.stop()
    finally:
        await redis.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def close_contexts(sites: Sites) -> AsyncIterator[None]:
    yield
    while sites.contexts:
        await sites.contexts.pop().close()
