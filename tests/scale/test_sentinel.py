"""The full flow under Redis Sentinel, and a failover while challenges are pending.

A master and a replica with AOF, and one sentinel (quorum 1, down after 1 s). The provider
only knows the sentinel's address and the service name; after the master crashes the sentinel
promotes the replica and the pending challenges finish there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from ..harness.redis import challenge_key
from ..harness.rp import challenge
from ..harness.servers import Stack, running_stack
from .redis_topologies import SentinelSet, approve_with_push, sentinel_set

pytestmark = pytest.mark.slow
__all__ = ["sentinel_set"]  # the fixture, re-exported for pytest


@pytest.fixture
async def stack(sentinel_set: SentinelSet) -> AsyncIterator[Stack]:
    async with running_stack(sentinel_set.url) as made:
        yield made


async def test_full_flow_through_sentinel(stack: Stack, sentinel_set: SentinelSet) -> None:
    assert (await stack.browser().get("/readyz")).status_code == 200
    approved = await challenge(stack)
    failed = await challenge(stack)
    with sentinel_set.master.client() as r:  # written on the master the sentinel named
        assert r.exists(challenge_key(approved.token), challenge_key(failed.token)) == 2

    assert (await stack.outcome(approved.token, "SUCCESS")).json()["delivered"] == 200
    await stack.outcome(failed.token, "FAILED", "FACE_MISMATCH")
    result = await approved.result()
    claims = await approved.id_token(result["code"])
    assert (claims["sub"], claims["nonce"]) == ("alice", approved.nonce)
    replay = await approved.redeem(result["code"])
    assert (replay.status_code, replay.json()["error"]) == (400, "invalid_grant")

    denied = await failed.result()
    assert (denied["error"], denied["stepup_error"]) == ("access_denied", "face_mismatch")


async def test_pending_challenges_finish_on_the_promoted_replica(
    stack: Stack, sentinel_set: SentinelSet
) -> None:
    attempts = [await challenge(stack), await challenge(stack)]
    sentinel_set.wait_replicated()  # the pending records are on the replica before the crash

    took = await asyncio.to_thread(sentinel_set.fail_over)
    assert sentinel_set.master_port() == sentinel_set.replica.port
    with sentinel_set.replica.client() as r:
        for attempt in attempts:
            assert r.hget(challenge_key(attempt.token), "state") == "PENDING"

    # The provider's pooled connections still point at the dead master: the first command on
    # each fails and redis-py reconnects through the sentinel (or the webhook gets a 503 and
    # the simulator delivers it again).
    started = time.monotonic()
    delivered = await asyncio.gather(
        stack.outcome(attempts[0].token, "SUCCESS"),
        stack.outcome(attempts[1].token, "FAILED", "FACE_MISMATCH"),
    )
    assert [d.json()["delivered"] for d in delivered] == [200, 200], [d.text for d in delivered]

    result = await attempts[0].result()
    claims = await attempts[0].id_token(result["code"])
    assert claims["nonce"] == attempts[0].nonce
    denied = await attempts[1].result()
    assert denied["stepup_error"] == "face_mismatch"
    with sentinel_set.replica.client() as r:  # the new master holds the outcome
        assert r.hget(challenge_key(attempts[0].token), "state") == "CONSUMED"
    recovered = time.monotonic() - started
    tries = [d.json()["attempts"] for d in delivered]
    print(f"failover {took:.1f} s; flows done {recovered:.1f} s later; webhook tries {tries}")
    assert recovered < 15, recovered

    # A new step-up after the failover runs on the new master from start to finish, and the
    # notifier has subscribed again there: the push stream hears the webhook.
    fresh = await challenge(stack)
    assert "code" in await approve_with_push(fresh, within=5)
