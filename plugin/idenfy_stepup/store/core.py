"""Everything Redis: keys, TTLs, atomic transitions, shared secrets and the wake-up channel.

No other module talks to Redis. Every key of one challenge carries the iDenfy token as its hash
tag (``stepup:{token}:…``) so each transition is one Lua script in one slot (design.md §4).
Any Redis failure surfaces as :class:`StoreUnavailable`, which callers turn into
``temporarily_unavailable`` / 503: the store fails closed (design.md §3, invariant 6).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from ..idenfy.client import valid_token
from ..stepup.records import CodeGrant, StepUpRequest
from . import scripts
from .wire import WireRedis

T = TypeVar("T")
# The identity of a request with no peer address (limits.address_identity("")); a challenge
# opened by one has no address to compare a webhook's ipAddress with.
UNKNOWN_ADDRESS = "unknown"
# How long after the vendor session's expiry a still-PENDING challenge is reported as expired
# (the finish script's ``expired``, and the moment the push stream says "done"). iDenfy stops
# accepting the face check at the expiry, so the wait only lets the webhook of a check finished
# in its last seconds land (the vendor sends it as soon as it has decided; the simulator within
# milliseconds). 5 s covers that delivery; each further second is a second an abandoned page
# shows "Waiting…" for a session that can no longer succeed. A webhook later than this finds
# the challenge expired (the user starts again): the safe side.
EXPIRY_SKEW_SECONDS = 5


class StoreUnavailable(Exception):
    """Redis could not be reached or answered with an error; nothing was changed."""


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_secret_for(token: str) -> str:
    """A code or access token for the challenge ``token``: ``token.<256 random bits>``."""
    return f"{token}.{secrets.token_urlsafe(32)}"


def code_for(token: str, browser_secret: str) -> str:
    """The authorization code a browser's finish of ``token`` issues: ``token.<HMAC>``.

    Derived from the browser's own cookie secret (which Redis never sees: it keeps only its
    SHA-256 as the binding), so a finish repeated by that browser names the same code, while
    nobody without the cookie can compute it.
    """
    mac = hmac.new(browser_secret.encode(), b"code:" + token.encode(), hashlib.sha256).digest()
    return f"{token}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode('ascii')}"


def _challenge_of(value: str | None) -> str | None:
    """The challenge token a code or access token names, if it has the right shape."""
    token, dot, random = (value or "").rpartition(".")
    if not dot or len(random) != 43 or not valid_token(token):
        return None
    return token


def tag(value: str) -> str:
    """A short hash tag for a key: 128 bits of SHA-256, base64url (22 characters)."""
    raw = hashlib.sha256(value.encode()).digest()[:16]
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Verdict:
    """A script's answer: ``kind`` plus the request and detail it returned, when any."""

    kind: str
    request: StepUpRequest | None = None
    detail: str = ""
    attempt: int = 1
    ip: str = ""  # the opening address's tag, when this verdict's ending is still to be counted


@dataclass(frozen=True, slots=True)
class Peek:
    """A challenge as the browser's push channel and page see it."""

    state: str | None
    bound: bool
    request: StepUpRequest | None = None
    attempt: int = 1
    # The vendor session's expiry (unix time); None when missing or unreadable.
    expires_at: float | None = None

    @property
    def expired_at(self) -> float | None:
        """When the finish script starts answering ``expired`` (None: no readable expiry)."""
        return None if self.expires_at is None else self.expires_at + EXPIRY_SKEW_SECONDS


