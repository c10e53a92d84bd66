"""Signed request objects (OIDC Core §6.1, RFC 9101) — a way for a client to name the subject.

Only signed objects are accepted (the subject must come from the client, not the browser):
HS256 with the client secret, or RS256/ES256 with the client's registered ``jwks``.
``request_uri`` is refused with ``request_uri_not_supported``.

Which parameters count: OIDC Core §6.3.3 merges the object over the query, RFC 9101 §5 uses the
object's only. We take RFC 9101's rule for every parameter that decides who is stepped up or to
which level (:data:`OBJECT_ONLY`): the query's copies are dropped, not merged, so an unsigned
``claims`` or ``acr_values`` beside the object can neither weaken the signed request nor break
it (bad JSON in a dropped copy is never parsed). The other parameters (``state``, ``nonce``,
``redirect_uri``, PKCE...) merge as OIDC Core says, the object's value winning; OIDC Core §6.1
requires some of them in the query as well. The verified claims are also kept apart on
``request.stepup_request_object``: only they may name the subject.

An object must be fresh and used once (RFC 9101 §10.8): ``exp`` is required and at most the
client's ``request_object_max_lifetime`` ahead; ``jti`` is required, and the authorize endpoint
remembers it in Redis until ``exp`` (see :func:`replay_marker`); ``aud`` must be our issuer.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9101 import JWTAuthenticationRequest
from authlib.oauth2.rfc9101.errors import InvalidRequestObjectError
from joserfc import jwt
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import Key, KeySet

from ..web.jsontext import has_lone_surrogate

if TYPE_CHECKING:
    from .models import Client
    from .server import StepUpServer

SIGNED_ALGS = ["HS256", "RS256", "ES256", "PS256"]
LEEWAY = 30  # seconds of clock skew allowed on exp, nbf and iat

# Parameters that decide the subject or the level: with a request object, only its own count.
# authorization_details too: what the person approves is the signed object's, or nothing.
OBJECT_ONLY = frozenset(
    {
        "acr_values",
        "claims",
        "login_hint",
        "id_token_hint",
        "max_age",
        "prompt",
        "authorization_details",
    }
)


class RequestObjects(JWTAuthenticationRequest):  # type: ignore[misc]
    def __init__(self, server: StepUpServer) -> None:
        super().__init__(support_request=True, support_request_uri=False)
        self.server = server
        issuer = server.settings.issuer
        # aud: the issuer only, as RFC 9101 §4 and FAPI 2.0 name it (an array containing it is
        # allowed). The authorization endpoint's URL was accepted once; no client needs it, and
        # one accepted value leaves nothing to argue about. exp and jti are required so that
        # every object can be remembered, and refused a second time, until it expires.
        self.claims_validator = jwt.JWTClaimsRegistry(
            leeway=LEEWAY,
            client_id={"essential": True},
            aud={"essential": True, "values": [issuer]},
            exp={"essential": True},
            jti={"essential": True},
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
            _check_object(decoded.claims, client, request)
            query = request.payload.data
            merged = {k: v for k, v in query.items() if k != "request" and k not in OBJECT_ONLY}
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


def _check_object(claims: dict[str, Any], client: Client, request: OAuth2Request) -> None:
    """What joserfc's registry cannot say: how far ahead exp may be, and valid text.

    The lifetime is bounded as ``exp - now``, not ``exp - iat``: the client picks ``iat`` as
    freely as ``exp``, so only ``exp - now`` bounds what matters, how long a captured object
    could be replayed and how long its jti must be remembered. ``iat`` and ``nbf`` stay
    optional; when present, joserfc refuses them in the future.
    """
    state = request.payload.data.get("state")
    limit = client.settings.request_object_max_lifetime
    if claims["exp"] > time.time() + limit + LEEWAY:
        raise InvalidRequestObjectError(
            description=f"The request object must expire within {limit} seconds.", state=state
        )
    if has_lone_surrogate(claims):
        raise InvalidRequestObjectError(
            description="The request object has text that is not valid Unicode.", state=state
        )


def replay_marker(claims: dict[str, Any], client_id: str) -> tuple[str, int]:
    """The Redis name (per client: jti values are the client's own) and how long to keep it.

    Kept until the object expires, plus the leeway its exp was checked with; at most
    ``request_object_max_lifetime + 2 * LEEWAY`` seconds, as exp was bounded.
    """
    ttl = max(int(claims["exp"] - time.time()), 0) + LEEWAY + 1
    return "request_object:" + json.dumps([client_id, claims["jti"]]), ttl


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
