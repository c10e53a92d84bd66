"""The store's connection to Redis, behind one small protocol with two implementations.

``Store`` and ``Notifier`` speak only :class:`StoreBackend`: run a script, run a command, run
a few reads in one round trip, subscribe to the wake-up channel, close. Which client serves a
URL is decided once, by :func:`idenfy_stepup.store.connect.open_backend`:

- :class:`WireBackend` — a single server (``redis://``, ``rediss://``, ``unix://``, the
  embedded one): the hand-written pipelined client of ``wire.py``, which costs a fraction of
  redis-py's CPU per command on the hot path.
- :class:`RedisPyBackend` — Sentinel and Cluster (it follows failovers and routes each
  command to the node owning its keys' slot); it also serves a single server.

Both return replies as Redis sent them (bytes, integers, lists) and fail with redis-py's
exceptions (or ``OSError``), which the Store turns into ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from .scripts import Reply, Script
from .wire import WireRedis


class Subscription(Protocol):
    """A live subscription: ``closed()`` returns (or raises) once it has ended."""

    async def closed(self) -> None: ...

    async def aclose(self) -> None: ...


class StoreBackend(Protocol):
    def evalsha(
        self, script: Script[Any, Any], keys: Sequence[str], args: Sequence[Any]
    ) -> Awaitable[Reply]:
        """Run ``script`` (loading it first if the server does not know its SHA)."""
        ...

    def execute(self, *args: Any) -> Awaitable[Reply]:
        """One command, e.g. ``execute("GET", key)``."""
        ...

    def execute_many(self, *commands: tuple[Any, ...]) -> Awaitable[list[Reply]]:
        """Several commands (reads) in one round trip, their replies in order. Not atomic."""
        ...

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> Subscription:
        """Each message published on ``channel`` goes to ``on_message`` as it is read."""
        ...

    async def scan(self, pattern: str) -> list[str]:
        """Every key matching ``pattern`` (SCAN, never KEYS; on a cluster, on every primary).
        For the operator's commands only: never on a request's path."""
        ...

    async def aclose(self) -> None: ...


class WireBackend:
    """A single server over :class:`WireRedis` (one auto-pipelined connection per process)."""

    def __init__(self, wire: WireRedis) -> None:
        self.wire = wire

    def evalsha(
        self, script: Script[Any, Any], keys: Sequence[str], args: Sequence[Any]
    ) -> Awaitable[Reply]:
        return self.wire.evalsha(script.sha, script.source, list(keys), list(args))

    def execute(self, *args: Any) -> Awaitable[Reply]:
        return self.wire.execute(*args)

    def execute_many(self, *commands: tuple[Any, ...]) -> Awaitable[list[Reply]]:
        return self.wire.execute_many(commands)

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> Subscription:
        return await self.wire.subscribe(channel, on_message)

    async def scan(self, pattern: str) -> list[str]:
        return await _scan_cursor(self.execute, pattern)

    async def aclose(self) -> None:
        await self.wire.aclose()


class RedisPyBackend:
    """Any URL redis-py serves: Sentinel and Cluster (and a single server)."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._scripts: dict[str, AsyncScript] = {}
        self._subscriptions = 0

    def evalsha(
        self, script: Script[Any, Any], keys: Sequence[str], args: Sequence[Any]
    ) -> Awaitable[Reply]:
        # redis-py's Script runs EVALSHA and, on NOSCRIPT, loads it (on every primary of a
        # cluster) and runs it again.
        registered = self._scripts.get(script.name)
        if registered is None:
            registered = self._scripts[script.name] = self.redis.register_script(script.source)
        return registered(keys=list(keys), args=list(args))

    def execute(self, *args: Any) -> Awaitable[Reply]:
        return self.redis.execute_command(*args)  # type: ignore[no-untyped-call]

    async def execute_many(self, *commands: tuple[Any, ...]) -> list[Reply]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute())

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> Subscription:
        pubsub = self._pubsub()
        try:
            await pubsub.subscribe(channel)
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        return _PubSubSubscription(pubsub, on_message)

    async def scan(self, pattern: str) -> list[str]:
        if isinstance(self.redis, RedisCluster):
            found = [key async for key in self.redis.scan_iter(match=pattern, count=SCAN_COUNT)]
            return sorted({k.decode() if isinstance(k, bytes) else str(k) for k in found})
        return await _scan_cursor(self.execute, pattern)

    def _pubsub(self) -> PubSub:
        """A subscription client; on a cluster, on one of its nodes, another one each time.

        In a Redis Cluster a classic PUBLISH (the scripts' one, on whichever master owns the
        challenge's slot) reaches every node over the cluster bus, so one subscription on any
        node hears all of them. redis-py's ClusterPubSub would pin it to the node owning the
        channel name's slot; the node is passed explicitly instead, the next known one after
        each failure, so a dead node never keeps the subscription down.
        """
        attempt, self._subscriptions = self._subscriptions, self._subscriptions + 1
        if isinstance(self.redis, RedisCluster):
            nodes = self.redis.get_nodes()
            node = nodes[attempt % len(nodes)] if nodes else None  # none before the first command
            return self.redis.pubsub(node=node, ignore_subscribe_messages=True)
        return self.redis.pubsub(ignore_subscribe_messages=True)

    async def aclose(self) -> None:
        await self.redis.aclose()


# Keys asked for per SCAN round trip: large enough for few round trips, small enough that one
# step never holds the server up.
SCAN_COUNT = 500


async def _scan_cursor(execute: Callable[..., Awaitable[Reply]], pattern: str) -> list[str]:
    cursor: bytes | str | int = 0
    found: set[str] = set()  # SCAN may return a key twice
    while True:
        reply: Any = await execute("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
        cursor, keys = reply[0], reply[1]
        found.update(k.decode() if isinstance(k, bytes) else str(k) for k in keys)
        if cursor in (b"0", "0", 0):
            return sorted(found)


class _PubSubSubscription:
    """redis-py's PubSub read by a task of its own, each message handed to ``on_message``."""

    def __init__(self, pubsub: PubSub, on_message: Callable[[bytes], None]) -> None:
        self._pubsub = pubsub
        self._on_message = on_message
        self._reader = asyncio.create_task(self._listen(), name="stepup-pubsub-reader")

    async def _listen(self) -> None:
        while True:
            message = await self._pubsub.get_message(timeout=30.0)
            if message is None or message.get("type") != "message":
                continue
            data = message.get("data")
            self._on_message(data if isinstance(data, bytes) else str(data).encode())

    async def closed(self) -> None:
        await asyncio.shield(self._reader)

    async def aclose(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
