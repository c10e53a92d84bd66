"""authlib's authorization server, configured for step-up: code flow, S256 PKCE, OIDC id_tokens.

authlib does the protocol checks (client, redirect_uri, response_type, PKCE, client
authentication, request objects); we supply the records. authlib is synchronous, so the
endpoints fetch what it needs from Redis first and hand it over on the request object.
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oauth2 import OAuth2Request
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
)
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.util import create_half_hash
from joserfc.jwk import Key, KeySet

from ..settings import Settings
from ..web.jsontext import has_lone_surrogate
from .keys import KeyRing
from .models import AuthCode, Client, User
from .request_objects import RequestObjects


class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only: ``plain`` (and a missing method, which means plain) is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            # RFC 7636 §4.2. ASCII only: authlib refuses (500) an error_description outside
            # RFC 6749 §4.1.2.1's character set.
            raise InvalidRequestError("code_challenge_method must be S256.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        # RFC 7636 §4.6: a missing or wrong verifier for a code bound to a challenge is
        # invalid_grant; a verifier for a code without one stays invalid_request (RFC 9700 §4.8.2).
        code = grant.request.authorization_code
        if code.code_challenge and not grant.request.form.get("code_verifier"):
            raise InvalidGrantError(description="Missing 'code_verifier'")
        try:
            super().validate_code_verifier(grant, result)
        except InvalidRequestError as exc:
            if code.code_challenge:
                raise InvalidGrantError(description=exc.description) from exc
            raise


class CodeFlow(AuthorizationCodeGrant):  # type: ignore[misc]
    """Token half of the code flow; codes are issued by the challenge endpoint, not authlib."""

    TOKEN_ENDPOINT_AUTH_METHODS = [
        "client_secret_basic",
        "client_secret_post",
        "client_assertion_jwt",
    ]

    def authenticate_token_endpoint_client(self) -> Client:
        """The client the token endpoint authenticated before it looked the code up
        (:meth:`StepUpServer.authenticate_token_client`); it is not authenticated twice."""
        client: Client | None = getattr(self.request, "stepup_client", None)
        if client is None:
            raise InvalidClientError(
                status_code=401, description="The client is not authenticated."
            )
        return client

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        grant = getattr(self.request, "stepup_code", None)
        if grant is None or grant.client_id != client.client_id:
            return None
        return AuthCode(grant)

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        """Nothing to do: the code was consumed atomically (once the client was authenticated)
        before authlib saw it."""

    def authenticate_user(self, authorization_code: AuthCode) -> User:
        return User(authorization_code.grant.subject)

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        raise NotImplementedError("codes are issued by the challenge endpoint")

    def generate_token(self, user: Any = None, scope: Any = None, **_: Any) -> dict[str, Any]:
        server: StepUpServer = self.server
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": self.request.stepup_access_token,
            "expires_in": server.settings.keys.access_token_lifetime,
            "scope": scope,
        }
        grant = self.request.authorization_code.grant
        if grant.authorization_details:
            # RFC 9396 §7: the details as granted (all of them: a face check approves the lot).
            token["authorization_details"] = grant.authorization_details
        return token


class IdToken(OpenIDCode):  # type: ignore[misc]
    """The id_token of OIDC Core §2 and §3.1.3.6, signed with a key whose ``kid`` is published."""

    def __init__(self, server: StepUpServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        # The nonce is echoed into the id_token; replay detection is the RP's (OIDC Core §15.5.2).
        return False

    def encode_id_token(self, token: dict[str, Any], request: OAuth2Request) -> str:
        client: Client = request.client
        code: AuthCode = request.authorization_code
        now = int(time.time())
        alg = client.settings.id_token_signed_response_alg
        claims: dict[str, Any] = {
            "iss": self.server.settings.issuer,
            "sub": code.grant.subject,
            "aud": client.client_id,
            "iat": now,
            "exp": now + self.server.settings.keys.id_token_lifetime,
            "auth_time": code.get_auth_time(),
            "acr": code.get_acr(),
            "amr": code.get_amr(),
        }
        if code.get_nonce():
            claims["nonce"] = code.get_nonce()
        # What was approved and this step-up's id, in the id_token too: a gateway that passes
        # only the id_token's claims on (mod_auth_openidc headers) can forward them.
        if code.grant.txn:
            claims["txn"] = code.grant.txn
        if code.grant.authorization_details:
            claims["authorization_details"] = code.grant.authorization_details
        # Present only when true: what the vendor flagged and the policy let through, a face
        # seen from another address than the one that opened the challenge (webhook_ip_policy
        # log), and an enrollment instead of a comparison. The RP decides what they mean for
        # its action.
        if code.grant.risk:
            claims["stepup_risk"] = list(code.grant.risk)
        if code.grant.ip_differs:
            claims["stepup_ip"] = "differs"  # never an address
        if code.grant.enrollment:
            claims["stepup_enrollment"] = True
        at_hash = create_half_hash(token["access_token"], alg)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode()
        return self.server.keys.sign(claims, alg)


MAX_ASSERTION_LIFETIME = 3600
PendingJti = tuple[str, int] | None  # (issuer:jti, exp) of a verified client assertion


class PrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """private_key_jwt (OIDC Core §9, RFC 7523 §2.2); each ``jti`` is then checked in Redis,
    before the code is looked up."""

    def __init__(self, server: StepUpServer) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.server = server

    def get_audiences(self) -> list[str]:
        # RFC 9126 §2: at /par the issuer, the token endpoint and the PAR endpoint identify us.
        issuer = self.server.settings.issuer
        return [issuer, f"{issuer}/token", f"{issuer}/par"]

    def verify_claims(self, claims: Any) -> None:
        # RFC 7523 §3 item 4 allows refusing an exp unreasonably far ahead, and we must: the jti
        # is remembered until exp, so a later exp would outlive its replay marker (and an exp
        # such as 1e20 is a TTL Redis refuses: a 503 after the code was already spent).
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > time.time() + MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="The client assertion expires too late.")
        if has_lone_surrogate(dict(claims)):
            # An escaped lone surrogate ("\ud800") in the jti would fail as a Redis key (a 500).
            raise InvalidClientError(description="The client assertion is not valid Unicode.")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        # authlib is synchronous: remember the jti; the token endpoint checks it in Redis
        # before the code is looked up (a replayed assertion is a failed authentication).
        self.server.pending_jti = (f"{claims['iss']}:{jti}", int(claims["exp"]))
        return True

    def resolve_client_public_key(self, client: Client) -> Key | KeySet:
        return client.verification_keys()

    def extract_assertion(self, assertion: str) -> Any:
        # authlib parses the unverified payload catching only ValueError; a JSON payload nested
        # past the recursion limit must be invalid_client, not a 500.
        try:
            return super().extract_assertion(assertion)
        except RecursionError:
            raise InvalidClientError(description="Invalid JWT assertion.") from None


class StepUpServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, settings: Settings, keys: KeyRing) -> None:
        super().__init__(scopes_supported=None)
        self.settings = settings
        self.keys = keys
        _check_client_algorithms(settings, keys)
        self.clients = {c.client_id: Client(c) for c in settings.clients}
        self.pending_jti: PendingJti = None
        self.register_grant(CodeFlow, [S256Challenge(required=False), IdToken(self)])
        self.register_client_auth_method("client_assertion_jwt", PrivateKeyJWT(self))
        self.register_extension(RequestObjects(self))

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def is_code_grant(self, request: OAuth2Request) -> bool:
        """A token request for the authorization_code grant (others: unsupported_grant_type)."""
        return bool(CodeFlow.check_token_endpoint(request))

    def authenticate_token_client(self, request: OAuth2Request) -> tuple[Client, PendingJti]:
        """Authenticate the client of a token request (client_secret_basic, client_secret_post
        or private_key_jwt) on its own, before the code is looked up; raises authlib's
        ``OAuth2Error`` (``invalid_client``). Also returns the assertion's ``jti`` and expiry
        for the endpoint's replay check (None for the secret methods)."""
        self.pending_jti = None  # set by PrivateKeyJWT during this synchronous call only
        try:
            client: Client = self.authenticate_client(request, CodeFlow.TOKEN_ENDPOINT_AUTH_METHODS)
            return client, self.pending_jti
        finally:
            self.pending_jti = None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Stored by the token endpoint once authlib has built the response."""

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal system here."""


def _check_client_algorithms(settings: Settings, keys: KeyRing) -> None:
    """Each client's ``id_token_signed_response_alg`` needs an active key of that algorithm.

    Otherwise the KeyRing would fall back to another algorithm and the client, which registered
    the one it verifies (OIDC Registration §2), would reject every id_token: refuse to start.
    """
    active = keys.algorithms()
    for i, client in enumerate(settings.clients):
        alg = client.id_token_signed_response_alg
        if alg not in active:
            raise ValueError(
                f"clients[{i}].id_token_signed_response_alg: {alg} has no active key in "
                f"keys.signing (active: {', '.join(active)})"
            )
