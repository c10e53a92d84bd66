"""The vendor's side of a stack: webhooks as iDenfy sends them, and the simulator's API."""

from __future__ import annotations

import socket
from typing import Any

import httpx

from idenfy_stepup.idenfy.webhook import event_body
from idenfy_stepup.idenfy.webhook import sign as sign_webhook

from .servers import TLS, Stack, serve_in_loop
from .settings import SIGNING_KEY

VENDOR_AUTH = ("simulator-api-key", "simulator-api-secret")


def webhook_body(
    token: str,
    status: str,
    fail_reason: str | None = None,
    *,
    scan_ref: str | None = "SCAN-ALICE",
    type_: str | None = "AUTHENTICATION",
    method: str | None = "FACE_MATCHING",
    event_id: str | None = None,
    face_photo: str | None = None,
    risk_tags: list[str] | None = None,
    ip_address: str | None = None,
) -> bytes:
    """A FACIAL_AUTHENTICATION webhook body, as the vendor (and the simulator) sends it."""
    return event_body(
        token,
        status,
        event_id=event_id or None,
        scan_ref=scan_ref,
        client_id="idenfy-stepup-simulator",
        type_=type_,
        method=method,
        face_photo=face_photo,
        ip_address=ip_address,
        fail_reason=fail_reason,
        risk_tags=risk_tags,
    )


async def post_webhook(
    stack: Stack, body: bytes, *, key: str | None = SIGNING_KEY, signature: str | None = None
) -> httpx.Response:
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


async def set_outage(stack: Stack, mode: str | None) -> dict[str, Any]:
    """Script the simulator's partner API: ``hang``, ``500``, ``401``, … (None ends it, and
    hanging requests are then answered normally). Returns ``outage(stack)``'s view."""
    url = f"{stack.simulator_url}/_simulator/outage"
    async with httpx.AsyncClient(timeout=20, verify=TLS) as c:
        response = await (c.delete(url) if mode is None else c.put(url, json={"mode": mode}))
    response.raise_for_status()
    view: dict[str, Any] = response.json()
    return view


async def outage(stack: Stack) -> dict[str, Any]:
    """``{"mode", "requests": partner-API requests the simulator received, "hanging": n}``."""
    async with httpx.AsyncClient(timeout=20, verify=TLS) as c:
        response = await c.get(f"{stack.simulator_url}/_simulator/outage")
    response.raise_for_status()
    view: dict[str, Any] = response.json()
    return view
