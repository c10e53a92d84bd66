"""``/authorize`` (OIDC Core §3.1.2, RFC 6749 §4.1, RFC 7636, RFC 9207) over real HTTP.

Before client_id and redirect_uri are validated every error is a page; after that every
refusal is a 303 to the RP carrying ``error``, ``error_description``, ``stepup_error``,
``state`` and ``iss``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from ..harness.rp import Flow, authorize, decode_id_token, pkce, query, redeem_code
from ..harness.servers import Stack
from ..harness.settings import REDIRECT_URI, client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")

FACE = "urn:idenfy:stepup:face"
LIVENESS = "urn:idenfy:stepup:liveness"
QS_REDIRECT = "http://127.0.0.1:9/cb?x=1"
HINTS = ["login_hint"]
SETTINGS: dict[str, Any] = {
    "acr": {
        "levels": {FACE: {"method": "FACE_MATCHING"}, LIVENESS: {"method": "ACTIVE_LIVENESS"}},
        "default": FACE,
    },
    "clients": [
        client_entry("shop", subject_hints=HINTS),
        client_entry("nopkce", subject_hints=HINTS, require_pkce=False),
        client_entry("noiss", subject_hints=HINTS, iss_on_error=False),
        client_entry("qs", subject_hints=HINTS, redirect_uris=[QS_REDIRECT]),
    ],
}


def assert_error_page(response: httpx.Response, status: int = 400) -> None:
    """No redirect before the client is validated: an HTML page, and no redirect anywhere."""
    assert response.status_code == status, (response.status_code, response.headers, response.text)
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


def assert_error_redirect(flow: Flow, stack: Stack, error: str, stepup_error: str = "") -> None:
    """A refusal reported to the RP, with everything a gateway needs to match it."""
    result = flow.redirect
    assert flow.response.headers["location"].startswith(flow.params["redirect_uri"])
    assert result["error"] == error, result
    assert result["stepup_error"] == (stepup_error or error), result
    assert result["error_description"]
    assert result["state"] == flow.params["state"]
    assert result["iss"] == stack.issuer
    assert "code" not in result


async def raw_get(stack: Stack, query_string: str) -> httpx.Response:
    """GET /authorize with the query string exactly as given (order, encoding, repeats)."""
    return await stack.browser().get(f"/authorize?{query_string}")


def params_for(**extra: str) -> dict[str, str]:
    _, challenge = pkce()
    return {
        "response_type": "code",
        "client_id": "shop",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": "alice",
        **extra,
    }


# -- accepted requests ---------------------------------------------------------------------------


async def test_get_opens_a_challenge_and_ends_with_a_code(stack: Stack) -> None:
    flow = await authorize(stack, login_hint="alice")
    assert flow.token, flow.response.text
    result = await flow.approve()
    assert result["code"]
    assert result["state"] == flow.params["state"]
    assert result["iss"] == stack.issuer


async def test_post_form_opens_a_challenge_and_ends_with_a_code(stack: Stack) -> None:
    # oidcc-ensure-post-request-succeeds
    flow = await authorize(stack, method="POST", login_hint="alice")
    assert flow.token, flow.response.text
    result = await flow.approve()
    assert result["code"] and result["state"] == flow.params["state"]
    response = await redeem_code(stack, result["code"], verifier=flow.verifier)
    assert response.status_code == 200, response.text


async def test_unknown_parameters_are_ignored(stack: Stack) -> None:
    # oidcc-ensure-request-with-unknown-parameter-succeeds
    flow = await authorize(stack, login_hint="alice", extra="foobar", **{"x-vendor": "1"})
    assert flow.token, flow.response.text


async def test_parameter_order_is_irrelevant(stack: Stack) -> None:
    # oidcc-alternate-happy-flow: the same request, parameters in reverse order.
    items = list(params_for().items())
    response = await raw_get(stack, urlencode(items[::-1]))
    assert response.status_code == 303
    assert response.headers["location"].startswith("/challenge/")


async def test_redirect_uri_with_registered_query_is_kept(stack: Stack) -> None:
    flow = await authorize(stack, client_id="qs", redirect_uri=QS_REDIRECT, login_hint="alice")
    assert flow.token, flow.response.text
    await flow.stack.outcome(flow.token, "SUCCESS")
    finish = await flow.browser.get(f"/challenge/{flow.token}/finish")
    location = finish.headers["location"]
    assert location.startswith("http://127.0.0.1:9/cb?x=1&")
    assert query(location)["code"]


async def test_client_without_required_pkce_works_without_it(stack: Stack) -> None:
    flow = await authorize(stack, client_id="nopkce", use_pkce=False, login_hint="alice")
    assert flow.token, flow.response.text
    result = await flow.approve()
    response = await redeem_code(stack, result["code"], client_id="nopkce")
    assert response.status_code == 200, response.text


async def test_max_age_zero_is_accepted_and_auth_time_is_in_the_id_token(stack: Stack) -> None:
    # oidcc-max-age-1 flavour: the step-up is always fresh, auth_time says when it happened.
    started = int(time.time())
    flow = await authorize(stack, login_hint="alice", max_age="0")
    assert flow.token, flow.response.text
    result = await flow.approve()
    response = await redeem_code(stack, result["code"], verifier=flow.verifier)
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    assert started - 1 <= claims["auth_time"] <= claims["iat"]


async def test_known_acr_values_is_the_acr_achieved(stack: Stack) -> None:
    # oidcc-ensure-request-with-acr-values-succeeds
    flow = await authorize(stack, login_hint="alice", acr_values=f"urn:unknown {LIVENESS}")
    result = await flow.approve()
    response = await redeem_code(stack, result["code"], verifier=flow.verifier)
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    assert claims["acr"] == LIVENESS


async def test_claims_with_essential_acr_is_honoured(stack: Stack) -> None:
    claims_param = json.dumps({"id_token": {"acr": {"essential": True, "values": [LIVENESS]}}})
    flow = await authorize(stack, login_hint="alice", claims=claims_param)
    result = await flow.approve()
    response = await redeem_code(stack, result["code"], verifier=flow.verifier)
    _, claims = await decode_id_token(stack, response.json()["id_token"])
    assert claims["acr"] == LIVENESS


# -- refusals reported to the RP ------------------------------------------------------------------

REFUSALS: list[tuple[str, dict[str, Any], str, str]] = [
    ("missing code_challenge", {"code_challenge": None, "code_challenge_method": None},
     "invalid_request", "pkce_required"),
    ("plain PKCE", {"code_challenge_method": "plain"}, "invalid_request", ""),
    ("PKCE without method", {"code_challenge_method": None}, "invalid_request", ""),
    ("PKCE with unknown method", {"code_challenge_method": "S512"}, "invalid_request", ""),
    ("implicit", {"response_type": "token"}, "unsupported_response_type", ""),
    ("hybrid", {"response_type": "code id_token"}, "unsupported_response_type", ""),
    ("scope without openid", {"scope": "profile"}, "invalid_scope", ""),
    ("prompt=none", {"prompt": "none"}, "login_required", ""),
    ("prompt=none login", {"prompt": "none login"}, "invalid_request", ""),
    ("malformed claims", {"claims": "{not json"}, "invalid_request", ""),
    ("claims not an object", {"claims": "[1]"}, "invalid_request", ""),
    ("claims nested past the recursion limit", {"claims": "[" * 3000 + "]" * 3000},
     "invalid_request", ""),
    ("claims nested too deeply", {"claims": '{"id_token":' * 9 + "1" + "}" * 9},
     "invalid_request", ""),
    ("fragment response_mode", {"response_mode": "fragment"}, "invalid_request", ""),
    ("form_post response_mode", {"response_mode": "form_post"}, "invalid_request", ""),
    ("request_uri", {"request_uri": "https://rp.example/ro.jwt"}, "request_uri_not_supported",
     ""),
    ("bad max_age", {"max_age": "-1"}, "invalid_request", ""),
    ("essential acr unknown",
     {"claims": '{"id_token": {"acr": {"essential": true, "values": ["urn:nope"]}}}'},
     "unmet_authentication_requirements", "acr_unsupported"),
    ("acr_values unknown", {"acr_values": "urn:nope"}, "unmet_authentication_requirements",
     "acr_unsupported"),
    ("no subject hint", {"login_hint": None}, "invalid_request", "subject_required"),
    ("not enrolled", {"login_hint": "bob"}, "unmet_authentication_requirements",
     "not_enrolled"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "error", "stepup_error"),
    [pytest.param(o, e, s, id=name) for name, o, e, s in REFUSALS],
)
async def test_refusal_redirects_with_state_iss_and_codes(
    stack: Stack, overrides: dict[str, Any], error: str, stepup_error: str
) -> None:
    flow = await authorize(stack, **{"login_hint": "alice", **overrides})
    assert_error_redirect(flow, stack, error, stepup_error)


@pytest.mark.parametrize(
    "overrides",
    [{"response_type": "token"}, {"code_challenge_method": "plain"}, {"prompt": "none"}],
    ids=["protocol-error", "pkce", "prompt"],
)
async def test_client_without_iss_on_error_gets_none_on_errors(
    stack: Stack, overrides: dict[str, str]
) -> None:
    # mod_auth_openidc 2.4.x reads `iss` without `code` as a discovery response.
    flow = await authorize(stack, client_id="noiss", login_hint="alice", **overrides)
    result = flow.redirect
    assert result["error"] and result["state"] == flow.params["state"]
    assert "iss" not in result


async def test_client_without_iss_on_error_still_gets_iss_on_success(stack: Stack) -> None:
    flow = await authorize(stack, client_id="noiss", login_hint="alice")
    result = await flow.approve()
    assert result["code"] and result["iss"] == stack.issuer


async def test_error_redirect_without_state_has_no_state(stack: Stack) -> None:
    flow = await authorize(stack, login_hint="alice", state=None, prompt="none")
    result = flow.redirect
    assert result["error"] == "login_required" and result["iss"] == stack.issuer
    assert "state" not in result


# -- errors before the redirect_uri is trusted: pages, never redirects -----------------------------


@pytest.mark.parametrize(
    ("client_id", "redirect_uri"),
    [
        ("qs", "http://127.0.0.1:9/cb?x=2"),  # oidcc-redirect-uri-query-mismatch
        ("qs", "http://127.0.0.1:9/cb"),
        ("qs", "http://127.0.0.1:9/cb?x=1&y=2"),
        ("shop", REDIRECT_URI + "/"),
        ("shop", REDIRECT_URI.upper()),
        ("shop", "https://evil.example/callback"),  # oidcc-ensure-registered-redirect-uri
        ("shop", None),
        ("nobody", REDIRECT_URI),
        (None, REDIRECT_URI),
    ],
)
async def test_unregistered_redirect_uri_or_client_is_an_error_page(
    stack: Stack, client_id: str | None, redirect_uri: str | None
) -> None:
    flow = await authorize(
        stack, client_id=client_id, redirect_uri=redirect_uri, login_hint="alice"
    )
    assert_error_page(flow.response)


@pytest.mark.parametrize(
    "name",
    [
        "state",
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "nonce",
        "login_hint",
        "code_challenge",
        "code_challenge_method",
        "acr_values",
        "claims",
        "prompt",
        "max_age",
        "id_token_hint",
        "request",
        "ui_locales",
    ],
)
async def test_repeated_parameter_is_refused(stack: Stack, name: str) -> None:
    # RFC 6749 §3.1: parameters MUST NOT be included more than once.
    items = [(k, v) for k, v in params_for().items() if k != name]
    value = params_for().get(name, "1")
    response = await raw_get(stack, urlencode([*items, (name, value), (name, value)]))
    if name in ("client_id", "redirect_uri"):
        # Which copy would we trust to redirect to? A page.
        assert_error_page(response)
        assert "invalid_request" in response.text
        return
    # client_id and redirect_uri are single and registered: the RP hears of it, with iss; a
    # repeated state is echoed in neither copy.
    location = response.headers["location"]
    assert response.status_code == 303 and location.startswith(REDIRECT_URI), location
    got = parse_qs(urlsplit(location).query)
    assert got["error"] == ["invalid_request"] and got["iss"] == [stack.issuer]
    assert got.get("state") == (None if name == "state" else [params_for()["state"]])


async def test_repeated_unknown_parameter_is_ignored(stack: Stack) -> None:
    items = list(params_for().items())
    response = await raw_get(stack, urlencode([*items, ("foo", "1"), ("foo", "2")]))
    assert response.headers["location"].startswith("/challenge/")


async def test_oversized_post_body_is_a_413_page(stack: Stack) -> None:
    limit = stack.settings.server.max_form_bytes
    data = {**params_for(), "padding": "a" * (limit + 1)}
    response = await stack.browser().post("/authorize", data=data)
    assert_error_page(response, 413)


async def test_oversized_chunked_post_body_is_a_413_page(stack: Stack) -> None:
    # No Content-Length: the limit is enforced while reading.
    limit = stack.settings.server.max_form_bytes
    body = urlencode({**params_for(), "padding": "a" * (limit + 1)}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await stack.browser().post("/authorize", content=chunks(), headers=headers)
    assert_error_page(response, 413)


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x", None]
)
async def test_post_with_wrong_content_type_is_a_400_page(
    stack: Stack, content_type: str | None
) -> None:
    body = urlencode(params_for()).encode()
    headers = {"Content-Type": content_type} if content_type else {}
    response = await stack.browser().post("/authorize", content=body, headers=headers)
    assert_error_page(response, 400)


@pytest.mark.parametrize(
    "bad", ["%FF", "%C3%28", "%ED%A0%80"], ids=["ff", "bad-2byte", "surrogate"]
)
@pytest.mark.parametrize("where", ["state", "login_hint", "client_id"])
async def test_non_utf8_query_is_an_error_page(stack: Stack, where: str, bad: str) -> None:
    items = [(k, v) for k, v in params_for().items() if k != where]
    response = await raw_get(stack, urlencode(items) + f"&{where}=ab{bad}")
    assert_error_page(response, 400)


async def test_non_utf8_post_body_is_an_error_page(stack: Stack) -> None:
    body = urlencode(params_for()).encode() + b"&state=%FF"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = await stack.browser().post("/authorize", content=body, headers=headers)
    assert_error_page(response, 400)


async def test_redirects_never_leave_the_registered_origin(stack: Stack) -> None:
    # No open redirect: every answer is a page, the challenge, or the registered redirect_uri.
    for overrides in ({"response_type": "token"}, {"prompt": "none"}, {"login_hint": "bob"}):
        flow = await authorize(stack, **{"login_hint": "alice", **overrides})
        location = urlsplit(flow.response.headers["location"])
        assert (location.scheme, location.netloc) == ("http", "127.0.0.1:9")
