"""Who is stepped up: request objects, id_token_hint, login_hint (docs/architecture.md,
"Authorization and token requests"; OIDC Core §3.1.2.1, §6.1; RFC 9101).
The subject must come from something the client vouched for."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey, import_key
from redis.asyncio import Redis

from ..harness.redis import SECRETS_KEY
from ..harness.rp import Flow, authorize, decode_id_token, redeem_code
from ..harness.rp import request_object as signed_request_object
from ..harness.servers import Stack
from ..harness.settings import REDIRECT_URI, client_entry, client_secret

pytestmark = pytest.mark.asyncio(loop_scope="module")

UPSTREAM = "https://sso.upstream.example"
UPSTREAM_KEY = ECKey.generate_key("P-256", parameters={"kid": "up-1", "alg": "ES256"})
RP_KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "alg": "RS256"})
SETTINGS: dict[str, Any] = {
    "directory": {
        "trusted_issuers": [
            {"issuer": UPSTREAM, "jwks": {"keys": [UPSTREAM_KEY.as_dict(private=False)]}},
        ],
    },
    "clients": [
        client_entry("shop", subject_hints=["login_hint", "request_object", "id_token_hint"]),
        client_entry("strict"),  # the default hints: request_object and id_token_hint
        client_entry("strict2"),
        client_entry("hintless", subject_hints=["request_object"]),
        {
            "client_id": "jwks",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [RP_KEY.as_dict(private=False)]},
        },
    ],
}


def request_object(stack: Stack, client_id: str = "strict", **kwargs: Any) -> str:
    """A request object signed by ``client_id`` (by default ``strict``)."""
    return signed_request_object(stack, client_id, **kwargs)


def unsigned(claims: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


async def sub_after_approval(stack: Stack, flow: Flow) -> str:
    """Approve the face check, redeem the code; the id_token's ``sub``."""
    result = await flow.approve()
    client_id = flow.params["client_id"]
    response = await redeem_code(stack, result["code"], client_id=client_id, verifier=flow.verifier)
    assert response.status_code == 200, response.text
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    assert claims["aud"] == client_id
    sub: str = claims["sub"]
    return sub


async def id_token_for(stack: Stack, client_id: str, subject: str = "alice") -> str:
    """A real id_token from a full step-up of ``subject`` by ``client_id``."""
    flow = await authorize(
        stack, client_id=client_id, request=request_object(stack, client_id, login_hint=subject)
    )
    result = await flow.approve()
    response = await redeem_code(stack, result["code"], client_id=client_id, verifier=flow.verifier)
    token: str = response.json()["id_token"]
    return token


async def provider_key(stack: Stack, redis: Redis) -> Key:
    """The provider's own RS256 signing key as shared in Redis (generated once per Redis)."""
    raw = await redis.hget(SECRETS_KEY, "jwk:RS256")
    assert raw is not None
    return import_key(json.loads(raw))


def assert_refused(flow: Flow, stack: Stack, error: str, stepup_error: str = "") -> None:
    assert not flow.token, "a challenge was opened"
    result = flow.redirect
    assert result["error"] == error, result
    assert result["stepup_error"] == (stepup_error or error), result
    assert result["state"] == flow.params["state"] and result["iss"] == stack.issuer


# -- login_hint ------------------------------------------------------------------------------------


async def test_login_hint_works_where_the_client_allows_it(stack: Stack) -> None:
    flow = await authorize(stack, client_id="shop", login_hint="alice")
    assert await sub_after_approval(stack, flow) == "alice"


async def test_login_hint_is_ignored_where_the_client_does_not_allow_it(stack: Stack) -> None:
    flow = await authorize(stack, client_id="strict", login_hint="alice")
    assert_refused(flow, stack, "invalid_request", "subject_required")


async def test_internal_marker_parameter_cannot_unlock_login_hint(stack: Stack) -> None:
    # The provider once flagged "came from a request object" with a request parameter; a
    # browser sending that name itself must not make a plain login_hint count.
    flow = await authorize(
        stack, client_id="strict", login_hint="alice", _stepup_request_object="1"
    )
    assert_refused(flow, stack, "invalid_request", "subject_required")


# -- request objects -------------------------------------------------------------------------------


async def test_hs256_request_object_with_login_hint(stack: Stack) -> None:
    flow = await authorize(
        stack, client_id="strict", request=request_object(stack, login_hint="alice")
    )
    assert await sub_after_approval(stack, flow) == "alice"


