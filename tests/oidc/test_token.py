"""``/token`` and ``/userinfo`` (OIDC Core §3.1.3, §5.3; RFC 6749 §4.1.3, §5; RFC 7636; RFC 7523).

Code expiry is shown without waiting: the code's TTL in Redis is checked against
``challenge.code_lifetime`` (set to its 10 s minimum), then the key is made to expire now with
``PEXPIRE`` — what Redis does by itself when that lifetime is over.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from redis.asyncio import Redis

from ..harness.redis import record_keys
from ..harness.rp import authorize, decode_id_token, redeem_code
from ..harness.servers import TLS, Stack
from ..harness.settings import REDIRECT_URI, client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")

HINTS = ["login_hint"]
RP_KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "alg": "RS256", "use": "sig"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "alg": "RS256", "use": "sig"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CODE_LIFETIME = 10
SETTINGS: dict[str, Any] = {
    "challenge": {"code_lifetime": CODE_LIFETIME},
    "clients": [
        client_entry("shop", subject_hints=HINTS),
        client_entry("other", subject_hints=HINTS),
        client_entry("post", subject_hints=HINTS, token_endpoint_auth_method="client_secret_post"),
        client_entry("nopkce", subject_hints=HINTS, require_pkce=False),
        {
            "client_id": "jwt",
            "redirect_uris": [REDIRECT_URI],
            "subject_hints": HINTS,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [RP_KEY.as_dict(private=False)]},
        },
    ],
}


async def issue_code(
    stack: Stack, client_id: str = "shop", **params: Any
) -> tuple[str, str | None]:
    """An approved step-up for alice; the code and the PKCE verifier it needs."""
    flow = await authorize(stack, client_id=client_id, login_hint="alice", **params)
    result = await flow.approve()
    return result["code"], flow.verifier


def code_key(code: str) -> str:
    """The record that holds the code's SHA-256: its challenge."""
    return record_keys(code)[0]


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"] == error, response.json()
    assert "access_token" not in response.json()
    assert response.headers["cache-control"] == "no-store"


