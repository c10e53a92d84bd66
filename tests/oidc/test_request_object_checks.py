"""A signed request object is checked completely (RFC 9101 §4, §5, §10.8; OIDC Core §6).

It must expire soon (``exp`` required, at most ``request_object_max_lifetime`` ahead), be meant
for us (``aud`` is the issuer), and be used once (``jti`` required, remembered in Redis until
``exp``). Beside it, the query's copies of the parameters that decide the subject and the level
are ignored, not merged. Every refusal is an ``invalid_request_object`` redirect with ``state``
and ``iss``, and opens no challenge.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from ..harness.rp import Flow, authorize, decode_id_token, redeem_code, request_object
from ..harness.servers import Stack
from ..harness.settings import client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")

FACE = "urn:idenfy:stepup:face"
LIVENESS = "urn:idenfy:stepup:liveness"
SETTINGS: dict[str, Any] = {
    # The default is the stronger level, so that a query asking for the weaker one shows.
    "acr": {
        "levels": {FACE: {"method": "FACE_MATCHING"}, LIVENESS: {"method": "ACTIVE_LIVENESS"}},
        "default": LIVENESS,
    },
    "clients": [
        client_entry("strict"),  # request_object and id_token_hint
        client_entry("other"),
        client_entry("patient", request_object_max_lifetime=3600),
    ],
}


def signed(stack: Stack, client_id: str = "strict", **claims: Any) -> str:
    """A request object for alice, HS256 with the client's secret; a claim given as None is
    left out."""
    return request_object(stack, client_id, **{"login_hint": "alice", **claims})


def assert_refused(flow: Flow, stack: Stack, error: str = "invalid_request_object") -> None:
    assert not flow.token, "a challenge was opened"
    result = flow.redirect
    assert result["error"] == error, result
    assert result["stepup_error"] == error, result
    assert result["state"] == flow.params["state"], result
    assert result["iss"] == stack.issuer, result


async def id_token_claims(stack: Stack, flow: Flow) -> dict[str, Any]:
    """Approve the face check and redeem the code: the id_token's claims."""
    result = await flow.approve()
    client_id = flow.params["client_id"]
    response = await redeem_code(stack, result["code"], client_id=client_id, verifier=flow.verifier)
    assert response.status_code == 200, response.text
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    return claims


# -- exp -----------------------------------------------------------------------------------------


async def test_request_object_without_exp_is_refused(stack: Stack) -> None:
    flow = await authorize(stack, client_id="strict", request=signed(stack, exp=None))
    assert_refused(flow, stack)


@pytest.mark.parametrize("ahead", [3600, 10 * 365 * 86400])
async def test_request_object_expiring_too_late_is_refused(stack: Stack, ahead: int) -> None:
    # Default request_object_max_lifetime: 600 seconds.
    exp = int(time.time()) + ahead
    flow = await authorize(stack, client_id="strict", request=signed(stack, exp=exp))
    assert_refused(flow, stack)


async def test_request_object_max_lifetime_is_per_client(stack: Stack) -> None:
    exp = int(time.time()) + 1800
    allowed = await authorize(stack, client_id="patient", request=signed(stack, "patient", exp=exp))
    assert allowed.token, allowed.response.headers
    refused = await authorize(stack, client_id="strict", request=signed(stack, exp=exp))
    assert_refused(refused, stack)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
async def test_request_object_from_the_future_is_refused(stack: Stack, claim: str) -> None:
    later = int(time.time()) + 200
    flow = await authorize(stack, client_id="strict", request=signed(stack, **{claim: later}))
    assert_refused(flow, stack)


# -- aud -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("aud", ["endpoint", "missing", "another"])
async def test_request_object_audience_must_be_the_issuer(stack: Stack, aud: str) -> None:
    value = {
        "endpoint": f"{stack.issuer}/authorize",
        "missing": None,
        "another": "https://another-op.example",
    }[aud]
    flow = await authorize(stack, client_id="strict", request=signed(stack, aud=value))
    assert_refused(flow, stack)


async def test_request_object_audience_list_containing_the_issuer_is_accepted(
    stack: Stack,
) -> None:
    aud = ["https://another-op.example", stack.issuer]
    flow = await authorize(stack, client_id="strict", request=signed(stack, aud=aud))
    assert flow.token, flow.response.headers


# -- jti: each object is used once ---------------------------------------------------------------


