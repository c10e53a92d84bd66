"""Everything Redis: keys, TTLs, atomic transitions, shared secrets and the wake-up channel.

No other module talks to Redis. Every key of one challenge carries the iDenfy token as its hash
tag (``stepup:{token}:…``) so each transition is one Lua script in one slot.
Any Redis failure surfaces as :class:`StoreUnavailable`, which callers turn into
``temporarily_unavailable`` / 503: the store fails closed. The Store speaks to Redis only
through a :class:`~.backends.StoreBackend`; the scripts and their typed arguments and replies
are in ``scripts.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import exceptions as rexc

from ..idenfy.client import valid_token
from ..observe import tracing
from ..observe.metrics import REDIS_ERRORS
from ..stepup.records import CodeGrant, StepUpRequest, stored_default
from . import scripts
from .backends import StoreBackend
from .request_parts import COUNT_FIELD, joined, part_fields, without_parts
from .scripts import Args, LimitHit, Script, Verdict, WebhookResult, text
from .states import ConsumedAs, FinishMode, HookVerdict, OpenOp, Redemption, State

T = TypeVar("T")
A = TypeVar("A", bound=Args)
R = TypeVar("R")
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
# The check type and method of a stored request that names none (its JSON leaves defaults
# out), which the webhook script compares a webhook's with.
DEFAULT_CHECK_TYPE = str(stored_default("check_type"))
DEFAULT_METHOD = str(stored_default("method"))


# What the key-ring script publishes on the wake-up channel when the generated signing keys
# changed: every instance reloads them. Not a vendor token (``!`` is never in one), so no
# challenge's waiter can be named by it.
KEYS_CHANGED = "!keys"


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


_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def stored_binding(binding: str) -> str:
    """A binding (the browser secret's SHA-256 in hex, stepup/binding.py) as a challenge keeps
    it: the same 32 bytes in base64url, 43 characters instead of 64. Anything else as is."""
    if not _HEX_DIGEST.fullmatch(binding):
        return binding
    return base64.urlsafe_b64encode(bytes.fromhex(binding)).rstrip(b"=").decode("ascii")


def _owns(stored: str | None, binding: str) -> bool:
    """Whether the challenge's stored binding is ``binding``'s (either layout: hex before)."""
    return bool(binding) and stored is not None and stored in (stored_binding(binding), binding)


def tag(value: str) -> str:
    """A short hash tag for a key: 128 bits of SHA-256, base64url (22 characters)."""
    raw = hashlib.sha256(value.encode()).digest()[:16]
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


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
    """The provider's state in Redis, over a backend (see ``connect.open_backend``), which it
    owns: ``aclose`` closes it."""

    def __init__(self, backend: StoreBackend, prefix: str = "stepup") -> None:
        self.backend = backend
        self.prefix = prefix
        self.channel = f"{prefix}:events"

    # -- keys ---------------------------------------------------------------------------------
    def challenge_key(self, token: str) -> str:
        return f"{self.prefix}:{{{token}}}:challenge"

    def request_key(self, token: str) -> str:
        """Where a challenge written before its request moved into its hash keeps the request
        (request_parts.py): still read, never written."""
        return f"{self.prefix}:{{{token}}}:request"

    def hook_key(self, token: str, webhook_id: str) -> str:
        return f"{self.prefix}:{{{token}}}:hook:{digest(webhook_id)[:32]}"

    def subject_key(self, subject: str) -> str:
        return f"{self.prefix}:subject:{subject}"

    @property
    def secrets_key(self) -> str:
        return f"{self.prefix}:secrets"

    # -- plumbing -----------------------------------------------------------------------------
    async def _run(self, script: Script[A, R], keys: list[str], args: A) -> R:
        """Run ``script``; its reply decoded (see scripts.py)."""
        with tracing.span(f"redis {script.name}", kind="client"):
            reply = await self._call(
                lambda: self.backend.evalsha(script, keys, args.argv()), script.name
            )
        return script.decode(reply)

    def _cmd(self, *args: Any) -> Awaitable[Any]:
        return self.backend.execute(*args)

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def _call(self, op: Callable[[], Awaitable[T]], operation: str = "command") -> T:
        """``op``'s result; a Redis failure is StoreUnavailable, counted by ``operation`` (a
        script's name, or ``command``)."""
        try:
            return await op()
        except (rexc.RedisError, OSError) as exc:
            REDIS_ERRORS.labels(operation).inc()
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

        One key: the request is in the hash too, cut into short parts (request_parts.py), so
        that every value is short and Redis stores the hash as a compact listpack; the scanRef,
        type and method a webhook must match are read from it. ``ip``: the address identity
        that opened it (stored as its :func:`tag`, never the address itself): a failure counts
        against it.
        """
        fields: dict[str, str | int] = {
            "state": State.PENDING,
            "binding": stored_binding(binding),
            "attempt": attempt,
            "expires_at": expires_at,
        }
        if ip:
            fields["ip"] = tag(ip)
        await self._create(token, request, fields, ttl)

    async def _create(
        self, token: str, request: StepUpRequest, fields: dict[str, str | int], ttl: int
    ) -> None:
        stored = tuple(fields.items()) + tuple(part_fields(request.to_json()))
        args = scripts.CreateArgs(ttl, stored)
        await self._run(scripts.CREATE, [self.challenge_key(token)], args)

    async def _record(self, token: str) -> tuple[dict[str, str], str | None]:
        """A challenge's fields and its request's JSON (None: none, or unreadable), in either
        layout: one HGETALL and, only for a challenge written before, its request's GET."""
        key, rkey = self.challenge_key(token), self.request_key(token)
        fields = _pairs(await self._call(lambda: self._cmd("HGETALL", key)), lenient=True)
        if COUNT_FIELD in fields:
            return without_parts(fields), joined(fields)
        if not fields:
            return {}, None  # gone (a request outlives no challenge: they share their TTL)
        legacy = await self._call(lambda: self._cmd("GET", rkey))
        return fields, None if legacy is None else _lenient(legacy)

    async def peek(self, token: str, binding: str, *, full: bool = False) -> Peek:
        """State, whether ``binding`` owns the challenge and its expiry; with ``full``, its
        request too. One HMGET (with ``full``, one HGETALL)."""
        key = self.challenge_key(token)
        if not full:
            fields = ("state", "binding", "expires_at")
            reply = await self._call(lambda: self._cmd("HMGET", key, *fields))
            bound = _owns(text(reply[1]), binding)
            return Peek(text(reply[0]), bound, expires_at=_number(reply[2]))

        record, raw = await self._record(token)
        state, owner = record.get("state"), record.get("binding")
        expires_at, attempt = record.get("expires_at"), record.get("attempt")
        bound = _owns(owner, binding)
        if not (bound and raw):
            return Peek(text(state) if raw or not bound else None, bound)
        try:
            request = StepUpRequest.from_json(raw)
        except (ValueError, TypeError):
            return Peek(None, False)  # unreadable means "start again"
        attempts = int(text(attempt) or 1)
        return Peek(text(state), bound, request, attempts, _number(expires_at))

    async def finish(
        self,
        token: str,
        binding: str,
        *,
        mode: FinishMode,
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
        args = scripts.FinishArgs(
            stored_binding(binding),
            now,
            max_attempts,
            mode,
            expiry_skew,
            stale_retry,
            digest(code) if code else "",
            now + code_lifetime,
            binding,
        )
        keys = [self.challenge_key(token), self.request_key(token)]
        return await self._run(scripts.FINISH, keys, args)

    async def claim_retry(self, token: str, binding: str, max_attempts: int) -> Verdict:
        args = scripts.RetryClaimArgs(
            stored_binding(binding), max_attempts, int(time.time()), binding
        )
        keys = [self.challenge_key(token), self.request_key(token)]
        return await self._run(scripts.RETRY_CLAIM, keys, args)

    async def link_retry(
        self, token: str, next_token: str | None, refused: str = "VENDOR_UNAVAILABLE"
    ) -> bool:
        """Link a claimed retry to its next attempt; without one, end it with the outcome
        ``refused`` (what a repeated finish then answers)."""
        args = scripts.RetryLinkArgs(next_token or "", self.channel, token, refused)
        return await self._run(scripts.RETRY_LINK, [self.challenge_key(token)], args)

    # -- codes and access tokens --------------------------------------------------------------
    # Both are ``<challenge token>.<random>``: they are found through the challenge they come
    # from, stored there only as SHA-256 (docs/architecture.md: "Why codes and access tokens
    # live in the challenge").
    async def redeem_code(
        self, code: str, access_token: str, ttl: int, client_id: str = ""
    ) -> tuple[Redemption, CodeGrant | None]:
        """Atomically mark a code used and bind it to the access token about to be issued.

        With ``client_id`` (the authenticated client), another client's code (or one whose
        request is unreadable) is ``missing`` and left unchanged, so its own client can still
        redeem it; checked in the same script, no read before."""
        token = _challenge_of(code)
        if token is None or _challenge_of(access_token) != token:
            return Redemption.MISSING, None
        args = scripts.RedeemArgs(
            digest(code), digest(access_token), ttl, int(time.time()), client_id
        )
        keys = [self.challenge_key(token), self.request_key(token)]
        return await self._run(scripts.REDEEM_CODE, keys, args)

    async def access_token_claims(self, access_token: str) -> str | None:
        """The userinfo claims, or None when unknown, expired, or revoked by a code replay."""
        token = _challenge_of(access_token)
        if token is None:
            return None
        record, raw = await self._record(token)
        bound, until = record.get("at"), record.get("at_exp", "")
        if bound != digest(access_token) or not until.isdigit() or int(until) <= time.time():
            return None
        try:
            subject = StepUpRequest.from_json(raw).subject if raw else None
        except (ValueError, TypeError):
            return None
        return json.dumps({"sub": subject}, separators=(",", ":")) if subject else None

    # -- reusing a recent face check (stepup/reuse.py) -----------------------------------------
    def reuse_key(self, secret: str) -> str:
        """The reuse record a browser's reuse cookie names: under its secret's SHA-256 only,
        as a challenge keeps only its binding's."""
        return f"{self.prefix}:reuse:{{{digest(secret)}}}"

    async def put_reuse(self, secret: str, record: str, ttl: int) -> None:
        await self._call(lambda: self._cmd("SET", self.reuse_key(secret), record, "EX", ttl))

    async def get_reuse(self, secret: str) -> str | None:
        return text(await self._call(lambda: self._cmd("GET", self.reuse_key(secret))))

    async def issue_reused_code(
        self,
        token: str,
        request: StepUpRequest,
        *,
        code: str,
        auth_time: int,
        code_lifetime: int,
        ttl: int,
    ) -> None:
        """Make ``code`` (``token.<random>``, see :func:`new_secret_for`) redeemable for a
        reused face check: one CREATE writes, under ``token`` (fresh and random, never a
        vendor token), an approval already consumed by its finish, exactly as FINISH leaves
        one, so that REDEEM_CODE redeems it unchanged (single use, the request's client,
        redirect_uri and PKCE, a replay revokes). It has no binding, so no browser can open or
        finish it as a challenge, and it is in no address's open set."""
        fields: dict[str, str | int] = {
            "state": State.CONSUMED,
            "consumed_as": ConsumedAs.APPROVED,
            "code": digest(code),
            "code_exp": int(time.time()) + code_lifetime,
            "auth_time": auth_time,
            "reused": 1,
        }
        await self._create(token, request, fields, ttl)

    # -- directory, secrets, replay markers ---------------------------------------------------
    async def get_subject(self, subject: str) -> str | None:
        return text(await self._call(lambda: self._cmd("GET", self.subject_key(subject))))

    async def set_subject(self, subject: str, scan_ref: str) -> None:
        await self._call(lambda: self._cmd("SET", self.subject_key(subject), scan_ref))

    async def delete_subject(self, subject: str) -> bool:
        return bool(await self._call(lambda: self._cmd("DEL", self.subject_key(subject))))

    async def shared_secret(self, name: str, make: Callable[[], str]) -> str:
        """The value every instance on this Redis agrees on: the first writer wins."""
        current = await self._call(lambda: self._cmd("HGET", self.secrets_key, name))
        if current is None:
            await self._call(lambda: self._cmd("HSETNX", self.secrets_key, name, make()))
            current = await self._call(lambda: self._cmd("HGET", self.secrets_key, name))
        value = text(current)
        if value is None:
            raise StoreUnavailable("secret vanished")
        return value

    async def replace_secret(self, name: str, old: str, new: str) -> bool:
        """Store ``new`` for ``name`` only if it still holds ``old`` (re-encryption in place)."""
        args = scripts.ReplaceSecretArgs(name, old, new)
        return await self._run(scripts.REPLACE_SECRET, [self.secrets_key], args)

    async def first_use(self, name: str, ttl: int) -> bool:
        """True the first time ``name`` is seen within ``ttl`` seconds (jti replay checks)."""
        key = f"{self.prefix}:once:{{{digest(name)}}}"
        return bool(await self._call(lambda: self._cmd("SET", key, "1", "NX", "EX", ttl)))

    # -- pushed authorization requests (RFC 9126) ---------------------------------------------
    def pushed_key(self, request_uri: str) -> str:
        """A pushed request, under its request_uri's SHA-256 (the value itself is a bearer
        secret of the client and the browser: Redis never holds it)."""
        return f"{self.prefix}:par:{digest(request_uri)}"

    async def push_request(
        self, request_uri: str, client_id: str, params: dict[str, str], ttl: int
    ) -> None:
        """Keep a validated pushed request for ``ttl`` seconds."""
        value = json.dumps({"c": client_id, "p": params}, separators=(",", ":"))
        key = self.pushed_key(request_uri)
        await self._call(lambda: self._cmd("SET", key, value, "EX", ttl))

    async def take_pushed(self, request_uri: str) -> tuple[str, dict[str, str]] | None:
        """The pushed request's client_id and parameters, removed in the same step (GETDEL):
        a request_uri is used once, whoever presents it. None: unknown, expired or used."""
        key = self.pushed_key(request_uri)
        raw = await self._call(lambda: self._cmd("GETDEL", key))
        try:
            record = json.loads(text(raw) or "null")
            client_id, params = record["c"], record["p"]
        except (ValueError, TypeError, KeyError):
            return None  # missing or unreadable: the same "not there"
        if not isinstance(client_id, str) or not isinstance(params, dict):
            return None
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in params.items()):
            return None
        return client_id, params

    # -- webhook details, abuse limits and lock-outs ------------------------------------------
    async def webhook_transition(
        self,
        *,
        token: str,
        webhook_id: str,
        verdict: HookVerdict,
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
        needs next: the challenge's state, outcome, the tag of the address that opened it, how
        ``ip`` compared with that address, its vendor session's end and its request.

        A SUCCESS becomes a denial in the same script when ``risk_denial`` (an outcome name)
        is set, or when ``ip_policy`` is ``deny`` and ``ip`` (an address identity, see
        ``limits.address_identity``; None: unknown) differs; ``risk_retryable`` and
        ``ip_retryable`` say whether those denials offer a new attempt. ``risk_allowed`` is
        recorded with an approval, for the id_token."""
        keys = [
            self.challenge_key(token),
            self.hook_key(token, webhook_id),
            self.request_key(token),
        ]
        args = scripts.WebhookArgs(
            verdict,
            outcome,
            retryable,
            scan_ref or "",
            check_type or "",
            method or "",
            int(time.time()),
            marker_ttl,
            self.channel,
            token,
            webhook_id,
            risk_denial,
            " ".join(risk_allowed),
            tag(ip) if ip else "",
            ip_policy,
            tag(UNKNOWN_ADDRESS),
            risk_retryable,
            ip_retryable,
            DEFAULT_CHECK_TYPE,
            DEFAULT_METHOD,
        )
        return await self._run(scripts.WEBHOOK, keys, args)

    async def challenge_request(self, token: str) -> StepUpRequest | None:
        """The request a challenge is for (None when it is gone or unreadable)."""
        _, raw = await self._record(token)
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

    @staticmethod
    def open_member(token: str) -> str:
        """A challenge in its address's open set: 96 bits of its token's SHA-256, 16
        characters instead of the token's 40 (the set holds one per challenge in progress;
        two tokens of one address share one with a chance of 2^-96)."""
        return tag(token)[:16]

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
        windows = tuple((name, count, seconds * 1000) for name, count, seconds in counters)
        args = scripts.LimitsArgs(lock, int(time.time() * 1000), add, windows)
        return await self._run(scripts.LIMITS, keys, args)

    async def open_challenges(
        self,
        identity_tag: str,
        op: OpenOp | str = OpenOp.COUNT,
        token: str = "",
        expires_at: int = 0,
    ) -> int:
        """How many challenges the address ``identity_tag`` holds open, after ``op``: ``add``
        (``token`` until ``expires_at``), ``remove`` (``token`` ended) or just ``count``."""
        op = OpenOp(op)
        member = self.open_member(token) if token else ""
        legacy = token if op == OpenOp.REMOVE else ""
        args = scripts.OpenArgs(int(time.time()), op, member, expires_at, legacy)
        return await self._run(scripts.OPEN_CHALLENGES, [self.open_key(identity_tag)], args)

    async def lock_subject(self, subject: str, seconds: int, *, extend: bool = True) -> None:
        """Lock ``subject`` out for ``seconds``; with ``extend=False`` an existing lock stays.

        The lock holds the subject's name (the key has only its tag), so that ``locks list``
        can name who is locked; the subject is already in Redis with each of its challenges."""
        key = self.lock_key(subject)
        args = ("SET", key, subject, "EX", seconds) + (() if extend else ("NX",))
        await self._call(lambda: self._cmd(*args))

    # -- the operator's commands (cli/operator.py): reads by SCAN, never on a request's path --
    async def scan(self, kind: str) -> list[str]:
        """Every key ``{prefix}:{kind}:…`` (SCAN, never KEYS)."""
        pattern = f"{glob_escape(self.prefix)}:{glob_escape(kind)}:*"
        return await self._call(lambda: self.backend.scan(pattern))

    async def subjects(self) -> list[tuple[str, str]]:
        """Every subject mapped in Redis, with its scanRef, by subject."""
        keys = await self.scan("subject")
        start = len(self.subject_key(""))
        found = []
        for at in range(0, len(keys), SUBJECTS_PER_ROUND_TRIP):
            batch = keys[at : at + SUBJECTS_PER_ROUND_TRIP]
            replies = await self._call(
                lambda batch=batch: self.backend.execute_many(*(("GET", k) for k in batch))  # type: ignore[misc]
            )
            for key, reply in zip(batch, replies, strict=True):
                scan_ref = text(reply)
                if scan_ref is not None:
                    found.append((key[start:], scan_ref))
        return sorted(found)

    async def set_subjects(self, pairs: list[tuple[str, str]]) -> None:
        """Map each subject to its scanRef (in one round trip on a single server)."""
        if pairs:
            commands = [("SET", self.subject_key(s), ref) for s, ref in pairs]
            await self._call(lambda: self.backend.execute_many(*commands))

    async def locks(self) -> list[tuple[str | None, int]]:
        """Every lock-out: the subject (None for a lock written before locks held it) and
        the seconds left."""
        found: list[tuple[str | None, int]] = []
        for key in await self.scan("lock"):
            value, left = await self._call(
                lambda key=key: self.backend.execute_many(("GET", key), ("TTL", key))  # type: ignore[misc]
            )
            subject = text(value)
            if subject is not None and int(left) > 0:
                found.append((None if subject == "1" else subject, int(left)))
        return sorted(found, key=lambda item: (item[0] is None, item[0] or "", item[1]))

    async def lock_left(self, subject: str) -> int:
        """Seconds left of the subject's lock-out (0: not locked)."""
        return max(0, int(await self._call(lambda: self._cmd("TTL", self.lock_key(subject)))))

    async def clear_lock(self, subject: str, *, reset_failures: bool = False) -> tuple[bool, bool]:
        """Lift the subject's lock-out, and with ``reset_failures`` forget its failed checks:
        whether there was a lock, and a failure counter."""
        lock = bool(await self._call(lambda: self._cmd("DEL", self.lock_key(subject))))
        reset = False
        if reset_failures:
            key, field = self.rate_key(subject), "fs"
            reset = bool(await self._call(lambda: self._cmd("HDEL", key, field, f"{field}:e")))
        return lock, reset

    async def counters(self, identity_tag: str) -> dict[str, str]:
        """The raw counter fields of one identity's hash (empty when it has none)."""
        reply = await self._call(lambda: self._cmd("HGETALL", self.rate_key_of(identity_tag)))
        return _pairs(reply)

    async def challenge_record(self, token: str) -> tuple[dict[str, str], str | None]:
        """A challenge's own fields and its request's JSON, as stored, in either layout
        (empty, None: gone; None alone: no readable request)."""
        return await self._record(token)

    # -- the generated signing keys' changes (boot/key_rotation.py) ----------------------------
    async def secrets(self) -> dict[str, str]:
        """Every field of the shared secrets' hash, as stored (sealed)."""
        return _pairs(await self._call(lambda: self._cmd("HGETALL", self.secrets_key)))

    async def stored_secret(self, name: str) -> str | None:
        """One field of the shared secrets' hash as stored; None when absent (never created)."""
        return text(await self._call(lambda: self._cmd("HGET", self.secrets_key, name)))

    async def keyring_version(self) -> int:
        """How many times the generated keys were changed (0: never)."""
        raw = await self.stored_secret("keys:version")
        return int(raw) if raw and raw.isdigit() else 0

    async def change_keyring(self, expected: str, changes: dict[str, str]) -> int:
        """Write ``changes`` to the shared secrets and tell every instance, if the key ring is
        still at version ``expected`` ("" never changed): the new version, 0 when another
        change came first."""
        args = scripts.KeyringArgs(expected, self.channel, KEYS_CHANGED, tuple(changes.items()))
        return await self._run(scripts.KEYRING, [self.secrets_key], args)


# GETs sent together by ``subjects``: one round trip per batch, never one huge reply.
SUBJECTS_PER_ROUND_TRIP = 500


def glob_escape(value: str) -> str:
    """``value`` matched literally in a SCAN pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in value)


def _pairs(reply: Any, *, lenient: bool = False) -> dict[str, str]:
    """An HGETALL reply (a flat list, or a dict from redis-py) as text; ``lenient``: bytes that
    are not UTF-8 read as U+FFFD (a damaged record then reads as unreadable, not as an error)."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = list(zip(reply[::2], reply[1::2], strict=True))
    if lenient:
        return {_lenient(k): _lenient(v) for k, v in items}
    return {str(text(k)): str(text(v)) for k, v in items}


def _lenient(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float | None:
    """A numeric field as Redis returns it (Lua's ``tonumber`` reads the same); None when
    missing or not a finite number."""
    raw = text(value)
    try:
        number = float(raw) if raw is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None
