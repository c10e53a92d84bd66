"""Python's authlib as a relying party: ``AsyncOAuth2Client`` over real HTTP against the stack.

authlib makes the authorization URL (PKCE S256 from ``code_verifier``), checks ``state`` when it
parses the callback and authenticates to ``/token`` (``client_secret_basic``, or
``private_key_jwt`` through its ``PrivateKeyJWT`` auth), the same client authentication when it
pushes a request to ``/par`` (RFC 9126; authlib has no PAR helper, so the RP posts the
parameters of the URL authlib built). What authlib's client leaves to the RP
is done here as the demo RP does it: RFC 9207 ``iss`` on the callback, and the id_token verified
with joserfc against the published JWKS, then validated by ``authlib.oidc.core.CodeIDToken``
(``iss``, ``aud``, ``exp``, ``nonce``, ``at_hash``, ``azp``; ``sub`` and ``acr`` as required
values, since the subject came from a plain ``login_hint``).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import pytest_asyncio
from authlib.common.security import generate_token
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.oauth2.rfc6749.errors import MismatchingStateException
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidClaimError
from joserfc.jwk import KeySet, RSAKey

from .harness.servers import TLS, Stack
from .harness.settings import REDIRECT_URI, client_entry, client_secret

with warnings.catch_warnings():
    # authlib 1.9 prefers the httpx2 fork and warns when it falls back to httpx (which this
    # project pins); the import-time warning is about packaging, not about this test.
    warnings.filterwarnings("ignore", "The httpx module", AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACR = "urn:idenfy:stepup:face"
RP_KEY = RSAKey.generate_key(2048, parameters={"kid": "authlib-rp", "alg": "RS256", "use": "sig"})
PAYMENT = {
    "type": "payment_initiation",
    "instructedAmount": {"amount": "500.00", "currency": "EUR"},
    "creditorName": "ACME Ltd",
    "remittanceInformationUnstructured": "Invoice 42",
}
PAYMENT_TYPE = {
    "schema": {
        "type": "object",
        "required": ["instructedAmount", "creditorName"],
        "properties": {
            "instructedAmount": {
                "type": "object",
                "properties": {"amount": {"type": "string"}, "currency": {"type": "string"}},
            },
            "creditorName": {"type": "string"},
            "remittanceInformationUnstructured": {"type": "string"},
        },
    },
    "display": "Pay {{ instructedAmount.amount }} {{ instructedAmount.currency }} to "
    "{{ creditorName }}",
}
SETTINGS: dict[str, Any] = {
    "authorization_details": {"types": {"payment_initiation": PAYMENT_TYPE}},
    "clients": [
        client_entry(
            "shop", subject_hints=["login_hint"], authorization_details_types=["payment_initiation"]
        ),
        {
            "client_id": "jwt",
            "redirect_uris": [REDIRECT_URI],
            "subject_hints": ["login_hint"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [RP_KEY.as_dict(private=False)]},
        },
    ],
}


@pytest_asyncio.fixture(loop_scope="module")
async def metadata(stack: Stack) -> dict[str, Any]:
    async with AsyncOAuth2Client(verify=TLS) as c:
        url = f"{stack.issuer}/.well-known/openid-configuration"
        response = await c.request("GET", url, withhold_token=True)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def secret_client() -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id="shop",
        client_secret=client_secret("shop"),
        token_endpoint_auth_method="client_secret_basic",
        scope="openid",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        verify=TLS,
        timeout=20,
    )


def key_client(metadata: dict[str, Any]) -> AsyncOAuth2Client:
    client = AsyncOAuth2Client(
        client_id="jwt",
        client_secret=RP_KEY,
        token_endpoint_auth_method="private_key_jwt",
        scope="openid",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
        verify=TLS,
        timeout=20,
    )
    client.register_client_auth_method(
        PrivateKeyJWT(metadata["token_endpoint"], headers={"kid": "authlib-rp"})
    )
    return client


@pytest_asyncio.fixture(loop_scope="module")
async def rp(metadata: dict[str, Any]) -> AsyncIterator[AsyncOAuth2Client]:
    async with secret_client() as client:
        yield client


class Attempt:
    """One step-up as authlib starts it: the authorization URL and what the RP keeps."""

    def __init__(self, client: AsyncOAuth2Client, metadata: dict[str, Any], **extra: str) -> None:
        self.verifier, self.nonce = generate_token(48), generate_token(20)
        self.url, self.state = client.create_authorization_url(
            metadata["authorization_endpoint"],
            code_verifier=self.verifier,
            nonce=self.nonce,
            acr_values=ACR,
            login_hint="alice",
            **extra,
        )


async def front_channel(stack: Stack, url: str) -> str:
    """The user's browser: authorize → challenge → approved face check → finish; the callback."""
    browser = stack.browser()
    response = await browser.get(url)
    assert response.status_code == 303, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith("/challenge/"), location
    token = location.rsplit("/", 1)[1]
    assert (await browser.get(location)).status_code == 200
    delivered = await stack.outcome(token, "SUCCESS")
    assert delivered.json()["delivered"] == 200, delivered.text
    finish = await browser.get(f"/challenge/{token}/finish")
    assert finish.status_code == 303, (finish.status_code, finish.text)
    callback: str = finish.headers["location"]
    assert callback.startswith(f"{REDIRECT_URI}?"), callback
    return callback


