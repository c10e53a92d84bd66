"""The challenge state machine and the invariants of docs/architecture.md, as a hypothesis
state machine over the real ``Store`` and redis-server, once over each backend (the wire
client and redis-py).

Random interleavings of challenges, webhooks (every status and failReason, duplicates,
conflicting and mismatching deliveries), browser finishes / give-ups / cancels with the right
or a wrong binding, retries (claim + link, with or without a next attempt), expiry (time travel
on ``expires_at`` / ``retry_at``), corrupted or vanished records, and code redemptions.

A Python model predicts every script's answer and the record it leaves behind; after every
step the invariants of docs/architecture.md are checked against what Redis actually holds, partly
independently of the model (the observed state transitions, which webhook approved a record).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

from idenfy_stepup.stepup.outcomes import FAIL_REASONS, OutcomeTable
from idenfy_stepup.stepup.records import StepUpRequest
from idenfy_stepup.store import (
    FinishMode,
    HookResult,
    HookVerdict,
    RedisPyBackend,
    State,
    Store,
    StoreBackend,
    VerdictKind,
    WireBackend,
    WireRedis,
    code_for,
    new_secret_for,
)

from ..harness.redis import RedisProcess, replace_stored_request

MAX_ATTEMPTS = 3
MARKER_TTL = 1500
AT_TTL = 300
DB = 7  # a database of its own: the machine flushes it, other tests' stacks use db 0
OUTCOMES = OutcomeTable()
STATUSES = ["SUCCESS", "FAILED", "EXPIRED", "CANCELED", "CANCELLED", "PENDING", "WEIRD"]
REASONS: list[str | None] = [*FAIL_REASONS, None, "NOT_A_REASON"]
SCAN_REFS = ["SCAN-ALICE", "SCAN-CAROL"]
TYPES = ["AUTHENTICATION", "ENROLLMENT"]
METHODS = ["FACE_MATCHING", "ACTIVE_LIVENESS"]
HOOK_IDS = [f"hook-{i}" for i in range(5)]
CORRUPT_REQUESTS = ["not json", '{"x": 1}', "[1, 2]", '"text"']

# The edges of the challenge state machine in docs/architecture.md (plus RETRYING, the claim a
# "try again" click holds, and the PENDING/DENIED → CONSUMED ends: expired, canceled, given
# up). Nothing leads back.
EDGES: dict[str, set[str]] = {
    State.PENDING: {State.APPROVED, State.DENIED, State.CONSUMED},
    State.APPROVED: {State.CONSUMED},
    State.DENIED: {State.RETRYING, State.CONSUMED},
    State.RETRYING: {State.CONSUMED},
    State.CONSUMED: set(),
}

REDIS_URL = ""  # set by the test before the machine runs
BACKEND = "wire"  # which StoreBackend the machine's Store uses: wire | redis-py


def backend_for(url: str) -> StoreBackend:
    if BACKEND == "redis-py":
        return RedisPyBackend(Redis.from_url(url))
    wire = WireRedis.for_url(url, 2.0)
    assert wire is not None
    return WireBackend(wire)


def binding_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Rec:
    """What the model expects one challenge record to hold."""

    secret: str  # the owning browser's cookie secret: the binding is its SHA-256
    attempt: int
    scan_ref: str
    type: str
    method: str
    request: StepUpRequest
    state: str = State.PENDING
    outcome: str | None = None
    retryable: bool = False
    next: str | None = None
    expired: bool = False  # expires_at moved into the past
    expires_ok: bool = True  # expires_at present and numeric
    retry_stale: bool = False  # retry_at moved into the past
    request_ok: bool = True
    binding_ok: bool = True
    corrupted: bool = False  # state overwritten by the test: no transition checks
    hooks: set[str] = field(default_factory=set)
    approved_finishes: int = 0
    consumed_as: str | None = None
    code: str | None = None  # the code its approval issued

    @property
    def binding(self) -> str:
        return binding_of(self.secret)


@dataclass
class Code:
    token: str  # the challenge it was issued by, which holds it
    redeemed_by: str | None = None
    redemptions: int = 0
    revoked: bool = False


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class StoreMachine(RuleBasedStateMachine):
    tokens = Bundle("tokens")
    codes = Bundle("codes")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        url = REDIS_URL.rsplit("/", 1)[0] + f"/{DB}"
        self.redis = Redis.from_url(url)  # the test's own view of what Redis holds
        self.store = Store(backend_for(url))
        self.run(self.redis.flushdb())
        self.recs: dict[str, Rec | None] = {}
        self.codes_model: dict[str, Code] = {}
        self.seen: dict[str, str | None] = {}
        # (token, webhook id) → the delivery that got past the dedupe marker first.
        self.first: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        self.counter = 0

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        try:
            self.run(self.redis.flushdb())
            self.run(self.redis.aclose())
            self.run(self.store.aclose())
        finally:
            self.loop.close()

    def key(self, token: str) -> str:
        return self.store.challenge_key(token)

    def snapshot(self, token: str) -> dict[bytes, bytes]:
        raw: dict[bytes, bytes] = self.run(self.redis.hgetall(self.key(token)))
        return raw

    def binding_for(self, token: str, which: str) -> str:
        rec = self.recs.get(token)
        if which == "right" and rec is not None:
            return rec.binding
        if which == "empty":
            return ""
        if which == "other":
            others = [r.binding for t, r in self.recs.items() if r is not None and t != token]
            mine = rec.binding if rec is not None else None
            candidates = [b for b in others if b != mine]
            if candidates:
                return candidates[0]
        return binding_of("an intruder's secret")

    # -- challenges ----------------------------------------------------------------------------
    async def _create(self, token: str, rec: Rec) -> None:
        await self.store.create_challenge(
            token,
            rec.request,
            binding=rec.binding,
            attempt=rec.attempt,
            expires_at=int(time.time()) + 600,
            ttl=1500,
        )

    def new_token(self) -> str:
        self.counter += 1
        return f"tok{self.counter}-{secrets.token_hex(4)}"

    @initialize(target=tokens)
    def first_challenge(self) -> str:
        return self._new_challenge(0, 0, 0)

    @rule(
        target=tokens,
        scan=st.integers(0, 1),
        type_=st.integers(0, 1),
        method=st.integers(0, 1),
    )
    def create_challenge(self, scan: int, type_: int, method: int) -> str:
        return self._new_challenge(scan, type_, method)

    def _new_challenge(self, scan: int, type_: int, method: int) -> str:
        token = self.new_token()
        request = StepUpRequest(
            client_id="shop",
            redirect_uri="http://127.0.0.1:9/callback",
            scope="openid",
            subject="alice",
            scan_ref=SCAN_REFS[scan],
            acr="urn:idenfy:stepup:face",
            method=METHODS[method],
            check_type=TYPES[type_],
            state=secrets.token_hex(4),
            nonce=secrets.token_hex(4),
        )
        rec = Rec(secrets.token_hex(8), 1, SCAN_REFS[scan], TYPES[type_], METHODS[method], request)
        self.run(self._create(token, rec))
        self.recs[token] = rec
        self.seen[token] = State.PENDING
        return token

    # -- webhooks ------------------------------------------------------------------------------
    @rule(
        token=tokens,
        hook_id=st.sampled_from(HOOK_IDS),
        status=st.sampled_from(STATUSES),
        reason=st.sampled_from(REASONS),
        scan=st.sampled_from(["match", "match", "other", "none"]),
        type_=st.sampled_from(["match", "match", "other", "none"]),
        method=st.sampled_from(["match", "match", "other", "none"]),
    )
    def webhook(
        self,
        token: str,
        hook_id: str,
        status: str,
        reason: str | None,
        scan: str,
        type_: str,
        method: str,
    ) -> None:
        self._webhook(token, hook_id, status, reason, scan, type_, method)

    @rule(
        token=tokens,
        hook_id=st.sampled_from(HOOK_IDS),
        status=st.sampled_from(["SUCCESS", "FAILED", "FAILED"]),
        reason=st.sampled_from(REASONS),
    )
    def matching_webhook(self, token: str, hook_id: str, status: str, reason: str | None) -> None:
        """What the genuine vendor sends: everything matches (the generic rule rarely does)."""
        self._webhook(token, hook_id, status, reason, "match", "match", "match")

    @rule(hook_id=st.sampled_from(HOOK_IDS), status=st.sampled_from(STATUSES))
    def webhook_for_unknown_token(self, hook_id: str, status: str) -> None:
        token = f"never-created-{secrets.token_hex(4)}"
        self.recs[token] = None
        self.seen[token] = None
        self._webhook(token, hook_id, status, None, "match", "match", "match")

    def _pick(self, choice: str, mine: str | None, options: list[str]) -> str:
        if choice == "none" or mine is None:
            return ""
        if choice == "match":
            return mine
        return next(o for o in options if o != mine)

    def _webhook(
        self,
        token: str,
        hook_id: str,
        status: str,
        reason: str | None,
        scan: str,
        type_: str,
        method: str,
    ) -> None:
        rec = self.recs.get(token)
        scan_ref = self._pick(scan, rec.scan_ref if rec else "SCAN-ALICE", SCAN_REFS)
        check_type = self._pick(type_, rec.type if rec else TYPES[0], TYPES)
        meth = self._pick(method, rec.method if rec else METHODS[0], METHODS)
        # As endpoints/webhook.py maps a parsed event (PENDING never reaches the store there;
        # the script's own PENDING branch is exercised here all the same).
        status = "CANCELED" if status == "CANCELLED" else status
        verdict: HookVerdict
        if status == "SUCCESS":
            verdict, outcome = HookVerdict.SUCCESS, "SUCCESS"
        elif status == "PENDING":
            verdict, outcome = HookVerdict.PENDING, "PENDING"
        else:
            verdict, outcome = HookVerdict.DENIED, OUTCOMES.for_webhook(status, reason).name
        retryable = verdict == HookVerdict.DENIED and OUTCOMES[outcome].retryable
        before = self.snapshot(token)
        applied = self.run(
            self.store.webhook_transition(
                token=token,
                webhook_id=hook_id,
                verdict=verdict,
                outcome=outcome,
                retryable=retryable,
                scan_ref=scan_ref or None,
                check_type=check_type or None,
                method=meth or None,
                marker_ttl=MARKER_TTL,
            )
        )
        result = (applied.result, applied.detail)
        expected = self._expect_webhook(
            token, rec, hook_id, verdict, outcome, retryable, scan_ref, check_type, meth
        )
        assert result == expected, (result, expected)
        if result[0] != HookResult.APPLIED:
            assert self.snapshot(token) == before  # duplicates and mismatches change nothing

    def _expect_webhook(
        self,
        token: str,
        rec: Rec | None,
        hook_id: str,
        verdict: str,
        outcome: str,
        retryable: bool,
        scan_ref: str,
        check_type: str,
        method: str,
    ) -> tuple[str, str]:
        if rec is None:
            return (HookResult.UNKNOWN, "")
        if hook_id in rec.hooks:
            return (HookResult.DUPLICATE, "")
        rec.hooks.add(hook_id)
        self.first[(token, hook_id)] = (verdict, scan_ref, check_type, method)
        if rec.state != State.PENDING:
            return (HookResult.IGNORED, rec.state)
        # What a webhook must match is the stored request's: a damaged one has nothing to match.
        known = (rec.scan_ref, rec.type, rec.method) if rec.request_ok else (None, None, None)
        if scan_ref != known[0] and (verdict == HookVerdict.SUCCESS or scan_ref != ""):
            return (HookResult.MISMATCH, "scanRef")
        if check_type and check_type != known[1]:
            return (HookResult.MISMATCH, "type")
        if method and method != known[2]:
            return (HookResult.MISMATCH, "method")
        if verdict == HookVerdict.PENDING:
            return (HookResult.PENDING, "")
        if verdict == HookVerdict.SUCCESS:
            rec.state = State.APPROVED
        else:
            rec.state, rec.outcome, rec.retryable = State.DENIED, outcome, retryable
        return (HookResult.APPLIED, rec.state)

    # -- the browser ---------------------------------------------------------------------------
    @rule(
        target=codes,
        token=tokens,
        mode=st.sampled_from(list(FinishMode)),
        which=st.sampled_from(["right", "right", "wrong", "empty", "other"]),
    )
    def finish(self, token: str, mode: FinishMode, which: str) -> Any:
        binding = self.binding_for(token, which)
        before = self.snapshot(token)
        rec = self.recs.get(token)
        # As the endpoint does: the code is derived from the finishing browser's secret.
        owner = which == "right" and rec is not None
        code = code_for(token, rec.secret if owner and rec is not None else "an intruder's")
        verdict = self.run(
            self.store.finish(token, binding, mode=mode, max_attempts=MAX_ATTEMPTS, code=code)
        )
        repeat = rec is not None and rec.code is not None
        expected = self._expect_finish(rec, binding, mode)
        assert verdict.kind == expected, (verdict, expected)
        if rec is None or binding != rec.binding or not rec.binding_ok:
            # Only the starting browser finishes: a wrong (or no) binding never changes anything.
            assert verdict.kind in (VerdictKind.FORBIDDEN, VerdictKind.MISSING)
            assert self.snapshot(token) == before
        if verdict.kind != VerdictKind.APPROVED:
            return multiple()
        assert rec is not None
        if repeat:
            # A repeated finish (a lost response): the same code, still unredeemed.
            assert code == rec.code and self.codes_model[code].redemptions == 0
            return multiple()
        rec.approved_finishes += 1
        rec.code = code
        assert verdict.request == rec.request
        # The finish script recorded the code's hash with the approval's consumption.
        stored = _s(self.run(self.redis.hget(self.key(token), "code")))
        assert stored == hashlib.sha256(code.encode()).hexdigest()
        self.codes_model[code] = Code(token)
        return multiple(code)

    @rule(target=codes, token=tokens, give_up=st.booleans())
    def finish_as_owner(self, token: str, give_up: bool) -> Any:
        return self.finish(token, FinishMode.GIVE_UP if give_up else FinishMode.FINISH, "right")

    @rule(target=codes, token=tokens, hook_id=st.sampled_from(HOOK_IDS), redeem=st.integers(0, 2))
    def approve_and_finish(self, token: str, hook_id: str, redeem: int) -> Any:
        """The vendor's SUCCESS, then the owner's finish (a code when the record was PENDING)."""
        self._webhook(token, hook_id, "SUCCESS", None, "match", "match", "match")
        codes = self.finish(token, FinishMode.FINISH, "right")
        for code in codes.values:
            for _ in range(redeem):
                self.redeem(code)
        return codes

    @rule(
        target=tokens,
        token=tokens,
        hook_id=st.sampled_from(HOOK_IDS),
        reason=st.sampled_from([r for r in FAIL_REASONS if OUTCOMES[r].retryable]),
        with_next=st.booleans(),
    )
    def fail_and_try_again(self, token: str, hook_id: str, reason: str, with_next: bool) -> Any:
        """A retryable failure, the retry screen, "try again": claim, then link."""
        self._webhook(token, hook_id, "FAILED", reason, "match", "match", "match")
        self.finish(token, FinishMode.FINISH, "right")
        self.claim_retry(token, "right")
        return self.link_retry(token, with_next)

    def _expect_finish(self, rec: Rec | None, binding: str, mode: str) -> str:
        if rec is None:
            return "missing"
        if not rec.binding_ok or binding != rec.binding:
            return "forbidden"
        kind = self._finish_script(rec, mode)
        if kind not in ("missing", "forbidden") and not rec.request_ok:
            return "missing"  # unreadable request: "start again" (missing state means start again)
        return kind

    def _finish_script(self, rec: Rec, mode: str) -> str:
        def consume(kind: str) -> str:
            rec.state, rec.consumed_as = "CONSUMED", kind
            return kind

        if rec.state == "CONSUMED":
            # A repeated finish answers as the consuming one did (the approval only while its
            # code is unredeemed).
            if rec.consumed_as == "approved":
                unredeemed = rec.code is not None and not self.codes_model[rec.code].redemptions
                return "approved" if unredeemed else "consumed"
            again = {"retry_failed": "denied", "retried": "consumed"}
            return again.get(rec.consumed_as or "", rec.consumed_as or "consumed")
        if rec.state == "RETRYING":
            if rec.next:
                return "moved"
            return consume("denied") if rec.retry_stale else "pending"
        if rec.state not in ("PENDING", "APPROVED", "DENIED") or not rec.expires_ok:
            return "missing"
        if mode == FinishMode.CANCEL:
            return consume("canceled")
        if rec.state == "APPROVED":
            return consume("approved")
        if rec.state == "DENIED":
            more = rec.retryable and rec.attempt < MAX_ATTEMPTS
            return "retry" if more and mode == FinishMode.FINISH else consume("denied")
        return consume("expired") if rec.expired else "pending"

    @rule(token=tokens, which=st.sampled_from(["right", "wrong", "empty"]))
    def peek(self, token: str, which: str) -> None:
        binding = self.binding_for(token, which)
        seen = self.run(self.store.peek(token, binding, full=True))
        rec = self.recs.get(token)
        bound = rec is not None and rec.binding_ok and binding == rec.binding
        if bound and rec is not None and not rec.request_ok:
            assert (seen.state, seen.bound) == (None, False)
            return
        assert seen.bound == bound
        assert seen.state == (rec.state if rec is not None else None)
        if bound and rec is not None:
            assert seen.request == rec.request

    # -- retries -------------------------------------------------------------------------------
    @rule(token=tokens, which=st.sampled_from(["right", "right", "wrong", "empty"]))
    def claim_retry(self, token: str, which: str) -> None:
        binding = self.binding_for(token, which)
        before = self.snapshot(token)
        verdict = self.run(self.store.claim_retry(token, binding, MAX_ATTEMPTS))
        rec = self.recs.get(token)
        expected = self._expect_claim(rec, binding)
        assert verdict.kind == expected, (verdict, expected)
        if expected in ("forbidden", "missing") and (rec is None or rec.request_ok):
            assert self.snapshot(token) == before

    def _expect_claim(self, rec: Rec | None, binding: str) -> str:
        if rec is None:
            return "missing"
        if not rec.binding_ok or binding != rec.binding:
            return "forbidden"
        if rec.state == "RETRYING":
            kind = "moved"
        elif rec.state == "CONSUMED":
            kind = "consumed"
        elif rec.state != "DENIED" or not rec.retryable or rec.attempt >= MAX_ATTEMPTS:
            kind = "refused"
        else:
            rec.state, rec.retry_stale, kind = "RETRYING", False, "claimed"
        return kind if rec.request_ok else "missing"

    @rule(target=tokens, token=tokens, with_next=st.booleans())
    def link_retry(self, token: str, with_next: bool) -> Any:
        rec = self.recs.get(token)
        next_token: str | None = None
        if with_next and rec is not None and rec.request_ok:
            # As the retry endpoint does: the next attempt exists before the link names it.
            next_token = self.new_token()
            new = Rec(rec.secret, rec.attempt + 1, rec.scan_ref, rec.type, rec.method, rec.request)
            self.run(self._create(next_token, new))
            self.recs[next_token] = new
            self.seen[next_token] = "PENDING"
        linked = self.run(self.store.link_retry(token, next_token))
        expected = rec is not None and rec.state == "RETRYING"
        assert linked == expected
        if expected and rec is not None:
            rec.state, rec.next = "CONSUMED", next_token
            rec.consumed_as = "retried" if next_token else "retry_failed"
        return multiple(next_token) if next_token else multiple()

    # -- time travel and damage ----------------------------------------------------------------
    @rule(token=tokens, field_=st.sampled_from(["expires_at", "retry_at"]))
    def time_travel(self, token: str, field_: str) -> None:
        """The vendor session expired (no EXPIRED webhook came), or a retry claim went stale."""
        rec = self.recs.get(token)
        if rec is None:
            return
        self.run(self.redis.hset(self.key(token), field_, int(time.time()) - 100))
        if field_ == "expires_at":
            rec.expired, rec.expires_ok = True, True
        else:
            rec.retry_stale = True

    @rule(
        token=tokens,
        damage=st.sampled_from(
            ["lapse", "state", "expires_at", "expires_at_text", "request", "binding"]
        ),
        garbage=st.sampled_from(CORRUPT_REQUESTS),
    )
    def damage(self, token: str, damage: str, garbage: str) -> None:
        """The TTL ran out, or the record is unreadable: "missing", never "approved"."""
        rec = self.recs.get(token)
        if rec is None:
            return
        key = self.key(token)
        if damage == "lapse":
            self.run(self.redis.delete(key))
            self.recs[token] = None
            self.seen[token] = None
        elif damage == "state":
            self.run(self.redis.hset(key, "state", "GARBAGE"))
            rec.state, rec.corrupted = "GARBAGE", True
        elif damage == "expires_at":
            self.run(self.redis.hdel(key, "expires_at"))
            rec.expires_ok = False
        elif damage == "expires_at_text":
            self.run(self.redis.hset(key, "expires_at", "soon"))
            rec.expires_ok = False
        elif damage == "request":
            self.run(replace_stored_request(self.redis, token, garbage))
            rec.request_ok = False
        else:
            self.run(self.redis.hdel(key, "binding"))
            rec.binding_ok = False

    # -- codes ---------------------------------------------------------------------------------
    @rule(code=codes)
    def redeem(self, code: str) -> None:
        model = self.codes_model[code]
        rec = self.recs.get(model.token)
        access_token = new_secret_for(model.token)
        kind, grant = self.run(self.store.redeem_code(code, access_token, AT_TTL))
        if rec is None:
            # Its challenge lapsed, and the code with it: nothing to redeem, nothing changed.
            assert (kind, grant) == ("missing", None)
            return
        model.redemptions += 1
        if model.redemptions == 1:
            model.redeemed_by = access_token
            if not rec.request_ok:
                # Unreadable request: never a grant (missing state means start again); the
                # code is spent.
                assert (kind, grant) == ("missing", None)
                assert self.run(self.store.access_token_claims(access_token)) is None
                return
            assert kind == "ok"
            assert grant is not None and grant.subject == "alice"
            assert grant.client_id == rec.request.client_id and grant.nonce == rec.request.nonce
            claims = self.run(self.store.access_token_claims(access_token))
            assert claims is not None and json.loads(claims) == {"sub": "alice"}
            # Another challenge's token, or a made-up one, is no access token for this one.
            assert self.run(self.store.access_token_claims(new_secret_for(model.token))) is None
            return
        # One redemption: a second redemption fails and revokes what the first one issued.
        assert (kind, grant) == ("reused", None)
        model.revoked = True
        assert model.redeemed_by is not None
        assert self.run(self.store.access_token_claims(model.redeemed_by)) is None
        assert self.run(self.store.access_token_claims(access_token)) is None

    @rule()
    def redeem_unknown_code(self) -> None:
        for code in (secrets.token_urlsafe(16), new_secret_for(self.new_token())):
            access_token = new_secret_for(code.rpartition(".")[0] or "x")
            kind, grant = self.run(self.store.redeem_code(code, access_token, AT_TTL))
            assert (kind, grant) == ("missing", None)

    @invariant()
    def codes_match_the_model(self) -> None:
        for model in self.codes_model.values():
            if self.recs.get(model.token) is None:
                continue  # lapsed with its challenge
            at = _s(self.run(self.redis.hget(self.key(model.token), "at")))
            if model.revoked:
                assert at == "revoked"
            elif model.redeemed_by is not None:
                assert at == hashlib.sha256(model.redeemed_by.encode()).hexdigest()
            else:
                assert at is None

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def redis_matches_the_model_and_design(self) -> None:
        tokens = list(self.recs)
        if not tokens:
            return

        async def read() -> list[dict[bytes, bytes]]:
            async with self.redis.pipeline(transaction=False) as pipe:
                for token in tokens:
                    pipe.hgetall(self.key(token))
                result: list[dict[bytes, bytes]] = await pipe.execute()
                return result

        for token, raw in zip(tokens, self.run(read()), strict=True):
            rec = self.recs[token]
            record = {k.decode(): v.decode() for k, v in raw.items()}
            state = record.get("state")
            if rec is None:
                assert not record, (token, record)
                continue
            assert state == rec.state, (token, state, rec)
            assert record.get("next") == rec.next
            if state == "DENIED":
                assert record.get("outcome") == rec.outcome
                assert record.get("retryable") == str(int(rec.retryable))
            # Idempotent webhooks: one terminal transition, never back (observed, not modelled).
            last = self.seen.get(token)
            if not rec.corrupted and last is not None and state != last:
                assert state in EDGES.get(last, set()), (token, last, state)
            self.seen[token] = state
            # Code only after a verified webhook: APPROVED only through a SUCCESS that
            # matched this record.
            approved = state == "APPROVED" or record.get("consumed_as") == "approved"
            if approved:
                verdict, scan_ref, check_type, method = self.first[(token, record["webhook_id"])]
                assert verdict == "SUCCESS"
                assert scan_ref == rec.scan_ref
                assert check_type in ("", rec.type)
                assert method in ("", rec.method)
            # One completion: a record finishes as "approved" at most once.
            assert rec.approved_finishes <= 1
            if rec.approved_finishes:
                assert record.get("consumed_as") == "approved"


@pytest.mark.parametrize("backend", ["wire", "redis-py"])
def test_store_state_machine(redis_proc: RedisProcess, backend: str) -> None:
    global REDIS_URL, BACKEND
    REDIS_URL, BACKEND = redis_proc.url, backend
    run_state_machine_as_test(
        StoreMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
