"""A scripted relying party and its user's browser: the one driver of authorization requests.

``authorize`` sends an authorization request and returns a ``Flow``: the request, the
provider's first answer and the challenge it opened (if any). The flow then plays the rest
as the browser and the RP would: show the challenge page, finish, read the redirect to the
RP, redeem the code and verify the id_token.

    flow = await authorize(stack, login_hint="alice")       # any request, as sent
    flow = await challenge(stack)                           # alice's, up to her challenge page
    await stack.outcome(flow.token, "SUCCESS")              # the simulator approves
    claims = await flow.id_token((await flow.result())["code"])
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jws, jwt
from joserfc.jwk import Key, OctKey

from .servers import TLS, Stack
from .settings import REDIRECT_URI, client_secret


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def challenge_token(response: httpx.Response) -> str:
    """The vendor token of the challenge an /authorize answer opened ("" when it did not)."""
    location = response.headers.get("location", "")
    if response.status_code == 303 and location.startswith("/challenge/"):
        return location.rsplit("/", 1)[1]
    return ""


def request_params(code_challenge: str | None, /, **params: str | None) -> dict[str, str]:
    """Client ``shop``'s authorization request: code flow, state, nonce and S256 PKCE (when
    ``code_challenge`` is given), overridden by ``params``; a parameter given as None is left
    out."""
    base: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "shop",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": code_challenge,
        "code_challenge_method": "S256" if code_challenge is not None else None,
    }
    return {k: v for k, v in {**base, **params}.items() if v is not None}


def authorize_params(code_challenge: str, /, **extra: str | None) -> dict[str, str]:
    """``request_params`` for alice (``login_hint=alice`` unless ``extra`` says otherwise)."""
    return request_params(code_challenge, **{"login_hint": "alice", **extra})


@dataclass
class Flow:
    """One authorization request as a browser sent it, and what followed."""

    stack: Stack
    browser: httpx.AsyncClient
    params: dict[str, str]
    verifier: str | None
    response: httpx.Response
    # The challenge's vendor token: the one the first answer opened ("" when it opened none);
    # a retry moves the flow to the next one.
    token: str = ""

    def __post_init__(self) -> None:
        if not self.token:
            self.token = challenge_token(self.response)

    @property
    def state(self) -> str:
        return self.params.get("state", "")

    @property
    def nonce(self) -> str:
        return self.params.get("nonce", "")

    @property
    def redirect(self) -> dict[str, str]:
        """The query of a redirect straight back to the RP (an early refusal)."""
        assert self.response.status_code == 303, (self.response.status_code, self.response.text)
        location = self.response.headers["location"]
        assert not location.startswith("/challenge/"), location
        return query(location)

    async def show_challenge(self) -> Flow:
        """The browser opens the challenge page (which must be there)."""
        assert self.token, (self.response.status_code, self.response.headers, self.response.text)
        page = await self.browser.get(f"/challenge/{self.token}")
        assert page.status_code == 200, page.text
        return self

    async def finish(self) -> httpx.Response:
        return await self.browser.get(f"/challenge/{self.token}/finish")

    async def result(self) -> dict[str, str]:
        """Finish and return the query of the redirect to the RP."""
        response = await self.finish()
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI), location
        return query(location)

    async def approve(self) -> dict[str, str]:
        """The simulator approves the face check; the query of the redirect to the RP."""
        assert self.token, (self.response.status_code, self.response.text)
        delivered = await self.stack.outcome(self.token, "SUCCESS")
        assert delivered.json()["delivered"] == 200, delivered.text
        finish = await self.finish()
        assert finish.status_code == 303, finish.text
        return query(finish.headers["location"])

    async def redeem(self, code: str, **form: str) -> httpx.Response:
        """POST /token as client ``shop`` with this flow's PKCE verifier."""
        return await redeem_code(self.stack, code, verifier=self.verifier, **form)

    async def id_token(self, code: str) -> dict[str, Any]:
        """Redeem ``code`` and return the claims of its id_token, verified with the JWKS."""
        response = await self.redeem(code)
        assert response.status_code == 200, response.text
        token = jwt.decode(response.json()["id_token"], await self.stack.jwks())
        return dict(token.claims)


async def authorize(
    stack: Stack,
    *,
    method: str = "GET",
    use_pkce: bool = True,
    browser: httpx.AsyncClient | None = None,
    headers: dict[str, str] | None = None,
    **params: str | None,
) -> Flow:
    """Send an authorization request (``request_params``: client ``shop``, S256 PKCE, state,
    nonce, and ``params``; one given as None is left out) from a new browser, or ``browser``.
    """
    verifier, code_challenge = pkce() if use_pkce else (None, None)
    sent = request_params(code_challenge, **params)
    browser = browser or stack.browser()
    if method == "POST":
        response = await browser.post("/authorize", data=sent, headers=headers)
    else:
        response = await browser.get("/authorize", params=sent, headers=headers)
    return Flow(stack, browser, sent, verifier, response)


async def challenge(stack: Stack, **params: str | None) -> Flow:
    """Alice's step-up (``login_hint=alice`` unless ``params`` says otherwise), up to the
    challenge page the browser was shown."""
    flow = await authorize(stack, **{"login_hint": "alice", **params})
    return await flow.show_challenge()


async def redeem_code(
    stack: Stack,
    code: str,
    *,
    client_id: str = "shop",
    auth: str = "basic",
    verifier: str | None = None,
    redirect_uri: str = REDIRECT_URI,
    **form: str,
) -> httpx.Response:
    """POST /token as ``client_id`` with ``auth`` "basic", "post" or "none" (form as given)."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        **({"code_verifier": verifier} if verifier else {}),
        **form,
    }
    basic = (client_id, client_secret(client_id)) if auth == "basic" else None
    if auth == "post":
        data.update(client_id=client_id, client_secret=client_secret(client_id))
    async with httpx.AsyncClient(verify=TLS, timeout=20) as c:
        return await c.post(f"{stack.issuer}/token", data=data, auth=basic)


async def decode_id_token(stack: Stack, id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of an id_token, verified against the provider's published JWKS."""
    token = jwt.decode(id_token, await stack.jwks())
    return dict(token.header), dict(token.claims)


def request_object(
    stack: Stack,
    client_id: str = "shop",
    *,
    key: Key | None = None,
    alg: str = "HS256",
    **claims: Any,
) -> str:
    """A request object signed by the client (HS256 with its secret unless ``key`` is given),
    with the ``exp`` and single-use ``jti`` the provider requires; a claim given as None is
    left out."""
    body = {
        "iss": client_id,
        "aud": stack.issuer,
        "client_id": client_id,
        "response_type": "code",
        "exp": int(time.time()) + 300,
        "jti": secrets.token_urlsafe(16),
        **claims,
    }
    body = {k: v for k, v in body.items() if v is not None}
    signing = key if key is not None else OctKey.import_key(client_secret(client_id))
    # json.dumps escapes non-ASCII, a lone surrogate as \ud800 (which joserfc cannot encode).
    payload = json.dumps(body).encode()
    return jws.serialize_compact({"alg": alg}, payload, signing, algorithms=[alg])


def signed_subject(stack: Stack, subject: str = "alice") -> dict[str, str | None]:
    """/authorize parameters that name ``subject`` by a request object ``shop`` signed (a
    verified subject), with no plain login_hint beside it."""
    signed = request_object(stack, "shop", login_hint=subject, iat=int(time.time()))
    return {"request": signed, "login_hint": None}