async def redeem(
    client: AsyncOAuth2Client, metadata: dict[str, Any], attempt: Attempt, callback: str
) -> dict[str, Any]:
    """The callback as the RP handles it; the token response."""
    # RFC 9207 §2.4 (authlib's client does not check it): discovery advertises iss, so it must
    # be present and be the issuer.
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert dict(parse_qsl(urlsplit(callback).query)).get("iss") == metadata["issuer"]
    token: dict[str, Any] = await client.fetch_token(
        metadata["token_endpoint"],
        authorization_response=callback,
        state=attempt.state,
        code_verifier=attempt.verifier,
    )
    return token


async def id_token_claims(
    client: AsyncOAuth2Client, metadata: dict[str, Any], token: dict[str, Any], nonce: str
) -> CodeIDToken:
    """The id_token verified against the JWKS and validated as OIDC Core §3.1.3.7 asks."""
    jwks = await client.request("GET", metadata["jwks_uri"], withhold_token=True)
    jwks.raise_for_status()
    decoded = jwt.decode(
        token["id_token"],
        KeySet.import_key_set(jwks.json()),
        algorithms=metadata["id_token_signing_alg_values_supported"],
    )
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        options={
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": client.client_id},
            "sub": {"essential": True, "value": "alice"},
            "acr": {"essential": True, "value": ACR},
        },
        params={
            "nonce": nonce,
            "client_id": client.client_id,
            "access_token": token["access_token"],
        },
    )
    claims.validate(leeway=5)
    return claims


async def step_up(
    stack: Stack, client: AsyncOAuth2Client, metadata: dict[str, Any]
) -> tuple[Attempt, dict[str, Any], CodeIDToken]:
    attempt = Attempt(client, metadata)
    sent = dict(parse_qsl(urlsplit(attempt.url).query))
    assert sent["code_challenge_method"] == "S256" and sent["code_challenge"]
    callback = await front_channel(stack, attempt.url)
    token = await redeem(client, metadata, attempt, callback)
    return attempt, token, await id_token_claims(client, metadata, token, attempt.nonce)


async def test_authlib_client_completes_step_up(
    stack: Stack, rp: AsyncOAuth2Client, metadata: dict[str, Any]
) -> None:
    attempt, token, claims = await step_up(stack, rp, metadata)

    assert token["token_type"].lower() == "bearer"
    assert claims["sub"] == "alice" and claims["aud"] == "shop"
    assert claims["acr"] == ACR and claims["amr"] == ["face"]
    assert claims["nonce"] == attempt.nonce
    # userinfo with authlib's bearer-token auth
    rp.token = token
    userinfo = await rp.request("GET", metadata["userinfo_endpoint"])
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == "alice"


