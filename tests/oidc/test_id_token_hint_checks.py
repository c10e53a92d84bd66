"""An id_token_hint names its subject only when it is an id_token for this client, and recent.

OIDC Core §3.1.2.1 lets a hint have expired, but not for ever: a hint from a trusted upstream
(``directory.trusted_issuers``) must carry one of the issuer's ``audience`` values (default: the
requesting client's client_id), have expired at most ``expired_tolerance`` seconds ago, not be
valid only later (``nbf``, ``iat``), and not be an access or logout token (``typ``). Our own
id_tokens obey the same rules with ``keys.id_token_hint_tolerance``. Every refusal is an
``invalid_request`` redirect with ``stepup_error=invalid_id_token_hint``, ``state`` and ``iss``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from joserfc import jws, jwt
from joserfc.jwk import ECKey, Key, RSAKey, import_key
from redis.asyncio import Redis

from ..harness.redis import SECRETS_KEY, RedisProcess
from ..harness.rp import Flow, authorize
from ..harness.servers import Stack
from ..harness.settings import client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")

UPSTREAM = "https://sso.upstream.example"
GATEWAY = "https://gateway.upstream.example"
UPSTREAM_KEY = ECKey.generate_key("P-256", parameters={"kid": "up-1", "alg": "ES256"})
GATEWAY_KEY = RSAKey.generate_key(2048, parameters={"kid": "gw-1", "alg": "RS256"})
OWN_TOLERANCE = 120
SETTINGS: dict[str, Any] = {
    "keys": {"id_token_hint_tolerance": OWN_TOLERANCE},
    "directory": {
        "trusted_issuers": [
            # Defaults: audience is the requesting client, expired_tolerance 600 seconds.
            {"issuer": UPSTREAM, "jwks": {"keys": [UPSTREAM_KEY.as_dict(private=False)]}},
            {
                "issuer": GATEWAY,
                "jwks": {"keys": [GATEWAY_KEY.as_dict(private=False)]},
                "audience": ["gateway", "portal"],
                "expired_tolerance": 60,
            },
        ],
    },
    "clients": [client_entry("strict"), client_entry("strict2")],
}


@pytest_asyncio.fixture(loop_scope="module")
async def own_key(stack: Stack, redis_proc: RedisProcess) -> AsyncIterator[Key]:
    """The provider's RS256 signing key, as shared in Redis (generated once per Redis)."""
    client = Redis.from_url(redis_proc.url)
    raw = await client.hget(SECRETS_KEY, "jwk:RS256")
    await client.aclose()
    assert raw is not None
    yield import_key(json.loads(raw))


def claims_for(
    iss: str, aud: Any = "strict", *, sub: str = "alice", **extra: Any
) -> dict[str, Any]:
    """Claims of a fresh id_token (iat now, exp in 300 s); an extra given as None is left out."""
    now = int(time.time())
    body = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + 300, **extra}
    return {k: v for k, v in body.items() if v is not None}


def upstream(claims: dict[str, Any], **header: Any) -> str:
    return jwt.encode({"alg": "ES256", "kid": "up-1", **header}, claims, UPSTREAM_KEY)


def gateway(claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "RS256", "kid": "gw-1"}, claims, GATEWAY_KEY)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def assert_names_alice(stack: Stack, hint: str, client_id: str = "strict") -> None:
    flow = await authorize(stack, client_id=client_id, id_token_hint=hint)
    assert flow.token, (flow.response.status_code, flow.response.headers)


async def assert_bad_hint(
    stack: Stack, hint: str, stepup_error: str = "invalid_id_token_hint", client_id: str = "strict"
) -> Flow:
    flow = await authorize(stack, client_id=client_id, id_token_hint=hint)
    assert not flow.token, "a challenge was opened"
    result = flow.redirect
    assert result["error"] == "invalid_request", result
    assert result["stepup_error"] == stepup_error, result
    assert result["state"] == flow.params["state"] and result["iss"] == stack.issuer, result
    return flow


# -- upstream: aud -------------------------------------------------------------------------------


async def test_upstream_hint_for_this_client_names_the_subject(stack: Stack) -> None:
    await assert_names_alice(stack, upstream(claims_for(UPSTREAM, "strict")))
    await assert_names_alice(stack, upstream(claims_for(UPSTREAM, ["other", "strict"])))


@pytest.mark.parametrize("aud", ["strict2", "gateway", None, ["a", "b"], 42])
async def test_upstream_hint_for_another_audience_is_refused(stack: Stack, aud: Any) -> None:
    # The default audience is the requesting client's client_id ("strict").
    await assert_bad_hint(stack, upstream(claims_for(UPSTREAM, aud)))


async def test_upstream_audience_is_configurable(stack: Stack) -> None:
    await assert_names_alice(stack, gateway(claims_for(GATEWAY, "portal")))
    # With an audience configured, the client_id is no longer one.
    await assert_bad_hint(stack, gateway(claims_for(GATEWAY, "strict")))


