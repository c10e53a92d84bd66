"""``/token`` authenticates the client before it looks at the code, and throttles failures.

A stolen code posted without (or with wrong) client credentials is refused with 401 and left
as it was: the rightful client redeems it afterwards, and a replay of a redeemed code by a
stranger does not revoke the access token issued from it. Failed authentications are limited
per address and per client (429 with Retry-After); the per-client limit refuses only addresses
that have failed themselves, so a stranger cannot lock a client out of ``/token``.

Each test uses client ids of its own (the counters live in the shared Redis) and addresses of
its own (``X-Forwarded-For`` from the trusted loopback proxy).
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from redis.asyncio import Redis

from idenfy_stepup.endpoints.token_limits import client_identity

from ..harness.redis import rate_key, record_keys
from ..harness.rp import authorize
from ..harness.servers import TLS, Stack
from ..harness.settings import REDIRECT_URI, client_entry, client_secret

pytestmark = pytest.mark.asyncio(loop_scope="module")

HINTS = ["login_hint"]
RP_KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "alg": "RS256", "use": "sig"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LIMIT = {"count": 3, "seconds": 60}
SECRET_CLIENTS = [f"c{i}" for i in range(8)]
SETTINGS: dict[str, Any] = {
    "server": {"trusted_proxies": ["127.0.0.1/32"]},
    "challenge": {"limits": {"token_failures_per_ip": LIMIT, "token_failures_per_client": LIMIT}},
    "clients": [
        *(client_entry(c, subject_hints=HINTS) for c in SECRET_CLIENTS),
        {
            "client_id": "jwt",
            "redirect_uris": [REDIRECT_URI],
            "subject_hints": HINTS,
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [RP_KEY.as_dict(private=False)]},
        },
    ],
}


def address() -> str:
    """An address of this test's own (documentation range, random host)."""
    return f"198.51.{secrets.randbelow(256)}.{1 + secrets.randbelow(254)}"


async def issue_code(stack: Stack, client_id: str) -> tuple[str, str]:
    flow = await authorize(stack, client_id=client_id, login_hint="alice")
    result = await flow.approve()
    assert flow.verifier
    return result["code"], flow.verifier


def assertion(client_id: str = "jwt", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    return jwt.encode({"alg": "RS256", "kid": "rp-1"}, body, RP_KEY)


async def post_token(
    stack: Stack,
    code: str,
    verifier: str,
    *,
    basic: tuple[str, str] | None = None,
    source: str = "",
    **form: str,
) -> httpx.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **form,
    }
    headers = {"X-Forwarded-For": source} if source else {}
    async with httpx.AsyncClient(verify=TLS, timeout=20) as c:
        return await c.post(f"{stack.issuer}/token", data=data, auth=basic, headers=headers)


def as_client(client_id: str) -> tuple[str, str]:
    return client_id, client_secret(client_id)


