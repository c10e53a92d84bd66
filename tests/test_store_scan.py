"""The operator's reads by SCAN, on both backends (the wire client and redis-py), against a
real redis-server: every key of a kind, only that kind, and a prefix matched literally."""

from __future__ import annotations

import pytest

from idenfy_stepup.settings import RedisSettings
from idenfy_stepup.store import RedisPyBackend, Store, StoreBackend, connect, open_backend


def _backend(kind: str, url: str) -> StoreBackend:
    settings = RedisSettings(url=url)
    return open_backend(settings) if kind == "wire" else RedisPyBackend(connect(settings))


@pytest.mark.parametrize("kind", ["wire", "redis-py"])
async def test_subjects_and_locks_are_found_by_scan_under_a_literal_prefix(
    kind: str, redis_url: str
) -> None:
    store = Store(_backend(kind, redis_url), "step*up")
    neighbour = Store(_backend(kind, redis_url), "stepXup")  # what an unescaped * would match
    try:
        pairs = [(f"person-{i:04}", f"SCAN-{i:04}") for i in range(1200)]
        await store.set_subjects(pairs)
        await neighbour.set_subject("stranger", "SCAN-OTHER")
        await store.lock_subject("person-0007", 60)
        assert await store.subjects() == pairs
        [(locked, left)] = await store.locks()
        assert locked == "person-0007" and 0 < left <= 60
        assert await neighbour.subjects() == [("stranger", "SCAN-OTHER")]
    finally:
        await store.aclose()
        await neighbour.aclose()
