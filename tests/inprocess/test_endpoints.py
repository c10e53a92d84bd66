"""Endpoints in process: discovery, keys, a whole step-up, and the refusals, as an RP sees them.

The pattern for a fast endpoint test: the ``client`` fixture is a browser on the provider's
app (real Redis, fake vendor); ``vendor`` is the fake iDenfy, which also writes the signed
webhook it would send.
"""

from __future__ import annotations

from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from idenfy_stepup.settings import Settings

from ..harness.fake_vendor import IFRAME_BASE, FakeIdenfy
from ..harness.rp import challenge_token, pkce, query, request_params
from ..harness.settings import CLIENT_SECRET, REDIRECT_URI


async def start(
    client: httpx.AsyncClient, **params: str | None
) -> tuple[httpx.Response, dict[str, str], str]:
    """alice's authorization request: the first answer, what was sent and the PKCE verifier."""
    verifier, code_challenge = pkce()
    sent = request_params(code_challenge, **{"login_hint": "alice", **params})
    return await client.get("/authorize", params=sent), sent, verifier


async def webhook(
    client: httpx.AsyncClient, vendor: FakeIdenfy, token: str, status: str, **extra: Any
) -> Any:
    body, headers = vendor.webhook(token, status, **extra)
    response = await client.post("/webhooks/idenfy", content=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_discovery_names_this_issuer_and_the_code_flow(client: httpx.AsyncClient) -> None:
    response = await client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    document = response.json()
    issuer = document["issuer"]
    assert issuer == str(client.base_url).rstrip("/")
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert document[name].startswith(issuer + "/"), (name, document[name])
    assert document["response_types_supported"] == ["code"]
    assert "S256" in document["code_challenge_methods_supported"]
    assert "plain" not in document["code_challenge_methods_supported"]


async def test_jwks_publishes_public_keys_only(client: httpx.AsyncClient) -> None:
    keys = (await client.get("/jwks")).json()["keys"]
    assert {key["alg"] for key in keys} == {"RS256", "ES256"}
    assert len({key["kid"] for key in keys}) == len(keys)
    for key in keys:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), key


async def test_authorize_opens_a_vendor_session_and_shows_its_frame(
    client: httpx.AsyncClient, vendor: FakeIdenfy
) -> None:
    response, _, _ = await start(client)
    token = challenge_token(response)
    assert token, (response.status_code, response.headers)
    session = vendor.sessions[token]
    assert (session.scan_ref, session.type, session.method) == (
        "SCAN-ALICE",
        "AUTHENTICATION",
        "FACE_MATCHING",
    )
    assert vendor.calls == [
        "GET /identification/facial-auth/SCAN-ALICE/check-status/",
        "POST /partner/authentication-info",
    ]
    page = await client.get(f"/challenge/{token}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f"{IFRAME_BASE}/?token={token}" in page.text.replace("&amp;", "&")


async def test_signed_success_webhook_then_finish_gives_a_code_for_an_id_token(
    client: httpx.AsyncClient, vendor: FakeIdenfy, settings: Settings
) -> None:
    response, sent, verifier = await start(client)
    token = challenge_token(response)
    assert (await client.get(f"/challenge/{token}")).status_code == 200  # the browser's cookie
    # Before the webhook, finishing only returns to the page.
    early = await client.get(f"/challenge/{token}/finish")
    assert early.status_code == 303 and early.headers["location"] == f"/challenge/{token}"

    assert await webhook(client, vendor, token, "SUCCESS") == {"result": "applied"}
    finish = await client.get(f"/challenge/{token}/finish")
    assert finish.status_code == 303
    assert finish.headers["location"].startswith(REDIRECT_URI + "?")
    result = query(finish.headers["location"])
    assert (result["state"], result["iss"]) == (sent["state"], settings.issuer)

    form = {
        "grant_type": "authorization_code",
        "code": result["code"],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    tokens = await client.post("/token", data=form, auth=("shop", CLIENT_SECRET))
    assert tokens.status_code == 200, tokens.text
    keys = KeySet.import_key_set((await client.get("/jwks")).json())
    claims = jwt.decode(tokens.json()["id_token"], keys).claims
    assert (claims["iss"], claims["aud"], claims["sub"]) == (settings.issuer, "shop", "alice")
    assert claims["nonce"] == sent["nonce"]
    assert claims["acr"] == settings.acr.default and claims["amr"] == ["face"]
    # The code is spent.
    again = await client.post("/token", data=form, auth=("shop", CLIENT_SECRET))
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")


async def test_failed_webhook_finishes_with_the_rp_error_and_no_code(
    client: httpx.AsyncClient, vendor: FakeIdenfy
) -> None:
    response, sent, _ = await start(client)
    token = challenge_token(response)
    await client.get(f"/challenge/{token}")
    assert await webhook(client, vendor, token, "FAILED", fail_reason="FACE_MISMATCH") == {
        "result": "applied"
    }
    result = query((await client.get(f"/challenge/{token}/finish")).headers["location"])
    assert (result["error"], result["stepup_error"]) == ("access_denied", "face_mismatch")
    assert result["state"] == sent["state"] and "code" not in result


async def test_unsigned_webhook_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, vendor: FakeIdenfy
) -> None:
    response, _, _ = await start(client)
    token = challenge_token(response)
    await client.get(f"/challenge/{token}")
    body, headers = vendor.webhook(token, "SUCCESS", key="not-the-signing-key-0123456789")
    refused = await client.post("/webhooks/idenfy", content=body, headers=headers)
    assert refused.status_code == 401
    finish = await client.get(f"/challenge/{token}/finish")
    assert finish.headers["location"] == f"/challenge/{token}"  # still pending


async def test_unknown_client_gets_an_error_page_never_a_redirect(
    client: httpx.AsyncClient,
) -> None:
    response, _, _ = await start(client, client_id="nobody")
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


async def test_vendor_down_redirects_temporarily_unavailable(
    client: httpx.AsyncClient, vendor: FakeIdenfy
) -> None:
    vendor.fail_status = 503
    response, sent, _ = await start(client)
    assert response.status_code == 303
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    result = query(response.headers["location"])
    assert (result["error"], result["stepup_error"]) == (
        "temporarily_unavailable",
        "vendor_unavailable",
    )
    assert result["state"] == sent["state"]


async def test_unknown_challenge_is_a_gone_page(client: httpx.AsyncClient) -> None:
    response = await client.get("/challenge/NoSuchToken0123456789/finish")
    assert response.status_code == 410
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")


async def test_not_enrolled_subject_is_refused_before_a_vendor_session(
    client: httpx.AsyncClient, vendor: FakeIdenfy
) -> None:
    vendor.scan_refs.pop("SCAN-ALICE")  # the vendor does not know alice's scanRef
    response, sent, _ = await start(client)
    result = query(response.headers["location"])
    assert result["error"] == "unmet_authentication_requirements"
    assert result["stepup_error"] == "not_enrolled"
    assert result["state"] == sent["state"]
    assert vendor.sessions == {}
