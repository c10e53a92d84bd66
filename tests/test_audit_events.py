"""The audit stream (docs/audit-events.md): every event type, each valid against the schema.

One step-up scenario after another, on real servers, as the RP, the browser and the vendor
play them; the records of ``idenfy_stepup.audit`` are captured, written by the JSON formatter
as an operator's log gets them, and checked against docs/audit-events.schema.json. A type
that no scenario produced fails the test, and no line may hold a secret of the scenarios.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from redis.asyncio import Redis

from idenfy_stepup.audit import events
from idenfy_stepup.audit.events import AUDIT_LOGGER, EVENTS
from idenfy_stepup.cli.logs import JsonFormatter, TextFormatter
from idenfy_stepup.store import RedisPyBackend, Store
from idenfy_stepup.store.unfinished import Unfinished, UnfinishedApproval

from .harness.redis import unfinished_keys
from .harness.rp import Flow, authorize, challenge, pkce, signed_subject
from .harness.servers import TLS, Stack, StackPool
from .harness.settings import CLIENT_SECRET, REDIRECT_URI, SIGNING_KEY, client_entry
from .harness.vendor import post_webhook, webhook_body

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "docs" / "audit-events.schema.json").read_text()
)
RP_KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "alg": "RS256", "use": "sig"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PHOTO = "https://photos.idenfy.example/selfies/audit-secret-face.jpg"
SETTINGS: dict[str, Any] = {
    "audit": {"sweep_seconds": 1},
    # Each limit scenario sends its own address (X-Forwarded-For from loopback).
    "server": {"trusted_proxies": ["127.0.0.1/32"]},
    "directory": {"static": {"alice": "SCAN-ALICE", "bob": "SCAN-BOB", "mallory": "SCAN-ALICE"}},
    "challenge": {
        "push_streams_per_ip": 1,
        "limits": {
            "spoof_lockout_seconds": 900,
            "token_failures_per_ip": {"count": 1, "seconds": 60},
        },
    },
    "clients": [
        client_entry("shop", subject_hints=["login_hint", "request_object", "id_token_hint"]),
        {
            "client_id": "jwt",
            "redirect_uris": [REDIRECT_URI],
            "subject_hints": ["login_hint"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [RP_KEY.as_dict(private=False)]},
        },
    ],
}


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self) -> list[dict[str, Any]]:
        """Each event as its JSON line, parsed back."""
        formatter = JsonFormatter()
        return [json.loads(formatter.format(r)) for r in self.records]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["event"] == name]


@pytest.fixture
def audit_log() -> Iterator[Captured]:
    handler = Captured()
    logger = logging.getLogger(AUDIT_LOGGER)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def address() -> str:
    return f"198.51.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


def fresh() -> dict[str, str]:
    return {"X-Forwarded-For": address()}


def client_assertion(stack: Stack) -> str:
    now = int(time.time())
    body = {
        "iss": "jwt",
        "sub": "jwt",
        "aud": stack.issuer,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
    }
    return jwt.encode({"alg": "RS256", "kid": "rp-1"}, body, RP_KEY)


async def post(stack: Stack, path: str, data: dict[str, str], **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(verify=TLS, timeout=20) as c:
        return await c.post(f"{stack.issuer}{path}", data=data, **kwargs)


async def wait_for(captured: Captured, name: str, correlation_id: str) -> dict[str, Any]:
    """The event ``name`` of ``correlation_id``, once some process emitted it."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = [e for e in captured.of(name) if e["correlation_id"] == correlation_id]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} for {correlation_id}")


async def swept(redis: Redis, set_key: str, *tokens: str) -> None:
    """Wait until a sweep took each of ``tokens`` out of the set of unfinished approvals."""
    deadline = time.monotonic() + 20
    while any([await redis.zscore(set_key, t) is not None for t in tokens]):
        assert time.monotonic() < deadline, "not swept"
        await asyncio.sleep(0.05)


