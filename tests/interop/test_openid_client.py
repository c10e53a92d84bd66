"""A certified relying-party library, npm ``openid-client`` v6, as a real client of the provider.

``rp.mjs`` is the RP: discovery, the authorization URL (PKCE S256, state, nonce, acr_values,
login_hint) and the callback, where the library validates everything itself — RFC 9207 ``iss``
(required, since discovery advertises ``authorization_response_iss_parameter_supported``),
``state``, the error response, then the id_token's signature against the JWKS, ``iss``, ``aud``,
``exp`` and ``nonce``, and userinfo's ``sub``. This test plays the user's browser in between
(manual redirects with a cookie jar) and scripts the face check through the simulator.

Node runs as a child process with ``asyncio.create_subprocess_exec``: the provider and the
simulator serve from this test's event loop, which must keep running while node talks to them.
The npm packages come from ``tests/interop/package-lock.json`` (``make interop-deps``).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import yaml

from ..harness.servers import Stack
from ..harness.settings import REDIRECT_URI, client_entry, client_secret

pytestmark = pytest.mark.asyncio(loop_scope="module")

HERE = Path(__file__).parent
RP = HERE / "rp.mjs"
LIBRARY = HERE / "node_modules" / "openid-client" / "package.json"
ACR = "urn:idenfy:stepup:face"
NODE_TIMEOUT = 30


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with openid-client v6 installed next to rp.mjs — or a clear failure."""
    binary = shutil.which("node")
    if binary is None:
        pytest.fail("node is not on PATH: the interop tests need Node.js 20 or later")
    if not LIBRARY.exists():
        pytest.fail(
            "openid-client is not installed in tests/interop/node_modules: "
            "run make interop-deps (npm ci --prefix tests/interop)"
        )
    version = json.loads(LIBRARY.read_text())["version"]
    assert version.startswith("6."), f"tests/interop expects openid-client 6.x, found {version}"
    return binary


HINTS = ["login_hint"]
EXAMPLE = yaml.safe_load((HERE.parents[1] / "config" / "example.yaml").read_text())
SETTINGS: dict[str, Any] = {
    "authorization_details": EXAMPLE["authorization_details"],
    "clients": [
        client_entry(
            "shop", subject_hints=HINTS, authorization_details_types=["payment_initiation"]
        ),
        # for gateways that misread iss on errors (mod_auth_openidc 2.4.x); see the last test
        client_entry("legacy", subject_hints=HINTS, iss_on_error=False),
    ],
}


