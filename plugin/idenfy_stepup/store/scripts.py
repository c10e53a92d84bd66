"""The Lua scripts behind every state transition: their arguments, and what their replies mean.

Each script is a file in ``store/lua/`` (its comment header names its KEYS, ARGV and reply),
read once at import. Each touches keys of one challenge (or one identity) only, all sharing
one hash tag, so it runs atomically in one slot on a single server, under Sentinel and in a
Cluster alike. A script's arguments are a ``NamedTuple`` whose ``argv()`` is the ARGV list in
the script's order; its reply, a flat array, is turned into a typed result by its decoder.
The words a script writes or returns are the enums of ``states.py``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from ..stepup.records import CodeGrant, StepUpRequest
from .states import HookResult, HookVerdict, LimitAnswer, OpenOp, Redemption, VerdictKind

Reply = Any
E = TypeVar("E", bound=StrEnum)
A = TypeVar("A", bound="Args", contravariant=True)
R = TypeVar("R", covariant=True)


class Args(Protocol):
    def argv(self) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class Script(Generic[A, R]):
    """One Lua script: its source (``lua/<name>.lua``), SHA-1 and reply decoder."""

    name: str
    decode: Callable[[Reply], R]
    source: str = field(init=False)
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        source = _included(_lua(f"{self.name}.lua"))
        object.__setattr__(self, "source", source)
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()  # EVALSHA's name
        object.__setattr__(self, "sha", sha)


def _lua(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name).read_text()


# A line ``--! include <name>`` in a script stands for ``lua/lib/<name>.lua``: helpers that
# several scripts share (Redis runs each script on its own, so each carries its copy).
_INCLUDE = re.compile(r"^--! include ([a-z_]+)$", re.MULTILINE)


def _included(source: str) -> str:
    return _INCLUDE.sub(lambda m: _lua(f"lib/{m.group(1)}.lua").rstrip("\n"), source)


def _flat(values: tuple[Any, ...]) -> list[Any]:
    """ARGV as Redis receives it: flags as 1/0, enum members as their plain text."""
    out: list[Any] = []
    for value in values:
        if isinstance(value, bool):
            out.append(int(value))
        elif isinstance(value, StrEnum):
            out.append(value.value)
        else:
            out.append(value)
    return out


# -- results ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Verdict:
    """A script's answer: ``kind`` plus the request and detail it returned, when any."""

    kind: VerdictKind
    request: StepUpRequest | None = None
    detail: str = ""
    attempt: int = 1
    ip: str = ""  # the opening address's tag, when this verdict's ending is still to be counted
    # An approval's: when its webhook was applied (0 unknown), and whether it carried allowed
    # riskTags or a differing address (such a check is never reused: stepup/reuse.py).
    auth_time: int = 0
    flagged: bool = False


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What a webhook did (``result``, ``detail``) and the challenge it found."""

    result: HookResult
    detail: str
    state: str = ""
    outcome: str = ""
    opened_by: str = ""  # the tag of the address that opened the challenge
    ip: str = ""  # the webhook's ipAddress against the opening address: an IpMatch, or ''
    expires_at: float | None = None  # the vendor session's end (unix s)
    request: StepUpRequest | None = None  # the challenge's request (None: gone or unreadable)


@dataclass(frozen=True, slots=True)
class LimitHit:
    """``wait`` > 0: refused for that many seconds, by the lock-out or counter ``index``."""

    wait: float = 0.0
    locked: bool = False
    index: int = -1


def text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _member(enum: type[E], value: Any, fallback: E) -> E:
    try:
        return enum(text(value) or "")
    except ValueError:
        return fallback


def _texts(reply: list[Any], width: int) -> list[str]:
    return ([text(part) or "" for part in reply] + [""] * width)[:width]


def decode_verdict(reply: list[Any]) -> Verdict:
    # A word no script returns is unreadable: "start again", never "approved".
    kind = _member(VerdictKind, reply[0], VerdictKind.MISSING)
    raw = reply[1] if len(reply) > 1 else None
    try:
        request = StepUpRequest.from_json(raw) if raw else None
    except (ValueError, TypeError):
        # Unreadable state means "start again", never "approved".
        return Verdict(VerdictKind.MISSING)
    detail = text(reply[2]) if len(reply) > 2 else ""
    attempt = int(text(reply[3]) or 1) if len(reply) > 3 else 1
    ip = text(reply[4]) if len(reply) > 4 else ""
    auth_time, flagged = _texts(reply[5:7], 2)
    return Verdict(
        kind,
        request,
        detail or "",
        attempt,
        ip or "",
        int(auth_time) if auth_time.isdigit() else 0,
        flagged == "1",
    )


def decode_webhook(reply: list[Any]) -> WebhookResult:
    texts = _texts(reply, 8)
    result = _member(HookResult, texts[0], HookResult.UNKNOWN)
    try:
        expires_at: float | None = float(texts[6]) if texts[6] else None
    except ValueError:
        expires_at = None
    try:
        request = StepUpRequest.from_json(texts[7]) if texts[7] else None
    except (ValueError, TypeError):
        request = None  # unreadable: as if gone
    return WebhookResult(
        result, texts[1], texts[2], texts[3], texts[4], texts[5], expires_at, request
    )


def decode_redemption(reply: list[Any]) -> tuple[Redemption, CodeGrant | None]:
    kind = _member(Redemption, reply[0], Redemption.MISSING)
    if kind != Redemption.OK:
        return kind, None
    try:
        request = StepUpRequest.from_json(reply[1])
        risk, ip_differs = _texts(reply[3:5], 2)
        grant = CodeGrant.from_request(
            request, int(text(reply[2]) or 0), tuple(risk.split()), ip_differs == "1"
        )
        return kind, grant
    except (ValueError, TypeError):
        return Redemption.MISSING, None  # unreadable: never a grant


def decode_limits(reply: list[Any]) -> LimitHit:
    kind = _member(LimitAnswer, reply[0], LimitAnswer.OK)
    if kind == LimitAnswer.LOCKED:
        return LimitHit(locked=True, wait=int(reply[1]) / 1000)
    if kind == LimitAnswer.LIMITED:
        return LimitHit(index=int(reply[1]) - 1, wait=max(int(reply[2]), 1) / 1000)
    return LimitHit()


# -- arguments ----------------------------------------------------------------------------------
class WebhookArgs(NamedTuple):
    verdict: HookVerdict
    outcome: str
    retryable: bool
    scan_ref: str
    check_type: str
    method: str
    now: int
    marker_ttl: int
    channel: str
    token: str
    webhook_id: str
    risk_denial: str  # the outcome a SUCCESS is denied with for its riskTags ('' none)
    risk_allowed: str  # the allowed riskTags, space-separated
    ip_tag: str  # the tag of the webhook's ipAddress identity ('' unknown)
    ip_policy: str
    unknown_tag: str  # the tag a challenge opened from no known address carries
    risk_retryable: bool
    ip_retryable: bool
    default_type: str  # the check type of a request that names none
    default_method: str  # the method of a request that names none

    def argv(self) -> list[Any]:
        return _flat(self)


class FinishArgs(NamedTuple):
    binding: str
    now: int
    max_attempts: int
    mode: str  # a FinishMode
    expiry_skew: int
    stale_retry: int
    code_digest: str  # '' when this browser derives no code
    code_exp: int
    legacy_binding: str  # the binding as a challenge written before kept it (hex)

    def argv(self) -> list[Any]:
        return _flat(self)


class RetryClaimArgs(NamedTuple):
    binding: str
    max_attempts: int
    now: int
    legacy_binding: str  # the binding as a challenge written before kept it (hex)

    def argv(self) -> list[Any]:
        return _flat(self)


class RetryLinkArgs(NamedTuple):
    next_token: str  # '' when the next attempt could not be created
    channel: str
    token: str
    refused: str  # without a next attempt, the outcome that ended it

    def argv(self) -> list[Any]:
        return _flat(self)


class RedeemArgs(NamedTuple):
    code_digest: str
    access_digest: str
    lifetime: int
    now: int
    client_id: str

    def argv(self) -> list[Any]:
        return _flat(self)


class CreateArgs(NamedTuple):
    ttl: int
    fields: tuple[tuple[str, str | int], ...]  # the request's parts among them

    def argv(self) -> list[Any]:
        args: list[Any] = [self.ttl]
        for name, value in self.fields:
            args += [name, value.value if isinstance(value, StrEnum) else value]
        return args


class LimitsArgs(NamedTuple):
    lock: bool
    now_ms: int
    add: bool
    counters: tuple[tuple[str, int, int], ...]  # (field, count, window in ms)

    def argv(self) -> list[Any]:
        args = _flat((self.lock, self.now_ms, self.add))
        for name, count, window_ms in self.counters:
            args += [name, count, window_ms]
        return args


class OpenArgs(NamedTuple):
    now: int
    op: OpenOp
    member: str  # the challenge's member (Store.open_member)
    expires_at: int
    legacy_member: str  # on remove, the member as a challenge opened before was added ('')

    def argv(self) -> list[Any]:
        return _flat(self)


class ReplaceSecretArgs(NamedTuple):
    name: str
    old: str
    new: str

    def argv(self) -> list[Any]:
        return _flat(self)


class KeyringArgs(NamedTuple):
    expected_version: str
    channel: str
    message: str
    changes: tuple[tuple[str, str], ...]  # field, value ("" deletes it)

    def argv(self) -> list[Any]:
        return [self.expected_version, self.channel, self.message] + [
            part for pair in self.changes for part in pair
        ]


WEBHOOK: Script[WebhookArgs, WebhookResult] = Script("webhook", decode_webhook)
FINISH: Script[FinishArgs, Verdict] = Script("finish", decode_verdict)
RETRY_CLAIM: Script[RetryClaimArgs, Verdict] = Script("retry_claim", decode_verdict)
RETRY_LINK: Script[RetryLinkArgs, bool] = Script("retry_link", bool)
REDEEM_CODE: Script[RedeemArgs, tuple[Redemption, CodeGrant | None]] = Script(
    "redeem_code", decode_redemption
)
CREATE: Script[CreateArgs, object] = Script("create", lambda reply: reply)
LIMITS: Script[LimitsArgs, LimitHit] = Script("limits", decode_limits)
OPEN_CHALLENGES: Script[OpenArgs, int] = Script("open_challenges", int)
REPLACE_SECRET: Script[ReplaceSecretArgs, bool] = Script("replace_secret", bool)
KEYRING: Script[KeyringArgs, int] = Script("keyring", int)
ALL: tuple[Script[Any, Any], ...] = (
    WEBHOOK,
    FINISH,
    RETRY_CLAIM,
    RETRY_LINK,
    REDEEM_CODE,
    CREATE,
    LIMITS,
    OPEN_CHALLENGES,
    REPLACE_SECRET,
    KEYRING,
)