async def test_a_finish_before_the_webhook_records_its_approval_leaves_nothing_to_report(
    redis: Redis,
) -> None:
    # The approving script wakes the browser before the webhook handler records the approval:
    # a quick finish may come first. Its mark keeps the record out.
    unfinished = Unfinished(Store(RedisPyBackend(redis), "stepup"))
    token = f"race-{secrets.token_hex(8)}"
    now = int(time.time())
    await unfinished.finished(token)
    approval = UnfinishedApproval(token, "shop", "alice", "urn:idenfy:stepup:face", "t", now)
    await unfinished.add(approval, now - 1, now)
    assert token not in [a.token for a in await unfinished.due(now)]
    assert await redis.zscore(unfinished.set_key, token) is None  # taken all the same
    # The other order: recorded, then finished.
    await unfinished.add(approval, now - 1, now)
    await unfinished.finished(token)
    assert token not in [a.token for a in await unfinished.due(now)]


async def happy_path(stack: Stack, redis: Redis, known: dict[str, str]) -> tuple[Flow, str, str]:
    """Approved, finished, redeemed, then the code replayed: the flow, its txn, its id_token."""
    flow = await challenge(stack)
    body = webhook_body(flow.token, "SUCCESS", face_photo=PHOTO, event_id=secrets.token_hex(8))
    assert (await post_webhook(stack, body)).json()["result"] == "applied"
    code = (await flow.result())["code"]
    tokens = (await flow.redeem(code)).json()
    assert (await flow.redeem(code)).status_code == 400  # the replay
    txn = jwt.decode(tokens["id_token"], await stack.jwks()).claims["txn"]
    known.update(
        {
            "challenge token": flow.token,
            "code": code,
            "access token": tokens["access_token"],
            "id token": tokens["id_token"],
            "PKCE verifier": flow.verifier or "",
            "raw webhook body": body.decode(),
        }
    )
    return flow, txn, tokens["id_token"]


