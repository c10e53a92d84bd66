"""Everything Redis: the store (keys, TTLs, atomic transitions), its Lua scripts and the names
they share with Python, the backends (the wire client of a single server, redis-py for
Sentinel and Cluster), the wake-up channel, and connecting to (or starting) Redis.

Callers import from here; the modules inside import each other directly.
"""

from .backends import RedisPyBackend, StoreBackend, WireBackend
from .connect import connect, open_backend
from .core import (
    EXPIRY_SKEW_SECONDS,
    KEYS_CHANGED,
    Peek,
    Store,
    StoreUnavailable,
    code_for,
    digest,
    new_secret_for,
    tag,
)
from .embedded import EmbeddedRedis, redis_server_binary
from .scripts import LimitHit, Verdict, WebhookResult
from .states import (
    ConsumedAs,
    FinishMode,
    HookResult,
    HookVerdict,
    IpMatch,
    LimitAnswer,
    OpenOp,
    Redemption,
    State,
    VerdictKind,
)
from .wakeups import Notifier, Wake
from .wire import WireRedis

__all__ = [
    "EXPIRY_SKEW_SECONDS",
    "KEYS_CHANGED",
    "ConsumedAs",
    "EmbeddedRedis",
    "FinishMode",
    "HookResult",
    "HookVerdict",
    "IpMatch",
    "LimitAnswer",
    "LimitHit",
    "Notifier",
    "OpenOp",
    "Peek",
    "Redemption",
    "RedisPyBackend",
    "State",
    "Store",
    "StoreBackend",
    "StoreUnavailable",
    "Verdict",
    "VerdictKind",
    "Wake",
    "WebhookResult",
    "WireBackend",
    "WireRedis",
    "code_for",
    "connect",
    "digest",
    "new_secret_for",
    "open_backend",
    "redis_server_binary",
    "tag",
]