class RelyingParty:
    """``rp.mjs`` for a client (``shop`` by default) of one stack."""

    def __init__(self, node: str, stack: Stack, client_id: str = "shop") -> None:
        self.node = node
        self.env = {
            **os.environ,
            "RP_ISSUER": stack.issuer,
            "RP_CLIENT_ID": client_id,
            "RP_CLIENT_SECRET": client_secret(client_id),
            "RP_REDIRECT_URI": REDIRECT_URI,
            "RP_ACR_VALUES": ACR,
            "RP_LOGIN_HINT": "alice",
        }

    async def run(self, *args: str) -> tuple[int, dict[str, Any]]:
        proc = await asyncio.create_subprocess_exec(
            self.node,
            str(RP),
            *args,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        lines = out.decode().strip().splitlines()
        assert lines, f"rp.mjs {args[:1]} printed nothing (exit {proc.returncode}): {err.decode()}"
        result: dict[str, Any] = json.loads(lines[-1])
        return proc.returncode, result

    async def start(self, command: str = "start") -> dict[str, Any]:
        status, started = await self.run(command)
        assert status == 0, started
        return started

    async def callback(
        self, url: str, started: dict[str, Any], **checks: str
    ) -> tuple[int, dict[str, Any]]:
        """The library's verdict on a callback; ``checks`` override what the RP expects."""
        expected = {k: started[k] for k in ("verifier", "state", "nonce")} | checks
        return await self.run(
            "callback", url, expected["verifier"], expected["state"], expected["nonce"]
        )


@pytest.fixture
def rp(node: str, stack: Stack) -> RelyingParty:
    return RelyingParty(node, stack)


async def front_channel(
    stack: Stack, authorization_url: str, status: str = "SUCCESS", fail_reason: str | None = None
) -> str:
    """The user's browser: authorize → challenge page → face check → finish; the callback URL."""
    browser = stack.browser()
    response = await browser.get(authorization_url)
    assert response.status_code == 303, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith("/challenge/"), location
    token = location.rsplit("/", 1)[1]
    page = await browser.get(location)
    assert page.status_code == 200, page.text
    found = re.search(r'data-finish-url="([^"]+)"', page.text)
    assert found, page.text
    delivered = await stack.outcome(token, status, fail_reason)
    assert delivered.json()["delivered"] == 200, delivered.text
    finish = await browser.get(html.unescape(found.group(1)))
    assert finish.status_code == 303, (finish.status_code, finish.text)
    callback: str = finish.headers["location"]
    assert callback.startswith(f"{REDIRECT_URI}?"), callback
    return callback


def with_query(url: str, **changes: str | None) -> str:
    """``url`` with query parameters replaced (or removed, for ``None``)."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query))
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return urlunsplit(parts._replace(query=urlencode(params)))


async def test_openid_client_completes_step_up(rp: RelyingParty, stack: Stack) -> None:
    started = await rp.start()
    assert started["iss_parameter_supported"] is True  # so the library requires iss (RFC 9207)
    assert started["supports_pkce"] is True
    sent = dict(parse_qsl(urlsplit(started["url"]).query))
    assert started["url"].startswith(f"{stack.issuer}/authorize?")
    assert sent["code_challenge_method"] == "S256"
    assert sent["acr_values"] == ACR and sent["login_hint"] == "alice"

    callback = await front_channel(stack, started["url"])
    status, result = await rp.callback(callback, started)

    assert status == 0, result
    claims = result["claims"]
    assert claims["sub"] == "alice"
    assert claims["acr"] == ACR
    assert claims["amr"] == ["face"]
    assert claims["nonce"] == started["nonce"]  # the library compared it with expectedNonce
    assert claims["iss"] == stack.issuer
    assert claims["aud"] == "shop"
    assert isinstance(claims["auth_time"], int)
    assert result["userinfo"]["sub"] == "alice"  # the library checked it against the id_token
    assert result["token_type"].lower() == "bearer"


async def test_openid_client_pushes_its_request_and_completes_step_up(
    rp: RelyingParty, stack: Stack
) -> None:
    started = await rp.start("start-par")
    assert started["par_endpoint"] == f"{stack.issuer}/par"
    sent = dict(parse_qsl(urlsplit(started["url"]).query))
    # Only the reference travels through the browser; everything else was pushed.
    assert set(sent) == {"client_id", "request_uri"}, sent
    assert sent["client_id"] == "shop"
    assert sent["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")

    callback = await front_channel(stack, started["url"])
    status, result = await rp.callback(callback, started)

    assert status == 0, result
    claims = result["claims"]
    assert claims["sub"] == "alice" and claims["acr"] == ACR
    assert claims["nonce"] == started["nonce"]  # the pushed nonce, checked by the library
    assert result["userinfo"]["sub"] == "alice"

    # The request_uri was spent by the first visit: the same URL again is a page.
    again = await stack.browser().get(started["url"])
    assert again.status_code == 400 and "location" not in again.headers
    assert "<code>invalid_request_uri</code>" in again.text


async def test_openid_client_surfaces_face_mismatch(rp: RelyingParty, stack: Stack) -> None:
    started = await rp.start()
    callback = await front_channel(stack, started["url"], "FAILED", "FACE_MISMATCH")

    status, result = await rp.callback(callback, started)

    assert status == 1, result
    assert result["name"] == "AuthorizationResponseError", result
    assert result["error"] == "access_denied"
    assert result["error_description"]
    assert result["stepup_error"] == "face_mismatch"


async def test_openid_client_rejects_tampered_callback(rp: RelyingParty, stack: Stack) -> None:
    started = await rp.start()
    callback = await front_channel(stack, started["url"])
    other = "http://127.0.0.1:1"
    tampered = {
        "state does not match": (callback, {"state": "not-the-state-we-sent"}),
        "state altered": (with_query(callback, state="forged"), {}),
        "iss altered": (with_query(callback, iss=other), {}),
        "iss removed": (with_query(callback, iss=None), {}),
    }
    results = await asyncio.gather(
        *(rp.callback(url, started, **checks) for url, checks in tampered.values())
    )
    for (name, _), (status, result) in zip(tampered.items(), results, strict=True):
        assert status == 1, (name, result)
        assert result["code"] == "OAUTH_INVALID_RESPONSE", (name, result)
        field = "iss" if name.startswith("iss") else "state"
        assert f'"{field}"' in result["cause"], (name, result)

    # The library refused each before redeeming the code: the genuine callback still works.
    status, result = await rp.callback(callback, started)
    assert status == 0, result
    assert result["claims"]["sub"] == "alice"


async def test_openid_client_rejects_wrong_nonce(rp: RelyingParty, stack: Stack) -> None:
    started = await rp.start()
    callback = await front_channel(stack, started["url"])

    status, result = await rp.callback(callback, started, nonce="not-the-nonce-we-sent")

    assert status == 1, result
    assert result["code"] == "OAUTH_JWT_CLAIM_COMPARISON_FAILED", result
    assert '"nonce"' in result["cause"], result


async def test_openid_client_needs_iss_on_error_responses(node: str, stack: Stack) -> None:
    # RFC 9207 §2.4: an RP that saw authorization_response_iss_parameter_supported must refuse
    # any response without iss, errors included. openid-client does, so a client switched to
    # iss_on_error: false (for mod_auth_openidc 2.4.x) loses our error for a strict RP: the
    # setting is per client and on by default for this reason.
    rp = RelyingParty(node, stack, "legacy")
    started = await rp.start()
    callback = await front_channel(stack, started["url"], "FAILED", "FACE_MISMATCH")
    assert "iss" not in dict(parse_qsl(urlsplit(callback).query))

    status, result = await rp.callback(callback, started)

    assert status == 1, result
    assert result["code"] == "OAUTH_INVALID_RESPONSE", result
    assert 'response parameter "iss" (issuer) missing' in result["cause"], result
    assert result["error"] is None  # the library never got to read access_denied


PAYMENT = {
    "type": "payment_initiation",
    "instructedAmount": {"amount": "500.00", "currency": "EUR"},
    "creditorName": "ACME Ltd",
}


async def test_openid_client_sends_authorization_details_and_reads_them_back(
    node: str, stack: Stack
) -> None:
    """RFC 9396 with the library: the parameter as the RP sends it, the token response's
    authorization_details as the library parsed them, and the id_token's (with txn)."""
    rp = RelyingParty(node, stack)
    rp.env["RP_AUTHORIZATION_DETAILS"] = json.dumps([PAYMENT])
    started = await rp.start()
    assert started["authorization_details_types_supported"] == list(
        EXAMPLE["authorization_details"]["types"]
    )
    sent = dict(parse_qsl(urlsplit(started["url"]).query))
    assert json.loads(sent["authorization_details"]) == [PAYMENT]

    callback = await front_channel(stack, started["url"])
    status, result = await rp.callback(callback, started)

    assert status == 0, result
    assert result["authorization_details"] == [PAYMENT]
    assert result["claims"]["authorization_details"] == [PAYMENT]
    assert isinstance(result["claims"]["txn"], str) and result["claims"]["txn"]


async def test_openid_client_sees_invalid_authorization_details_refused(
    node: str, stack: Stack
) -> None:
    rp = RelyingParty(node, stack)
    rp.env["RP_AUTHORIZATION_DETAILS"] = json.dumps([{**PAYMENT, "fee": "1.00"}])
    started = await rp.start()
    browser = stack.browser()
    response = await browser.get(started["url"])
    assert response.status_code == 303
    status, result = await rp.callback(response.headers["location"], started)
    assert status == 1, result
    assert result["name"] == "AuthorizationResponseError", result
    assert result["error"] == "invalid_authorization_details"
    assert result["stepup_error"] == "invalid_authorization_details"
