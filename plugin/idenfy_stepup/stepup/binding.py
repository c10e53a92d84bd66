"""Binding a challenge to the browser that started it: only the starting browser finishes.

The browser gets a random secret in an ``itsdangerous``-signed, HttpOnly, SameSite=Lax cookie
scoped to its challenge's path; Redis keeps only the secret's SHA-256. A second browser, even
one holding the challenge URL, has no cookie and cannot finish, cancel or retry.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from ..settings import Settings

COOKIE = "stepup_challenge"


class Binder:
    def __init__(self, secret: str, settings: Settings) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt="idenfy-stepup.challenge")
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
