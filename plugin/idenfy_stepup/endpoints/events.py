"""The push channel: a Server-Sent Events stream that says "done" the moment a webhook lands.

No polling: the stream registers with the process's :class:`Notifier` first, then reads the
state once; it waits for the wake-up published by whichever instance received the webhook,
and says "done" (a wake-up from a reconnected subscription re-reads the state first). It also
says "done" once the vendor session has expired (``expires_at`` + ``EXPIRY_SKEW_SECONDS``, the
moment the finish script starts answering ``expired``), so an abandoned page, or one whose
EXPIRED webhook never comes, goes back to the RP with ``challenge_expired``.

A stream lasts as long as its challenge waits: streams opened together never end together,
and a webhook never lands in a reconnect gap. While it waits it sends a comment every
``push_keepalive`` seconds, which keeps proxies from cutting it and costs no Redis read (the
notifier wakes every waiter whenever its subscription breaks or comes back, so a missed
message cannot go unnoticed). When a stream does end without "done" (the server stopping,
Redis failing, a newer stream of the same challenge), its last ``retry:`` says how soon
EventSource comes back, spread out where many come back at once.

Each stream holds a slot of :class:`PushSlots` (per challenge and per client address) from its
first byte to its end, whatever ends it; over the address cap the answer is a 429.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..audit.facts import limit_exceeded
from ..boot.runtime import Runtime
from ..idenfy.client import valid_token
from ..observe.metrics import PUSH_LATENCY_SECONDS, PUSH_STREAMS_OPEN, rate_limited
from ..stepup.limits import ip_identity
from ..store import State, StoreUnavailable
from ..store.wakeups import Wake
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


# What EventSource waits before it reconnects (milliseconds): quick after a cut connection;
# spread out after a server stop or a Redis failure, where every stream ends at once.
RETRY_MS = 500
RETRY_SPREAD_MS = {"stopping": (250, 3000), "store": (1000, 5000)}


def _retry(spread: tuple[int, int]) -> bytes:
    low, high = spread
    return b"retry: %d\n" % (low + secrets.randbelow(high - low + 1))


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
        self.woken: Wake | None = None
        self.superseded = False

    def supersede(self) -> None:
        """A newer stream of this challenge took this one's slot: end it."""
        self.superseded = True
        if self.woken is not None:
            self.woken.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The slot is taken here, not in the endpoint, so that one try/finally pairs taking
        # and giving back: done, browser gone, superseded, server stopping, Redis down or an
        # error.
        slots = self.rt.push_slots
        slot = slots.take(self.token, self.address, self.supersede)
        if slot is None:
            limit_exceeded(
                "push_streams_per_ip",
                "/challenge/events",
                self.address,
                retry_after=self.rt.settings.challenge.push_keepalive,
            )
            await _too_many(self.rt)(scope, receive, send)
            return
        gone: asyncio.Future[None] | None = None
        PUSH_STREAMS_OPEN.inc()
        try:
            start = {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            await send(start)
            gone = asyncio.ensure_future(_disconnected(receive))
            await self._stream(gone, send)
            if not gone.done():
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if gone is not None:
                gone.cancel()
            slots.give_back(slot)
            PUSH_STREAMS_OPEN.dec()

    async def _stream(self, gone: asyncio.Future[None], send: Send) -> None:
        """Send the stream's events until it ends (a coroutine, not a generator: nothing is
        left suspended, and one frame fewer is held per waiting browser)."""
        rt, token = self.rt, self.token
        finish = f"/challenge/{token}/finish"
        done = f"event: done\ndata: {json.dumps({'finish': finish})}\n\n".encode()
        await _chunk(send, b"retry: %d\n\n" % RETRY_MS)
        keepalive = float(rt.settings.challenge.push_keepalive)
        loop = asyncio.get_running_loop()
        woken = rt.notifier.register(token)
        try:
            self.woken = woken
            expired_at = 0.0
            read = True  # the state is read on opening, after a reconnected subscription
            # and at the expiry; a keep-alive reads nothing
            while True:
                if rt.notifier.closing:
                    await _chunk(
                        send, _retry(RETRY_SPREAD_MS["stopping"]) + b": server stopping\n\n"
                    )
                    return
                if self.superseded:
                    # Whoever holds the older stream (a tab, a dead network) comes back late.
                    await _chunk(send, b"retry: %d\n: superseded\n\n" % int(keepalive * 1000))
                    return
                if woken.published:
                    # Only a transition out of PENDING is published for a token (a webhook
                    # that decided it); the finish URL reads the outcome, so no read here.
                    await _chunk(send, done)
                    # Resumed once the server took the event: the latency includes handing
                    # it over.
                    PUSH_LATENCY_SECONDS.observe(time.monotonic() - woken.published_at)
                    return
                if read:
                    woken.clear()  # before reading, so a wake-up during the read is not lost
                    try:
                        peek = await rt.store.peek(token, self.binding)
                    except StoreUnavailable:
                        await _chunk(
                            send, _retry(RETRY_SPREAD_MS["store"]) + b": store unavailable\n\n"
                        )
                        return
                    if peek.state != State.PENDING or not peek.bound or peek.expired_at is None:
                        # Terminal, gone, not ours or unreadable: the finish URL tells which.
                        await _chunk(send, done)
                        return
                    expired_at = peek.expired_at
                    read = False
                until_expired = expired_at - time.time()
                if until_expired <= 0:
                    # The same clock and comparison as the finish script (now >= expires_at +
                    # skew): the finish URL now answers challenge_expired, not "pending".
                    await _chunk(send, done)
                    return
                woke = await _wait(loop, woken, gone, min(keepalive, until_expired))
                if gone.done():
                    return  # the browser left: nothing to say, nobody to say it to
                if woke:
                    # A published transition is handled at the top; a bare wake-up (the
                    # subscription came back, the server is stopping) means: read again.
                    read = not woken.published
                elif time.time() < expired_at:
                    await _chunk(send, b": keep-alive\n\n")
                else:
                    read = True  # at the expiry, once more: a webhook may have just decided it
        finally:
            rt.notifier.forget(token, woken)


async def _wait(
    loop: asyncio.AbstractEventLoop, woken: Wake, gone: asyncio.Future[None], seconds: float
) -> bool:
    """Until ``woken`` is set, ``gone`` is done or ``seconds`` pass; whether it was woken.

    One future and one timer per wait, whatever ends it: with thousands of idle streams this
    is what a keep-alive costs.
    """
    waiter = woken.future()
    if waiter.done():
        return True
    ended: asyncio.Future[None] = loop.create_future()

    def end(_: object = None) -> None:
        if not ended.done():
            ended.set_result(None)

    waiter.add_done_callback(end)
    gone.add_done_callback(end)
    timer = loop.call_later(seconds, end)
    try:
        await ended
    finally:
        timer.cancel()
        waiter.remove_done_callback(end)
        gone.remove_done_callback(end)
    return waiter.done()


async def _chunk(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


def _too_many(rt: Runtime) -> Response:
    """429: a slot of this address is free again once one of its streams ends."""
    rate_limited("push_streams_per_ip")
    return json_error(
        429,
        "too_many_streams",
        "Too many open push streams for this address.",
        **{"Retry-After": str(rt.settings.challenge.push_keepalive)},
    )


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
