"""Signing keys: loaded once at start-up, published with a distinct ``kid`` each (JWKS).

Configured keys come from ``keys.signing``; when none are configured, one RS256 and one ES256
key are generated once and shared through Redis so every instance signs with the same keys.
Keys marked ``publish_only`` stay in the JWKS after rotation but sign nothing (OIDC Core §10.1.1).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, RSAKey, import_key

from ..config import KeysSettings, SigningAlg

ALGS: tuple[SigningAlg, ...] = ("RS256", "ES256")


def generate_jwk(alg: str) -> str:
    """A fresh private JWK (JSON) for ``alg``, its ``kid`` the RFC 7638 thumbprint."""
    key: Key
    if alg == "ES256":
        key = ECKey.generate_key("P-256", private=True)
    else:
        key = RSAKey.generate_key(2048, private=True)
    data = key.as_dict(private=True)
    data.update(alg=alg, use="sig", kid=key.thumbprint())
    return json.dumps(data)


class KeyRing:
    """The active signing key per algorithm, and every key the JWKS publishes."""

    def __init__(self, active: dict[str, Key], published: tuple[Key, ...]) -> None:
        self.active = active
        self.published = published
        public = {"keys": [_public(k) for k in published]}
        self.jwks_json = json.dumps(public, separators=(",", ":")).encode()
        self.public_set = KeySet.import_key_set(public)  # type: ignore[arg-type]

    def signing_key(self, alg: str) -> Key:
        return self.active.get(alg) or next(iter(self.active.values()))

    def algorithms(self) -> list[str]:
        return sorted(self.active)

    def sign(self, claims: dict[str, Any], alg: str) -> str:
        key = self.signing_key(alg)
        alg = str(key.alg or alg)
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, [alg])

    def verify(self, token: str) -> dict[str, Any] | None:
        """Claims of a JWT this provider signed (signature only: callers check the rest)."""
        try:
            return dict(jwt.decode(token, self.public_set, algorithms=list(ALGS)).claims)
        except (JoseError, ValueError):
            return None


def _public(key: Key) -> dict[str, Any]:
    data: dict[str, Any] = dict(key.as_dict(private=False))
    data.update(kid=key.kid, use="sig", alg=key.alg)
    return data


def keys_from_config(settings: KeysSettings) -> KeyRing:
    active: dict[str, Key] = {}
    published: list[Key] = []
    for entry in settings.signing:
        params: Any = {"kid": entry.kid, "alg": entry.alg}
        key: Key = (
            import_key(entry.pem(), "EC", parameters=params)
            if entry.alg == "ES256"
            else import_key(entry.pem(), "RSA", parameters=params)
        )
        published.append(key)
        if not entry.publish_only:
            active.setdefault(entry.alg, key)
    return KeyRing(active, tuple(published))


async def load_keys(
    settings: KeysSettings, shared: Callable[[str, Callable[[], str]], Awaitable[str]]
) -> KeyRing:
    """Configured keys, or keys generated once and shared via ``shared(name, make)``."""
    if settings.signing:
        return keys_from_config(settings)
    keys: dict[str, Key] = {}
    for alg in ALGS:
        raw = await shared(f"jwk:{alg}", lambda alg=alg: generate_jwk(alg))  # type: ignore[misc]
        keys[alg] = import_key(json.loads(raw))
    ordered = {settings.generate_alg: keys[settings.generate_alg], **keys}
    return KeyRing(ordered, tuple(ordered.values()))
