"""Rotating the generated signing keys (``idenfy-stepup keys list | rotate | retire``), and how
every running instance follows a rotation without a restart.

The active key of each algorithm stays where it always was (``jwk:RS256``, ``jwk:ES256`` in the
shared secrets, sealed); a rotation replaces it and moves the old one's public half to
``keys:ring`` (sealed too, so that nobody with only Redis can slip a key of their own into the
JWKS), with a ``retire_after`` time: until then an id_token it signed may still be presented
(its lifetime, then ``id_token_hint_tolerance``). Each change is one script that applies only
if ``keys:version`` is still the one it was computed from, raises it and publishes
``KEYS_CHANGED`` on the wake-up channel. Instances reload on that message, and every 15 s
anyway (``SharedSecrets.watch``), so a missed message delays a reload by one round.

Configured keys (``keys.signing``) are not in Redis: they are rotated in the settings file and
taken up by SIGHUP.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from typing import Any

from joserfc.jwk import import_key

from ..oidc.keys import (
    ALGS,
    RING_FIELD,
    KeyRing,
    PassiveKey,
    RingState,
    generate_jwk,
    load_keys,
    parse_ring,
    public_jwk,
)
from ..settings import KeysSettings, Settings
from ..store import Store
from .sealed_secrets import CHECK_SECONDS, Sealer, SharedSecrets, live_problems
from .startup import StartupError

log = logging.getLogger("idenfy_stepup")

CONFIGURED = (
    "the signing keys are configured in the settings file (keys.signing): rotate them there "
    "(a new key, the old one with publish_only: true) and send SIGHUP; nothing was changed"
)
# A change computed from a version another change overtook is computed again, this often.
ATTEMPTS = 5


class KeyCommandRefused(Exception):
    """A key command that changes nothing; ``str()`` says why."""


def publish_window(keys: KeysSettings) -> int:
    """Seconds a replaced key must stay published: an id_token signed just before the rotation
    is valid for ``id_token_lifetime`` and then accepted as an id_token_hint for
    ``id_token_hint_tolerance`` (access tokens are opaque, but their lifetime bounds how long a
    client may keep acting on the id_token it came with), plus one check round for an instance
    that missed the wake-up message and still signed with the old key."""
    hint = keys.id_token_lifetime + keys.id_token_hint_tolerance
    return max(hint, keys.access_token_lifetime) + int(CHECK_SECONDS)


class KeyFollower:
    """Adopts a newer key ring from Redis into the running instance's KeyRing."""

    def __init__(self, keys: KeysSettings, shared: SharedSecrets, ring: KeyRing, version: int):
        self.keys = keys
        self.shared = shared
        self.ring = ring
        self.version = version

    async def follow(self) -> bool:
        """Reload if ``keys:version`` went up (it only goes up; a lower one is Redis having
        lost its data, which the split check reports): True when the ring changed."""
        version = await self.shared.store.keyring_version()
        if version <= self.version:
            return False
        try:
            fresh = await load_keys(self.keys, self.shared.get, self.shared.get_optional)
        except (StartupError, ValueError, TypeError, KeyError) as exc:
            # Not written by the key commands (a value that does not decrypt, or one stored
            # without the key): keep signing and publishing what this instance holds.
            log.error(
                "the signing keys in Redis changed but do not load; keeping the current ones: %s",
                exc if isinstance(exc, StartupError) else type(exc).__name__,
                extra={"event": "keys.reload_refused"},
            )
            self.version = version
            return False
        self.ring.adopt(fresh)
        self.version = version
        log.info(
            "signing keys reloaded",
            extra={"event": "keys.reloaded", "kids": ",".join(str(k.kid) for k in fresh.published)},
        )
        return True


@dataclass(frozen=True)
class KeyInfo:
    """One key as ``keys list`` shows it: never its material."""

    kid: str
    alg: str
    state: str  # active | published-only
    created: int | None
    retire_after: int | None
    source: str = "redis"  # or "settings"

    def as_json(self) -> dict[str, Any]:
        return {
            "kid": self.kid,
            "alg": self.alg,
            "state": self.state,
            "created": self.created,
            "retire_after": self.retire_after,
            "source": self.source,
        }


@dataclass(frozen=True)
class _Stored:
    """The generated keys as Redis holds them, decrypted."""

    version: str  # "" never changed
    active: dict[str, dict[str, Any]]  # alg -> private JWK
    ring: RingState


def _refuse_plain_text(settings: Settings) -> None:
    problems = live_problems(settings)
    if problems:
        raise StartupError("\n".join(problems))


