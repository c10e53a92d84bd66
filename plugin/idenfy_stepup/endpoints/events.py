"""The push channel: a Server-Sent Events stream that says "done" the moment a webhook lands.

No polling: the stream registers with the process's :class:`Notifier` first, then reads the
state once; it waits for the wake-up published by whichever instance received the webhook,
and says "done" (a wake-up from a reconnected subscription re-reads the state first). After
``push_timeout`` seconds it ends, and EventSource reconnects by itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..idenfy.client import valid_token
from ..runtime import Runtime
from ..store import StoreUnavailable
from .common import json_error, runtime

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


async def events(request: Request) -> Response:
    rt = runtime(request)
    token = str(request.path_params["token"])
    if not valid_token(token):
        return json_error(404, "invalid_request", "Unknown challenge.")
    binding = rt.binder.binding_of(request, token)
    if not binding:
        return json_error(403, "access_denied", "This check belongs to another browser.")
    return PushStream(rt, token, binding)


class PushStream(Response):
    """The stream as a plain ASGI response: one task watches for the browser leaving, and the
    wait for the webhook is a future, not a task."""

    media_type = "text/event-stream"

    def __init__(self, rt: Runtime, token: str, binding: str) -> None:
        # As StreamingResponse does: no body, hence no Content-Length.
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)
        self.rt, self.token, self.binding = rt, token, binding

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
        await send(start)
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            async for chunk in _stream(self.rt, self.token, self.binding, gone):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()


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
                return
            woken.clear()  # before reading, so a wake-up during the read is not lost
            try:
                peek = await rt.store.peek(token, binding)
            except StoreUnavailable:
                yield b": store unavailable\n\n"
                return
            if peek.state != "PENDING" or not peek.bound:
                # Terminal, gone or not ours: the finish URL tells the browser which.
                yield done
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                yield b": keep-alive\n\n"
                return
            woke = woken.future()
            finished, _ = await asyncio.wait(
                (woke, gone), timeout=min(remaining, 15.0), return_when=asyncio.FIRST_COMPLETED
            )
            if gone in finished:
                return  # the browser left: nothing to say, nobody to say it to
            if woke not in finished:
                yield b": keep-alive\n\n"
