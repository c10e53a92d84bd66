"""Signed request objects (OIDC Core §6.1, RFC 9101) — a way for a client to name the subject.

Only signed objects are accepted (the subject must come from the client, not the browser):
HS256 with the client secret, or RS256/ES256 with the client's registered ``jwks``.
``request_uri`` is refused with ``request_uri_not_supported``. Unlike plain RFC 9101, the
object's claims are merged over the query parameters, as OIDC Core §6.3.3 asks; the verified
claims themselves are kept apart on ``request.stepup_request_object``, and only they may name
the subject (an unsigned ``login_hint`` or ``claims`` beside the object must not).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9101 import JWTAuthenticationRequest
from authlib.oauth2.rfc9101.errors import InvalidRequestObjectError
from joserfc import jwt
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import Key, KeySet

if TYPE_CHECKING:
    from .models import Client
    from .server import StepUpServer

SIGNED_ALGS = ["HS256", "RS256", "ES256", "PS256"]


class RequestObjects(JWTAuthenticationRequest):  # type: ignore[misc]
    def __init__(self, server: StepUpServer) -> None:
        super().__init__(support_request=True, support_request_uri=False)
        self.server = server
        issuer = server.settings.issuer
        self.claims_validator = jwt.JWTClaimsRegistry(
            leeway=30,
            client_id={"essential": True},
            aud={"values": [issuer, f"{issuer}/authorize"]},
        )

    def parse_authorization_request(self, server: Any, request: OAuth2Request) -> None:
        client_id = request.payload.client_id
        # Looked up first so that a refused request_uri, too, is reported to a registered
        # redirect_uri (OIDC Core §6.2) rather than as a page.
        client: Client | None = server.query_client(client_id) if client_id else None
        try:
            if client is None or "request" not in request.payload.data:
                super().parse_authorization_request(server, request)
                return
            self._shoud_proceed_with_request_object(request, client)
            raw = self._get_raw_request_object(request, client)
            decoded = self._decode(request, client, raw)
            merged = {k: v for k, v in request.payload.data.items() if k != "request"}
            merged.update({k: _as_param(v) for k, v in decoded.claims.items()})
        except OAuth2Error as error:
            _allow_redirect(error, request, client)
            raise
        request.payload = BasicOAuth2Payload(merged)
        # Kept off the payload: any payload entry may equally have come from the browser.
        request.stepup_request_object = dict(decoded.claims)

    def _decode(self, request: OAuth2Request, client: Client, raw: str) -> Any:
        try:
            return self._decode_request_object(request, client, raw)
        except OAuth2Error as error:
            if isinstance(error.__cause__, UnsupportedAlgorithmError):
                # An unsigned (alg=none) or unaccepted alg: authlib says invalid_request, but the
                # object is what is wrong: invalid_request_object (OIDC Core §3.1.2.6, §6.3.2).
                allowed = ", ".join(SIGNED_ALGS)
                raise InvalidRequestObjectError(
                    description=f"The request object must be signed with {allowed}.",
                    state=request.payload.data.get("state"),
                ) from error
            raise

    def get_request_object_signing_algorithms(self, client: Client) -> list[str]:
        return SIGNED_ALGS

    def get_client_require_signed_request_object(self, client: Client) -> bool:
        return False

    def get_server_metadata(self) -> dict[str, Any]:
        return {"request_object_signing_alg_values_supported": SIGNED_ALGS}

    def resolve_client_public_key(self, client: Client) -> Key | KeySet:
        return client.verification_keys()


def _as_param(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except RecursionError:
        # A claim nested past Python's recursion limit: not a request object we can use (and
        # not a 500).
        raise InvalidRequestObjectError(
            description="The request object is nested too deeply."
        ) from None


def _allow_redirect(error: OAuth2Error, request: OAuth2Request, client: Client | None) -> None:
    """A bad request object is reported to a registered redirect_uri (OIDC Core §6.2)."""
    uri = request.payload.data.get("redirect_uri")
    if client is not None and uri and client.check_redirect_uri(uri):
        error.redirect_uri = uri
        error.state = request.payload.data.get("state")
