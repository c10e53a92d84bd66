"""The push channel: a Server-Sent Events stream that says "done" the moment a webhook lands.

No polling: the stream registers with the process's :class:`Notifier` first, then reads the
state once; it waits for the wake-up published by whichever instance received the webhook,
and says "done" (a wake-up from a reconnected subscription re-reads the state first). It also
says "done" once the vendor session has expired (``expires_at`` + ``EXPIRY_SKEW_SECONDS``, the
moment the finish script starts answering ``expired``), so an abandoned page, or one whose
EXPIRED webhook never comes, goes back to the RP with ``challenge_expired``. After
``push_timeout`` seconds it ends, and EventSource reconnects by itself.

Each stream holds a slot of :class:`PushSlots` (per challenge and per client address) from its
first byte to its end, whatever ends it; over a cap the answer is a 429.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..audit.facts import limit_exceeded
from ..boot.runtime import Runtime
from ..idenfy.client import valid_token
from ..observe.metrics import PUSH_LATENCY_SECONDS, PUSH_STREAMS_OPEN, rate_limited
from ..stepup.limits import ip_identity
from ..store import State, StoreUnavailable
from ..web.responses import json_error, runtime

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


async def events(request: Request) -> Response:
    rt = runtime(request)
    token = str(request.path_params["token"])
    if not valid_token(token):
        return json_error(404, "invalid_request", "Unknown challenge.")
    binding = rt.binder.binding_of(request, token)
    if not binding:
        outcome = rt.outcomes["WRONG_BROWSER"]
        return json_error(403, outcome.error, outcome.description)
    return PushStream(rt, token, binding, ip_identity(request, rt))


class PushStream(Response):
    """The stream as a plain ASGI response: one task watches for the browser leaving, and the
    wait for the webhook is a future, not a task."""

    media_type = "text/event-stream"

    def __init__(self, rt: Runtime, token: str, binding: str, address: str) -> None:
        # As StreamingResponse does: no body, hence no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.rt, self.token, self.binding, self.address = rt, token, binding, address

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The slot is taken here, not in the endpoint, so that one try/finally pairs taking
        # and giving back: done, timeout, browser gone, server stopping, Redis down or an error.
        slots = self.rt.push_slots
        refused = slots.take(self.token, self.address)
        if refused is not None:
            limit = f"push_streams_per_{'challenge' if refused == 'challenge' else 'ip'}"
            wait = self.rt.settings.challenge.push_timeout
            limit_exceeded(limit, "/challenge/events", self.address, retry_after=wait)
            await _too_many(self.rt, refused)(scope, receive, send)
            return
        gone: asyncio.Future[None] | None = None
        PUSH_STREAMS_OPEN.inc()
        try:
            start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            await send(start)
            gone = asyncio.ensure_future(_disconnected(receive))
            async for chunk in _stream(self.rt, self.token, self.binding, gone):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if gone is not None:
                gone.cancel()
            slots.give_back(self.token, self.address)
            PUSH_STREAMS_OPEN.dec()


def _too_many(rt: Runtime, cap: str) -> Response:
    """429: a held slot is free again at the latest when its stream ends (``push_timeout``)."""
    whose = "this check" if cap == "challenge" else "this address"
    rate_limited("push_streams_per_challenge" if cap == "challenge" else "push_streams_per_ip")
    retry_after = str(rt.settings.challenge.push_timeout)
    return json_error(
        429,
        "too_many_streams",
        f"Too many open push streams for {whose}.",
        **{"Retry-After": retry_after},
    )


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _stream(
    rt: Runtime, token: str, binding: str, gone: asyncio.Future[None]
) -> AsyncIterator[bytes]:
    finish = f"/challenge/{token}/finish"
    done = f"event: done\ndata: {json.dumps({'finish': finish})}\n\n".encode()
    yield b"retry: 1000\n\n"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + rt.settings.challenge.push_timeout
    async with rt.notifier.waiting(token) as woken:
        while True:
            if rt.notifier.closing:
                yield b": server stopping\n\n"
                return
            if woken.published:
                # Only a transition out of PENDING is published for a token (a webhook that
                # decided it); the finish URL reads the outcome, so no second read here.
                yield done
                # Resumed once the server took the event: the latency includes handing it over.
                PUSH_LATENCY_SECONDS.observe(time.monotonic() - woken.published_at)
                return
            woken.clear()  # before reading, so a wake-up during the read is not lost
            try:
                peek = await rt.store.peek(token, binding)
            except StoreUnavailable:
                yield b": store unavailable\n\n"
                return
            expired_at = peek.expired_at
            if peek.state != State.PENDING or not peek.bound or expired_at is None:
                # Terminal, gone, not ours or unreadable: the finish URL tells the browser which.
                yield done
                return
            until_expired = expired_at - time.time()
            if until_expired <= 0:
                # The same clock and comparison as the finish script (now >= expires_at + skew):
                # the finish URL now answers challenge_expired, not "pending".
                yield done
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                yield b": keep-alive\n\n"
                return
            woke = woken.future()
            timeout = min(remaining, 15.0, until_expired)
            finished, _ = await asyncio.wait(
                (woke, gone), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if gone in finished:
                return  # the browser left: nothing to say, nobody to say it to
            if woke not in finished and time.time() < expired_at:
                yield b": keep-alive\n\n"
            # At the expiry, the state is read once more: a webhook may have just decided it.
