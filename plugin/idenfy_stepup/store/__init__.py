"""Everything Redis: the store (keys, TTLs, atomic transitions), its Lua scripts, the wire
client of the hot path, the wake-up channel, and connecting to (or starting) Redis.

Callers import from here; the modules inside import each other directly.
"""

from .connect import connect
from .core import (
    EXPIRY_SKEW_SECONDS,
    LimitHit,
    Peek,
    Store,
    StoreUnavailable,
    Verdict,
    WebhookResult,
    code_for,
    digest,
    new_secret_for,
    tag,
)
from .embedded import EmbeddedRedis, redis_server_binary
from .wakeups import Notifier, Wake
from .wire import WireRedis

__all__ = [
    "EXPIRY_SKEW_SECONDS",
    "EmbeddedRedis",
    "LimitHit",
    "Notifier",
    "Peek",
    "Store",
    "StoreUnavailable",
    "Verdict",
    "Wake",
    "WebhookResult",
    "WireRedis",
    "code_for",
    "connect",
    "digest",
    "new_secret_for",
    "redis_server_binary",
    "tag",
]
