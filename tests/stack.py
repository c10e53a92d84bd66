"""The provider and the iDenfy simulator on real loopback ports, and a scripted relying party.

Nothing is faked: the provider talks to the simulator over HTTP, the simulator sends signed
webhooks back over HTTP, and state lives in a real redis-server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import json
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet

from idenfy_stepup.app import create_app
from idenfy_stepup.idenfy.webhook import sign as sign_webhook
from idenfy_stepup.settings import Settings, parse_settings
from idenfy_stepup.simulator import create_simulator_app

SIGNING_KEY = "test-webhook-signing-key-0123456789abcdef"
CLIENT_SECRET = "shop-secret-0123456789-0123456789-abcdef"
REDIRECT_URI = "http://127.0.0.1:9/callback"
TEST_ENCRYPTION_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
SCAN_REFS = {
    "SCAN-ALICE": "AUTHENTICATION",
    "SCAN-BOB": "IDENTIFICATION",
    "SCAN-CAROL": "ENROLLMENT",
}
# The suite runs many flows (and spoof webhooks) for alice from 127.0.0.1: the rate limits stay
# on, so their code runs in every flow, but far out of reach, and the lock-out is off.
# tests/test_limits.py sets its own.
FAR: dict[str, int] = {"count": 100_000, "seconds": 60}
SUITE_LIMITS: dict[str, Any] = {"failures_per_ip": FAR, "failures_per_subject": FAR,
                                "open_challenges_per_ip": 100_000, "spoof_lockout_seconds": 0,
                                "token_failures_per_client": FAR,
                                "token_failures_per_ip": FAR}  # fmt: skip
DIRECTORY = {"alice": "SCAN-ALICE", "bob": "SCAN-BOB", "carol": "SCAN-CAROL", "ghost": "SCAN-GONE"}
# httpx builds a TLS context (loading the CA bundle, ~40 ms) for every client it creates; the
# test clients share this one, which is the same default context built once.
TLS = httpx.create_ssl_context()


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP; with
    # proto 0 every request on a kept-alive connection waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


async def serve_in_loop(app: Any, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 20
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server stopped during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.01)
    return server, task


# A value for ``merge`` that removes its key (the settings file does not set it at all).
UNSET = object()


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if value is UNSET:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


# The one client the process-level tests (two instances, workers) configure.
SHOP_CLIENT: dict[str, Any] = {
    "client_id": "shop",
    "name": "Shop",
    "client_secret": CLIENT_SECRET,
    "redirect_uris": [REDIRECT_URI],
    "subject_hints": ["login_hint"],
}


def live_settings(
    port: int, sim_port: int, redis_url: str, *, api_key: str, api_secret: str,
    signing_key: str, **server: Any,
) -> dict[str, Any]:  # fmt: skip
    """``mode: live`` pointed at a simulator run on its own port: the provider starts none and
    cannot tell it from the vendor. The ``simulator`` section is what that simulator reads."""
    sim = f"http://127.0.0.1:{sim_port}"
    return {
        "issuer": f"http://127.0.0.1:{port}",
        "server": {"host": "127.0.0.1", "port": port, **server},
        "redis": {"url": redis_url},
        # Generated keys and cookie secret are encrypted in Redis (required in live mode).
        "keys": {"encryption_key": TEST_ENCRYPTION_KEY},
        "idenfy": {
            "mode": "live",
            "api_base": sim,
            "iframe_base": sim,
            "api_key": api_key,
            "api_secret": api_secret,
            "webhook_signing_key": signing_key,
            "simulator": {
                "host": "127.0.0.1",
                "port": sim_port,
                "api_key": api_key,
                "api_secret": api_secret,
                "scan_refs": {"SCAN-ALICE": "AUTHENTICATION"},
            },
        },
        "directory": {"static": {"alice": "SCAN-ALICE"}, "redis": False},
        "clients": [SHOP_CLIENT],
    }


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """SIGTERM; SIGKILL when it has not exited within ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def base_settings(provider_port: int, sim_port: int, redis_url: str) -> dict[str, Any]:
    return {
        "issuer": f"http://127.0.0.1:{provider_port}",
        "server": {"host": "127.0.0.1", "port": provider_port},
        "redis": {"url": redis_url},
        "idenfy": {
            "mode": "simulator",
            "webhook_signing_key": SIGNING_KEY,
            "simulator": {"host": "127.0.0.1", "port": sim_port, "scan_refs": SCAN_REFS},
        },
        "directory": {"static": DIRECTORY},
        "challenge": {"limits": SUITE_LIMITS},
        "clients": [
            {
                "client_id": "shop",
                "name": "Shop",
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI],
                "subject_hints": ["login_hint", "request_object", "id_token_hint"],
            }
        ],
    }


