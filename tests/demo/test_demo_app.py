"""The demo relying party, against a small fake OpenID provider reached through ASGITransport."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from idenfy_stepup.demo import create_demo_app
from idenfy_stepup.demo.app import TRANSFER

ISSUER = "http://op.test"
CLIENT_ID = "shop"
CLIENT_SECRET = "change-me-to-32-random-characters"
REDIRECT_URI = "http://testserver/callback"
ACR = "urn:idenfy:stepup:face"


@dataclass
class Grant:
    claims: dict[str, Any]
    code_challenge: str


@dataclass
class FakeProvider:
    """Discovery, JWKS and a token endpoint that checks client auth, PKCE and redirect_uri."""

    key: RSAKey
    advertise_iss: bool = True
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def issue(self, code: str, authorize_url: str, **overrides: Any) -> None:
        """Remember what ``/token`` answers for ``code``, as if the user passed the face check."""
        query = params(authorize_url)
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": query["login_hint"],
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "auth_time": 1_700_000_000,
            "nonce": query["nonce"],
            "acr": ACR,
            "amr": ["face"],
            # The provider echoes what the bank asked the person to approve (RFC 9396).
            "authorization_details": json.loads(query["authorization_details"]),
            "txn": "txn-0123456789abcdef",
        }
        claims.update(overrides)
        self.grants[code] = Grant(
            {k: v for k, v in claims.items() if v is not None}, query["code_challenge"]
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/token", self.token, methods=["POST"]),
            ]
        )

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/authorize",
                "token_endpoint": f"{ISSUER}/token",
                "jwks_uri": f"{ISSUER}/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "authorization_response_iss_parameter_supported": self.advertise_iss,
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.grants.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "").encode()
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=")
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != REDIRECT_URI
            or challenge.decode() != grant.code_challenge
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        id_token = jwt.encode({"alg": "RS256", "kid": self.key.kid}, grant.claims, self.key)
        return JSONResponse(
            {"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}
        )


@pytest.fixture(scope="module")
def signing_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})


@pytest.fixture
def provider(signing_key: RSAKey) -> FakeProvider:
    return FakeProvider(signing_key)


def demo(transport: httpx.AsyncBaseTransport, **kwargs: Any) -> httpx.AsyncClient:
    """A browser for the demo RP: the session cookie round-trips, redirects are not followed."""
    app = create_demo_app(
        issuer=ISSUER,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri=REDIRECT_URI,
        session_secret="test-session-secret-0123456789abcdef",
        http_transport=transport,
        **kwargs,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(provider: FakeProvider) -> AsyncIterator[httpx.AsyncClient]:
    async with demo(httpx.ASGITransport(app=provider.app())) as browser:
        yield browser


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def start(client: httpx.AsyncClient) -> str:
    """Press "Confirm transfer"; return the authorization URL the browser is sent to."""
    response = await client.post("/transfer")
    assert response.status_code == 302
    return response.headers["location"]


async def callback(client: httpx.AsyncClient, **query: str) -> httpx.Response:
    return await client.get(f"/callback?{urlencode(query)}")


def main_attrs(response: httpx.Response) -> str:
    found = re.search(r"<main([^>]*)>", response.text)
    assert found is not None
    return found.group(1)


async def test_index_offers_the_transfer_and_explains_the_face_check(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert "Northwind Bank" in response.text
    assert "Transfer €500.00 to ACME Ltd" in response.text
    assert "face check" in response.text
    assert re.search(r'<form method="post" action="http://testserver/transfer">', response.text)
    assert re.search(
        r'<button type="submit" data-action="confirm-transfer">Confirm transfer<', response.text
    )
    assert "<script" not in response.text
    assert (await client.get("/static/demo.css")).status_code == 200


async def test_transfer_redirects_to_authorize_with_pkce_nonce_and_login_hint(
    client: httpx.AsyncClient,
) -> None:
    location = await start(client)
    assert location.startswith(f"{ISSUER}/authorize?")
    query = params(location)
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == REDIRECT_URI
    assert query["scope"] == "openid"
    assert query["login_hint"] == "alice"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["state"] and query["nonce"]
    assert "acr_values" not in query
    assert json.loads(query["authorization_details"]) == [TRANSFER]


async def test_transfer_passes_acr_values_and_subject_when_configured(
    provider: FakeProvider,
) -> None:
    async with demo(
        httpx.ASGITransport(app=provider.app()), subject="bob", acr_values=ACR
    ) as client:
        query = params(await start(client))
    assert query["acr_values"] == ACR
    assert query["login_hint"] == "bob"


async def test_denied_callback_shows_the_stepup_error(client: httpx.AsyncClient) -> None:
    state = params(await start(client))["state"]
    denied = {
        "error": "access_denied",
        "error_description": "The face did not match the enrolled person.",
        "stepup_error": "face_mismatch",
        "state": state,
        "iss": ISSUER,
    }
    response = await callback(client, **denied)
    assert response.status_code == 200
    attrs = main_attrs(response)
    assert 'data-result="error"' in attrs
    assert 'data-error="access_denied"' in attrs
    assert 'data-stepup-error="face_mismatch"' in attrs
    assert "The face did not match the enrolled person." in response.text
    assert 'href="http://testserver/">Back to the bank</a>' in response.text
    # The state was consumed: the same answer cannot be shown twice.
    assert 'data-error="invalid_state"' in main_attrs(await callback(client, **denied))


async def test_denied_callback_without_iss_is_accepted(client: httpx.AsyncClient) -> None:
    """The provider may leave ``iss`` off error redirects for some gateways
    (``iss_on_error`` in docs/architecture.md, "The settings file")."""
    state = params(await start(client))["state"]
    response = await callback(
        client, error="access_denied", stepup_error="user_canceled", state=state
    )
    assert 'data-stepup-error="user_canceled"' in main_attrs(response)


async def test_the_error_page_escapes_what_the_callback_carries(client: httpx.AsyncClient) -> None:
    state = params(await start(client))["state"]
    response = await callback(
        client,
        error="access_denied",
        error_description="<script>alert(1)</script>",
        stepup_error='x" onclick="y',
        state=state,
        iss=ISSUER,
    )
    assert "<script>" not in response.text
    assert 'data-stepup-error="x&#34; onclick=&#34;y"' in main_attrs(response)


async def test_success_round_trip_shows_the_id_token_claims(
    client: httpx.AsyncClient, provider: FakeProvider
) -> None:
    location = await start(client)
    query = params(location)
    provider.issue("code-1", location)
    response = await callback(client, code="code-1", state=query["state"], iss=ISSUER)
    assert response.status_code == 200, response.text
    assert 'data-result="success"' in main_attrs(response)
    assert "Transfer confirmed" in response.text
    claims = dict(re.findall(r'<dd data-claim="(\w+)">([^<]*)</dd>', response.text))
    assert claims["sub"] == "alice"
    assert claims["acr"] == ACR
    assert claims["amr"] == "face"
    assert claims["auth_time"] == "1700000000 (2023-11-14 22:13:20 UTC)"
    assert claims["iss"] == ISSUER
    assert claims["aud"] == CLIENT_ID
    assert claims["nonce"] == query["nonce"]
    assert claims["txn"] == "txn-0123456789abcdef"
    approved = re.search(
        r'<p class="approved" id="approved-transfer">(.*?)</p>', response.text, re.S
    )
    assert approved is not None
    assert "Pay 500.00 EUR to ACME Ltd" in approved.group(1)
    assert "✓ matches the transfer" in approved.group(1)
    (token_request,) = provider.token_requests
    assert token_request["code_verifier"]
    assert "client_secret" not in token_request  # client_secret_basic, not _post


async def test_wrong_state_shows_an_error_page(
    client: httpx.AsyncClient, provider: FakeProvider
) -> None:
    location = await start(client)
    provider.issue("code-1", location)
    response = await callback(client, code="code-1", state="not-the-state", iss=ISSUER)
    assert response.status_code == 400
    assert 'data-error="invalid_state"' in main_attrs(response)
    assert provider.token_requests == []


async def test_callback_without_a_session_shows_an_error_page(client: httpx.AsyncClient) -> None:
    response = await callback(client, code="code-1", state="anything", iss=ISSUER)
    assert response.status_code == 400
    assert 'data-result="error"' in main_attrs(response)


async def test_a_code_is_redeemed_once(client: httpx.AsyncClient, provider: FakeProvider) -> None:
    location = await start(client)
    provider.issue("code-1", location)
    answer = {"code": "code-1", "state": params(location)["state"], "iss": ISSUER}
    assert (await callback(client, **answer)).status_code == 200
    assert 'data-error="invalid_state"' in main_attrs(await callback(client, **answer))


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("nonce", "another-nonce"),
        ("aud", "another-client"),
        ("iss", "http://evil.test"),
        ("sub", "bob"),
        ("exp", 1_000_000_000),
        ("nonce", None),
    ],
)
async def test_an_id_token_that_fails_validation_is_refused(
    client: httpx.AsyncClient, provider: FakeProvider, claim: str, value: Any
) -> None:
    location = await start(client)
    provider.issue("code-1", location, **{claim: value})
    response = await callback(client, code="code-1", state=params(location)["state"], iss=ISSUER)
    assert response.status_code == 502
    assert 'data-error="invalid_id_token"' in main_attrs(response)
    assert "Transfer confirmed" not in response.text


async def test_unexpected_acr_is_refused_when_acr_values_were_requested(
    provider: FakeProvider,
) -> None:
    async with demo(httpx.ASGITransport(app=provider.app()), acr_values=ACR) as client:
        location = await start(client)
        provider.issue("code-1", location, acr="urn:other:password")
        response = await callback(
            client, code="code-1", state=params(location)["state"], iss=ISSUER
        )
    assert response.status_code == 502
    assert 'data-error="invalid_id_token"' in main_attrs(response)


@pytest.mark.parametrize("iss", ["http://evil.test", None])
async def test_authorization_response_iss_is_checked(
    client: httpx.AsyncClient, provider: FakeProvider, iss: str | None
) -> None:
    """RFC 9207 §2.4: a wrong ``iss``, or none when advertised, stops before the token call."""
    location = await start(client)
    provider.issue("code-1", location)
    answer = {"code": "code-1", "state": params(location)["state"]}
    response = await callback(client, **answer, **({"iss": iss} if iss else {}))
    assert 'data-error="invalid_issuer"' in main_attrs(response)
    assert provider.token_requests == []


async def test_missing_iss_is_accepted_when_not_advertised(provider: FakeProvider) -> None:
    provider.advertise_iss = False
    async with demo(httpx.ASGITransport(app=provider.app())) as client:
        location = await start(client)
        provider.issue("code-1", location)
        response = await callback(client, code="code-1", state=params(location)["state"])
    assert 'data-result="success"' in main_attrs(response)


async def test_a_token_endpoint_error_shows_an_error_page(
    client: httpx.AsyncClient, provider: FakeProvider
) -> None:
    location = await start(client)
    response = await callback(
        client, code="never-issued", state=params(location)["state"], iss=ISSUER
    )
    assert response.status_code == 502
    assert 'data-error="invalid_grant"' in main_attrs(response)


async def test_an_unreachable_provider_shows_an_error_page() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with demo(httpx.MockTransport(refuse)) as client:
        response = await client.post("/transfer")
        assert response.status_code == 502
        assert 'data-error="provider_unreachable"' in main_attrs(response)
        response = await callback(client, code="c", state="s", iss=ISSUER)
        assert response.status_code == 502
        assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "changed",
    [
        {"authorization_details": [{**TRANSFER, "creditorName": "Mallory"}]},
        {
            "authorization_details": [
                {**TRANSFER, "instructedAmount": {"amount": "500.01", "currency": "EUR"}}
            ]
        },
        {"authorization_details": [TRANSFER, TRANSFER]},
        {"authorization_details": None},
        {"txn": None},
        {"txn": ""},
    ],
)
async def test_an_approval_of_anything_but_this_transfer_is_refused(
    client: httpx.AsyncClient, provider: FakeProvider, changed: dict[str, Any]
) -> None:
    location = await start(client)
    provider.issue("code-x", location, **changed)
    response = await callback(client, code="code-x", state=params(location)["state"], iss=ISSUER)
    assert response.status_code == 403
    assert 'data-error="transaction_mismatch"' in main_attrs(response)
    assert "no money was sent" in response.text
    assert "Transfer confirmed" not in response.text
