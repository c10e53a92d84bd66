"""SIGHUP: read the settings file again, validated as ``serve`` validates it at start-up.

A process keeps what it set up at start: the listening socket, the worker count, the Redis it
started or connected to for the embedded case, and the simulator beside it. Those settings are
carried over from the running ones (a warning names any the file changed), so a reload only
ever swaps the provider app, never the processes around it.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from pydantic import SecretStr

from ..boot.preflight import preflight
from ..boot.startup import StartupError
from ..settings import ConfigError, Settings, load_settings

log = logging.getLogger("idenfy_stepup")

# (section, field) pairs fixed at start-up: they decide which processes and sockets exist.
_AT_RESTART = (
    ("server", "host"),
    ("server", "port"),
    ("server", "workers"),
    ("redis", "url"),
    ("redis", "data_dir"),
    ("idenfy", "mode"),
    ("idenfy", "simulator"),
)


class ReloadRefused(Exception):
    """The new file cannot be used; ``str()`` is one line naming every problem."""


def with_simulator_key(settings: Settings) -> Settings:
    """In simulator mode with no signing key, sign with a fresh one known to both sides."""
    idenfy = settings.idenfy
    if idenfy.mode != "simulator" or idenfy.webhook_signing_key is not None:
        return settings
    key = SecretStr(secrets.token_hex(32))
    return settings.model_copy(
        update={"idenfy": idenfy.model_copy(update={"webhook_signing_key": key})}
    )


def _carry_over(new: Settings, current: Settings) -> Settings:
    changed = [
        f"{section}.{name}"
        for section, name in _AT_RESTART
        if getattr(getattr(new, section), name) != getattr(getattr(current, section), name)
    ]
    if changed:
        log.warning(
            "settings reload: %s changed: takes effect at the next restart",
            ", ".join(changed),
            extra={"event": "server.reload_deferred"},
        )
    sections = {}
    for section in ("server", "redis", "idenfy"):
        fixed = {
            name: getattr(getattr(current, section), name)
            for s, name in _AT_RESTART
            if s == section
        }
        sections[section] = getattr(new, section).model_copy(update=fixed)
    if current.idenfy.mode == "simulator":
        # The simulator already running signs webhooks with the key it was started with.
        key = current.idenfy.webhook_signing_key
        sections["idenfy"] = sections["idenfy"].model_copy(update={"webhook_signing_key": key})
    return new.model_copy(update=sections)


async def reread(path: str | Path, current: Settings) -> Settings:
    """The file's settings, checked like ``serve`` checks them (keys load, Redis answers,
    stored secrets decrypt); ReloadRefused when they cannot replace ``current``."""
    try:
        new = _carry_over(load_settings(path), current)
        await preflight(new)
    except ConfigError as exc:
        problems = "; ".join(f"{where or '(top level)'}: {what}" for where, what in exc.problems)
        raise ReloadRefused(f"{exc.source}: {problems}") from None
    except StartupError as exc:
        raise ReloadRefused("; ".join(str(exc).splitlines())) from None
    return new


def refused(exc: Exception) -> None:
    """The one line an operator reads when a reload is refused: the old settings stay."""
    reason = str(exc) if isinstance(exc, ReloadRefused) else type(exc).__name__
    log.error(
        "settings reload refused, still serving the previous settings: %s",
        reason,
        extra={"event": "server.reload_refused"},
    )
