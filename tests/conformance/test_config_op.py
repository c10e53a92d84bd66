"""The OpenID Foundation's Config OP plan (oidcc-config-certification-test-plan), one test per
module, named after it. ``docs/conformance.md`` has the table.

Discovery is checked on a provider whose issuer is ``https://…`` (as in production; the test
reaches it on its loopback port): every advertised URL must then be https and under the issuer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws

from ..harness.rp import authorize, decode_id_token, redeem_code
from ..harness.servers import TLS, Stack, StackPool
from ..harness.settings import client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")

HTTPS_ISSUER = "https://stepup.conformance.example"
SHOP = client_entry("shop", subject_hints=["login_hint"])
SETTINGS: dict[str, Any] = {"clients": [SHOP]}


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


OLD_RSA = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
NEW_RSA = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
EC_KEY = pem(ec.generate_private_key(ec.SECP256R1()))


async def get(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(verify=TLS, timeout=20) as c:
        return await c.get(url, **kwargs)


async def id_token_of(stack: Stack) -> str:
    flow = await authorize(stack, login_hint="alice")
    callback = await flow.approve()
    response = await redeem_code(stack, callback["code"], verifier=flow.verifier)
    assert response.status_code == 200, response.text
    token: str = response.json()["id_token"]
    return token


async def test_oidcc_discovery_endpoint_verification(pool: StackPool) -> None:
    stack = await pool.get(settings={**SETTINGS, "issuer": HTTPS_ISSUER})
    direct = f"http://127.0.0.1:{stack.settings.server.port}"
    response = await get(f"{direct}/.well-known/openid-configuration")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    meta: dict[str, Any] = response.json()
    # OIDC Discovery §4.3: issuer identical to the one the configuration was fetched for.
    assert meta["issuer"] == HTTPS_ISSUER
    urls = {k: v for k, v in meta.items() if k.endswith(("_endpoint", "_uri"))}
    assert set(urls) >= {
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
    }
    for name, url in urls.items():
        assert urlsplit(url).scheme == "https" and url.startswith(HTTPS_ISSUER + "/"), name
    for name in (
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ):
        assert meta[name], name
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert meta["scopes_supported"] == ["openid"]
    assert {"sub", "iss", "acr", "auth_time"} <= set(meta["claims_supported"])
    assert meta["authorization_response_iss_parameter_supported"] is True
    # The jwks_uri (served at the issuer's path) is a JWK Set with public signing keys only.
    jwks = await get(f"{direct}{urlsplit(meta['jwks_uri']).path}")
    keys = jwks.json()["keys"]
    assert keys and all(k["kid"] and k["use"] == "sig" and "d" not in k for k in keys)


async def test_oidcc_idtoken_rs256(stack: Stack) -> None:
    header, claims = await decode_id_token(stack, await id_token_of(stack))
    assert header["alg"] == "RS256"
    published = {k["kid"]: k for k in (await get(f"{stack.issuer}/jwks")).json()["keys"]}
    assert published[header["kid"]]["kty"] == "RSA"
    assert claims["sub"] == "alice"


async def test_oidcc_userinfo_rs256(stack: Stack) -> None:
    # Not applicable: userinfo is plain JSON (OIDC Core §5.3.2 permits it), so discovery does
    # not advertise userinfo_signing_alg_values_supported and a client cannot register it.
    meta = (await get(f"{stack.issuer}/.well-known/openid-configuration")).json()
    assert "userinfo_signing_alg_values_supported" not in meta
    flow = await authorize(stack, login_hint="alice")
    callback = await flow.approve()
    tokens = (await redeem_code(stack, callback["code"], verifier=flow.verifier)).json()
    response = await get(
        f"{stack.issuer}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"sub": "alice"}


async def test_oidcc_server_rotate_keys(pool: StackPool) -> None:
    before = await pool.get(
        settings={
            **SETTINGS,
            "keys": {
                "signing": [
                    {"kid": "rsa-old", "private_key": OLD_RSA},
                    {"kid": "ec-1", "alg": "ES256", "private_key": EC_KEY},
                ]
            },
        }
    )
    old_token = await id_token_of(before)
    assert jws.extract_compact(old_token.encode()).headers()["kid"] == "rsa-old"
    # Rotated: a new active key, the old one published until its tokens have expired.
    after = await pool.get(
        settings={
            **SETTINGS,
            "keys": {
                "signing": [
                    {"kid": "rsa-old", "private_key": OLD_RSA, "publish_only": True},
                    {"kid": "rsa-new", "private_key": NEW_RSA},
                    {"kid": "ec-1", "alg": "ES256", "private_key": EC_KEY},
                ]
            },
        }
    )
    kids = sorted(k["kid"] for k in (await get(f"{after.issuer}/jwks")).json()["keys"])
    assert kids == ["ec-1", "rsa-new", "rsa-old"]
    header, _ = await decode_id_token(after, await id_token_of(after))
    assert header["kid"] == "rsa-new"
    _, claims = await decode_id_token(after, old_token)  # still verifies after the rotation
    assert claims["sub"] == "alice"
