"""The full flow on a real 3-master Redis Cluster (docs/architecture.md, "Redis").

Each challenge's keys share its ``{token}`` hash tag, so every script and MULTI stays in one
slot; different challenges spread over the masters; the push channel hears webhooks applied
on any of them (a classic PUBLISH is broadcast cluster-wide).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ..harness.redis import challenge_key
from ..harness.rp import Flow, challenge
from ..harness.servers import Stack, running_stack
from .redis_topologies import Cluster, approve_with_push, cluster

pytestmark = pytest.mark.slow
__all__ = ["cluster"]  # the module-scoped fixture, re-exported for pytest


@pytest.fixture
async def stack(cluster: Cluster) -> AsyncIterator[Stack]:
    async with running_stack(cluster.url) as made:
        yield made


async def test_approved_step_up_and_code_replay_on_a_cluster(stack: Stack) -> None:
    assert (await stack.browser().get("/readyz")).status_code == 200
    attempt = await challenge(stack)
    delivered = await stack.outcome(attempt.token, "SUCCESS")
    assert delivered.json()["delivered"] == 200
    result = await attempt.result()
    assert result["state"] == attempt.state
    claims = await attempt.id_token(result["code"])
    assert (claims["sub"], claims["nonce"], claims["acr"]) == (
        "alice",
        attempt.nonce,
        "urn:idenfy:stepup:face",
    )

    replay = await attempt.redeem(result["code"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"


async def test_failed_step_up_on_a_cluster(stack: Stack) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH")
    result = await attempt.result()
    assert (result["error"], result["stepup_error"]) == ("access_denied", "face_mismatch")
    assert result["state"] == attempt.state


async def test_challenges_spread_over_the_masters_and_all_finish(
    stack: Stack, cluster: Cluster
) -> None:
    attempts: list[Flow] = []
    owners: dict[str, int] = {}
    # Random tokens: keep starting challenges until at least two masters hold one.
    while len(set(owners.values())) < 2 or len(attempts) < 4:
        assert len(attempts) < 16, owners
        attempt = await challenge(stack)
        attempts.append(attempt)
        owners[attempt.token] = cluster.node_of(challenge_key(attempt.token))

    stored = cluster.keys_by_node(challenge_key("*"))
    for token, port in owners.items():
        assert challenge_key(token) in stored[port]  # on the master that owns its slot …
        for other, keys in stored.items():
            assert other == port or challenge_key(token) not in keys  # … and only there

    # Every webhook is one script on its challenge's master; the PUBLISH in it reaches the
    # notifier's subscription on whichever node it is.
    results = await asyncio.gather(*(approve_with_push(a, within=2) for a in attempts))
    for attempt, result in zip(attempts, results, strict=True):
        assert result["state"] == attempt.state
        claims = await attempt.id_token(result["code"])
        assert claims["nonce"] == attempt.nonce