async def _stored(store: Store, sealer: Sealer) -> _Stored:
    fields = await store.secrets()
    active: dict[str, dict[str, Any]] = {}
    for alg in ALGS:
        raw = fields.get(f"jwk:{alg}")
        if raw is not None:
            active[alg] = json.loads(sealer.open(f"jwk:{alg}", raw)[0])
    ring = RingState(created={})
    if RING_FIELD in fields:
        try:
            ring = parse_ring(sealer.open_sealed(RING_FIELD, fields[RING_FIELD])[0])
        except ValueError as exc:
            raise KeyCommandRefused(f"the stored {exc}") from None
    return _Stored(fields.get("keys:version", ""), active, ring)


async def list_keys(settings: Settings, store: Store | None) -> list[KeyInfo]:
    """The configured keys (``store`` unused), or the generated ones in Redis."""
    if settings.keys.signing:
        return [
            KeyInfo(k.kid, k.alg, _state(k.publish_only), None, None, "settings")
            for k in settings.keys.signing
        ]
    assert store is not None
    stored = await _stored(store, Sealer.from_settings(settings.keys))
    created = stored.ring.created or {}
    found = [
        KeyInfo(str(jwk.get("kid")), alg, "active", created.get(str(jwk.get("kid"))), None)
        for alg, jwk in stored.active.items()
    ]
    found += [
        KeyInfo(p.kid, p.alg, "published-only", created.get(p.kid), p.retire_after)
        for p in stored.ring.passive
    ]
    return found


async def rotate_keys(settings: Settings, store: Store, now: int) -> list[KeyInfo]:
    """A new active key per algorithm; the replaced ones stay published until their
    ``retire_after``. Returns the new keys."""
    if settings.keys.signing:
        raise KeyCommandRefused(CONFIGURED)
    _refuse_plain_text(settings)
    sealer = Sealer.from_settings(settings.keys)
    window = publish_window(settings.keys)
    for _ in range(ATTEMPTS):
        stored = await _stored(store, sealer)
        if set(stored.active) != set(ALGS):
            raise KeyCommandRefused(
                "no generated signing keys in Redis yet: start the service once, then rotate"
            )
        changes: dict[str, str] = {}
        created = dict(stored.ring.created or {})
        passive = list(stored.ring.passive)
        new: list[KeyInfo] = []
        for alg in ALGS:
            old = import_key(stored.active[alg])
            passive.append(PassiveKey(public_jwk(old), now, now + window))
            fresh = generate_jwk(alg)
            kid = str(json.loads(fresh)["kid"])
            created[kid] = now
            changes[f"jwk:{alg}"] = sealer.seal(f"jwk:{alg}", fresh)
            new.append(KeyInfo(kid, alg, "active", now, None))
        ring = RingState(tuple(passive), created)
        changes[RING_FIELD] = sealer.seal(RING_FIELD, ring.dumps())
        if await store.change_keyring(stored.version, changes):
            return new
    raise KeyCommandRefused("the keys kept changing under this command: try again")


async def retire_key(
    settings: Settings, store: Store, kid: str, now: int, *, force: bool = False
) -> PassiveKey:
    """Remove the passive key ``kid`` from the JWKS; refused for an active key, and inside its
    publish window unless ``force``."""
    if settings.keys.signing:
        raise KeyCommandRefused(CONFIGURED)
    _refuse_plain_text(settings)
    sealer = Sealer.from_settings(settings.keys)
    for _ in range(ATTEMPTS):
        stored = await _stored(store, sealer)
        active = {str(jwk.get("kid")): alg for alg, jwk in stored.active.items()}
        if kid in active:
            raise KeyCommandRefused(
                f"{kid} is the active {active[kid]} key: it signs new tokens; "
                "rotate first, then retire it once its publish window has passed"
            )
        found = [p for p in stored.ring.passive if p.kid == kid]
        if not found:
            raise KeyCommandRefused(f"no published key has the kid {kid}")
        key = found[0]
        if now < key.retire_after and not force:
            raise KeyCommandRefused(
                f"{kid} is still inside its publish window until {_when(key.retire_after)}: "
                "id_tokens it signed may still be presented (as id_token_hint) and verified "
                "against the JWKS; wait, or use --force"
            )
        created = {k: v for k, v in (stored.ring.created or {}).items() if k != kid}
        kept = tuple(p for p in stored.ring.passive if p.kid != kid)
        ring = replace(stored.ring, passive=kept, created=created)
        changes = {RING_FIELD: sealer.seal(RING_FIELD, ring.dumps())}
        if await store.change_keyring(stored.version, changes):
            return key
    raise KeyCommandRefused("the keys kept changing under this command: try again")


def _state(publish_only: bool) -> str:
    return "published-only" if publish_only else "active"


def _when(ts: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
