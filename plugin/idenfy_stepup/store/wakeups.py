"""The wake-up channel: one Redis subscription per process fans out to local waiters.

The webhook script PUBLISHes the token on ``{prefix}:events``; whichever process holds the
browser's push connection wakes it. A single subscription per process (not one per browser)
keeps Redis connections flat under load. If the subscription breaks, and again once it is
back, every waiter is woken so it re-reads the state: a missed message can delay nothing
longer than a reconnect.

The subscription is the backend's (``backends.py``): a connection of the wire client's own on
a single server, redis-py's PubSub on one cluster node (another after each failure) or on the
Sentinel master. Sharded pub/sub (``SSUBSCRIBE``) is no fit: a script may only publish to a
shard channel in its own keys' slot, i.e. one channel per challenge, so one subscription per
waiting browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from redis import exceptions as rexc

from .backends import StoreBackend

log = logging.getLogger(__name__)


class Wake:
    """A one-waiter event: ``set`` wakes whoever awaits ``future()``. ``published`` says a
    transition of this very token was published (not a reconnect of the subscription, after
    which the state must be read again); ``published_at`` (monotonic) when this process learnt
    of it, for the push latency metric."""

    __slots__ = ("_future", "_set", "published", "published_at")

    def __init__(self) -> None:
        self.published = False
        self.published_at = 0.0
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._set = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def clear(self) -> None:
        self._set = False
        if self._future is not None and self._future.done():
            self._future = None

    def is_set(self) -> bool:
        return self._set

    def future(self) -> asyncio.Future[None]:
        """Done once set (at once if it is set already); ``asyncio.wait`` takes it as it is."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        if self._set and not self._future.done():
            self._future.set_result(None)
        return self._future

    async def wait(self) -> None:
        await asyncio.shield(self.future())


class Notifier:
    def __init__(self, backend: StoreBackend, channel: str) -> None:
        self._backend = backend  # the store's own: its subscription, on a connection of its own
        self._channel = channel
        self._waiters: dict[str, set[Wake]] = {}
        self._task: asyncio.Task[None] | None = None
        # Messages that are not a token (they contain "!") and what each one triggers.
        self._controls: dict[str, Callable[[], None]] = {}
        self.connected = asyncio.Event()
        self.closing = False

    def on_control(self, message: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever ``message`` is published (e.g. the keys changed)."""
        self._controls[message] = callback

    def close_waiters(self) -> None:
        """The server is stopping: wake every waiter so that push streams end now (the browser
        reconnects, to another instance during a rolling restart) rather than hold it up."""
        self.closing = True
        self._wake(None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stepup-notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.asynccontextmanager
    async def waiting(self, token: str) -> AsyncIterator[Wake]:
        """Register interest in ``token`` *before* reading its state, so no event slips by."""
        event = self.register(token)
        try:
            yield event
        finally:
            self.forget(token, event)

    def register(self, token: str) -> Wake:
        """``waiting`` without its context manager, for a waiter held by the thousand (a push
        stream): the generator and its frame would be kept for the whole wait. Pair it with
        ``forget`` in a ``finally``."""
        event = Wake()
        self._waiters.setdefault(token, set()).add(event)
        return event

    def forget(self, token: str, event: Wake) -> None:
        bucket = self._waiters.get(token)
        if bucket is not None:
            bucket.discard(event)
            if not bucket:
                del self._waiters[token]

    def wake(self, token: str) -> None:
        """A transition of ``token`` this process made itself (the channel says it again)."""
        self._wake(token)

    def _wake(self, token: str | None) -> None:
        buckets = self._waiters.values() if token is None else [self._waiters.get(token, set())]
        for bucket in list(buckets):
            for event in list(bucket):
                if token is not None:
                    if not event.published:
                        event.published_at = time.monotonic()
                    event.published = True
                event.set()

    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                subscription = await self._backend.subscribe(self._channel, self._message)
                try:
                    self.connected.set()
                    # A message published while we were away is lost (e.g. during a Sentinel
                    # failover): waiters that registered meanwhile re-read their state now.
                    self._wake(None)
                    delay = 0.1
                    await subscription.closed()
                finally:
                    await subscription.aclose()
                log.warning("event subscription lost")
            except (rexc.RedisError, OSError, TimeoutError) as exc:
                log.warning("event subscription lost: %s", type(exc).__name__)
            finally:
                self.connected.clear()
                self._wake(None)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _message(self, data: bytes) -> None:
        message = data.decode(errors="replace")
        control = self._controls.get(message)
        if control is not None:
            control()
            return
        self._wake(message)
