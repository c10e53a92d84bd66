"""Typed adapters that present our settings and records as authlib's model mixins."""

from __future__ import annotations

import hmac
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin
from joserfc.jwk import Key, KeySet, OctKey

from ..settings import ClientSettings
from ..stepup.records import CodeGrant

# authlib names RFC 7523 client authentication "client_assertion_jwt"; OIDC calls it
# private_key_jwt (OIDC Core §9).
AUTHLIB_METHOD = {"private_key_jwt": "client_assertion_jwt"}


class Client(ClientMixin):  # type: ignore[misc]
    """One registered relying party (``clients:`` in the YAML)."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.client_id = settings.client_id
        method = settings.token_endpoint_auth_method
        self.auth_method = AUTHLIB_METHOD.get(method, method)
        self._keys = _client_keys(settings)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core §3.1.2.1: redirect_uri is REQUIRED, so there is no default.
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s == "openid")

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # Exact string comparison, query included (RFC 9700 §4.1.3).
        return redirect_uri in self.settings.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        secret = self.settings.client_secret
        if secret is None:
            return False
        return hmac.compare_digest(secret.get_secret_value().encode(), client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint != "token" or method == self.auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"

    def verification_keys(self) -> Key | KeySet:
        """Keys that may sign this client's request objects and client assertions."""
        if self._keys is None:
            raise LookupError("client has no keys")
        return self._keys


def _client_keys(settings: ClientSettings) -> Key | KeySet | None:
    if settings.jwks is not None:
        return KeySet.import_key_set(settings.jwks)  # type: ignore[arg-type]
    if settings.client_secret is not None:
        return OctKey.import_key(settings.client_secret.get_secret_value())
    return None


class AuthCode(AuthorizationCodeMixin):  # type: ignore[misc]
    """A redeemed code, as authlib's token grant expects to see it."""

    def __init__(self, grant: CodeGrant) -> None:
        self.grant = grant
        self.code_challenge = grant.code_challenge
        self.code_challenge_method = grant.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.grant.redirect_uri

    def get_scope(self) -> str:
        return self.grant.scope

    def get_nonce(self) -> str | None:
        return self.grant.nonce

    def get_auth_time(self) -> int:
        return self.grant.auth_time

    def get_acr(self) -> str:
        return self.grant.acr

    def get_amr(self) -> list[str]:
        # "face" (RFC 8176 §2): a live face was captured and checked by the vendor. An
        # enrollment adds "enroll", a value of ours (OIDC Core §2 leaves amr values to the
        # parties): the face became the reference instead of being compared with one.
        return ["face", "enroll"] if self.grant.enrollment else ["face"]


class User:
    """The person who passed the step-up: only the subject is known here."""

    def __init__(self, subject: str) -> None:
        self.subject = subject

    def get_user_id(self) -> str:
        return self.subject

    def claims(self) -> dict[str, Any]:
        return {"sub": self.subject}
