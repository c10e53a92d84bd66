"""The checks run before serving: the configuration loads, Redis answers, its secrets decrypt."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..settings.lint import load_errors
from ..store import Store, open_backend
from .runtime import load_secrets
from .startup import BAD_CONFIG, StartupError, with_redis

if TYPE_CHECKING:
    from ..settings import Settings


def config_problems(settings: Settings) -> list[str]:
    """What makes the service fail at start-up whatever Redis holds (``check-config`` too)."""
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
    store = Store(open_backend(settings.redis), settings.redis.key_prefix)
    try:
        await with_redis(lambda: load_secrets(settings, store), settings.redis.url)
    finally:
        await store.aclose()