async def test_request_object_with_claims_sub_value(stack: Stack) -> None:
    claims = {"id_token": {"sub": {"value": "alice"}}}
    flow = await authorize(stack, client_id="strict", request=request_object(stack, claims=claims))
    assert await sub_after_approval(stack, flow) == "alice"


async def test_request_object_parameters_win_over_the_query(stack: Stack) -> None:
    # OIDC Core §6.3.3: state, nonce... from the signed object supersede the query's.
    signed = request_object(stack, login_hint="alice", state="signed-state", nonce="signed-nonce")
    flow = await authorize(stack, client_id="strict", request=signed, state="query-state")
    result = await flow.approve()
    assert result["state"] == "signed-state"
    response = await redeem_code(stack, result["code"], client_id="strict", verifier=flow.verifier)
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    assert claims["nonce"] == "signed-nonce"


async def test_rs256_request_object_from_a_client_with_jwks(stack: Stack) -> None:
    signed = request_object(stack, "jwks", key=RP_KEY, alg="RS256", login_hint="alice")
    flow = await authorize(stack, client_id="jwks", request=signed)
    assert flow.token, flow.response.text


async def test_query_login_hint_does_not_name_the_subject_of_a_request_object(
    stack: Stack,
) -> None:
    # The object names nobody; an unsigned login_hint beside it must not fill the gap.
    flow = await authorize(
        stack, client_id="strict", request=request_object(stack), login_hint="alice"
    )
    assert_refused(flow, stack, "invalid_request", "subject_required")


async def test_query_claims_do_not_override_the_signed_subject(stack: Stack) -> None:
    # The signed object says bob (not enrolled); a query `claims` naming alice must not
    # redirect the face check to alice.
    query_claims = json.dumps({"id_token": {"sub": {"value": "alice"}}})
    flow = await authorize(
        stack,
        client_id="strict",
        request=request_object(stack, login_hint="bob"),
        claims=query_claims,
    )
    assert not flow.token, "the face check was opened for the query's subject"
    assert flow.redirect["stepup_error"] == "not_enrolled"


async def test_unsigned_request_object_is_refused(stack: Stack) -> None:
    body = {"client_id": "strict", "response_type": "code", "login_hint": "alice"}
    flow = await authorize(stack, client_id="strict", request=unsigned(body))
    assert not flow.token
    assert flow.redirect["error"] == "invalid_request_object"
    assert flow.redirect["state"] == flow.params["state"]


@pytest.mark.parametrize(
    "case", ["wrong secret", "another client's secret", "expired", "wrong audience"]
)
async def test_bad_request_object_is_invalid_request_object(stack: Stack, case: str) -> None:
    key: Key | None = None
    claims: dict[str, Any] = {"login_hint": "alice"}
    if case == "wrong secret":
        key = OctKey.import_key("not-the-secret-0123456789-0123456789-0123")
    elif case == "another client's secret":
        key = OctKey.import_key(client_secret("shop"))
    elif case == "expired":
        claims["exp"] = int(time.time()) - 3600
    else:
        claims["aud"] = "https://another-op.example"
    flow = await authorize(
        stack, client_id="strict", request=request_object(stack, key=key, **claims)
    )
    assert_refused(flow, stack, "invalid_request_object")


async def test_request_object_nested_too_deeply_is_refused(stack: Stack) -> None:
    deep: Any = "alice"
    for _ in range(900):
        deep = {"a": deep}
    flow = await authorize(
        stack,
        method="POST",
        client_id="strict",
        request=request_object(stack, login_hint="alice", claims=deep),
    )
    assert not flow.token
    assert flow.redirect["error"] == "invalid_request"


async def test_request_object_for_another_client_id_is_refused(stack: Stack) -> None:
    signed = request_object(stack, "strict2", login_hint="alice")
    flow = await authorize(stack, client_id="strict", request=signed)
    assert not flow.token
    assert flow.redirect["error"] == "invalid_request_object"


async def test_hs256_request_object_from_a_jwks_client_is_refused(stack: Stack) -> None:
    # A client that registered keys signs with them; HS256 has no secret to check against.
    signed = request_object(stack, "jwks", key=OctKey.import_key("x" * 40), login_hint="alice")
    flow = await authorize(stack, client_id="jwks", request=signed)
    assert not flow.token
    assert flow.redirect["error"] == "invalid_request_object"


# -- id_token_hint -------------------------------------------------------------------------------


async def test_id_token_hint_from_an_earlier_step_up_names_the_same_subject(stack: Stack) -> None:
    hint = await id_token_for(stack, "strict", "alice")
    flow = await authorize(stack, client_id="strict", id_token_hint=hint)
    assert await sub_after_approval(stack, flow) == "alice"