async def test_request_object_without_jti_is_refused(stack: Stack) -> None:
    flow = await authorize(stack, client_id="strict", request=signed(stack, jti=None))
    assert_refused(flow, stack)


async def test_replayed_request_object_is_refused(stack: Stack) -> None:
    obj = signed(stack)
    first = await authorize(stack, client_id="strict", request=obj)
    assert first.token, first.response.headers
    again = await authorize(stack, client_id="strict", request=obj)
    assert_refused(again, stack)
    # A new object (new jti) for the same subject still works.
    fresh = await authorize(stack, client_id="strict", request=signed(stack))
    assert fresh.token, fresh.response.headers


async def test_replay_refusal_carries_the_signed_state(stack: Stack) -> None:
    # The object's state is the one the client signed and expects back.
    obj = signed(stack, state="signed-state")
    first = await authorize(stack, client_id="strict", request=obj, state="signed-state")
    assert first.token
    again = await authorize(stack, client_id="strict", request=obj, state="signed-state")
    assert_refused(again, stack)


async def test_jti_is_remembered_per_client(stack: Stack) -> None:
    jti = secrets.token_urlsafe(16)
    mine = await authorize(stack, client_id="strict", request=signed(stack, jti=jti))
    assert mine.token
    theirs = await authorize(stack, client_id="other", request=signed(stack, "other", jti=jti))
    assert theirs.token, "another client's jti of the same value was taken for a replay"


async def test_refused_object_does_not_spend_its_jti(stack: Stack) -> None:
    # The signature is checked before the jti is remembered: a forgery carrying a jti the
    # client will use cannot burn it.
    jti = secrets.token_urlsafe(16)
    body = {
        "iss": "strict",
        "aud": stack.issuer,
        "client_id": "strict",
        "response_type": "code",
        "exp": int(time.time()) + 300,
        "jti": jti,
        "login_hint": "alice",
    }
    forged = jwt.encode({"alg": "HS256"}, body, OctKey.import_key("f" * 40))
    refused = await authorize(stack, client_id="strict", request=forged)
    assert_refused(refused, stack)
    genuine = await authorize(stack, client_id="strict", request=signed(stack, jti=jti))
    assert genuine.token, genuine.response.headers


# -- the query beside a request object -----------------------------------------------------------


async def test_query_claims_do_not_change_the_signed_acr(stack: Stack) -> None:
    query_claims = json.dumps({"id_token": {"acr": {"essential": True, "values": [FACE]}}})
    flow = await authorize(
        stack, client_id="strict", request=signed(stack, acr_values=LIVENESS), claims=query_claims
    )
    assert (await id_token_claims(stack, flow))["acr"] == LIVENESS


async def test_query_claims_that_are_not_json_are_ignored(stack: Stack) -> None:
    flow = await authorize(stack, client_id="strict", request=signed(stack), claims="not-json")
    assert flow.token, flow.response.headers
    assert (await id_token_claims(stack, flow))["sub"] == "alice"


async def test_query_acr_values_beside_a_request_object_are_ignored(stack: Stack) -> None:
    # The object names no acr: the default (liveness) applies, not the query's weaker one.
    flow = await authorize(stack, client_id="strict", request=signed(stack), acr_values=FACE)
    assert (await id_token_claims(stack, flow))["acr"] == LIVENESS


async def test_query_max_age_beside_a_request_object_is_ignored(stack: Stack) -> None:
    flow = await authorize(stack, client_id="strict", request=signed(stack), max_age="not-a-number")
    assert flow.token, flow.response.headers


async def test_request_object_claims_still_decide_the_acr(stack: Stack) -> None:
    object_claims = {"id_token": {"acr": {"essential": True, "values": [FACE]}}}
    flow = await authorize(stack, client_id="strict", request=signed(stack, claims=object_claims))
    assert (await id_token_claims(stack, flow))["acr"] == FACE


# -- text that is not valid Unicode --------------------------------------------------------------


@pytest.mark.parametrize("claim", ["state", "nonce", "login_hint", "jti", "extra"])
async def test_lone_surrogate_in_a_request_object_is_refused(stack: Stack, claim: str) -> None:
    # json.dumps escapes it as \ud800, which every JSON decoder accepts.
    flow = await authorize(stack, client_id="strict", request=signed(stack, **{claim: "a\ud800b"}))
    assert_refused(flow, stack)
