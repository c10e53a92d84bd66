"""The happy path and the basic refusals, end to end over real HTTP."""

from __future__ import annotations

import pytest

from .harness.rp import challenge
from .harness.servers import Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_approved_step_up_issues_id_token(stack: Stack) -> None:
    attempt = await challenge(stack)
    delivered = await stack.outcome(attempt.token, "SUCCESS")
    assert delivered.json()["delivered"] == 200
    result = await attempt.result()
    assert result["state"] == attempt.state
    assert result["iss"] == stack.issuer
    claims = await attempt.id_token(result["code"])
    assert claims["sub"] == "alice"
    assert claims["acr"] == "urn:idenfy:stepup:face"
    assert claims["amr"] == ["face"]
    assert claims["nonce"] == attempt.nonce
    assert claims["iss"] == stack.issuer
    assert claims["aud"] == "shop"


async def test_face_mismatch_redirects_access_denied(stack: Stack) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH")
    result = await attempt.result()
    assert result["error"] == "access_denied"
    assert result["stepup_error"] == "face_mismatch"
    assert result["state"] == attempt.state
    assert result["iss"] == stack.issuer
    assert "code" not in result
