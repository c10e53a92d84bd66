"""The names that cross the boundary between the Lua scripts and Python, in one place.

The scripts (``store/lua/*.lua``) write and return these words; the store decodes replies into
these enums and the endpoints compare against them, so a typo is a NameError rather than a
branch that never matches. ``tests/test_store_states.py`` checks that every such word in the
Lua is a member here and every member is used by some script.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """A challenge record's ``state`` field."""

    PENDING = "PENDING"
    APPROVED = "APPROVED"
    DENIED = "DENIED"
    RETRYING = "RETRYING"
    CONSUMED = "CONSUMED"


class VerdictKind(StrEnum):
    """What the finish and retry-claim scripts answer (``Verdict.kind``)."""

    APPROVED = "approved"
    DENIED = "denied"
    RETRY = "retry"
    EXPIRED = "expired"
    CANCELED = "canceled"
    PENDING = "pending"
    MOVED = "moved"
    CONSUMED = "consumed"
    FORBIDDEN = "forbidden"
    MISSING = "missing"
    CLAIMED = "claimed"
    REFUSED = "refused"


class ConsumedAs(StrEnum):
    """How a CONSUMED challenge ended (its ``consumed_as`` field)."""

    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELED = "canceled"
    RETRIED = "retried"
    RETRY_FAILED = "retry_failed"


class HookResult(StrEnum):
    """What the webhook script did (``WebhookResult.result``), as the endpoint answers it."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    MISMATCH = "mismatch"
    UNKNOWN = "unknown"
    PENDING = "pending"


class HookVerdict(StrEnum):
    """What a verified webhook asks the webhook script for (its first argument)."""

    SUCCESS = "SUCCESS"
    DENIED = "DENIED"
    PENDING = "PENDING"


class IpMatch(StrEnum):
    """A webhook's ipAddress against the address that opened the challenge."""

    SAME = "same"
    DIFFERS = "differs"
    UNKNOWN = "unknown"


class FinishMode(StrEnum):
    """Which browser action the finish script runs for."""

    FINISH = "finish"
    GIVE_UP = "give_up"
    CANCEL = "cancel"


class Redemption(StrEnum):
    """What the code-redemption script answers."""

    OK = "ok"
    MISSING = "missing"
    REUSED = "reused"


class LimitAnswer(StrEnum):
    """What the abuse-limit script answers."""

    OK = "ok"
    LOCKED = "locked"
    LIMITED = "limited"


class OpenOp(StrEnum):
    """What the open-challenges script does before it counts."""

    COUNT = "count"
    ADD = "add"
    REMOVE = "remove"
