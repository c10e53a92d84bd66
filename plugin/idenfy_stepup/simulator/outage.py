"""A scripted outage of the simulated partner API, for tests and integrators.

``PUT /_simulator/outage {"mode": ...}`` makes every partner-API request (check-status,
authentication-info, sessions) hang or get one error answer until ``DELETE /_simulator/outage``
ends it. The iframe and the ``/_simulator`` controls are never affected, and webhooks still go
out. Every partner-API request is counted (``requests``), whatever the mode, so a test can show
that the provider sent none.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HANG = "hang"
# mode → the answer every partner-API request gets (docs/idenfy-api.md §1.5 for the bodies).
FAULTS: dict[str, tuple[int, dict[str, str]]] = {
    "500": (500, {"identifier": "INTERNAL_ERROR", "message": "Internal server error."}),
    "502": (502, {"message": "Bad gateway."}),
    "503": (503, {"message": "Service unavailable."}),
    # The vendor's 401 carries only a message (§1.5).
    "401": (401, {"message": "Invalid authorization credentials"}),
    "402": (402, {"message": "Payment required: out of funds or over the spending limit."}),
    "403": (403, {"message": "Partner inactive."}),
    "429": (429, {"identifier": "TOO_MANY_REQUESTS", "message": "Too many requests."}),
}
MODES = (HANG, *FAULTS)
# A hanging request is answered 504 after this long, so that nothing waits for ever.
HANG_LIMIT = 300.0


class Outage:
    """The current mode (None: the API works) and what the partner API received."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.requests = 0
        self.hanging = 0
        self._changed = asyncio.Event()

    def set(self, mode: str | None) -> None:
        self.mode = mode
        # Wake every hanging request: it answers as the new mode says.
        self._changed.set()
        self._changed = asyncio.Event()

    def view(self) -> dict[str, Any]:
        return {"mode": self.mode, "requests": self.requests, "hanging": self.hanging}

    async def hold(self, receive: Receive) -> list[Message] | None:
        """Wait while the mode is ``hang``: the request's messages read meanwhile (to replay
        to the app), or None when the caller went away (its timeout) or the limit passed."""
        buffered: list[Message] = []
        disconnected = asyncio.Event()

        async def read() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return
                buffered.append(message)

        reader = asyncio.create_task(read())
        self.hanging += 1
        try:
            async with asyncio.timeout(HANG_LIMIT):
                while self.mode == HANG and not disconnected.is_set():
                    changed = asyncio.create_task(self._changed.wait())
                    gone = asyncio.create_task(disconnected.wait())
                    await asyncio.wait({changed, gone}, return_when=asyncio.FIRST_COMPLETED)
                    changed.cancel()
                    gone.cancel()
        except TimeoutError:
            return None
        finally:
            self.hanging -= 1
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return None if disconnected.is_set() else buffered


class OutageGate:
    """ASGI middleware in front of the partner API's paths (``prefixes``)."""

    def __init__(self, app: ASGIApp, outage: Outage, prefixes: tuple[str, ...]) -> None:
        self.app = app
        self.outage = outage
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        self.outage.requests += 1
        if self.outage.mode == HANG:
            buffered = await self.outage.hold(receive)
            if buffered is None:
                await JSONResponse({"message": "Gateway timeout."}, 504)(scope, receive, send)
                return
            receive = _replay(buffered, receive)
        fault = FAULTS.get(self.outage.mode or "")
        if fault is not None:
            status, body = fault
            await JSONResponse(body, status_code=status)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _replay(buffered: list[Message], receive: Receive) -> Receive:
    pending = list(buffered)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
