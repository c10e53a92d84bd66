"""The wake-up channel: one Redis subscription per process fans out to local waiters.

The webhook script PUBLISHes the token on ``{prefix}:events``; whichever process holds the
browser's push connection wakes it. A single subscription per process (not one per browser)
keeps Redis connections flat under load. If the subscription breaks, and again once it is
back, every waiter is woken so it re-reads the state: a missed message can delay nothing
longer than a reconnect.

In a Redis Cluster a classic ``PUBLISH`` (the scripts' one, on whichever master owns the
challenge's slot) is forwarded over the cluster bus to every node, replicas included, so one
subscription on any node hears all of them. redis-py's ``ClusterPubSub`` would pin it to the
node owning the channel name's slot; we pass the node explicitly instead and move to the next
known node after each failure, so a dead node never keeps the subscription down. Sharded
pub/sub (``SSUBSCRIBE``) is no fit: a script may only publish to a shard channel in its own
keys' slot, i.e. one channel per challenge, so one subscription per waiting browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from .wire import WireRedis

log = logging.getLogger(__name__)


class Wake:
    """A one-waiter event: ``set`` wakes whoever awaits ``future()``. ``published`` says a
    transition of this very token was published (not a reconnect of the subscription, after
    which the state must be read again)."""

    __slots__ = ("_future", "_set", "published")

    def __init__(self) -> None:
        self.published = False
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
    def __init__(self, redis: Redis, channel: str, wire: WireRedis | None = None) -> None:
        self._redis = redis
        self._wire = wire  # a single server: subscribe over the store's own client
        self._channel = channel
        self._waiters: dict[str, set[Wake]] = {}
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.closing = False

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
        event = Wake()
        self._waiters.setdefault(token, set()).add(event)
        try:
            yield event
        finally:
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
                    event.published = True
                event.set()

    async def _run(self) -> None:
        delay = 0.1
        attempt = 0
        while True:
            try:
                async with self._subscription(attempt) as until_lost:
                    self.connected.set()
                    # A message published while we were away is lost (e.g. during a Sentinel
                    # failover): waiters that registered meanwhile re-read their state now.
                    self._wake(None)
                    delay = 0.1
                    await until_lost()
                log.warning("event subscription lost")
            except (rexc.RedisError, OSError, TimeoutError) as exc:
                log.warning("event subscription lost: %s", type(exc).__name__)
            finally:
                self.connected.clear()
                self._wake(None)
            attempt += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    @contextlib.asynccontextmanager
    async def _subscription(self, attempt: int) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        """A live subscription, and what to await until it ends. On a single server it is a
        connection of the store's own client that hands each message over as it is read (no
        polling); otherwise redis-py's."""
        if self._wire is not None:
            subscription = await self._wire.subscribe(self._channel, self._message)
            try:
                yield subscription.closed
            finally:
                await subscription.aclose()
            return
        pubsub = self._pubsub(attempt)
        try:
            await pubsub.subscribe(self._channel)
            yield functools.partial(self._listen, pubsub)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _message(self, data: bytes) -> None:
        self._wake(data.decode(errors="replace"))

    def _pubsub(self, attempt: int) -> PubSub:
        """A subscription client: on a cluster, on one of its nodes, a different one each time."""
        if isinstance(self._redis, RedisCluster):
            nodes = self._redis.get_nodes()
            node = nodes[attempt % len(nodes)] if nodes else None  # none before the first command
            return self._redis.pubsub(node=node, ignore_subscribe_messages=True)
        return self._redis.pubsub(ignore_subscribe_messages=True)

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            message = await pubsub.get_message(timeout=30.0)
            if message is None or message.get("type") != "message":
                continue
            data = message.get("data")
            token = data.decode() if isinstance(data, bytes) else str(data)
            self._wake(token)
