"""Discovery (OIDC Discovery 1.0 §3, RFC 8414, RFC 9207 §3) over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ..harness.servers import TLS, Stack

pytestmark = pytest.mark.asyncio(loop_scope="module")

# OIDC Discovery §3: REQUIRED, then RECOMMENDED fields (registration_endpoint aside: there is
# no dynamic registration here, clients are configured in YAML).
REQUIRED = [
    "issuer",
    "authorization_endpoint",
    "token_endpoint",
    "jwks_uri",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
]
RECOMMENDED = ["userinfo_endpoint", "scopes_supported", "claims_supported"]
ENDPOINTS = {
    "authorization_endpoint": "/authorize",
    "token_endpoint": "/token",
    "userinfo_endpoint": "/userinfo",
    "jwks_uri": "/jwks",
}


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient(verify=TLS, timeout=20) as c:
        return await c.get(url)


async def metadata(stack: Stack) -> dict[str, Any]:
    response = await fetch(f"{stack.issuer}/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    data: dict[str, Any] = response.json()
    return data


async def test_required_and_recommended_fields_present(stack: Stack) -> None:
    data = await metadata(stack)
    missing = [name for name in REQUIRED + RECOMMENDED if name not in data]
    assert missing == []


async def test_issuer_is_exactly_the_configured_issuer(stack: Stack) -> None:
    # oidcc-discovery-endpoint-verification: byte-for-byte, no trailing slash added.
    data = await metadata(stack)
    assert data["issuer"] == stack.settings.issuer
    assert not data["issuer"].endswith("/")


async def test_endpoints_live_under_the_issuer(stack: Stack) -> None:
    data = await metadata(stack)
    for name, path in ENDPOINTS.items():
        assert data[name] == stack.issuer + path, name


async def test_every_advertised_endpoint_answers(stack: Stack) -> None:
    data = await metadata(stack)
    assert (await fetch(data["jwks_uri"])).status_code == 200
    # A bare GET on the others is an error, but a protocol error, not a 404.
    assert (await fetch(data["authorization_endpoint"])).status_code == 400
    assert (await fetch(data["userinfo_endpoint"])).status_code == 401


async def test_protocol_capabilities(stack: Stack) -> None:
    data = await metadata(stack)
    assert data["authorization_response_iss_parameter_supported"] is True
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["response_types_supported"] == ["code"]
    assert data["grant_types_supported"] == ["authorization_code"]
    assert data["response_modes_supported"] == ["query"]
    assert "public" in data["subject_types_supported"]
    assert "openid" in data["scopes_supported"]
    assert data["request_parameter_supported"] is True
    assert data["request_uri_parameter_supported"] is False
    assert data["claims_parameter_supported"] is True


async def test_signing_algorithms_include_rs256_and_es256(stack: Stack) -> None:
    data = await metadata(stack)
    # RS256 MUST be listed (OIDC Discovery §3); generated keys cover ES256 too.
    assert {"RS256", "ES256"} <= set(data["id_token_signing_alg_values_supported"])
    assert "none" not in data["id_token_signing_alg_values_supported"]
    assert "none" not in data["request_object_signing_alg_values_supported"]


async def test_client_auth_methods_and_acr_values(stack: Stack) -> None:
    data = await metadata(stack)
    assert set(data["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert data["acr_values_supported"] == list(stack.settings.acr.levels)
    for claim in ("sub", "acr", "amr", "auth_time", "nonce"):
        assert claim in data["claims_supported"]


async def test_authorization_details_types_and_claims_are_advertised(stack: Stack) -> None:
    # RFC 9396 §10: the configured types (none in the suite's base settings); the id_token's
    # txn and authorization_details are claims the provider may return.
    data = await metadata(stack)
    assert data["authorization_details_types_supported"] == []
    assert {"txn", "authorization_details"} <= set(data["claims_supported"])
