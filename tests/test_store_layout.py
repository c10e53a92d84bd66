"""What Redis holds for a pending challenge, against a real redis-server: one key, a compact
listpack hash with the request inside it (docs/architecture.md, "Redis keys"), and a challenge
written in the layout before (its request in a key of its own, hex binding, copies of the
scanRef, type and method, the token itself in its address's open set) still read to its end."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from idenfy_stepup.settings import RedisSettings
from idenfy_stepup.stepup.records import StepUpRequest
from idenfy_stepup.store import FinishMode, HookVerdict, Store, VerdictKind, open_backend, tag
from idenfy_stepup.store.core import code_for, new_secret_for

from .harness.redis import KEYS, challenge_key, open_key, request_key, request_parts
from .harness.rp import challenge
from .harness.servers import Stack

REQUEST = StepUpRequest(
    client_id="shop",
    redirect_uri="http://127.0.0.1:9/callback",
    scope="openid",
    subject="alice",
    scan_ref="SCAN-ALICE",
    acr="urn:idenfy:stepup:face",
    method="FACE_MATCHING",
    state="st-" + "s" * 20,
    nonce="n-" + "n" * 20,
    code_challenge="c" * 43,
    code_challenge_method="S256",
    locale="en",
    txn="t" * 22,
)
TOKEN = "TokenLayout0123456789abcdefghijklmnopqrst"
SECRET = "browser-secret"
BINDING = hashlib.sha256(SECRET.encode()).hexdigest()  # as stepup/binding.py makes it
IP = "203.0.113.7"
LISTPACK_VALUE = 64  # Redis' default hash-max-listpack-value


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[Store]:
    s = Store(open_backend(RedisSettings(url=redis_url)), "stepup")
    yield s
    await s.aclose()


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def create(store: Store, token: str = TOKEN, request: StepUpRequest = REQUEST) -> None:
    expires_at = int(time.time()) + 300
    await store.create_challenge(
        token, request, binding=BINDING, attempt=1, expires_at=expires_at, ttl=600, ip=IP
    )


async def approve(store: Store, token: str = TOKEN, request: StepUpRequest = REQUEST) -> str:
    hook = await store.webhook_transition(
        token=token,
        webhook_id=f"hook-{secrets.token_hex(4)}",
        verdict=HookVerdict.SUCCESS,
        outcome="SUCCESS",
        retryable=False,
        scan_ref=request.scan_ref,
        check_type=request.check_type,
        method=request.method,
        marker_ttl=60,
    )
    return hook.result


async def test_a_pending_challenge_is_one_listpack_hash_that_holds_its_request(
    store: Store, r: Redis
) -> None:
    await create(store)
    assert await r.keys("*") == [challenge_key(TOKEN).encode()]
    assert await r.object("encoding", challenge_key(TOKEN)) == b"listpack"
    fields = await r.hgetall(challenge_key(TOKEN))
    assert all(len(value) < LISTPACK_VALUE for value in fields.values())
    # The request's JSON is in the hash's parts; nothing of it is copied beside them.
    assert request_parts(fields) == REQUEST.to_json().encode()
    own = {k for k in fields if k != b"qn" and not (k[:1] == b"q" and k[1:].isdigit())}
    assert own == {b"state", b"binding", b"attempt", b"expires_at", b"ip"}
    # The binding: the browser secret's SHA-256, in base64url (43 characters, not 64).
    digest = hashlib.sha256(SECRET.encode()).digest()
    assert fields[b"binding"] == base64.urlsafe_b64encode(digest).rstrip(b"=")
    assert fields[b"ip"] == tag(IP).encode()
    # The JSON leaves out what nearly every request has (scope openid, FACE_MATCHING).
    stored = json.loads(request_parts(fields) or b"")
    assert "sc" not in stored and "m" not in stored and stored["k"] == "SCAN-ALICE"
    peek = await store.peek(TOKEN, BINDING, full=True)
    assert (peek.state, peek.bound, peek.request) == ("PENDING", True, REQUEST)
    assert await store.challenge_request(TOKEN) == REQUEST


async def test_a_long_request_stays_in_the_listpack_and_reads_back_whole(
    store: Store, r: Redis
) -> None:
    long = dataclasses.replace(
        REQUEST,
        redirect_uri="https://rp.example.com/" + "callback/" * 30,
        state="x" * 500,
        scope="openid profile email",
        method="ACTIVE_LIVENESS",
        claims={"id_token": {"acr": {"essential": True, "values": ["a" * 80]}}},
    )
    await create(store, request=long)
    assert await r.object("encoding", challenge_key(TOKEN)) == b"listpack"
    fields = await r.hgetall(challenge_key(TOKEN))
    assert int(fields[b"qn"]) > 10 and all(len(v) < LISTPACK_VALUE for v in fields.values())
    assert (await store.peek(TOKEN, BINDING, full=True)).request == long
    # The scripts join the same parts: the webhook matches the request's method.
    assert await approve(store, request=long) == "applied"
    verdict = await store.finish(
        TOKEN, BINDING, mode=FinishMode.FINISH, max_attempts=3, code=code_for(TOKEN, SECRET)
    )
    assert (verdict.kind, verdict.request) == (VerdictKind.APPROVED, long)


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("scan_ref", "SCAN-MALLORY", "scanRef"),
        ("check_type", "ENROLLMENT", "type"),
        ("method", "ACTIVE_LIVENESS", "method"),
    ],
)
async def test_a_webhook_is_matched_with_the_stored_requests_scan_ref_type_and_method(
    store: Store, r: Redis, field: str, value: str, detail: str
) -> None:
    await create(store)
    before = await r.hgetall(challenge_key(TOKEN))
    names = {"scan_ref": REQUEST.scan_ref, "check_type": REQUEST.check_type}
    names["method"] = REQUEST.method
    hook = await store.webhook_transition(
        token=TOKEN,
        webhook_id="hook-mismatch",
        verdict=HookVerdict.SUCCESS,
        outcome="SUCCESS",
        retryable=False,
        marker_ttl=60,
        **{**names, field: value},  # type: ignore[arg-type]
    )
    assert (hook.result, hook.detail) == ("mismatch", detail)
    assert await r.hgetall(challenge_key(TOKEN)) == before
    # The defaults the JSON leaves out are what the webhook is compared with.
    assert await approve(store) == "applied"


async def test_an_unreadable_stored_request_means_start_again(store: Store, r: Redis) -> None:
    await create(store)
    await r.hdel(challenge_key(TOKEN), "q2")  # a part missing
    assert (await store.peek(TOKEN, BINDING, full=True)).request is None
    assert await approve(store) == "mismatch"  # nothing to match the webhook with
    finish = await store.finish(TOKEN, BINDING, mode=FinishMode.FINISH, max_attempts=3)
    assert finish.kind is VerdictKind.MISSING
    await r.hset(challenge_key(TOKEN), mapping={"qn": 1, "q1": '{"x": 1}'})  # JSON, no scanRef
    assert await approve(store) == "mismatch"
    assert (await r.hgetall(challenge_key(TOKEN)))[b"state"] == b"PENDING"
    await r.hset(challenge_key(TOKEN), mapping={"qn": 10**9, "q2": "x"})  # a count none wrote
    finish = await store.finish(TOKEN, BINDING, mode=FinishMode.FINISH, max_attempts=3)
    assert finish.kind is VerdictKind.MISSING
    assert (await store.peek(TOKEN, BINDING, full=True)).request is None


async def legacy_challenge(r: Redis, token: str, state: str = "PENDING") -> None:
    """A challenge as the layout before wrote it: its request in a key of its own, the
    scanRef, type and method copied into the hash, the binding in hex."""
    old_json = json.dumps({**json.loads(REQUEST.to_json()), "sc": "openid", "m": "FACE_MATCHING"})
    await r.hset(
        challenge_key(token),
        mapping={
            "state": state,
            "binding": BINDING,
            "attempt": 1,
            "expires_at": int(time.time()) + 300,
            "scan_ref": REQUEST.scan_ref,
            "type": REQUEST.check_type,
            "method": REQUEST.method,
            "ip": tag(IP),
        },
    )
    await r.set(request_key(token), old_json, ex=600)


async def test_a_challenge_in_the_layout_before_is_read_to_its_end(store: Store, r: Redis) -> None:
    await legacy_challenge(r, TOKEN)
    peek = await store.peek(TOKEN, BINDING, full=True)
    assert (peek.state, peek.bound, peek.request) == ("PENDING", True, REQUEST)
    assert (await store.peek(TOKEN, BINDING)).bound is True
    assert (await store.peek(TOKEN, "0" * 64, full=True)).bound is False
    fields, raw = await store.challenge_record(TOKEN)
    assert fields["scan_ref"] == "SCAN-ALICE" and StepUpRequest.from_json(raw or "") == REQUEST
    wrong = await store.webhook_transition(
        token=TOKEN,
        webhook_id="hook-wrong",
        verdict=HookVerdict.SUCCESS,
        outcome="SUCCESS",
        retryable=False,
        scan_ref="SCAN-MALLORY",
        check_type="AUTHENTICATION",
        method="FACE_MATCHING",
        marker_ttl=60,
    )
    assert (wrong.result, wrong.detail) == ("mismatch", "scanRef")
    assert await approve(store) == "applied"
    code = code_for(TOKEN, SECRET)
    verdict = await store.finish(TOKEN, BINDING, mode=FinishMode.FINISH, max_attempts=3, code=code)
    assert (verdict.kind, verdict.request) == (VerdictKind.APPROVED, REQUEST)
    access_token = new_secret_for(TOKEN)
    kind, grant = await store.redeem_code(code, access_token, 60, client_id="shop")
    assert (kind, grant.subject if grant else None) == ("ok", "alice")
    assert await store.access_token_claims(access_token) == '{"sub":"alice"}'


async def test_a_retry_of_a_challenge_in_the_layout_before_is_claimed(
    store: Store, r: Redis
) -> None:
    await legacy_challenge(r, TOKEN, state="DENIED")
    await r.hset(challenge_key(TOKEN), mapping={"retryable": 1, "outcome": "FACE_MISMATCH"})
    verdict = await store.claim_retry(TOKEN, BINDING, 3)
    assert (verdict.kind, verdict.request) == (VerdictKind.CLAIMED, REQUEST)
    other = await store.claim_retry(TOKEN, "f" * 64, 3)
    assert other.kind is VerdictKind.FORBIDDEN


async def test_an_addresss_open_set_holds_short_members_and_ends_one_added_before(
    store: Store, r: Redis
) -> None:
    address = tag(IP)
    expires_at = int(time.time()) + 300
    assert await store.open_challenges(address, "add", TOKEN, expires_at) == 1
    members = await r.zrange(open_key(address), 0, -1)
    assert members == [KEYS.open_member(TOKEN).encode()] and len(members[0]) == 16
    # A challenge opened before is in the set as its token: its end removes it too.
    await r.zadd(open_key(address), {"OldToken0123456789": expires_at})
    assert await store.open_challenges(address) == 2
    assert await store.open_challenges(address, "remove", "OldToken0123456789") == 1
    assert await store.open_challenges(address, "remove", TOKEN) == 0


async def test_a_pending_challenge_of_a_new_person_at_a_new_address_is_two_keys(
    stack_factory: Callable[..., Awaitable[Stack]], redis_url: str
) -> None:
    stack = await stack_factory()
    async with Redis.from_url(redis_url) as client:
        before = set(await client.keys("*"))
        flow = await challenge(stack)
        created = set(await client.keys("*")) - before
        address = tag("127.0.0.1")
        assert created == {challenge_key(flow.token).encode(), open_key(address).encode()}
        for key in created:
            assert await client.object("encoding", key) == b"listpack"


def test_each_script_that_reads_the_request_carries_the_shared_reader() -> None:
    from idenfy_stepup.store import scripts

    readers = {"finish", "retry_claim", "redeem_code", "webhook"}
    for script in scripts.ALL:
        assert "--! include" not in script.source, script.name  # every include expanded
        has_reader = "local function stored_request(" in script.source
        assert has_reader == (script.name in readers), script.name
