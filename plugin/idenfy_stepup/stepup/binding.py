"""Binding a challenge to the browser that started it: only the starting browser finishes.

The browser gets a random secret in an ``itsdangerous``-signed, HttpOnly, SameSite=Lax cookie
scoped to its challenge's path; Redis keeps only the secret's SHA-256. A second browser, even
one holding the challenge URL, has no cookie and cannot finish, cancel or retry.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, Signer, TimestampSigner, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ..settings import Settings

COOKIE = "stepup_challenge"


class _KeyedSigner(TimestampSigner):
    """itsdangerous' timestamp signer with its key derived once: itsdangerous derives the
    HMAC key from the secret again on every signature and every check (three per step-up),
    though the secret never changes. The cookie's format is itsdangerous' own."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._derived: dict[str | bytes | None, bytes] = {}

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        key = self._derived.get(secret_key)
        if key is None:
            key = self._derived[secret_key] = super().derive_key(secret_key)
        return key


class _Serializer(URLSafeTimedSerializer):
    """One signer per salt, made once (itsdangerous makes a new one for every call)."""

    default_signer = _KeyedSigner

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        signers: dict[str | bytes | None, Signer] = self.__dict__.setdefault("_signers", {})
        signer = signers.get(salt)
        if signer is None:
            signer = signers[salt] = super().make_signer(salt)
        return signer


class Binder:
    def __init__(self, secret: str, settings: Settings) -> None:
        self._signer = _Serializer(secret, salt="idenfy-stepup.challenge")
        self.max_age = settings.cookies.max_age
        self.secure = settings.cookie_secure()

    @staticmethod
    def new_secret() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def binding(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def attach(self, response: Response, token: str, secret: str) -> None:
        value = self._signer.dumps({"t": token, "s": secret})
        response.set_cookie(
            COOKIE,
            value,
            max_age=self.max_age,
            path=f"/challenge/{token}",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def secret_of(self, request: Request, token: str) -> str:
        """The browser secret the request's cookie proves for ``token``, or ""."""
        raw = request.cookies.get(COOKIE, "")
        if not raw or len(raw) > 4096:
            return ""
        try:
            data = self._signer.loads(raw, max_age=self.max_age)
        except BadSignature:
            return ""
        if not isinstance(data, dict) or data.get("t") != token:
            return ""
        secret = data.get("s")
        return secret if isinstance(secret, str) else ""

    def binding_of(self, request: Request, token: str) -> str:
        secret = self.secret_of(request, token)
        return self.binding(secret) if secret else ""