async def test_every_event_type_is_emitted_and_matches_the_schema(
    stack: Stack, redis: Redis, audit_log: Captured
) -> None:
    known: dict[str, str] = {
        "client secret": CLIENT_SECRET,
        "webhook signing key": SIGNING_KEY,
        "scanRef": "SCAN-ALICE",
        "face photo URL": PHOTO,
    }
    # An approval, its code and token, and the code replayed: all joined by the txn.
    flow, txn, id_token = await happy_path(stack, redis, known)
    for name in ("challenge.opened", "webhook.accepted", "stepup.ended", "code.issued"):
        assert [e["correlation_id"] for e in audit_log.of(name)] == [txn], name
    assert audit_log.of("token.issued")[0]["correlation_id"] == txn
    replay = audit_log.of("replay.detected")[0]
    assert (replay["kind"], replay["subject"], replay["correlation_id"]) == ("code", "alice", txn)
    opened = audit_log.of("challenge.opened")[0]
    assert (opened["client_id"], opened["subject"], opened["attempt"]) == ("shop", "alice", 1)
    assert opened["address"] == "127.0.0.1"
    code_issued, token_issued = audit_log.of("code.issued")[0], audit_log.of("token.issued")[0]
    assert code_issued["code_digest"] == token_issued["code_digest"]
    assert code_issued["challenge_id"] == opened["challenge_id"] == token_issued["challenge_id"]

    # An approval whose browser never came back: its deadline brought forward in Redis.
    gone = await challenge(stack)
    assert (await stack.outcome(gone.token, "SUCCESS")).json()["delivered"] == 200
    opened_gone = next(e for e in audit_log.of("challenge.opened") if e["correlation_id"] != txn)
    set_key, record_key = unfinished_keys(gone.token)
    assert await redis.exists(record_key)
    await redis.zadd(set_key, {gone.token: 1})
    unfinished = await wait_for(audit_log, "approval.unfinished", opened_gone["correlation_id"])
    assert unfinished["challenge_id"] == opened_gone["challenge_id"]
    assert not await redis.exists(record_key)
    known["unfinished token"] = gone.token
    # Approvals their browser finished or canceled came back: swept, nothing is reported.
    canceled = await challenge(stack)
    assert (await stack.outcome(canceled.token, "SUCCESS")).json()["delivered"] == 200
    assert (await canceled.browser.post(f"/challenge/{canceled.token}/cancel")).status_code == 303
    for token in (flow.token, canceled.token):
        await redis.zadd(set_key, {token: 1})
    await swept(redis, set_key, flow.token, canceled.token)
    assert [e["correlation_id"] for e in audit_log.of("approval.unfinished")] == [
        opened_gone["correlation_id"]
    ]
    known["canceled token"] = canceled.token

    # A retry: a new attempt and a new challenge_id, the same step-up (correlation_id).
    retried = await challenge(stack)
    await stack.outcome(retried.token, "FAILED", "FACE_TOO_CLOSE")
    assert (await retried.finish()).status_code == 200  # the retry page
    moved = await retried.browser.post(f"/challenge/{retried.token}/retry")
    assert moved.status_code == 303, moved.text
    attempts = [e for e in audit_log.of("challenge.opened") if e["subject"] == "alice"][-2:]
    assert [e["attempt"] for e in attempts] == [1, 2]
    assert attempts[0]["correlation_id"] == attempts[1]["correlation_id"]
    assert attempts[0]["challenge_id"] != attempts[1]["challenge_id"]
    denial = [e for e in audit_log.of("webhook.accepted") if e["outcome"] == "FACE_TOO_CLOSE"]
    assert [e["correlation_id"] for e in denial] == [attempts[0]["correlation_id"]]
    known["retried token"] = retried.token

    # Refusals at /authorize, each a stepup.ended with its row.
    refusals = {
        "ACR_UNSUPPORTED": {"acr_values": "urn:nope"},
        "SUBJECT_REQUIRED": {"login_hint": ""},
        "SUBJECT_CONFLICT": {"login_hint": "bob", "id_token_hint": id_token},
        "LOGIN_REQUIRED": {"login_hint": "alice", "prompt": "none"},
    }
    for row, params in refusals.items():
        refused = await authorize(stack, **params)
        assert refused.redirect["stepup_error"] == row.lower(), refused.redirect
    signed = signed_subject(stack)
    assert (await authorize(stack, **signed)).token
    again = await authorize(stack, **signed)
    assert again.redirect["stepup_error"] == "invalid_request_object"
    known["request object"] = str(signed["request"])
    ended = {e["outcome"] for e in audit_log.of("stepup.ended")}
    assert set(refusals) | {"INVALID_REQUEST_OBJECT"} <= ended
    kinds = {e["kind"] for e in audit_log.of("replay.detected")}
    assert "request_object" in kinds

    # invalid_client at /token and /par; a client assertion replayed.
    form = {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI}
    # Each failure from an address of its own: one failure is this module's per-address limit.
    wrong = await post(stack, "/token", form, auth=("shop", "wrong-secret"), headers=fresh())
    assert wrong.status_code == 401
    pushed = {
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "code_challenge": pkce()[1],
        "code_challenge_method": "S256",
    }
    par = await post(
        stack, "/par", {**pushed, "login_hint": "alice"}, auth=("shop", "nope"), headers=fresh()
    )
    assert par.status_code == 401
    assertion = client_assertion(stack)
    by_jwt = {
        **pushed,
        "login_hint": "alice",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    assert (await post(stack, "/par", by_jwt)).status_code == 201
    assert (await post(stack, "/par", by_jwt, headers=fresh())).status_code == 401
    known["client assertion"] = assertion
    failed = {(e["endpoint"], e["reason"]) for e in audit_log.of("client.auth_failed")}
    assert {("/token", "credentials_refused"), ("/par", "credentials_refused")} <= failed
    assert ("/par", "assertion_replayed") in failed
    assert "client_assertion" in {e["kind"] for e in audit_log.of("replay.detected")}

    # Webhooks refused: a bad signature, an unknown token, a mismatch, with the sender.
    bad = webhook_body(flow.token, "SUCCESS", face_photo=PHOTO)
    assert (await post_webhook(stack, bad, key="wrong-key")).status_code == 401
    unknown = webhook_body("unknown-audit-token", "SUCCESS", face_photo=PHOTO)
    assert (await post_webhook(stack, unknown)).json()["result"] == "unknown"
    other = await challenge(stack)
    mismatch = webhook_body(other.token, "SUCCESS", scan_ref="SCAN-BOB", face_photo=PHOTO)
    assert (await post_webhook(stack, mismatch)).json()["result"] == "mismatch"
    known.update({"bad webhook body": bad.decode(), "mismatching body": mismatch.decode()})

    # A push stream over its address' cap (one, in this module).
    async with other.browser.stream("GET", f"/challenge/{other.token}/events") as held:
        assert held.status_code == 200
        over = await other.browser.get(f"/challenge/{other.token}/events")
        assert over.status_code == 429
    pushes = [e for e in audit_log.of("limit.exceeded") if e["endpoint"] == "/challenge/events"]
    assert [(e["limit"], e["retry_after"]) for e in pushes] == [("push_streams_per_ip", 30)]
    refused_hooks = {(e["reason"], e["http_status"]) for e in audit_log.of("webhook.refused")}
    assert {("bad_signature", 401), ("unknown_token", 200), ("mismatch", 200)} <= refused_hooks
    assert all(e["address"] == "127.0.0.1" for e in audit_log.of("webhook.refused"))

    # A rate limit (one failed client authentication per address) with the address.
    guesser = address()
    headers = {"X-Forwarded-For": guesser}
    assert (
        await post(stack, "/token", form, auth=("shop", "x"), headers=headers)
    ).status_code == 401
    assert (
        await post(stack, "/token", form, auth=("shop", "x"), headers=headers)
    ).status_code == 429
    limits = [e for e in audit_log.of("limit.exceeded") if e["address"] == guesser]
    assert [(e["limit"], e["endpoint"]) for e in limits] == [("token_failures_per_ip", "/token")]

    # A spoof locks a signed subject out; its next request is refused by the lock-out.
    spoofed = await challenge(stack, **signed_subject(stack, "mallory"))
    assert (await stack.outcome(spoofed.token, "FAILED", "FAKE_FACE")).json()["delivered"] == 200
    locked = (await authorize(stack, **signed_subject(stack, "mallory"))).redirect
    assert locked["stepup_error"] == "subject_locked"
    lock = audit_log.of("subject.locked")
    assert [(e["subject"], e["outcome"]) for e in lock] == [("mallory", "FAKE_FACE")]
    spoof_opened = next(e for e in audit_log.of("challenge.opened") if e["subject"] == "mallory")
    assert lock[0]["correlation_id"] == spoof_opened["correlation_id"]
    assert lock[0]["address_tag"] == spoof_opened["address_tag"]
    lock_limit = [e for e in audit_log.of("limit.exceeded") if e["subject"] == "mallory"]
    assert [e["limit"] for e in lock_limit] == ["spoof_lockout_seconds"]
    known["spoofed token"] = spoofed.token

    # Every type appeared, every line matches the schema, and none holds a secret.
    lines = audit_log.lines()
    assert {e.name for e in EVENTS} - {line["event"] for line in lines} == set()
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for line in lines:
        errors = [error.message for error in validator.iter_errors(line)]
        assert errors == [], (line, errors)
    texts = [JsonFormatter().format(r) for r in audit_log.records]
    texts += [TextFormatter().format(r) for r in audit_log.records]
    leaked = [(name, text) for text in texts for name, value in known.items() if value in text]
    assert leaked == []


async def test_the_stream_can_be_switched_off_and_addresses_kept_out(
    pool: StackPool, audit_log: Captured
) -> None:
    try:
        quiet = await pool.get(settings={**SETTINGS, "audit": {"enabled": False}})
        await challenge(quiet)
        assert audit_log.records == []
        tags_only = await pool.get(settings={**SETTINGS, "audit": {"addresses": False}})
        await challenge(tags_only)
        opened = audit_log.of("challenge.opened")
        assert [(e["address"], len(e["address_tag"])) for e in opened] == [(None, 22)]
    finally:
        events.configure(enabled=True, addresses=True)  # as the module's stack was created
