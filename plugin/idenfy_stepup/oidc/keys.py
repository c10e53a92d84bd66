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

from ..settings import KeysSettings, SigningAlg, SigningKey

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
