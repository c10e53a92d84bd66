"""Signing keys: loaded once at start-up, published with a distinct ``kid`` each (JWKS).

Configured keys come from ``keys.signing``; when none are configured, one RS256 and one ES256
key are generated once and shared through Redis so every instance signs with the same keys.
Keys marked ``publish_only`` stay in the JWKS after rotation but sign nothing (OIDC Core §10.1.1).
Generated keys are rotated with ``idenfy-stepup keys rotate`` (boot/key_rotation.py): the
replaced keys stay published, public only, until retired, and every instance adopts the new
ring without a restart (:meth:`KeyRing.adopt`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey, import_key

from ..settings import KeysSettings, SigningAlg, SigningKey

ALGS: tuple[SigningAlg, ...] = ("RS256", "ES256")


def generate_jwk(alg: str) -> str:
    """A fresh private JWK (JSON) for ``alg``; its ``kid`` is the algorithm and the RFC 7638
    thumbprint, ``rs256-<thumbprint>``: unique, and never starting with ``-`` (a base64url
    thumbprint may), which ``idenfy-stepup keys retire KID`` would read as an option."""
    key: Key
    if alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    else:
        key = RSAKey.generate_key(2048, private=True)
    data = key.as_dict(private=True)
    data.update(alg=alg, use="sig", kid=f"{alg.lower()}-{key.thumbprint()}")
    return json.dumps(data)


@dataclass(frozen=True)
class _Ring:
    active: dict[str, Key]
    published: tuple[Key, ...]
    jwks_json: bytes
    public_set: KeySet


class KeyRing:
    """The active signing key per algorithm, and every key the JWKS publishes.

    Everything is read from one snapshot, which :meth:`adopt` replaces in a single assignment:
    a request sees the old ring or the new one, never the JWKS of one and the key of the other.
    """

    def __init__(self, active: dict[str, Key], published: tuple[Key, ...]) -> None:
        public = {"keys": [_public(k) for k in published]}
        self._ring = _Ring(
            active,
            published,
            json.dumps(public, separators=(",", ":")).encode(),
            KeySet.import_key_set(public),  # type: ignore[arg-type]
        )

    def adopt(self, other: KeyRing) -> None:
        """Sign and publish as ``other`` does from now on (a rotation of generated keys)."""
        self._ring = other._ring

    @property
    def active(self) -> dict[str, Key]:
        return self._ring.active

    @property
    def published(self) -> tuple[Key, ...]:
        return self._ring.published

    @property
    def jwks_json(self) -> bytes:
        return self._ring.jwks_json

    @property
    def public_set(self) -> KeySet:
        return self._ring.public_set

    def signing_key(self, alg: str) -> Key:
        return self.active.get(alg) or next(iter(self.active.values()))

    def algorithms(self) -> list[str]:
        return sorted(self.active)

    def sign(self, claims: dict[str, Any], alg: str) -> str:
        ring = self._ring
        key = ring.active.get(alg) or next(iter(ring.active.values()))
        alg = str(key.alg or alg)
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, [alg])

    def verify(self, token: str) -> dict[str, Any] | None:
        """Claims of a JWT this provider signed (signature only: callers check the rest)."""
        try:
            return dict(jwt.decode(token, self._ring.public_set, algorithms=list(ALGS)).claims)
        except (JoseError, ValueError):
            return None


def public_jwk(key: Key) -> dict[str, Any]:
    """The public half of ``key`` as the JWKS publishes it."""
    return _public(key)


def _public(key: Key) -> dict[str, Any]:
    data: dict[str, Any] = dict(key.as_dict(private=False))
    data.update(kid=key.kid, use="sig", alg=key.alg)
    return data


class KeyLoadError(ValueError):
    """A configured signing key that cannot be used; the message names its settings key."""


def keys_from_config(settings: KeysSettings) -> KeyRing:
    active: dict[str, Key] = {}
    published: list[Key] = []
    for i, entry in enumerate(settings.signing):
        key = _configured_key(entry, f"keys.signing[{i}]")
        published.append(key)
        if not entry.publish_only:
            active.setdefault(entry.alg, key)
    return KeyRing(active, tuple(published))


def _configured_key(entry: SigningKey, where: str) -> Key:
    try:
        pem = entry.pem()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise KeyLoadError(f"{where}.private_key_file: cannot read it ({reason})") from None
    params: Any = {"kid": entry.kid, "alg": entry.alg}
    kty = "EC" if entry.alg == "ES256" else "RSA"
    try:
        key: Key = (
            import_key(pem, "EC", parameters=params)
            if kty == "EC"
            else import_key(pem, "RSA", parameters=params)
        )
    except (ValueError, TypeError, JoseError):
        # The library's text may quote the key's bytes: say only what is wrong.
        raise KeyLoadError(f"{where}: the private key does not load (not a {kty} PEM)") from None
    if not key.is_private:
        raise KeyLoadError(f"{where}: a public key was given where a private key is needed")
    return key


async def load_keys(
    settings: KeysSettings,
    shared: Callable[[str, Callable[[], str]], Awaitable[str]],
    optional: Callable[[str], Awaitable[str | None]] | None = None,
) -> KeyRing:
    """Configured keys, or keys generated once and shared via ``shared(name, make)``; with
    ``optional(name)``, also the keys a rotation left published (``keys:ring``)."""
    if settings.signing:
        return keys_from_config(settings)
    keys: dict[str, Key] = {}
    for alg in ALGS:
        raw = await shared(f"jwk:{alg}", lambda alg=alg: generate_jwk(alg))  # type: ignore[misc]
        keys[alg] = import_key(json.loads(raw))
    ordered = {settings.generate_alg: keys[settings.generate_alg], **keys}
    passive: list[Key] = []
    if optional is not None:
        ring = await optional(RING_FIELD)
        if ring is not None:
            passive = [import_key(entry.jwk) for entry in parse_ring(ring).passive]
    return KeyRing(ordered, (*ordered.values(), *passive))


# The shared secrets' field that lists the keys a rotation replaced (public halves only), with
# when each was created and may be retired.
RING_FIELD = "keys:ring"


@dataclass(frozen=True)
class PassiveKey:
    """A replaced key, still in the JWKS so that what it signed keeps verifying."""

    jwk: dict[str, Any]  # public only: it signs nothing any more
    replaced_at: int
    retire_after: int

    @property
    def kid(self) -> str:
        return str(self.jwk.get("kid", ""))

    @property
    def alg(self) -> str:
        return str(self.jwk.get("alg", ""))


@dataclass(frozen=True)
class RingState:
    """What ``keys:ring`` holds: the passive keys, and when each generated key was created
    (keys generated before the first rotation have no date)."""

    passive: tuple[PassiveKey, ...] = ()
    created: dict[str, int] | None = None

    def dumps(self) -> str:
        return json.dumps(
            {
                "passive": [
                    {"jwk": p.jwk, "replaced_at": p.replaced_at, "retire_after": p.retire_after}
                    for p in self.passive
                ],
                "created": self.created or {},
            },
            separators=(",", ":"),
            sort_keys=True,
        )


def parse_ring(raw: str) -> RingState:
    """``keys:ring`` as stored (decrypted); ValueError when it is not what we write."""
    try:
        data = json.loads(raw)
        passive = tuple(
            PassiveKey(dict(p["jwk"]), int(p["replaced_at"]), int(p["retire_after"]))
            for p in data["passive"]
        )
        created = {str(k): int(v) for k, v in dict(data.get("created") or {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"{RING_FIELD} is not a key list") from exc
    if any("d" in p.jwk or "p" in p.jwk for p in passive):
        raise ValueError(f"{RING_FIELD} holds private key material")
    return RingState(passive, created)