class Store:
    """The provider's state in Redis. Construct with a connected client; see ``redis_client``."""

    def __init__(self, redis: Redis, prefix: str = "stepup", wire: WireRedis | None = None) -> None:
        self.redis = redis
        self.wire = wire  # the hot path's pipelined connection, for a single server
        self.prefix = prefix
        self.channel = f"{prefix}:events"
        self._webhook: AsyncScript = redis.register_script(scripts.WEBHOOK)
        self._finish: AsyncScript = redis.register_script(scripts.FINISH)
        self._retry_claim: AsyncScript = redis.register_script(scripts.RETRY_CLAIM)
        self._retry_link: AsyncScript = redis.register_script(scripts.RETRY_LINK)
        self._redeem: AsyncScript = redis.register_script(scripts.REDEEM_CODE)
        self._create: AsyncScript = redis.register_script(scripts.CREATE)
        self._limits: AsyncScript = redis.register_script(scripts.LIMITS)
        self._open: AsyncScript = redis.register_script(scripts.OPEN_CHALLENGES)

    # -- keys ---------------------------------------------------------------------------------
    def challenge_key(self, token: str) -> str:
        return f"{self.prefix}:{{{token}}}:challenge"

    def request_key(self, token: str) -> str:
        return f"{self.prefix}:{{{token}}}:request"

    def hook_key(self, token: str, webhook_id: str) -> str:
        return f"{self.prefix}:{{{token}}}:hook:{digest(webhook_id)[:32]}"

    def subject_key(self, subject: str) -> str:
        return f"{self.prefix}:subject:{subject}"

    @property
    def secrets_key(self) -> str:
        return f"{self.prefix}:secrets"

    # -- plumbing -----------------------------------------------------------------------------
    def _run(self, script: AsyncScript, keys: list[Any], args: list[Any]) -> Awaitable[Any]:
        if self.wire is not None:
            return self.wire.evalsha(script.sha, str(script.script), keys, args)
        return script(keys=keys, args=args)

    def _cmd(self, *args: Any) -> Awaitable[Any]:
        if self.wire is not None:
            return self.wire.execute(*args)
        return self.redis.execute_command(*args)  # type: ignore[no-untyped-call]

    async def _call(self, op: Callable[[], Awaitable[T]]) -> T:
        try:
            return await op()
        except (rexc.RedisError, OSError) as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def ping(self) -> bool:
        try:
            return bool(await self._cmd("PING"))
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
        ip: str = "",
    ) -> None:
        """Store a PENDING challenge for a fresh vendor token; the record lives ``ttl`` s.

        The request is its own key in the token's slot, so the hash keeps only short values
        (Redis stores it as a compact listpack). ``ip``: the address identity that opened it
        (stored as its :func:`tag`, never the address itself): a failure counts against it.
        """
        fields: dict[str, Any] = {
            "state": "PENDING",
            "binding": binding,
            "attempt": attempt,
            "expires_at": expires_at,
            "scan_ref": request.scan_ref,
            "type": request.check_type,
            "method": request.method,
        }
        if ip:
            fields["ip"] = tag(ip)
        args: list[Any] = [ttl, request.to_json()]
        for name, value in fields.items():
            args += [name, value]
        keys = [self.challenge_key(token), self.request_key(token)]
        await self._call(lambda: self._run(self._create, keys, args))

    async def peek(self, token: str, binding: str, *, full: bool = False) -> Peek:
        """State, whether ``binding`` owns the challenge and its expiry; with ``full``, its
        request too. One HMGET (and, with ``full``, a GET in the same write)."""
        key, rkey = self.challenge_key(token), self.request_key(token)
        fields = ("state", "binding", "expires_at", "attempt")
        if not full:
            reply = await self._call(lambda: self._cmd("HMGET", key, *fields[:3]))
            bound = bool(binding) and _text(reply[1]) == binding
            return Peek(_text(reply[0]), bound, expires_at=_number(reply[2]))

        async def read() -> list[Any]:
            if self.wire is not None:  # both leave in one write
                hmget = self.wire.execute("HMGET", key, *fields)
                return list(await asyncio.gather(hmget, self.wire.execute("GET", rkey)))
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hmget(key, list(fields))
                pipe.get(rkey)
                result: list[Any] = await pipe.execute()
                return result

        (state, owner, expires_at, attempt), raw = await self._call(read)
        bound = bool(binding) and _text(owner) == binding
        if not (bound and raw):
            return Peek(_text(state) if raw or not bound else None, bound)
        try:
            request = StepUpRequest.from_json(raw)
        except (ValueError, TypeError):
            return Peek(None, False)  # unreadable means "start again"
        attempts = int(_text(attempt) or 1)
        return Peek(_text(state), bound, request, attempts, _number(expires_at))

    async def finish(
        self,
        token: str,
        binding: str,
        *,
        mode: str,
        max_attempts: int,
        code: str = "",
        code_lifetime: int = 60,
        expiry_skew: int = EXPIRY_SKEW_SECONDS,
        stale_retry: int = 30,
    ) -> Verdict:
        """Finish (or cancel, or give up) a challenge; consumes it unless a retry is offered.

        ``code`` (see :func:`code_for`) becomes redeemable for ``code_lifetime`` seconds if,
        and only if, this call finishes an approval (verdict ``approved``); a later finish of
        the same browser, which derives the same code, gets ``approved`` again while that code
        is unredeemed and unexpired.
        """
        now = int(time.time())
        args: list[Any] = [binding, now, max_attempts, mode, expiry_skew, stale_retry]
        args += [digest(code) if code else "", now + code_lifetime]
        keys = [self.challenge_key(token), self.request_key(token)]
        reply = await self._call(lambda: self._run(self._finish, keys, args))
        return _verdict(reply)

    async def claim_retry(self, token: str, binding: str, max_attempts: int) -> Verdict:
        args: list[Any] = [binding, max_attempts, int(time.time())]
        keys = [self.challenge_key(token), self.request_key(token)]
        reply = await self._call(lambda: self._run(self._retry_claim, keys, args))
        return _verdict(reply)

    async def link_retry(
        self, token: str, next_token: str | None, refused: str = "VENDOR_UNAVAILABLE"
    ) -> bool:
        """Link a claimed retry to its next attempt; without one, end it with the outcome
        ``refused`` (what a repeated finish then answers)."""
        key = self.challenge_key(token)
        args = [next_token or "", self.channel, token, refused]
        reply = await self._call(lambda: self._run(self._retry_link, [key], args))
        return bool(reply)

    # -- codes and access tokens --------------------------------------------------------------
    # Both are ``<challenge token>.<random>``: they are found through the challenge they come
    # from, stored there only as SHA-256 (design-notes: "Codes and access tokens").
    async def code_client(self, code: str) -> str | None:
        """The client_id of the request a code names (None: no such request, or unreadable).
        Reads only: /token checks it before spending the code, so that another client's
        attempt leaves the code to its own client."""
        token = _challenge_of(code)
        if token is None:
            return None
        raw = await self._call(lambda: self._cmd("GET", self.request_key(token)))
        try:
            return StepUpRequest.from_json(raw).client_id if raw else None
        except (ValueError, TypeError):
            return None

    async def redeem_code(
        self, code: str, access_token: str, ttl: int
    ) -> tuple[str, CodeGrant | None]:
        """Atomically mark a code used and bind it to the access token about to be issued."""
        token = _challenge_of(code)
        if token is None or _challenge_of(access_token) != token:
            return "missing", None
        args: list[Any] = [digest(code), digest(access_token), ttl, int(time.time())]
        keys = [self.challenge_key(token), self.request_key(token)]
        reply = await self._call(lambda: self._run(self._redeem, keys, args))
        kind = _text(reply[0]) or ""
        if kind != "ok":
            return kind, None
        try:
            request = StepUpRequest.from_json(reply[1])
            extra = [_text(part) or "" for part in reply[3:5]] + ["", ""]
            grant = CodeGrant.from_request(
                request, int(_text(reply[2]) or 0), tuple(extra[0].split()), extra[1] == "1"
            )
            return kind, grant
        except (ValueError, TypeError):
            return "missing", None  # unreadable: never a grant (invariant 6)

    async def access_token_claims(self, access_token: str) -> str | None:
        """The userinfo claims, or None when unknown, expired, or revoked by a code replay."""
        token = _challenge_of(access_token)
        if token is None:
            return None
        key, rkey = self.challenge_key(token), self.request_key(token)
        (bound, until), raw = await self._call(
            lambda: asyncio.gather(self._cmd("HMGET", key, "at", "at_exp"), self._cmd("GET", rkey))
        )
        if _text(bound) != digest(access_token) or int(_text(until) or 0) <= time.time():
            return None
        try:
            subject = StepUpRequest.from_json(raw).subject if raw else None
        except (ValueError, TypeError):
            return None
        return json.dumps({"sub": subject}, separators=(",", ":")) if subject else None

    # -- directory, secrets, replay markers ---------------------------------------------------
    async def get_subject(self, subject: str) -> str | None:
        return _text(await self._call(lambda: self._cmd("GET", self.subject_key(subject))))

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

    async def replace_secret(self, name: str, old: str, new: str) -> bool:
        """Store ``new`` for ``name`` only if it still holds ``old`` (re-encryption in place)."""
        script = (
            "if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then "
            "redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) return 1 end return 0"
        )
        key = self.secrets_key
        return bool(await self._call(lambda: self.redis.eval(script, 1, key, name, old, new)))

    async def first_use(self, name: str, ttl: int) -> bool:
        """True the first time ``name`` is seen within ``ttl`` seconds (jti replay checks)."""
        key = f"{self.prefix}:once:{{{digest(name)}}}"
        return bool(await self._call(lambda: self._cmd("SET", key, "1", "NX", "EX", ttl)))

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
        risk_denial: str = "",
        risk_allowed: tuple[str, ...] = (),
        ip: str | None = None,
        ip_policy: str = "log",
        risk_retryable: bool = False,
        ip_retryable: bool = False,
    ) -> WebhookResult:
        """Move PENDING → APPROVED/DENIED once (scripts.WEBHOOK), and return what the handler
        needs next: the challenge's state, outcome, the tag of the address that opened it, and
        how ``ip`` compared with that address.

        A SUCCESS becomes a denial in the same script when ``risk_denial`` (an outcome name)
        is set, or when ``ip_policy`` is ``deny`` and ``ip`` (an address identity, see
        ``limits.address_identity``; None: unknown) differs; ``risk_retryable`` and
        ``ip_retryable`` say whether those denials offer a new attempt. ``risk_allowed`` is
        recorded with an approval, for the id_token."""
        keys = [self.challenge_key(token), self.hook_key(token, webhook_id)]
        args: list[Any] = [verdict, outcome, int(retryable), scan_ref or "", check_type or ""]
        args += [method or "", int(time.time()), marker_ttl, self.channel, token, webhook_id]
        args += [risk_denial, " ".join(risk_allowed), tag(ip) if ip else "", ip_policy]
        args += [tag(UNKNOWN_ADDRESS), int(risk_retryable), int(ip_retryable)]
        reply = await self._call(lambda: self._run(self._webhook, keys, args))
        texts = [_text(part) or "" for part in reply] + [""] * 6
        return WebhookResult(texts[0], texts[1], texts[2], texts[3], texts[4], texts[5])

    async def challenge_request(self, token: str) -> StepUpRequest | None:
        """The request a challenge is for (None when it is gone or unreadable)."""
        raw = await self._call(lambda: self._cmd("GET", self.request_key(token)))
        try:
            return StepUpRequest.from_json(raw) if raw else None
        except (ValueError, TypeError):
            return None

    def rate_key(self, identity: str) -> str:
        """The hash of every counter of one identity (a client address or a subject)."""
        return self.rate_key_of(tag(identity))

    def rate_key_of(self, identity_tag: str) -> str:
        return f"{self.prefix}:rl:{{{identity_tag}}}"

    def lock_key(self, subject: str) -> str:
        """The subject's lock-out: same hash tag as its counters, so one script reads both."""
        return f"{self.prefix}:lock:{{{tag(subject)}}}"

    def open_key(self, identity_tag: str) -> str:
        """An address's open challenges: same hash tag as its counters."""
        return f"{self.prefix}:open:{{{identity_tag}}}"

    async def hit_limits(
        self,
        identity: str,
        counters: list[tuple[str, int, int]],
        *,
        lock: bool = False,
        add: bool = True,
    ) -> LimitHit:
        """Check each ``(field, count, seconds)`` counter of ``identity`` (over the limit: it
        already holds ``count`` events) and, with ``add``, count one event in it; first its
        lock-out when ``lock``. One round trip."""
        return await self.hit_limits_of(tag(identity), counters, lock=lock, add=add)

    async def hit_limits_of(
        self,
        identity_tag: str,
        counters: list[tuple[str, int, int]],
        *,
        lock: bool = False,
        add: bool = True,
    ) -> LimitHit:
        """:meth:`hit_limits` for an identity known only by its tag (as a challenge stores it)."""
        keys = [f"{self.prefix}:lock:{{{identity_tag}}}"] if lock else []
        keys.append(self.rate_key_of(identity_tag))
        args: list[Any] = [1 if lock else 0, int(time.time() * 1000), 1 if add else 0]
        for name, count, seconds in counters:
            args += [name, count, seconds * 1000]
        reply = await self._call(lambda: self._run(self._limits, keys, args))
        kind = _text(reply[0]) or ""
        if kind == "locked":
            return LimitHit(locked=True, wait=int(reply[1]) / 1000)
        if kind == "limited":
            return LimitHit(index=int(reply[1]) - 1, wait=max(int(reply[2]), 1) / 1000)
        return LimitHit()

    async def open_challenges(
        self, identity_tag: str, op: str = "count", token: str = "", expires_at: int = 0
    ) -> int:
        """How many challenges the address ``identity_tag`` holds open, after ``op``: ``add``
        (``token`` until ``expires_at``), ``remove`` (``token`` ended) or just ``count``."""
        args: list[Any] = [int(time.time()), op, token, expires_at]
        key = [self.open_key(identity_tag)]
        return int(await self._call(lambda: self._run(self._open, key, args)))

    async def lock_subject(self, subject: str, seconds: int, *, extend: bool = True) -> None:
        """Lock ``subject`` out for ``seconds``; with ``extend=False`` an existing lock stays."""
        key = self.lock_key(subject)
        args = ("SET", key, "1", "EX", seconds) + (() if extend else ("NX",))
        await self._call(lambda: self._cmd(*args))


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
    opened_by: str = ""  # the tag of the address that opened the challenge
    ip: str = ""  # the webhook's ipAddress against the opening address: same|differs|unknown


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float | None:
    """A numeric field as Redis returns it (Lua's ``tonumber`` reads the same); None when
    missing or not a finite number."""
    text = _text(value)
    try:
        number = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


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
    ip = _text(reply[4]) if len(reply) > 4 else ""
    return Verdict(kind, request, detail or "", attempt, ip or "")
