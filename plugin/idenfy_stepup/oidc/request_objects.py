"""Signed request objects (OIDC Core §6.1, RFC 9101) — a way for a client to name the subject.

Only signed objects are accepted (the subject must come from the client, not the browser):
HS256 with the client secret, or RS256/ES256 with the client's registered ``jwks``.
``request_uri`` is refused with ``request_uri_not_supported``. Unlike plain RFC 9101, the
object's claims are merged over the query parameters, as OIDC Core §6.3.3 asks.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import InvalidClientError, OAuth2Error
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9101 import JWTAuthenticationRequest
from joserfc import jwt
from joserfc.jwk import Key, KeySet

if TYPE_CHECKING:
    from .models import Client
    from .server import StepUpServer

SIGNED_ALGS = ["HS256", "RS256", "ES256", "PS256"]
FROM_REQUEST_OBJECT = "_stepup_request_object"


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
        client: Client | None = None
        try:
            if request.payload.client_id is None or "request" not in request.payload.data:
                super().parse_authorization_request(server, request)
                return
            client = server.query_client(request.payload.client_id)
            if client is None:
                raise InvalidClientError(description="The client does not exist on this server.")
            self._shoud_proceed_with_request_object(request, client)
            raw = self._get_raw_request_object(request, client)
            decoded = self._decode_request_object(request, client, raw)
        except OAuth2Error as error:
            _allow_redirect(error, request, client)
            raise
        merged = {k: v for k, v in request.payload.data.items() if k != "request"}
        merged.update({k: _as_param(v) for k, v in decoded.claims.items()})
        merged[FROM_REQUEST_OBJECT] = "1"
        request.payload = BasicOAuth2Payload(merged)

    def get_request_object_signing_algorithms(self, client: Client) -> list[str]:
        return SIGNED_ALGS

    def get_client_require_signed_request_object(self, client: Client) -> bool:
        return False

    def get_server_metadata(self) -> dict[str, Any]:
        return {"request_object_signing_alg_values_supported": SIGNED_ALGS}

    def resolve_client_public_key(self, client: Client) -> Key | KeySet:
        return client.verification_keys()


def _as_param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _allow_redirect(error: OAuth2Error, request: OAuth2Request, client: Client | None) -> None:
    """A bad request object is reported to a registered redirect_uri (OIDC Core §6.2)."""
    uri = request.payload.data.get("redirect_uri")
    if client is not None and uri and client.check_redirect_uri(uri):
        error.redirect_uri = uri
        error.state = request.payload.data.get("state")
