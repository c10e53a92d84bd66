"""Generated signing keys and the cookie secret, encrypted at rest in Redis.

Whoever reads Redis must not be able to mint id_tokens or forge challenge cookies, so the
secrets this provider generates (``jwk:RS256``, ``jwk:ES256``, ``cookie`` in ``{prefix}:secrets``)
are stored as ``v1.<kek id>.<nonce>.<ciphertext>`` (base64url), AES-256-GCM under the
operator's ``keys.encryption_key``. The field name is the associated data: a ciphertext moved
to another field does not decrypt.

A plain-text value written by an earlier version is re-encrypted in place when a key is set
(its value does not change, so neither does the JWKS). A value that does not decrypt is a
start-up error naming the setting, never a reason to generate new keys: that would give
instances on the same Redis different keys.

After Redis loses its data, an instance keeps the keys it holds in memory while a new one
generates fresh ones: the JWKS is split. ``SharedSecrets.check`` compares the two and makes
``/readyz`` fail until the operator restarts the odd instance out. A rotation of the generated
keys (``idenfy-stepup keys rotate``) also changes them in Redis, but raises ``keys:version``:
``check`` first follows it (``rotation``, boot/key_rotation.py), so a rotation is adopted, not
reported as a split.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..settings import KeysSettings, Settings, kek_bytes
from ..store import Store, StoreUnavailable
from .startup import BAD_CONFIG, StartupError

log = logging.getLogger("idenfy_stepup")

VERSION = "v1"
SETTING = "keys.encryption_key"
# How often an instance compares the secrets it holds with Redis (and /readyz on each probe).
CHECK_SECONDS = 15.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def kek_id(key: bytes) -> str:
    """A short public name of a key-encryption key: says which key sealed a value."""
    return _b64(hashlib.sha256(b"idenfy-stepup kek id\0" + key).digest()[:6])


def _aad(field: str) -> bytes:
    return f"idenfy-stepup secret {field}".encode()


class Sealer:
    """Encrypts with the current key; decrypts with the current or the previous one."""

    def __init__(self, current: bytes | None, previous: bytes | None = None) -> None:
        self.current = current
        self.keys = {kek_id(k): k for k in (current, previous) if k is not None}

    @classmethod
    def from_settings(cls, keys: KeysSettings) -> Sealer:
        current, previous = keys.encryption_key, keys.encryption_key_previous
        return cls(
            kek_bytes(current.get_secret_value()) if current is not None else None,
            kek_bytes(previous.get_secret_value()) if previous is not None else None,
        )

    def seal(self, field: str, plain: str) -> str:
        """``plain`` as stored in ``field``: encrypted when a key is set, else as it is."""
        if self.current is None:
            return plain
        nonce = os.urandom(12)
        sealed = AESGCM(self.current).encrypt(nonce, plain.encode(), _aad(field))
        return ".".join((VERSION, kek_id(self.current), _b64(nonce), _b64(sealed)))

    def open(self, field: str, stored: str) -> tuple[str, bool]:
        """The plain value of ``field`` and whether it should be stored again (re-sealed)."""
        if not stored.startswith(f"{VERSION}."):
            # Plain text from an earlier version (a JWK starts with "{", the cookie secret is
            # base64url: neither can start with "v1.").
            return stored, self.current is not None
        if self.current is None:
            raise self._error(field, "is encrypted in Redis, but keys.encryption_key is not set")
        parts = stored.split(".")
        if len(parts) != 4:
            raise self._error(field, "in Redis is not a valid encrypted value")
        _, kid, nonce, sealed = parts
        key = self.keys.get(kid)
        if key is None:
            raise self._error(field, f"in Redis was encrypted with another key (key id {kid})")
        try:
            plain = AESGCM(key).decrypt(_unb64(nonce), _unb64(sealed), _aad(field))
        except (InvalidTag, ValueError):
            raise self._error(
                field, "in Redis does not decrypt (altered, or another key)"
            ) from None
        return plain.decode(), kid != kek_id(self.current)

    def open_sealed(self, field: str, stored: str) -> tuple[str, bool]:
        """As :meth:`open`, for a field no earlier version wrote in plain text: with a key
        set, a plain value is refused (someone wrote it to Redis without the key)."""
        if self.current is not None and not stored.startswith(f"{VERSION}."):
            raise self._error(
                field,
                "in Redis is not encrypted (written without the key; if it was written before "
                "the key was set, delete that field of the secrets hash: its keys are unpublished)",
            )
        return self.open(field, stored)

    @staticmethod
    def _error(field: str, what: str) -> StartupError:
        return StartupError(f"{SETTING}: the stored secret {field} {what}", BAD_CONFIG)


def live_problems(settings: Settings) -> list[str]:
    """In live mode, secrets that would sit in Redis in plain text: refused."""
    if settings.idenfy.mode != "live" or settings.keys.encryption_key is not None:
        return []
    generated = [
        text
        for text, missing in (
            ("keys.signing is empty", not settings.keys.signing),
            ("cookies.secret is not set", settings.cookies.secret is None),
        )
        if missing
    ]
    if not generated:
        return []
    return [
        f"{SETTING}: required in idenfy.mode live when secrets are generated and kept in Redis "
        f"({', '.join(generated)}): set it to 32 random bytes (hex or base64url)"
    ]


class SharedSecrets:
    """The generated secrets this instance uses, and whether Redis still holds the same ones."""

    def __init__(self, store: Store, sealer: Sealer) -> None:
        self.store = store
        self.sealer = sealer
        self.held: dict[str, str] = {}
        self.split: list[str] = []
        # Adopts a newer key ring from Redis; True when it did (boot/key_rotation.py).
        self.rotation: Callable[[], Awaitable[bool]] | None = None
        self._poked = asyncio.Event()

    def poke(self) -> None:
        """Check now rather than at the next round (the wake-up channel said keys changed)."""
        self._poked.set()

    async def get_optional(self, field: str) -> str | None:
        """The plain value of ``field`` if Redis holds one (never created here); a field no
        earlier version wrote, so it must be sealed when a key is set."""
        stored = await self.store.stored_secret(field)
        if stored is None:
            self.held.pop(field, None)
            return None
        plain, reseal = self.sealer.open_sealed(field, stored)
        if reseal:
            await self.store.replace_secret(field, stored, self.sealer.seal(field, plain))
        self.held[field] = plain
        return plain

    async def get(self, field: str, make: Callable[[], str]) -> str:
        """The value every instance on this Redis agrees on (the first writer wins)."""
        stored = await self.store.shared_secret(field, lambda: self.sealer.seal(field, make()))
        plain, reseal = self.sealer.open(field, stored)
        if reseal:
            # Only if nobody changed it meanwhile; the value stays the same either way.
            await self.store.replace_secret(field, stored, self.sealer.seal(field, plain))
        self.held[field] = plain
        return plain

    async def check(self) -> list[str]:
        """Fields whose value in Redis is not the one held here (empty: all agree).

        A field Redis has lost is written back first, so instances started later adopt it.
        A newer key ring (a rotation) is adopted first, and again if the comparison found a
        difference, in case the rotation landed between the two reads.
        """
        if self.rotation is not None:
            await self.rotation()
        split = await self._compare()
        if split and self.rotation is not None and await self.rotation():
            split = await self._compare()
        if split and split != self.split:
            log.error(
                "the generated secrets this instance uses differ from those in Redis "
                "(Redis lost its data and another instance generated new ones): "
                "restart this instance",
                extra={"event": "secrets.split", "fields": ",".join(split)},
            )
        self.split = split
        return split

    async def _compare(self) -> list[str]:
        split: list[str] = []
        for field, mine in list(self.held.items()):
            stored = await self.store.shared_secret(field, self._resealer(field, mine))
            try:
                theirs, _ = self.sealer.open(field, stored)
            except StartupError:
                # Re-encrypted under a key this instance does not know (a rolling key
                # rotation): it cannot tell, and a rotation must not fail readiness.
                continue
            if not hmac.compare_digest(theirs.encode(), mine.encode()):
                split.append(field)
        return split

    def _resealer(self, field: str, plain: str) -> Callable[[], str]:
        return lambda: self.sealer.seal(field, plain)

    async def watch(self, every: float = CHECK_SECONDS) -> None:
        """Check every ``every`` seconds, and when poked, until cancelled (a Redis outage
        skips a round)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), every)
            self._poked.clear()
            try:
                await self.check()
            except StoreUnavailable:
                continue