async def test_authlib_client_with_private_key_jwt(stack: Stack, metadata: dict[str, Any]) -> None:
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    async with key_client(metadata) as client:
        attempt, _, claims = await step_up(stack, client, metadata)

    assert claims["sub"] == "alice" and claims["aud"] == "jwt"
    assert claims["acr"] == ACR and claims["nonce"] == attempt.nonce


async def pushed_step_up(
    stack: Stack, client: AsyncOAuth2Client, metadata: dict[str, Any]
) -> tuple[Attempt, CodeIDToken]:
    """authlib builds the request (PKCE S256 from the verifier), pushes its parameters to /par
    with its own client authentication (RFC 9126 §2), and the browser gets only the reference;
    then the callback and the code as in any step-up."""
    attempt = Attempt(client, metadata)
    params = dict(parse_qsl(urlsplit(attempt.url).query))
    pushed = await client.request(
        "POST",
        metadata["pushed_authorization_request_endpoint"],
        withhold_token=True,
        auth=client.client_auth(client.token_endpoint_auth_method),
        data=params,
    )
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["cache-control"] == "no-store"
    body = pushed.json()
    assert body["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")
    assert 0 < body["expires_in"] <= 60
    reference = urlencode({"client_id": client.client_id, "request_uri": body["request_uri"]})
    callback = await front_channel(stack, f"{metadata['authorization_endpoint']}?{reference}")
    token = await redeem(client, metadata, attempt, callback)
    return attempt, await id_token_claims(client, metadata, token, attempt.nonce)


async def test_authlib_client_pushes_its_request_then_completes_step_up(
    stack: Stack, rp: AsyncOAuth2Client, metadata: dict[str, Any]
) -> None:
    attempt, claims = await pushed_step_up(stack, rp, metadata)
    assert claims["sub"] == "alice" and claims["aud"] == "shop"
    assert claims["acr"] == ACR and claims["nonce"] == attempt.nonce


async def test_authlib_client_pushes_with_private_key_jwt(
    stack: Stack, metadata: dict[str, Any]
) -> None:
    async with key_client(metadata) as client:
        attempt, claims = await pushed_step_up(stack, client, metadata)
    assert claims["sub"] == "alice" and claims["aud"] == "jwt"
    assert claims["nonce"] == attempt.nonce


async def test_authlib_client_rejects_wrong_state_and_nonce(
    stack: Stack, rp: AsyncOAuth2Client, metadata: dict[str, Any]
) -> None:
    attempt = Attempt(rp, metadata)
    callback = await front_channel(stack, attempt.url)
    with pytest.raises(MismatchingStateException):
        await rp.fetch_token(
            metadata["token_endpoint"],
            authorization_response=callback,
            state="another-state",
            code_verifier=attempt.verifier,
        )
    # The state check came before the redemption: the code still works, but not the nonce.
    token = await redeem(rp, metadata, attempt, callback)
    with pytest.raises(InvalidClaimError, match="nonce"):
        await id_token_claims(rp, metadata, token, "not-the-nonce-we-sent")


async def test_authlib_client_sends_authorization_details_and_gets_them_back(
    stack: Stack, rp: AsyncOAuth2Client, metadata: dict[str, Any]
) -> None:
    """RFC 9396 through authlib: an extra authorization parameter out, the token response's
    authorization_details (§7) and the validated id_token's, with txn, back."""
    assert metadata["authorization_details_types_supported"] == ["payment_initiation"]
    attempt = Attempt(rp, metadata, authorization_details=json.dumps([PAYMENT]))
    sent = dict(parse_qsl(urlsplit(attempt.url).query))
    assert json.loads(sent["authorization_details"]) == [PAYMENT]
    callback = await front_channel(stack, attempt.url)
    token = await redeem(rp, metadata, attempt, callback)
    claims = await id_token_claims(rp, metadata, token, attempt.nonce)
    assert token["authorization_details"] == [PAYMENT]
    assert claims["authorization_details"] == [PAYMENT]
    assert isinstance(claims["txn"], str) and claims["txn"]