async def userinfo(
    stack: Stack, method: str = "GET", *, token: str | None = None, form_token: str | None = None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(verify=TLS) as c:
        if method == "POST":
            data = {"access_token": form_token} if form_token else None
            return await c.post(f"{stack.issuer}/userinfo", headers=headers, data=data)
        return await c.get(f"{stack.issuer}/userinfo", headers=headers)


def assertion(client_id: str = "jwt", *, key: RSAKey = RP_KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": "",
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": "rp-1"}, body, key)


async def redeem_with_assertion(
    stack: Stack, code: str, verifier: str | None, client_assertion: str
) -> httpx.Response:
    form = {"client_assertion_type": ASSERTION_TYPE, "client_assertion": client_assertion}
    return await redeem_code(stack, code, client_id="jwt", auth="none", verifier=verifier, **form)


# -- client authentication -----------------------------------------------------------------------


async def test_client_secret_basic_gets_tokens_without_caching(stack: Stack) -> None:
    code, verifier = await issue_code(stack)
    response = await redeem_code(stack, code, verifier=verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["access_token"] and body["id_token"]
    assert body["expires_in"] == stack.settings.keys.access_token_lifetime
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


async def post_token(
    stack: Stack, data: dict[str, str], auth: tuple[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(verify=TLS) as c:
        return await c.post(f"{stack.issuer}/token", data=data, auth=auth)


@pytest.mark.parametrize("auth", [("shop", "wrong-secret"), ("nobody", "whatever")])
async def test_basic_auth_failure_is_401_with_www_authenticate(
    stack: Stack, auth: tuple[str, str]
) -> None:
    # RFC 6749 §5.2: authentication via the Authorization header failed → 401 + challenge.
    code, verifier = await issue_code(stack)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier or "",
    }
    response = await post_token(stack, data, auth)
    assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_basic_client_may_not_use_client_secret_post(stack: Stack) -> None:
    code, verifier = await issue_code(stack)
    response = await redeem_code(stack, code, auth="post", verifier=verifier)
    assert_oauth_error(response, "invalid_client", 401)


async def test_client_secret_post(stack: Stack) -> None:
    code, verifier = await issue_code(stack, "post")
    response = await redeem_code(stack, code, client_id="post", auth="post", verifier=verifier)
    assert response.status_code == 200, response.text
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    assert claims["aud"] == "post"


async def test_client_secret_post_with_wrong_secret(stack: Stack) -> None:
    code, verifier = await issue_code(stack, "post")
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier or "",
        "client_id": "post",
        "client_secret": "wrong",
    }
    response = await post_token(stack, data)
    assert response.json()["error"] == "invalid_client"
    assert response.status_code == 401


@pytest.mark.parametrize("audience", ["issuer", "token_endpoint"])
async def test_private_key_jwt(stack: Stack, audience: str) -> None:
    aud = stack.issuer if audience == "issuer" else f"{stack.issuer}/token"
    code, verifier = await issue_code(stack, "jwt")
    response = await redeem_with_assertion(stack, code, verifier, assertion(aud=aud))
    assert response.status_code == 200, response.text
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    assert claims["aud"] == "jwt" and claims["sub"] == "alice"


async def test_private_key_jwt_replayed_jti_is_refused(stack: Stack) -> None:
    # RFC 7523 §3 item 7: a jti may be used once.
    signed = assertion(aud=stack.issuer)
    code, verifier = await issue_code(stack, "jwt")
    assert (await redeem_with_assertion(stack, code, verifier, signed)).status_code == 200
    code, verifier = await issue_code(stack, "jwt")
    response = await redeem_with_assertion(stack, code, verifier, signed)
    assert_oauth_error(response, "invalid_client", 401)


@pytest.mark.parametrize(
    "change",
    ["wrong key", "wrong aud", "iss is not sub", "expired", "no jti", "no exp", "other client"],
)
async def test_private_key_jwt_bad_assertion_is_invalid_client(stack: Stack, change: str) -> None:
    claims: dict[str, Any] = {"aud": stack.issuer}
    key = RP_KEY
    if change == "wrong key":
        key = OTHER_KEY  # same kid, different key
    elif change == "wrong aud":
        claims["aud"] = "https://elsewhere.example"
    elif change == "iss is not sub":
        claims["iss"] = "shop"
    elif change == "expired":
        claims["exp"] = int(time.time()) - 120
    elif change == "no jti":
        claims["jti"] = None
    elif change == "no exp":
        claims["exp"] = None
    client_id = "shop" if change == "other client" else "jwt"
    code, verifier = await issue_code(stack, "jwt")
    response = await redeem_with_assertion(
        stack, code, verifier, assertion(client_id, key=key, **claims)
    )
    assert response.json()["error"] == "invalid_client", response.text
    assert response.status_code == 400


async def test_private_key_jwt_with_exp_far_ahead_is_refused(stack: Stack) -> None:
    # Its jti would have to be remembered for ever (RFC 7523 §3 item 4 lets us refuse it).
    for exp in (int(time.time()) + 86400 * 365, 1e20):
        code, verifier = await issue_code(stack, "jwt")
        signed = assertion(aud=stack.issuer, exp=exp)
        response = await redeem_with_assertion(stack, code, verifier, signed)
        assert response.json()["error"] == "invalid_client", response.text


async def test_malformed_client_credentials_are_invalid_client_not_500(stack: Stack) -> None:
    deep = "[" * 3000 + "]" * 3000
    b64 = base64.urlsafe_b64encode
    deep_payload = b".".join([b64(b'{"alg":"RS256"}'), b64(f'{{"sub":{deep}}}'.encode()), b"c2ln"])
    code, verifier = await issue_code(stack, "jwt")
    response = await redeem_with_assertion(stack, code, verifier, deep_payload.decode())
    assert response.json()["error"] == "invalid_client", response.text

    not_utf8 = base64.b64encode(b"\xff\xfe:secret").decode()
    data = {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT_URI}
    async with httpx.AsyncClient(verify=TLS) as c:
        response = await c.post(
            f"{stack.issuer}/token", data=data, headers={"Authorization": f"Basic {not_utf8}"}
        )
    assert_oauth_error(response, "invalid_client", 401)
    assert response.headers["www-authenticate"].startswith("Basic")


# -- the code: bound to client, redirect_uri and PKCE; short-lived; single use -------------------


async def test_code_of_another_client_is_invalid_grant(stack: Stack) -> None:
    code, verifier = await issue_code(stack, "shop")
    response = await redeem_code(stack, code, client_id="other", verifier=verifier)
    assert_oauth_error(response, "invalid_grant")


@pytest.mark.parametrize("redirect_uri", ["http://127.0.0.1:9/other", REDIRECT_URI + "?x=1", ""])
async def test_redirect_uri_must_match_the_authorization_request(
    stack: Stack, redirect_uri: str
) -> None:
    code, verifier = await issue_code(stack)
    response = await redeem_code(stack, code, verifier=verifier, redirect_uri=redirect_uri)
    assert_oauth_error(response, "invalid_grant")


@pytest.mark.parametrize(
    "verifier", [None, "wrong-" + "v" * 50, "short"], ids=["missing", "wrong", "malformed"]
)
async def test_missing_or_wrong_code_verifier_is_invalid_grant(
    stack: Stack, verifier: str | None
) -> None:
    code, _ = await issue_code(stack)
    response = await redeem_code(stack, code, verifier=verifier)
    assert_oauth_error(response, "invalid_grant")


async def test_code_verifier_for_a_code_without_challenge_is_refused(stack: Stack) -> None:
    # RFC 9700 §4.8.2: a PKCE downgrade (challenge stripped, verifier sent) must fail.
    code, verifier = await issue_code(
        stack, "nopkce", code_challenge=None, code_challenge_method=None
    )
    assert verifier is not None
    response = await redeem_code(stack, code, client_id="nopkce", verifier=verifier)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert "access_token" not in response.json()


async def test_unknown_code_is_invalid_grant(stack: Stack) -> None:
    response = await redeem_code(stack, secrets.token_urlsafe(32), verifier="v" * 43)
    assert_oauth_error(response, "invalid_grant")


async def test_expired_code_is_invalid_grant(stack: Stack, redis: Redis) -> None:
    code, verifier = await issue_code(stack)
    until = int(await redis.hget(code_key(code), "code_exp"))
    assert 0 < until - time.time() <= CODE_LIFETIME, until  # it lives at most code_lifetime
    await redis.hset(code_key(code), "code_exp", int(time.time()))  # ...and that is now over
    response = await redeem_code(stack, code, verifier=verifier)
    assert_oauth_error(response, "invalid_grant")


async def test_code_is_stored_only_as_its_hash(stack: Stack, redis: Redis) -> None:
    code, _ = await issue_code(stack)
    stored = await redis.hget(code_key(code), "code")
    assert stored == hashlib.sha256(code.encode()).hexdigest().encode()
    async for key in redis.scan_iter(match="*"):
        assert code.encode() not in key
        if await redis.type(key) == b"hash":
            assert all(code.encode() not in v for v in (await redis.hgetall(key)).values())


async def test_code_reuse_is_invalid_grant_and_revokes_the_first_access_token(
    stack: Stack, redis: Redis
) -> None:
    # oidcc-codereuse and oidcc-codereuse-30seconds
    code, verifier = await issue_code(stack)
    first = await redeem_code(stack, code, verifier=verifier)
    assert first.status_code == 200
    access_token = first.json()["access_token"]
    assert (await userinfo(stack, token=access_token)).status_code == 200

    second = await redeem_code(stack, code, verifier=verifier)
    assert_oauth_error(second, "invalid_grant")
    revoked = await userinfo(stack, token=access_token)
    assert revoked.status_code == 401
    assert 'error="invalid_token"' in revoked.headers["www-authenticate"]

    # 30 s later, without waiting: the record that makes a replay fail outlives 30 s.
    assert await redis.ttl(code_key(code)) > 30
    assert_oauth_error(await redeem_code(stack, code, verifier=verifier), "invalid_grant")


async def test_concurrent_redemptions_issue_tokens_once(stack: Stack) -> None:
    code, verifier = await issue_code(stack)
    responses = await asyncio.gather(
        *(redeem_code(stack, code, verifier=verifier) for _ in range(5))
    )
    assert sorted(r.status_code for r in responses) == [200, 400, 400, 400, 400]


# -- what is issued ------------------------------------------------------------------------------


async def test_id_token_claims_are_complete(stack: Stack) -> None:
    nonce = secrets.token_urlsafe(12)
    code, verifier = await issue_code(stack, nonce=nonce)
    response = await redeem_code(stack, code, verifier=verifier)
    body = response.json()
    header, claims = await decode_id_token(stack, body["id_token"])
    now = int(time.time())
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["iss"] == stack.issuer
    assert claims["aud"] == "shop"
    assert claims["sub"] == "alice"
    assert claims["nonce"] == nonce
    assert claims["acr"] == stack.settings.acr.default
    assert claims["amr"] == ["face"]
    assert now - 5 <= claims["iat"] <= now + 1
    assert claims["exp"] - claims["iat"] == stack.settings.keys.id_token_lifetime
    assert claims["auth_time"] <= claims["iat"]
    # OIDC Core §3.1.3.6: at_hash = base64url(left half of SHA-256(access_token)).
    digest = hashlib.sha256(body["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


async def test_id_token_without_nonce_has_none(stack: Stack) -> None:
    code, verifier = await issue_code(stack, nonce=None)
    response = await redeem_code(stack, code, verifier=verifier)
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    assert "nonce" not in claims


@pytest.mark.parametrize("grant_type", ["refresh_token", "client_credentials", "password", ""])
async def test_other_grant_types_are_unsupported(stack: Stack, grant_type: str) -> None:
    code, verifier = await issue_code(stack)
    response = await redeem_code(stack, code, verifier=verifier, grant_type=grant_type)
    # An empty grant_type is not a grant type either.
    assert response.json()["error"] == "unsupported_grant_type", response.text
    assert response.status_code == 400


async def test_token_endpoint_refuses_non_form_bodies(stack: Stack) -> None:
    async with httpx.AsyncClient(verify=TLS) as c:
        response = await c.post(f"{stack.issuer}/token", json={"grant_type": "authorization_code"})
        oversized = await c.post(
            f"{stack.issuer}/token",
            data={"code": "a" * (stack.settings.server.max_form_bytes + 1)},
        )
        get = await c.get(f"{stack.issuer}/token")
    assert_oauth_error(response, "invalid_request")
    assert oversized.status_code == 413 and oversized.json()["error"] == "invalid_request"
    assert get.status_code == 405


# -- userinfo ------------------------------------------------------------------------------------


async def access_token_for_alice(stack: Stack) -> str:
    code, verifier = await issue_code(stack)
    response = await redeem_code(stack, code, verifier=verifier)
    token: str = response.json()["access_token"]
    return token


@pytest.mark.parametrize("style", ["GET header", "POST header", "POST form"])
async def test_userinfo_accepts_the_access_token(stack: Stack, style: str) -> None:
    token = await access_token_for_alice(stack)
    if style == "POST form":
        response = await userinfo(stack, "POST", form_token=token)
    else:
        response = await userinfo(stack, style.split()[0], token=token)
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": "alice"}
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("style", ["GET header", "POST header", "POST form"])
async def test_userinfo_bad_token_is_401_invalid_token(stack: Stack, style: str) -> None:
    bad = secrets.token_urlsafe(32)
    if style == "POST form":
        response = await userinfo(stack, "POST", form_token=bad)
    else:
        response = await userinfo(stack, style.split()[0], token=bad)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_userinfo_without_token_asks_for_bearer(stack: Stack) -> None:
    response = await userinfo(stack)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_code_naming_the_right_challenge_with_a_guessed_secret_is_invalid_grant(
    stack: Stack,
) -> None:
    # A code is `<challenge token>.<256 random bits>`: the token (in the page's URL) only says
    # where to look; the random part must match the SHA-256 the finish recorded.
    code, verifier = await issue_code(stack)
    token = code.rpartition(".")[0]
    for forged in (f"{token}.{secrets.token_urlsafe(32)}", token, f"{token}.", f"{token}.x"):
        assert_oauth_error(await redeem_code(stack, forged, verifier=verifier), "invalid_grant")
    first = await redeem_code(stack, code, verifier=verifier)  # the real code is untouched
    assert first.status_code == 200, first.text
    access_token = first.json()["access_token"]
    assert access_token.rpartition(".")[0] == token
    assert (await userinfo(stack, token=access_token)).status_code == 200
    guessed = f"{token}.{secrets.token_urlsafe(32)}"
    assert (await userinfo(stack, token=guessed)).status_code == 401