@dataclass
class Stack:
    settings: Settings
    servers: list[tuple[uvicorn.Server, asyncio.Task[None]]] = field(default_factory=list)
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    @property
    def simulator_url(self) -> str:
        return self.settings.idenfy.simulator.base_url()

    def browser(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.issuer, follow_redirects=False, timeout=20, verify=TLS
        )
        self.clients.append(client)
        return client

    async def stop(self) -> None:
        for client in self.clients:
            await client.aclose()
        for server, _ in self.servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in self.servers), return_exceptions=True)

    async def outcome(self, token: str, status: str, fail_reason: str | None = None,
                      **extra: Any) -> httpx.Response:  # fmt: skip
        body: dict[str, Any] = {"status": status, **extra}
        if fail_reason is not None:
            body["failReason"] = fail_reason
        async with httpx.AsyncClient(timeout=30, verify=TLS) as c:
            return await c.post(f"{self.simulator_url}/_simulator/sessions/{token}/outcome",
                                json=body)  # fmt: skip

    async def jwks(self) -> KeySet:
        async with httpx.AsyncClient(verify=TLS) as c:
            data = (await c.get(f"{self.issuer}/jwks")).json()
        return KeySet.import_key_set(data)


async def start_stack(redis_url: str, *, settings: dict[str, Any] | None = None,
                      simulator: bool = True) -> Stack:  # fmt: skip
    provider_sock, sim_sock = free_socket(), free_socket()
    raw = base_settings(provider_sock.getsockname()[1], sim_sock.getsockname()[1], redis_url)
    parsed = parse_settings(merge(raw, settings or {}))
    stack = Stack(parsed)
    stack.servers.append(await serve_in_loop(create_app(parsed), provider_sock))
    if simulator:
        sim = parsed.idenfy.simulator
        key = parsed.idenfy.webhook_signing_key
        app = create_simulator_app(
            sim, webhook_url=f"{parsed.issuer}/webhooks/idenfy",
            signing_key=key.get_secret_value() if key else None,
        )  # fmt: skip
        stack.servers.append(await serve_in_loop(app, sim_sock))
    else:
        sim_sock.close()
    return stack


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Attempt:
    """One step-up as a relying party and its user's browser see it."""

    stack: Stack
    browser: httpx.AsyncClient
    state: str
    nonce: str
    verifier: str
    token: str = ""

    async def finish(self) -> httpx.Response:
        return await self.browser.get(f"/challenge/{self.token}/finish")

    async def result(self) -> dict[str, str]:
        """Finish and return the query of the redirect to the RP."""
        response = await self.finish()
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith(REDIRECT_URI), location
        return query(location)

    async def redeem(self, code: str, **form: str) -> httpx.Response:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "code_verifier": self.verifier, **form}  # fmt: skip
        async with httpx.AsyncClient(verify=TLS) as c:
            return await c.post(f"{self.stack.issuer}/token", data=data,
                                auth=("shop", CLIENT_SECRET))  # fmt: skip

    async def id_token(self, code: str) -> dict[str, Any]:
        response = await self.redeem(code)
        assert response.status_code == 200, response.text
        token = jwt.decode(response.json()["id_token"], await self.stack.jwks())
        return dict(token.claims)


def authorize_params(verifier_challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "shop",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": secrets.token_urlsafe(12),
        "nonce": secrets.token_urlsafe(12),
        "code_challenge": verifier_challenge,
        "code_challenge_method": "S256",
        "login_hint": "alice",
        **extra,
    }


async def begin(stack: Stack, **extra: str) -> tuple[Attempt, httpx.Response]:
    """GET /authorize as a browser; the response is the provider's first answer."""
    verifier, challenge = pkce()
    params = {k: v for k, v in authorize_params(challenge, **extra).items() if v != ""}
    browser = stack.browser()
    response = await browser.get("/authorize", params=params)
    attempt = Attempt(stack, browser, params.get("state", ""), params.get("nonce", ""), verifier)
    location = response.headers.get("location", "")
    if response.status_code == 303 and location.startswith("/challenge/"):
        attempt.token = location.rsplit("/", 1)[1]
    return attempt, response


async def challenge(stack: Stack, **extra: str) -> Attempt:
    """A started step-up whose challenge page was shown."""
    attempt, response = await begin(stack, **extra)
    assert attempt.token, (response.status_code, response.headers, response.text)
    page = await attempt.browser.get(f"/challenge/{attempt.token}")
    assert page.status_code == 200, page.text
    return attempt


