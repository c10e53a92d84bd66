"""POST /webhooks/idenfy at the HTTP edge: signature, size, types, rotation, source address."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from idenfy_stepup.idenfy.webhook import sign

from .harness.rp import challenge
from .harness.servers import Stack, StackPool
from .harness.settings import SIGNING_KEY

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADERS = {"Content-Type": "application/json", "Idenfy-Event-Type": "FACIAL_AUTHENTICATION"}


def body(token: str, status: str = "SUCCESS", **extra: Any) -> bytes:
    data = {
        "id": f"hook-{token[:8]}-{status}",
        "token": token,
        "scanRef": "SCAN-ALICE",
        "clientId": "c",
        "status": status,
        "type": "AUTHENTICATION",
        "method": "FACE_MATCHING",
        "failReason": None,
        **extra,
    }
    return json.dumps(data).encode()


async def post(
    stack: Stack, raw: bytes, key: str | None = SIGNING_KEY, **headers: str
) -> httpx.Response:
    sent = {**HEADERS, **headers}
    if key is not None:
        sent["Idenfy-Signature"] = sign(raw, key)
    async with httpx.AsyncClient() as c:
        return await c.post(f"{stack.issuer}/webhooks/idenfy", content=raw, headers=sent)


async def test_unsigned_and_badly_signed_are_401_and_change_nothing(stack: Stack) -> None:
    attempt = await challenge(stack)
    raw = body(attempt.token)
    assert (await post(stack, raw, key=None)).status_code == 401
    assert (await post(stack, raw, key="wrong-key")).status_code == 401
    tampered = raw.replace(b"SCAN-ALICE", b"SCAN-ALICF")
    sent = {**HEADERS, "Idenfy-Signature": sign(raw, SIGNING_KEY)}
    async with httpx.AsyncClient() as c:
        response = await c.post(f"{stack.issuer}/webhooks/idenfy", content=tampered, headers=sent)
    assert response.status_code == 401
    finish = await attempt.finish()
    assert finish.headers["location"] == f"/challenge/{attempt.token}"  # still pending


async def test_upper_case_signature_accepted(stack: Stack) -> None:
    attempt = await challenge(stack)
    raw = body(attempt.token)
    sent = {**HEADERS, "Idenfy-Signature": sign(raw, SIGNING_KEY).upper()}
    async with httpx.AsyncClient() as c:
        response = await c.post(f"{stack.issuer}/webhooks/idenfy", content=raw, headers=sent)
    assert response.json() == {"result": "applied"}


async def test_previous_key_accepted_during_rotation(pool: StackPool) -> None:
    old = "old-signing-key-0123456789-0123456789"
    stack = await pool.get(settings={"idenfy": {"webhook_signing_key_previous": old}})
    attempt = await challenge(stack)
    response = await post(stack, body(attempt.token), key=old)
    assert response.json() == {"result": "applied"}
    assert "code" in await attempt.result()


async def test_oversized_body_is_413(stack: Stack) -> None:
    attempt = await challenge(stack)
    raw = body(attempt.token, padding="x" * 70000)
    assert (await post(stack, raw)).status_code == 413


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type_is_415(stack: Stack, ctype: str) -> None:
    attempt = await challenge(stack)
    response = await post(stack, body(attempt.token), **{"Content-Type": ctype})
    assert response.status_code == 415


async def test_wrong_event_type_is_400(stack: Stack) -> None:
    attempt = await challenge(stack)
    response = await post(stack, body(attempt.token), **{"Idenfy-Event-Type": "KYC"})
    assert response.status_code == 400


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"id": 1}', b"\xff\xfe{}", b'{"id":"a"}'])
async def test_malformed_bodies_are_400(stack: Stack, raw: bytes) -> None:
    assert (await post(stack, raw)).status_code == 400


async def test_unknown_token_is_200_without_effect(stack: Stack) -> None:
    response = await post(stack, body("UnknownToken1234567890"))
    assert response.status_code == 200
    assert response.json() == {"result": "unknown"}


async def test_pending_status_is_not_final(stack: Stack) -> None:
    attempt = await challenge(stack)
    response = await post(stack, body(attempt.token, status="Pending"))
    assert response.json() == {"result": "pending"}
    await stack.outcome(attempt.token, "SUCCESS")
    assert "code" in await attempt.result()


async def test_allowlist_refuses_other_sources(pool: StackPool) -> None:
    stack = await pool.get(settings={"idenfy": {"webhook_allowed_ips": ["10.0.0.0/8"]}})
    attempt = await challenge(stack)
    # X-Forwarded-For is ignored when the peer is not a trusted proxy.
    response = await post(stack, body(attempt.token), **{"X-Forwarded-For": "10.1.2.3"})
    assert response.status_code == 403


async def test_allowlist_behind_trusted_proxy(pool: StackPool) -> None:
    stack = await pool.get(
        settings={
            "server": {"trusted_proxies": ["127.0.0.1/32"]},
            "idenfy": {"webhook_allowed_ips": ["10.0.0.0/8"]},
        }
    )
    attempt = await challenge(stack)
    spoofed = await post(stack, body(attempt.token), **{"X-Forwarded-For": "10.9.9.9, 8.8.8.8"})
    assert spoofed.status_code == 403  # the right-most untrusted hop is 8.8.8.8
    allowed = await post(stack, body(attempt.token), **{"X-Forwarded-For": "10.1.2.3"})
    assert allowed.json() == {"result": "applied"}