# -- upstream: exp, nbf, iat ---------------------------------------------------------------------


async def test_upstream_hint_expired_within_the_tolerance_names_the_subject(stack: Stack) -> None:
    now = int(time.time())
    hint = upstream(claims_for(UPSTREAM, iat=now - 900, exp=now - 300))  # tolerance 600
    await assert_names_alice(stack, hint)


@pytest.mark.parametrize("ago", [700, 2 * 365 * 86400])
async def test_upstream_hint_expired_beyond_the_tolerance_is_refused(
    stack: Stack, ago: int
) -> None:
    now = int(time.time())
    await assert_bad_hint(stack, upstream(claims_for(UPSTREAM, iat=now - ago - 300, exp=now - ago)))


async def test_upstream_tolerance_is_configurable(stack: Stack) -> None:
    now = int(time.time())
    hint = gateway(claims_for(GATEWAY, "gateway", iat=now - 900, exp=now - 300))  # tolerance 60
    await assert_bad_hint(stack, hint)


@pytest.mark.parametrize("exp", [None, "soon", True, 1e400])
async def test_upstream_hint_without_a_valid_exp_is_refused(stack: Stack, exp: Any) -> None:
    body = claims_for(UPSTREAM)
    del body["exp"]
    if exp is not None:
        body["exp"] = exp
    # Built by hand: joserfc would itself refuse to sign some of these values.
    payload = json.dumps(body).encode()
    hint = jws.serialize_compact({"alg": "ES256", "kid": "up-1"}, payload, UPSTREAM_KEY)
    await assert_bad_hint(stack, hint)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_upstream_hint_valid_only_later_is_refused(stack: Stack, claim: str) -> None:
    later = int(time.time()) + 200
    await assert_bad_hint(stack, upstream(claims_for(UPSTREAM, **{claim: later})))


# -- upstream: what kind of token ----------------------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "application/at+jwt", "AT+JWT", "logout+jwt"])
async def test_upstream_access_or_logout_token_is_refused(stack: Stack, typ: str) -> None:
    await assert_bad_hint(stack, upstream(claims_for(UPSTREAM), typ=typ))


async def test_upstream_hint_with_typ_jwt_is_accepted(stack: Stack) -> None:
    await assert_names_alice(stack, upstream(claims_for(UPSTREAM), typ="JWT"))


async def test_upstream_hint_unsigned_or_hmac_with_the_public_key_is_refused(
    stack: Stack,
) -> None:
    body = b64(json.dumps(claims_for(GATEWAY, "gateway")).encode())
    unsigned = f"{b64(json.dumps({'alg': 'none', 'kid': 'gw-1'}).encode())}.{body}."
    # The classic confusion: HS256 keyed with the issuer's public key, which anyone has.
    head = b64(json.dumps({"alg": "HS256", "kid": "gw-1"}).encode())
    secret = GATEWAY_KEY.as_pem(private=False)
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    for hint in (unsigned, f"{head}.{body}.{b64(mac)}"):
        await assert_bad_hint(stack, hint)


async def test_upstream_subject_that_is_not_valid_unicode_is_refused(stack: Stack) -> None:
    payload = json.dumps(claims_for(UPSTREAM, sub="a\ud800")).encode()  # escaped: \ud800
    hint = jws.serialize_compact({"alg": "ES256", "kid": "up-1"}, payload, UPSTREAM_KEY)
    await assert_bad_hint(stack, hint, "subject_required")


# -- our own id_tokens ---------------------------------------------------------------------------


def own(key: Key, claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)


async def test_own_hint_expired_within_the_tolerance_names_the_subject(
    stack: Stack, own_key: Key
) -> None:
    now = int(time.time())
    hint = own(own_key, claims_for(stack.issuer, iat=now - 400, exp=now - 60))
    await assert_names_alice(stack, hint)


@pytest.mark.parametrize("ago", [OWN_TOLERANCE + 60, 2 * 365 * 86400])
async def test_own_hint_expired_beyond_the_tolerance_is_refused(
    stack: Stack, own_key: Key, ago: int
) -> None:
    now = int(time.time())
    hint = own(own_key, claims_for(stack.issuer, iat=now - ago - 300, exp=now - ago))
    await assert_bad_hint(stack, hint)


async def test_own_hint_for_another_client_is_refused(stack: Stack, own_key: Key) -> None:
    await assert_bad_hint(stack, own(own_key, claims_for(stack.issuer, "strict2")))


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_own_hint_valid_only_later_is_refused(stack: Stack, own_key: Key, claim: str) -> None:
    later = int(time.time()) + 200
    await assert_bad_hint(stack, own(own_key, claims_for(stack.issuer, **{claim: later})))


async def test_own_hint_without_exp_is_refused(stack: Stack, own_key: Key) -> None:
    await assert_bad_hint(stack, own(own_key, claims_for(stack.issuer, exp=None)))
