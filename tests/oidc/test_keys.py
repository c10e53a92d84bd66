"""Signing keys: the JWKS, ES256 clients, and rotation (oidcc-server-rotate-keys flavour)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jws
from joserfc.jwk import JWKRegistry

from idenfy_stepup.app import create_app
from idenfy_stepup.oidc.keys import generate_jwk
from idenfy_stepup.settings import parse_settings

from ..harness.redis import RedisProcess
from ..harness.rp import authorize, decode_id_token, redeem_code
from ..harness.servers import TLS, Stack, StackPool
from ..harness.settings import base_settings, client_entry, merge

pytestmark = pytest.mark.asyncio(loop_scope="module")

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
SHOP = client_entry("shop", subject_hints=["login_hint"])
ES_CLIENT = client_entry("es", subject_hints=["login_hint"], id_token_signed_response_alg="ES256")
SETTINGS = {"clients": [SHOP, ES_CLIENT]}


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


OLD_RSA = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
NEW_RSA = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
EC_KEY = pem(ec.generate_private_key(ec.SECP256R1()))


async def jwks_of(stack: Stack) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(verify=TLS) as c:
        response = await c.get(f"{stack.issuer}/jwks")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jwk-set+json")
    keys: list[dict[str, Any]] = response.json()["keys"]
    return keys


async def issue_id_token(stack: Stack, client_id: str = "shop") -> str:
    """A complete step-up for alice by ``client_id``; the id_token it ends with."""
    flow = await authorize(stack, client_id=client_id, login_hint="alice")
    result = await flow.approve()
    response = await redeem_code(stack, result["code"], client_id=client_id, verifier=flow.verifier)
    assert response.status_code == 200, response.text
    id_token: str = response.json()["id_token"]
    return id_token


def assert_well_formed(keys: list[dict[str, Any]]) -> None:
    kids = [k.get("kid") for k in keys]
    assert all(kids) and len(set(kids)) == len(kids), kids
    for key in keys:
        assert key["use"] == "sig"
        assert key["alg"] in ("RS256", "ES256")
        assert key["kty"] == {"RS256": "RSA", "ES256": "EC"}[key["alg"]]
        assert PRIVATE_MEMBERS.isdisjoint(key), sorted(key)


async def test_generated_jwks_is_public_with_distinct_kids(pool: StackPool) -> None:
    keys = await jwks_of(await pool.get(settings=SETTINGS))
    assert_well_formed(keys)
    assert {k["alg"] for k in keys} == {"RS256", "ES256"}


async def test_default_client_gets_rs256_with_published_kid(pool: StackPool) -> None:
    stack = await pool.get(settings=SETTINGS)
    id_token = await issue_id_token(stack)
    header, claims = await decode_id_token(stack, id_token)
    assert header["alg"] == "RS256"
    published = {k["kid"]: k for k in await jwks_of(stack)}
    assert published[header["kid"]]["alg"] == "RS256"
    assert claims["aud"] == "shop"


async def test_es256_client_gets_es256_id_token_with_published_kid(pool: StackPool) -> None:
    stack = await pool.get(settings=SETTINGS)
    id_token = await issue_id_token(stack, "es")
    header, claims = await decode_id_token(stack, id_token)
    assert header["alg"] == "ES256"
    published = {k["kid"]: k for k in await jwks_of(stack)}
    assert published[header["kid"]]["alg"] == "ES256"
    assert claims["aud"] == "es"


async def test_rotation_old_key_still_published_new_key_signs(pool: StackPool) -> None:
    before = await pool.get(
        settings={
            **SETTINGS,
            "keys": {
                "signing": [
                    {"kid": "rsa-2024", "private_key": OLD_RSA},
                    {"kid": "ec-1", "alg": "ES256", "private_key": EC_KEY},
                ]
            },
        }
    )
    old_token = await issue_id_token(before)
    assert jws.extract_compact(old_token.encode()).headers()["kid"] == "rsa-2024"

    # The rotated configuration lists the retired key first: publish_only, not order, decides.
    after = await pool.get(
        settings={
            **SETTINGS,
            "keys": {
                "signing": [
                    {"kid": "rsa-2024", "private_key": OLD_RSA, "publish_only": True},
                    {"kid": "rsa-2025", "private_key": NEW_RSA},
                    {"kid": "ec-1", "alg": "ES256", "private_key": EC_KEY},
                ]
            },
        }
    )
    keys = await jwks_of(after)
    assert_well_formed(keys)
    assert sorted(k["kid"] for k in keys) == ["ec-1", "rsa-2024", "rsa-2025"]

    new_token = await issue_id_token(after)
    header, _ = await decode_id_token(after, new_token)
    assert header["kid"] == "rsa-2025"
    # A token signed before the rotation still verifies against the JWKS published after it.
    _, claims = await decode_id_token(after, old_token)
    assert claims["iss"] == before.issuer
    assert claims["sub"] == "alice"
    es_header, _ = await decode_id_token(after, await issue_id_token(after, "es"))
    assert es_header["kid"] == "ec-1"


async def test_discovery_lists_only_algorithms_that_sign(pool: StackPool) -> None:
    stack = await pool.get(
        settings={
            "keys": {
                "signing": [
                    {"kid": "rsa-2025", "private_key": NEW_RSA},
                    {"kid": "ec-old", "alg": "ES256", "private_key": EC_KEY, "publish_only": True},
                ]
            }
        }
    )
    async with httpx.AsyncClient(verify=TLS) as c:
        meta = (await c.get(f"{stack.issuer}/.well-known/openid-configuration")).json()
    assert meta["id_token_signing_alg_values_supported"] == ["RS256"]
    assert sorted(k["kid"] for k in await jwks_of(stack)) == ["ec-old", "rsa-2025"]


async def test_client_alg_without_an_active_key_refuses_to_start(redis_proc: RedisProcess) -> None:
    # Signing an ES256 client's id_token with RS256 would break its registration
    # (OIDC Dynamic Client Registration §2, id_token_signed_response_alg): fail at start-up.
    raw = base_settings(1, 2, redis_proc.url)
    only_rsa = {"signing": [{"kid": "rsa-2025", "private_key": NEW_RSA}]}
    settings = parse_settings(merge(raw, {**SETTINGS, "keys": only_rsa}))
    app = create_app(settings)
    with pytest.raises(ValueError, match=r"clients\[1\].*ES256"):
        async with app.router.lifespan_context(app):
            pass  # pragma: no cover


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_a_generated_kid_names_its_algorithm_and_never_reads_as_an_option(alg: str) -> None:
    """``keys retire KID`` takes the kid as an argument: a bare base64url thumbprint starts with
    "-" once in 64 keys, which the command line would take for an option."""
    for _ in range(8):
        jwk = json.loads(generate_jwk(alg))
        assert jwk["kid"].startswith(f"{alg.lower()}-")
        assert jwk["kid"] == f"{alg.lower()}-{JWKRegistry.import_key(jwk).thumbprint()}"