async def test_expired_id_token_hint_is_still_a_hint(stack: Stack, redis: Redis) -> None:
    # OIDC Core §3.1.2.1: the hint may have expired; it names the subject all the same, within
    # keys.id_token_hint_tolerance (600 s; tests/oidc/test_id_token_hint_checks.py: beyond it).
    key = await provider_key(stack, redis)
    now = int(time.time())
    claims = {
        "iss": stack.issuer,
        "aud": "strict",
        "sub": "alice",
        "iat": now - 900,
        "exp": now - 500,
    }
    hint = jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)
    flow = await authorize(stack, client_id="strict", id_token_hint=hint)
    assert await sub_after_approval(stack, flow) == "alice"


async def test_id_token_hint_issued_to_another_client_is_refused(stack: Stack) -> None:
    hint = await id_token_for(stack, "strict2", "alice")
    flow = await authorize(stack, client_id="strict", id_token_hint=hint)
    assert_refused(flow, stack, "invalid_request", "invalid_id_token_hint")


async def test_id_token_hint_not_signed_by_a_trusted_key_is_refused(stack: Stack) -> None:
    forged_key = RSAKey.generate_key(2048, parameters={"kid": "forged"})
    now = int(time.time())
    claims = {"iss": stack.issuer, "aud": "strict", "sub": "alice", "iat": now, "exp": now + 60}
    for hint in (
        jwt.encode({"alg": "RS256", "kid": "forged"}, claims, forged_key),
        unsigned(claims),
        "not-a-jwt",
    ):
        flow = await authorize(stack, client_id="strict", id_token_hint=hint)
        assert_refused(flow, stack, "invalid_request", "invalid_id_token_hint")


async def test_id_token_hint_is_not_accepted_where_the_client_does_not_allow_it(
    stack: Stack,
) -> None:
    hint = await id_token_for(stack, "hintless", "alice")
    flow = await authorize(stack, client_id="hintless", id_token_hint=hint)
    assert_refused(flow, stack, "invalid_request", "subject_required")


def upstream_token(
    subject: str, *, iss: str = UPSTREAM, key: Key = UPSTREAM_KEY, aud: str = "strict"
) -> str:
    """An upstream id_token issued to ``aud`` (the trusted issuer's default audience is the
    requesting client's client_id)."""
    now = int(time.time())
    claims = {"iss": iss, "aud": aud, "sub": subject, "iat": now, "exp": now + 300}
    return jwt.encode({"alg": "ES256", "kid": "up-1"}, claims, key)


async def test_id_token_from_a_trusted_upstream_issuer(stack: Stack) -> None:
    flow = await authorize(stack, client_id="strict", id_token_hint=upstream_token("alice"))
    assert await sub_after_approval(stack, flow) == "alice"


async def test_upstream_token_claiming_another_issuer_is_refused(stack: Stack) -> None:
    hint = upstream_token("alice", iss="https://impostor.example")
    flow = await authorize(stack, client_id="strict", id_token_hint=hint)
    assert_refused(flow, stack, "invalid_request", "invalid_id_token_hint")


async def test_upstream_token_signed_with_another_key_is_refused(stack: Stack) -> None:
    other = ECKey.generate_key("P-256", parameters={"kid": "up-1", "alg": "ES256"})
    flow = await authorize(
        stack, client_id="strict", id_token_hint=upstream_token("alice", key=other)
    )
    assert_refused(flow, stack, "invalid_request", "invalid_id_token_hint")


# -- several hints ---------------------------------------------------------------------------------


async def test_conflicting_hints_are_refused(stack: Stack) -> None:
    flow = await authorize(
        stack,
        client_id="shop",
        login_hint="alice",
        id_token_hint=upstream_token("carol", aud="shop"),
    )
    assert_refused(flow, stack, "invalid_request", "subject_conflict")


async def test_request_object_and_id_token_hint_conflict(stack: Stack) -> None:
    # Both inside the object: beside one, the query's id_token_hint is ignored (RFC 9101 §5;
    # tests/oidc/test_request_object_checks.py).
    signed = request_object(stack, login_hint="alice", id_token_hint=upstream_token("carol"))
    flow = await authorize(stack, client_id="strict", request=signed)
    assert_refused(flow, stack, "invalid_request", "subject_conflict")


async def test_agreeing_hints_are_one_subject(stack: Stack) -> None:
    flow = await authorize(
        stack,
        client_id="shop",
        login_hint="alice",
        id_token_hint=upstream_token("alice", aud="shop"),
    )
    assert await sub_after_approval(stack, flow) == "alice"