# -- helpers for the error-table, invariant, retry and push tests --------------------------------

VENDOR_AUTH = ("simulator-api-key", "simulator-api-secret")


def challenge_key(token: str) -> str:
    """The Redis key of a challenge record (design.md §4)."""
    return f"stepup:{{{token}}}:challenge"


def request_key(token: str) -> str:
    return f"stepup:{{{token}}}:request"


def record_keys(code_or_access_token: str) -> tuple[str, str]:
    """Where a code or access token is recorded: the challenge it names (``token.random``)."""
    token = code_or_access_token.rpartition(".")[0]
    return challenge_key(token), request_key(token)


def webhook_body(token: str, status: str, fail_reason: str | None = None, *,
                 scan_ref: str | None = "SCAN-ALICE", type_: str | None = "AUTHENTICATION",
                 method: str | None = "FACE_MATCHING", event_id: str | None = None,
                 face_photo: str | None = None, risk_tags: list[str] | None = None,
                 ip_address: str | None = None) -> bytes:  # fmt: skip
    """A FACIAL_AUTHENTICATION webhook body (idenfy-api.md §2.1), as the vendor would send it."""
    payload = {
        "id": event_id or secrets.token_hex(16),
        "scanRef": scan_ref,
        "clientId": "idenfy-stepup-simulator",
        "status": status,
        "token": token,
        "type": type_,
        "method": method,
        "facePhoto": face_photo,
        "ipAddress": ip_address,
        "failReason": fail_reason,
        "riskTags": risk_tags,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


async def post_webhook(stack: Stack, body: bytes, *, key: str | None = SIGNING_KEY,
                       signature: str | None = None) -> httpx.Response:  # fmt: skip
    """POST a webhook to the provider, signed with ``key`` (or with ``signature`` as given)."""
    headers = {"Content-Type": "application/json", "Idenfy-Event-Type": "FACIAL_AUTHENTICATION"}
    if signature is None and key is not None:
        signature = sign_webhook(body, key)
    if signature is not None:
        headers["Idenfy-Signature"] = signature
    async with httpx.AsyncClient(timeout=20, verify=TLS) as c:
        return await c.post(f"{stack.issuer}/webhooks/idenfy", content=body, headers=headers)


async def vendor_sessions(stack: Stack) -> list[dict[str, Any]]:
    """Every face-auth session the simulator created, through its partner API."""
    async with httpx.AsyncClient(timeout=20, auth=VENDOR_AUTH, verify=TLS) as c:
        response = await c.get(f"{stack.simulator_url}/api/v2/facial-authentication-sessions/")
    response.raise_for_status()
    sessions: list[dict[str, Any]] = response.json()
    return sessions


async def simulator_session(stack: Stack, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=20, verify=TLS) as c:
        response = await c.get(f"{stack.simulator_url}/_simulator/sessions/{token}")
    response.raise_for_status()
    session: dict[str, Any] = response.json()
    return session


async def resend_webhook(stack: Stack, token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30, verify=TLS) as c:
        return await c.post(f"{stack.simulator_url}/_simulator/webhooks/{token}/resend")


async def serve_vendor(stack: Stack, app: Any) -> None:
    """Serve ``app`` where the simulator would be: a vendor that misbehaves on purpose.

    Start the stack with ``simulator=False`` first; the provider then talks to this app.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", stack.settings.idenfy.simulator.port))
    stack.servers.append(await serve_in_loop(app, sock))


class StackPool:
    """Stacks shared by the tests of one module: one per distinct configuration.

    Starting a stack costs a few hundred milliseconds; the parametrized rows of the error
    table and the invariants reuse one per configuration instead. Use it from a module-scoped
    fixture whose tests run in the module's event loop (``loop_scope="module"``).
    """

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._stacks: dict[str, Stack] = {}

    async def get(self, *, settings: dict[str, Any] | None = None,
                  simulator: bool = True) -> Stack:  # fmt: skip
        key = json.dumps([settings or {}, simulator], sort_keys=True)
        if key not in self._stacks:
            self._stacks[key] = await start_stack(
                self.redis_url, settings=settings, simulator=simulator
            )
        return self._stacks[key]

    async def fresh(self, *, settings: dict[str, Any] | None = None,
                    simulator: bool = True) -> Stack:  # fmt: skip
        """A stack of its own (e.g. for a test that counts vendor sessions or stops a server)."""
        key = f"fresh-{len(self._stacks)}"
        self._stacks[key] = await start_stack(
            self.redis_url, settings=settings, simulator=simulator
        )
        return self._stacks[key]

    async def stop(self) -> None:
        await asyncio.gather(*(stack.stop() for stack in self._stacks.values()))
        self._stacks.clear()


@contextlib.asynccontextmanager
async def running_stack(redis_url: str, **kwargs: Any) -> AsyncIterator[Stack]:
    """A stack for the duration of a ``with`` block (e.g. on a redis-server the test owns)."""
    stack = await start_stack(redis_url, **kwargs)
    try:
        yield stack
    finally:
        await stack.stop()


# -- helpers for the OIDC tests (tests/oidc) -----------------------------------------------------


def client_secret(client_id: str) -> str:
    """The secret the OIDC tests register for ``client_id`` (``shop`` keeps CLIENT_SECRET)."""
    return CLIENT_SECRET if client_id == "shop" else f"{client_id}-secret-0123456789-0123456789"


def client_entry(client_id: str, **extra: Any) -> dict[str, Any]:
    """A ``clients:`` entry with a secret and REDIRECT_URI, overridden by ``extra``."""
    return {"client_id": client_id, "client_secret": client_secret(client_id),
            "redirect_uris": [REDIRECT_URI], **extra}  # fmt: skip


@dataclass
class Flow:
    """One authorization request as a browser sends it, and the provider's first answer."""

    stack: Stack
    browser: httpx.AsyncClient
    params: dict[str, str]
    verifier: str | None
    response: httpx.Response

    @property
    def token(self) -> str:
        """The vendor token of the challenge the request opened ("" when it did not)."""
        location = self.response.headers.get("location", "")
        if self.response.status_code == 303 and location.startswith("/challenge/"):
            return location.rsplit("/", 1)[1]
        return ""

    @property
    def redirect(self) -> dict[str, str]:
        """The query of a redirect straight back to the RP (an early refusal)."""
        assert self.response.status_code == 303, (self.response.status_code, self.response.text)
        location = self.response.headers["location"]
        assert not location.startswith("/challenge/"), location
        return query(location)

    async def approve(self) -> dict[str, str]:
        """The simulator approves the face check; the query of the redirect to the RP."""
        assert self.token, (self.response.status_code, self.response.text)
        delivered = await self.stack.outcome(self.token, "SUCCESS")
        assert delivered.json()["delivered"] == 200, delivered.text
        finish = await self.browser.get(f"/challenge/{self.token}/finish")
        assert finish.status_code == 303, finish.text
        return query(finish.headers["location"])


async def open_authorize(stack: Stack, *, method: str = "GET", use_pkce: bool = True,
                         **params: str | None) -> Flow:  # fmt: skip
    """Send an authorization request (defaults: client ``shop``, S256 PKCE, state, nonce).

    A parameter given as ``None`` is left out.
    """
    verifier, challenge_ = pkce() if use_pkce else (None, None)
    base: dict[str, str | None] = {
        "response_type": "code", "client_id": "shop", "redirect_uri": REDIRECT_URI,
        "scope": "openid", "state": secrets.token_urlsafe(12), "nonce": secrets.token_urlsafe(12),
        "code_challenge": challenge_, "code_challenge_method": "S256" if use_pkce else None,
    }  # fmt: skip
    sent = {k: v for k, v in {**base, **params}.items() if v is not None}
    browser = stack.browser()
    if method == "POST":
        response = await browser.post("/authorize", data=sent)
    else:
        response = await browser.get("/authorize", params=sent)
    return Flow(stack, browser, sent, verifier, response)


async def redeem_code(stack: Stack, code: str, *, client_id: str = "shop",
                      auth: str = "basic", verifier: str | None = None,
                      redirect_uri: str = REDIRECT_URI, **form: str) -> httpx.Response:  # fmt: skip
    """POST /token as ``client_id`` with ``auth`` "basic", "post" or "none" (form as given)."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            **({"code_verifier": verifier} if verifier else {}), **form}  # fmt: skip
    basic = (client_id, client_secret(client_id)) if auth == "basic" else None
    if auth == "post":
        data.update(client_id=client_id, client_secret=client_secret(client_id))
    async with httpx.AsyncClient(verify=TLS, timeout=20) as c:
        return await c.post(f"{stack.issuer}/token", data=data, auth=basic)


async def decode_id_token(stack: Stack, id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of an id_token, verified against the provider's published JWKS."""
    token = jwt.decode(id_token, await stack.jwks())
    return dict(token.header), dict(token.claims)
