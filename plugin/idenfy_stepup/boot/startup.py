"""Start-up failures as one line naming the setting (the checks run before serving: preflight.py).

Exit codes: 2, the configuration cannot work (a key that does not load, a secret that does
not decrypt); 3, a dependency is unreachable (Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

from ..store import StoreUnavailable

T = TypeVar("T")

BAD_CONFIG = 2
UNREACHABLE = 3
# How long start-up waits for Redis (e.g. starting beside it) before giving up.
REDIS_WAIT_SECONDS = 5.0


class StartupError(Exception):
    """The service cannot start; ``str()`` is what the operator reads (no secret in it)."""

    def __init__(self, message: str, exit_code: int = BAD_CONFIG) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def redis_location(url: str) -> str:
    """``url`` without its credentials (a password may be in the userinfo)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path or url
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


def unreachable(url: str) -> StartupError:
    return StartupError(f"redis.url: Redis at {redis_location(url)} is unreachable", UNREACHABLE)


async def with_redis(
    op: Callable[[], Awaitable[T]], url: str, on_wait: Callable[[], None] | None = None
) -> T:
    """``op()``, retried while Redis does not answer, for at most REDIS_WAIT_SECONDS."""
    deadline = time.monotonic() + REDIS_WAIT_SECONDS
    waited = False
    while True:
        try:
            return await op()
        except StoreUnavailable:
            if time.monotonic() >= deadline:
                raise unreachable(url) from None
            if not waited and on_wait is not None:
                on_wait()
            waited = True
            await asyncio.sleep(0.2)
