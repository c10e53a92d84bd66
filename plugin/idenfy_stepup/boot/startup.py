"""Start-up failures as one line naming the setting, and the checks run before serving.

Exit codes: 2, the configuration cannot work (a key that does not load, a secret that does
not decrypt); 3, a dependency is unreachable (Redis).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from ..store import StoreUnavailable

if TYPE_CHECKING:
    from ..settings import Settings

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


def config_problems(settings: Settings) -> list[str]:
    """What makes the service fail at start-up whatever Redis holds (``check-config`` too)."""
    from ..settings.lint import load_errors

    return load_errors(settings)


async def preflight(settings: Settings) -> None:
    """Before serving: the configuration loads, Redis answers, and its secrets decrypt.

    Run by ``serve``/``demo`` before any server (or worker) starts, so a failure is one line
    and an exit code rather than a failed lifespan in every worker.
    """
    problems = config_problems(settings)
    if problems:
        raise StartupError("\n".join(problems), BAD_CONFIG)
    if settings.redis.url == "embedded":
        return  # started by the service itself: checked by its lifespan
    from ..store import Store, connect
    from .runtime import load_secrets

    redis = connect(settings.redis)
    try:
        store = Store(redis, settings.redis.key_prefix)
        await with_redis(lambda: load_secrets(settings, store), settings.redis.url)
    finally:
        await redis.aclose()
