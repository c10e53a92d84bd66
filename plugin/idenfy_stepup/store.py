"""Everything Redis: keys, TTLs, atomic transitions, shared secrets and the wake-up channel.

No other module talks to Redis. Every key of one challenge carries the iDenfy token as its hash
tag (``stepup:{token}:…``) so each transition is one Lua script in one slot (design.md §4).
Any Redis failure surfaces as :class:`StoreUnavailable`, which callers turn into
``temporarily_unavailable`` / 503: the store fails closed (design.md §3, invariant 6).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from . import store_lua
from .stepup import CodeGrant, StepUpRequest

T = TypeVar("T")
TERMINAL = ("APPROVED", "DENIED", "CONSUMED", "RETRYING")


class StoreUnavailable(Exception):
    """Redis could not be reached or answered with an error; nothing was changed."""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Verdict:
    """A script's answer: ``kind`` plus the request and detail it returned, when any."""

    kind: str
    request: StepUpRequest | None = None
    detail: str = ""
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Peek:
    """A challenge as the browser's push channel and page see it."""

    state: str | None
    bound: bool
    request: StepUpRequest | None = None
    attempt: int = 1


class Store:
    """The provider's state in Redis. Construct with a connected client; see ``redis_client``."""

    def __init__(self, redis: Redis, prefix: str = "stepup") -> None:
        self.redis = redis
        self.prefix = prefix
        self.channel = f"{prefix}:events"
        self._webhook: AsyncScript = redis.register_script(store_lua.WEBHOOK)
        self._finish: AsyncScript = redis.register_script(store_lua.FINISH)
        self._retry_claim: AsyncScript = redis.register_script(store_lua.RETRY_CLAIM)
        self._retry_link: AsyncScript = redis.register_script(store_lua.RETRY_LINK)
        self._redeem: AsyncScript = redis.register_script(store_lua.REDEEM_CODE)
        self._put: AsyncScript = redis.register_script(store_lua.PUT_HASH)
        self._limits: AsyncScript = redis.register_script(store_lua.LIMITS)
        self._limits_refund: AsyncScript = redis.register_script(store_lua.LIMITS_REFUND)

    # -- keys ---------------------------------------------------------------------------------
    def challenge_key(self, token: str) -> str:
        return f"{self.prefix}:{{{token}}}:challenge"

    def hook_key(self, token: str, webhook_id: str) -> str:
        return f"{self.prefix}:{{{token}}}:hook:{digest(webhook_id)[:32]}"

    def code_key(self, code: str) -> str:
        return f"{self.prefix}:code:{{{digest(code)}}}"

    def token_key(self, access_token: str) -> str:
        return f"{self.prefix}:at:{{{digest(access_token)}}}"

    def subject_key(self, subject: str) -> str:
        return f"{self.prefix}:subject:{subject}"

    @property
    def secrets_key(self) -> str:
        return f"{self.prefix}:secrets"

    # -- plumbing -----------------------------------------------------------------------------
    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except (rexc.RedisError, OSError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def _put_hash(self, key: str, fields: Mapping[str, Any], ttl: int) -> None:
        """A new hash with its TTL, in one script: no key ever lives without an expiry."""
        args: list[Any] = [ttl]
        for name, value in fields.items():
            args += [name, value]
        await self._call(lambda: self._put(keys=[key], args=args))

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (rexc.RedisError, OSError):
            return False

    # -- challenges ---------------------------------------------------------------------------
    async def create_challenge(
        self,
        token: str,
        request: StepUpRequest,
        *,
        binding: str,
        attempt: int,
        expires_at: int,
        ttl: int,
        limits: tuple[str, ...] = (),
    ) -> None:
        """Store a PENDING challenge for a fresh vendor token; the record lives ``ttl`` s.

        ``limits``: the rate-limit counters this request spent, refunded if it succeeds.
        """
        key = self.challenge_key(token)
        fields: dict[str, Any] = {
            "state": "PENDING",
            "request": request.to_json(),
            "binding": binding,
            "attempt": attempt,
            "expires_at": expires_at,
            "scan_ref": request.scan_ref,
            "type": request.check_type,
            "method": request.method,
        }
        if limits:
            fields["limits"] = " ".join(limits)
        await self._put_hash(key, fields, ttl)

    async def peek(self, token: str, binding: str, *, full: bool = False) -> Peek:
        """State and whether ``binding`` owns the challenge; with ``full``, its request too."""
        fields = ["state", "binding", "request", "attempt"] if full else ["state", "binding"]
        reply = await self._call(lambda: self.redis.hmget(self.challenge_key(token), fields))
        state, owner = _text(reply[0]), _text(reply[1])
        bound = bool(binding) and owner == binding
        if not (full and bound and reply[2]):
            return Peek(state, bound)
        try:
            request = StepUpRequest.from_json(reply[2])
        except (ValueError, TypeError):
            return Peek(None, False)  # unreadable means "start again" (invariant 6)
        return Peek(state, bound, request, int(_text(reply[3]) or 1))

    async def finish(
        self,
        token: str,
        binding: str,
        *,
        mode: str,
        max_attempts: int,
        expiry_skew: int = 15,
        stale_retry: int = 30,
    ) -> Verdict:
        """Finish (or cancel, or give up) a challenge; consumes it unless a retry is offered."""
        args: list[Any] = [binding, int(time.time()), max_attempts, mode, expiry_skew, stale_retry]
        reply = await self._call(lambda: self._finish(keys=[self.challenge_key(token)], args=args))
        return _verdict(reply)

    async def claim_retry(self, token: str, binding: str, max_attempts: int) -> Verdict:
        args: list[Any] = [binding, max_attempts, int(time.time())]
        key = self.challenge_key(token)
        reply = await self._call(lambda: self._retry_claim(keys=[key], args=args))
        return _verdict(reply)

    async def link_retry(self, token: str, next_token: str | None) -> bool:
        key = self.challenge_key(token)
        args = [next_token or "", self.channel, token]
        reply = await self._call(lambda: self._retry_link(keys=[key], args=args))
        return bool(reply)

    # -- codes and access tokens --------------------------------------------------------------
    async def put_code(self, code: str, grant: CodeGrant, ttl: int) -> None:
        await self._put_hash(self.code_key(code), {"grant": grant.to_json()}, ttl)

    async def redeem_code(
        self, code: str, access_token: str, ttl: int
    ) -> tuple[str, CodeGrant | None]:
        """Atomically mark a code used and bind it to the access token about to be issued."""
        args: list[Any] = [digest(access_token), ttl]
        reply = await self._call(lambda: self._redeem(keys=[self.code_key(code)], args=args))
        kind = _text(reply[0]) or ""
        grant = CodeGrant.from_json(reply[1]) if kind == "ok" else None
        return kind, grant

    async def put_access_token(self, access_token: str, code: str, claims: str, ttl: int) -> None:
        record = {"claims": claims, "code": digest(code)}
        await self._put_hash(self.token_key(access_token), record, ttl)

    async def access_token_claims(self, access_token: str) -> str | None:
        """The userinfo claims, or None when unknown, expired, or revoked by a code replay."""
        claims, code_hash = await self._call(
            lambda: self.redis.hmget(self.token_key(access_token), ["claims", "code"])
        )
        if claims is None or code_hash is None:
            return None
        code_key = f"{self.prefix}:code:{{{_text(code_hash)}}}"
        bound = await self._call(lambda: self.redis.hget(code_key, "at"))
        return _text(claims) if _text(bound) == digest(access_token) else None

    # -- directory, secrets, replay markers ---------------------------------------------------
    async def get_subject(self, subject: str) -> str | None:
        return _text(await self._call(lambda: self.redis.get(self.subject_key(subject))))

    async def set_subject(self, subject: str, scan_ref: str) -> None:
        await self._call(lambda: self.redis.set(self.subject_key(subject), scan_ref))

    async def delete_subject(self, subject: str) -> bool:
        return bool(await self._call(lambda: self.redis.delete(self.subject_key(subject))))

    async def shared_secret(self, name: str, make: Callable[[], str]) -> str:
        """The value every instance on this Redis agrees on: the first writer wins."""
        current = await self._call(lambda: self.redis.hget(self.secrets_key, name))
        if current is None:
            await self._call(lambda: self.redis.hsetnx(self.secrets_key, name, make()))
            current = await self._call(lambda: self.redis.hget(self.secrets_key, name))
        value = _text(current)
        if value is None:
            raise StoreUnavailable("secret vanished")
        return value

    async def first_use(self, name: str, ttl: int) -> bool:
        """True the first time ``name`` is seen within ``ttl`` seconds (jti replay checks)."""
        key = f"{self.prefix}:once:{{{digest(name)}}}"
        return bool(await self._call(lambda: self.redis.set(key, "1", nx=True, ex=ttl)))

    # -- webhook details, abuse limits and lock-outs ------------------------------------------
    async def webhook_transition(
        self,
        *,
        token: str,
        webhook_id: str,
        verdict: str,
        outcome: str,
        retryable: bool,
        scan_ref: str | None,
        check_type: str | None,
        method: str | None,
        marker_ttl: int,
    ) -> WebhookResult:
        """Move PENDING → APPROVED/DENIED once (store_lua.WEBHOOK), and return what the handler
        needs next: the challenge's state, outcome, subject and the rate-limit counters its
        request spent."""
        keys = [self.challenge_key(token), self.hook_key(token, webhook_id)]
        args: list[Any] = [verdict, outcome, int(retryable), scan_ref or "", check_type or ""]
        args += [method or "", int(time.time()), marker_ttl, self.channel, token, webhook_id]
        reply = await self._call(lambda: self._webhook(keys=keys, args=args))
        texts = [_text(part) or "" for part in reply] + [""] * 6
        subject = ""
        if texts[4]:
            try:
                subject = StepUpRequest.from_json(texts[4]).subject
            except (ValueError, TypeError):
                subject = ""
        limits = tuple(k for k in texts[5].split() if k.startswith(f"{self.prefix}:rl:"))
        return WebhookResult(texts[0], texts[1], texts[2], texts[3], subject, limits)

    def rate_key(self, name: str, identity: str) -> str:
        """A limit's counter; every counter of one identity shares its hash tag (one slot)."""
        return f"{self.prefix}:rl:{{{digest(identity)}}}:{name}"

    def lock_key(self, subject: str) -> str:
        return f"{self.prefix}:lock:{{{digest(subject)}}}"

    async def hit_limits(
        self, counters: list[tuple[str, int, int]], lock: str | None = None
    ) -> LimitHit:
        """Count one event in each ``(key, count, seconds)`` counter of one identity, after
        checking the subject's lock-out key ``lock``. One round trip."""
        keys = ([lock] if lock else []) + [key for key, _, _ in counters]
        args: list[Any] = [1 if lock else 0] + [f"{c} {s * 1000}" for _, c, s in counters]
        reply = await self._call(lambda: self._limits(keys=keys, args=args))
        kind = _text(reply[0]) or ""
        if kind == "locked":
            return LimitHit(locked=True, wait=int(reply[1]) / 1000)
        if kind == "limited":
            return LimitHit(index=int(reply[1]) - 1, wait=max(int(reply[2]), 1) / 1000)
        return LimitHit()

    async def refund_rates(self, keys: tuple[str, ...]) -> None:
        """Give back one hit to each counter (a successful step-up never counts): one script
        per identity, sent together."""
        groups: dict[str, list[str]] = {}
        for key in keys:
            groups.setdefault(key[key.find("{") : key.find("}") + 1], []).append(key)
        calls = [self._limits_refund(keys=group) for group in groups.values()]
        await self._call(lambda: asyncio.gather(*calls))

    async def lock_subject(self, subject: str, seconds: int, *, extend: bool = True) -> None:
        """Lock ``subject`` out for ``seconds``; with ``extend=False`` an existing lock stays."""
        key = self.lock_key(subject)
        await self._call(lambda: self.redis.set(key, "1", ex=seconds, nx=not extend))


@dataclass(frozen=True, slots=True)
class LimitHit:
    """``wait`` > 0: refused for that many seconds, by the lock-out or counter ``index``."""

    wait: float = 0.0
    locked: bool = False
    index: int = -1


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What a webhook did (``result``, ``detail``) and the challenge it found."""

    result: str
    detail: str
    state: str = ""
    outcome: str = ""
    subject: str = ""
    limits: tuple[str, ...] = ()


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _verdict(reply: list[Any]) -> Verdict:
    kind = _text(reply[0]) or ""
    raw = reply[1] if len(reply) > 1 else None
    try:
        request = StepUpRequest.from_json(raw) if raw else None
    except (ValueError, TypeError):
        # Unreadable state means "start again", never "approved" (design.md §3.6).
        return Verdict("missing")
    detail = _text(reply[2]) if len(reply) > 2 else ""
    attempt = int(_text(reply[3]) or 1) if len(reply) > 3 else 1
    return Verdict(kind, request, detail or "", attempt)
