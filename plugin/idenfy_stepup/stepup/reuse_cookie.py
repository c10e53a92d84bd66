"""The reuse cookie: which of this browser's recent face checks a client may be answered from.

One cookie per client (its name carries a hash of the client_id), signed with ``itsdangerous``
under a salt of its own (a challenge cookie never verifies as one, nor the reverse), HttpOnly,
SameSite=Lax, Path=/authorize, Secure like the challenge cookie. It holds the client_id and a
random secret; the record itself (subject, acr, auth_time) is in Redis under the secret's
SHA-256 (``Store.reuse_key``), so the cookie is a bearer credential for this browser and this
client only, and the cookie secret alone cannot mint one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.responses import Response

from ..settings import Settings

COOKIE_PREFIX = "stepup_reuse_"
SALT = "idenfy-stepup.reuse"
PATH = "/authorize"


class ReuseCookies:
    def __init__(self, secret: str, settings: Settings) -> None:
        self._signer = URLSafeTimedSerializer(secret, salt=SALT)
        self.secure = settings.cookie_secure()

    @staticmethod
    def new_secret() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def name(client_id: str) -> str:
        """The cookie of ``client_id``: a client_id may hold characters a cookie name may not."""
        return COOKIE_PREFIX + hashlib.sha256(client_id.encode()).hexdigest()[:32]

    def attach(self, response: Response, client_id: str, secret: str, max_age: int) -> None:
        value = self._signer.dumps({"c": client_id, "s": secret})
        response.set_cookie(
            self.name(client_id),
            value,
            max_age=max_age,
            path=PATH,
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def secret_of(self, cookies: Mapping[str, str], client_id: str, max_age: int) -> str:
        """The secret this browser's cookie for ``client_id`` proves (signed for that client,
        at most ``max_age`` seconds ago), or ""."""
        raw = cookies.get(self.name(client_id), "")
        if not raw or len(raw) > 4096:
            return ""
        try:
            data = self._signer.loads(raw, max_age=max_age)
        except BadData:
            return ""
        if not isinstance(data, dict) or data.get("c") != client_id:
            return ""
        secret = data.get("s")
        return secret if isinstance(secret, str) else ""