async def userinfo_status(stack: Stack, access_token: str) -> int:
    async with httpx.AsyncClient(verify=TLS) as c:
        response = await c.get(
            f"{stack.issuer}/userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )
    return response.status_code


async def record(redis: Redis, code: str) -> tuple[dict[Any, Any], int]:
    key = record_keys(code)[0]
    return await redis.hgetall(key), await redis.ttl(key)


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, (response.status_code, response.text)
    assert response.json()["error"] == "invalid_client"
    assert "access_token" not in response.json()


def assert_throttled(response: httpx.Response, window: int = LIMIT["seconds"]) -> int:
    assert response.status_code == 429, (response.status_code, response.text)
    assert response.json()["error"] == "temporarily_unavailable"
    assert "access_token" not in response.json()
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= window
    return retry_after


# -- authentication comes first ------------------------------------------------------------------


async def test_a_stolen_code_without_valid_credentials_is_refused_and_left_to_its_client(
    stack: Stack, redis: Redis
) -> None:
    code, verifier = await issue_code(stack, "c0")
    before = await record(redis, code)
    attempts: list[dict[str, Any]] = [
        {},  # anonymous
        {"client_id": "c0"},  # named, no secret
        {"basic": ("c0", "wrong-secret-0123456789")},
        {"client_id": "c0", "client_secret": "wrong"},
        {"basic": ("nobody", "whatever")},
        {
            "client_id": "jwt",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion("c0", aud=stack.issuer),
        },  # unsigned by c0's secret
    ]
    for attempt in attempts:
        response = await post_token(stack, code, verifier, source=address(), **attempt)
        # A failed client assertion is a 400; every other failed authentication a 401.
        expected = 400 if "client_assertion" in attempt else 401
        assert response.status_code == expected, (attempt, response.text)
        assert response.json()["error"] == "invalid_client", (attempt, response.text)
        assert await record(redis, code) == before  # nothing read into it, nothing written
    redeemed = await post_token(stack, code, verifier, basic=as_client("c0"), source=address())
    assert redeemed.status_code == 200, redeemed.text
    assert await userinfo_status(stack, redeemed.json()["access_token"]) == 200


async def test_a_redeemed_code_replayed_by_a_stranger_does_not_revoke_its_token(
    stack: Stack,
) -> None:
    code, verifier = await issue_code(stack, "c1")
    first = await post_token(stack, code, verifier, basic=as_client("c1"), source=address())
    assert first.status_code == 200, first.text
    access_token = first.json()["access_token"]
    for basic in (None, ("c1", "wrong-secret-0123456789"), ("c2", "x"), ("nobody", "x")):
        assert_invalid_client(
            await post_token(stack, code, verifier, basic=basic, source=address())
        )
    assert await userinfo_status(stack, access_token) == 200
    # The rightful client's own replay still revokes it (RFC 6749 §4.1.2).
    again = await post_token(stack, code, verifier, basic=as_client("c1"), source=address())
    assert again.json()["error"] == "invalid_grant"
    assert await userinfo_status(stack, access_token) == 401


async def test_another_authenticated_client_cannot_spend_a_code(stack: Stack) -> None:
    code, verifier = await issue_code(stack, "c2")
    other = await post_token(stack, code, verifier, basic=as_client("c3"), source=address())
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant", other.text
    own = await post_token(stack, code, verifier, basic=as_client("c2"), source=address())
    assert own.status_code == 200, own.text


async def test_a_replayed_client_assertion_leaves_the_code_unspent(
    stack: Stack, redis: Redis
) -> None:
    # The jwt client's failure counter starts empty (other tests fail as it on purpose): over
    # its limit, it would rightly refuse this address after the replay below.
    await redis.delete(rate_key(client_identity("jwt")))
    signed = assertion(aud=stack.issuer)
    # An address of its own: the loopback one's failure counter is shared with other tests.
    form = {"client_id": "jwt", "client_assertion_type": ASSERTION_TYPE, "source": address()}
    code, verifier = await issue_code(stack, "jwt")
    used = await post_token(stack, code, verifier, client_assertion=signed, **form)
    assert used.status_code == 200, used.text
    code, verifier = await issue_code(stack, "jwt")
    assert_invalid_client(await post_token(stack, code, verifier, client_assertion=signed, **form))
    fresh = assertion(aud=stack.issuer)
    redeemed = await post_token(stack, code, verifier, client_assertion=fresh, **form)
    assert redeemed.status_code == 200, redeemed.text


# -- throttling failed authentication -------------------------------------------------------------


async def test_failures_from_one_address_are_throttled_and_the_client_is_still_served(
    stack: Stack,
) -> None:
    code, verifier = await issue_code(stack, "c4")
    attacker, gateway = address(), address()
    for _ in range(LIMIT["count"]):
        wrong = ("c4", secrets.token_urlsafe(24))
        assert_invalid_client(await post_token(stack, code, verifier, basic=wrong, source=attacker))
    # Refused before authenticating: even the right credentials, and the code stays unspent.
    throttled = await post_token(stack, code, verifier, basic=as_client("c4"), source=attacker)
    assert_throttled(throttled)
    served = await post_token(stack, code, verifier, basic=as_client("c4"), source=gateway)
    assert served.status_code == 200, served.text


async def test_a_client_under_attack_from_many_addresses_refuses_only_failing_ones(
    stack: Stack,
) -> None:
    attackers = [address() for _ in range(LIMIT["count"])]
    for source in attackers:  # one failure each: no address reaches its own limit
        assert_invalid_client(
            await post_token(stack, "x", "y", source=source, basic=("c5", "wrong-secret"))
        )
    # c5's counter is full: an address that has failed gets no second guess ...
    assert_throttled(
        await post_token(stack, "x", "y", source=attackers[0], basic=("c5", "another-guess"))
    )
    # ... while a fresh address is still heard, and the client's own servers are served.
    assert_invalid_client(
        await post_token(stack, "x", "y", source=address(), basic=("c5", "a-guess"))
    )
    code, verifier = await issue_code(stack, "c5")
    served = await post_token(stack, code, verifier, basic=as_client("c5"), source=address())
    assert served.status_code == 200, served.text


async def test_successful_authentication_never_counts(stack: Stack) -> None:
    source = address()
    for _ in range(LIMIT["count"] + 2):
        code, verifier = await issue_code(stack, "c6")
        response = await post_token(stack, code, verifier, basic=as_client("c6"), source=source)
        assert response.status_code == 200, response.text


async def test_failed_authentication_counters_are_namespaced(stack: Stack, redis: Redis) -> None:
    """The per-client counter is the identity ``client:<id>``, never an address or subject."""

    assert_invalid_client(
        await post_token(stack, "x", "y", source=address(), basic=("c7", "wrong-secret"))
    )
    by_client = await redis.hgetall(rate_key("client:c7"))
    assert by_client.get(b"tc") == b"1"
    assert await redis.exists(rate_key("c7")) == 0
