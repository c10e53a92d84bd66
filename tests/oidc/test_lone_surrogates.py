"""A lone UTF-16 surrogate escaped in network JSON is a clear refusal, never a 500.

JSON lets ``"\\ud800"`` through and Python decodes it into a ``str`` no UTF-8 encoder takes;
it must be refused where it arrives, not when it reaches a Redis key or a redirect. The
webhook's share is in tests/property/test_webhook_fields.py, request objects' in
tests/oidc/test_request_object_checks.py.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import pytest
from joserfc import jws
from joserfc.jwk import RSAKey

from ..harness.rp import authorize, redeem_code
from ..harness.servers import Stack
from ..harness.settings import REDIRECT_URI, client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")

RP_KEY = RSAKey.generate_key(2048, parameters={"kid": "rp-1", "alg": "RS256", "use": "sig"})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SETTINGS: dict[str, Any] = {
    "clients": [
        client_entry("shop", subject_hints=["login_hint"]),
        {
            "client_id": "jwt",
            "redirect_uris": [REDIRECT_URI],
            "subject_hints": ["login_hint"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [RP_KEY.as_dict(private=False)]},
        },
    ],
}


@pytest.mark.parametrize(
    "claims",
    [
        {"userinfo": {"\ud800": None}},
        {"id_token": {"acr": {"essential": False, "values": ["a\udfff"]}}},
        {"id_token": {"email": {"value": "\udbff"}}},
    ],
)
async def test_claims_parameter_with_a_lone_surrogate_is_invalid_request(
    stack: Stack, claims: dict[str, Any]
) -> None:
    flow = await authorize(stack, login_hint="alice", claims=json.dumps(claims))
    assert not flow.token, "a challenge was opened"
    result = flow.redirect
    assert result["error"] == "invalid_request", result
    assert result["state"] == flow.params["state"] and result["iss"] == stack.issuer


def assertion(stack: Stack, **claims: Any) -> str:
    """A private_key_jwt assertion, its payload written with json.dumps (escapes kept)."""
    now = int(time.time())
    body = {
        "iss": "jwt",
        "sub": "jwt",
        "aud": stack.issuer,
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    return jws.serialize_compact({"alg": "RS256", "kid": "rp-1"}, json.dumps(body), RP_KEY)


@pytest.mark.parametrize("claim", ["jti", "extra"])
async def test_client_assertion_with_a_lone_surrogate_is_invalid_client(
    stack: Stack, claim: str
) -> None:
    flow = await authorize(stack, client_id="jwt", login_hint="alice")
    code = (await flow.approve())["code"]
    form = {
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion(stack, **{claim: "x\ud800"}),
    }
    response = await redeem_code(
        stack, code, client_id="jwt", auth="none", verifier=flow.verifier, **form
    )
    # RFC 6749 §5.2: 400 (401 is for a client that authenticated with an Authorization header,
    # and this one sent none).
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.json()["error"] == "invalid_client"
