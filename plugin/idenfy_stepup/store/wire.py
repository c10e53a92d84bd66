"""The store's hot path to a single Redis server: one auto-pipelined connection.

redis-py spends about 130 µs of CPU per command here (a pooled connection checked out and
back, a timeout context per read, its packer); a step-up makes a dozen round trips. This client
writes RESP with hiredis' packer, parses with hiredis' reader, and keeps every command of the
process on one connection: commands issued in the same event-loop turn leave in one write,
their replies arrive in one read, and each costs a future. Redis answers in order, so replies
are matched to callers by position.

It serves plain ``redis://``, ``rediss://`` and ``unix://`` URLs (the embedded server
included), as the store's ``WireBackend`` (backends.py); Sentinel and Cluster stay on
redis-py. Failures raise redis-py's exceptions, which the Store turns into
``StoreUnavailable``: a lost connection fails every command in flight
(none is retried, since a script may have run), a server that does not answer within
``socket_timeout`` has its connection dropped, and the next command reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import hiredis
from redis import exceptions as rexc
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url

Reply = Any
_SUPPORTED = {
    "host",
    "port",
    "db",
    "username",
    "password",
    "path",
    "connection_class",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_check_hostname",
}


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        self._reader = hiredis.Reader()
        self._waiting: collections.deque[tuple[asyncio.Future[Reply], float]] = collections.deque()
        self._out: list[bytes] = []
        self._flush_pending = False
        self.transport: asyncio.Transport | None = None
        self.alive = False
        self.lost: asyncio.Future[None] = self._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's Unix-socket transport is not registered as an asyncio.Transport subclass.
        self.transport = cast(asyncio.Transport, transport)
        self.alive = True

    def send(self, packed: bytes) -> asyncio.Future[Reply]:
        if not self.alive:
            raise rexc.ConnectionError("Redis connection closed")
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._waiting.append((future, time.monotonic() + self._timeout))
        self._out.append(packed)
        if not self._flush_pending:
            # Everything sent during this turn of the loop leaves in one write.
            self._flush_pending = True
            self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_pending = False
        if self._out and self.transport is not None and self.alive:
            data, self._out = b"".join(self._out), []
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(rexc.ConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if self._pushed(reply):
                continue
            if not self._waiting:
                self.abort(rexc.ConnectionError("Redis sent a reply nobody asked for"))
                return
            future, _ = self._waiting.popleft()
            if future.done():  # its caller was cancelled: the reply is dropped, order kept
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_reply_error(str(reply)))
            else:
                future.set_result(reply)

    def _pushed(self, reply: Reply) -> bool:
        """Whether ``reply`` is a message the server pushed (not an answer to a command)."""
        return False

    def overdue(self, now: float) -> bool:
        return bool(self._waiting) and self._waiting[0][1] < now

    def abort(self, error: Exception) -> None:
        self._fail(error)
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(rexc.ConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def _fail(self, error: Exception) -> None:
        self.alive = False
        if not self.lost.done():
            self.lost.set_result(None)
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)


P = TypeVar("P", bound=_Protocol)
# How often an idle subscription checks that its connection still answers.
SUBSCRIPTION_PING_SECONDS = 15.0
# A watchdog tick later than this many periods: the loop, not Redis, was held up.
STALLED = 2.0


class _Subscriber(_Protocol):
    """A connection in subscribe mode: ``message`` pushes go to ``on_message``; the replies to
    SUBSCRIBE and PING are matched to their commands as usual."""

    def __init__(self, timeout: float, on_message: Callable[[bytes], None]) -> None:
        super().__init__(timeout)
        self._on_message = on_message

    def _pushed(self, reply: Reply) -> bool:
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            self._on_message(reply[2])
            return True
        return False


class Subscription:
    """A live subscription; a PING every 15 s notices a connection that died silently."""

    def __init__(self, protocol: _Subscriber, timeout: float) -> None:
        self._protocol = protocol
        self._timeout = timeout
        self._pinger: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._pinger = asyncio.create_task(self._ping(), name="stepup-subscription-ping")

    async def closed(self) -> None:
        await asyncio.shield(self._protocol.lost)

    async def _ping(self) -> None:
        while self._protocol.alive:
            await asyncio.sleep(SUBSCRIPTION_PING_SECONDS)
            try:
                pong = self._protocol.send(_pack(("PING",)))
                try:
                    async with asyncio.timeout(self._timeout):
                        await asyncio.shield(pong)
                except TimeoutError:
                    # A loop held up past the timeout reads its sockets after its timers:
                    # one more turn, and a PONG that had arrived is read (see _watch).
                    await asyncio.sleep(0)
                    if not pong.done():
                        raise
                    pong.result()
            except (TimeoutError, rexc.RedisError):
                self._protocol.abort(rexc.TimeoutError("Redis subscription did not answer"))
                return

    async def aclose(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        self._protocol.abort(rexc.ConnectionError("subscription closed"))


def _pack(args: tuple[Any, ...]) -> bytes:
    command: Any = args  # hiredis' stub types the tuple as one element
    packed: bytes = hiredis.pack_command(command)
    return packed


def _reply_error(text: str) -> rexc.ResponseError:
    if text.startswith("NOSCRIPT"):
        return rexc.NoScriptError(text)
    return rexc.ResponseError(text)


class WireRedis:
    """One pipelined connection to one Redis server (see the module's docstring)."""

    def __init__(self, options: dict[str, Any], timeout: float) -> None:
        self._options = options
        self._timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Task[_Protocol] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def for_url(cls, url: str, timeout: float) -> WireRedis | None:
        """A client for a plain single-server URL; None for anything else (redis-py then)."""
        scheme = url.split("://", 1)[0]
        if scheme not in ("redis", "rediss", "unix"):
            return None
        try:
            options = parse_url(url)
        except ValueError:
            return None
        if not set(options) <= _SUPPORTED:
            return None
        return cls(dict(options), timeout)

    async def execute(self, *args: Any) -> Reply:
        protocol = self._protocol
        if protocol is None or not protocol.alive:
            protocol = await self._connected()
        return await protocol.send(_pack(args))

    async def execute_many(self, commands: tuple[tuple[Any, ...], ...]) -> list[Reply]:
        """Several commands in one write, their replies in order (a failure fails them all)."""
        protocol = self._protocol
        if protocol is None or not protocol.alive:
            protocol = await self._connected()
        # gather() of plain futures creates no tasks, and retrieves every future's exception.
        return list(await asyncio.gather(*[protocol.send(_pack(c)) for c in commands]))

    async def evalsha(self, sha: str, script: str, keys: list[Any], args: list[Any]) -> Reply:
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except rexc.NoScriptError:
            # A restarted or flushed server: load it once more (SCRIPT LOAD gives the same SHA).
            await self.execute("SCRIPT", "LOAD", script)
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    async def aclose(self) -> None:
        self._closed = True
        tasks = [t for t in (self._connecting, self._watchdog) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, rexc.RedisError):
                await task
        if self._protocol is not None:
            self._protocol.abort(rexc.ConnectionError("Redis client closed"))
            self._protocol = None

    async def _connected(self) -> _Protocol:
        """The live connection; one connect at a time, shared by every caller waiting on it.

        The connect runs as its own task (a cancelled caller does not cancel it for the
        others) and forgets itself when it ends, however it ends.
        """
        if self._closed:
            raise rexc.ConnectionError("Redis client closed")
        if self._connecting is None:
            task = asyncio.create_task(self._connect())
            self._connecting = task

            def forget(done: asyncio.Task[_Protocol]) -> None:
                if self._connecting is done:
                    self._connecting = None

            task.add_done_callback(forget)
        task = self._connecting
        try:
            protocol = await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                # The connect itself was stopped (aclose), not this caller.
                raise rexc.ConnectionError("Redis client closed") from None
            raise
        if not protocol.alive:
            raise rexc.ConnectionError("Redis connection lost")
        return protocol

    async def _connect(self) -> _Protocol:
        protocol = await self._open(lambda: _Protocol(self._timeout))
        if self._closed:
            protocol.abort(rexc.ConnectionError("Redis client closed"))
            raise rexc.ConnectionError("Redis client closed")
        self._protocol = protocol
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch(), name="stepup-redis-watchdog")
        return protocol

    async def _open(self, factory: Callable[[], P]) -> P:
        """A new connection, authenticated and on its database, or an exception."""
        loop = asyncio.get_running_loop()
        options = self._options
        protocol: P | None = None
        try:
            async with asyncio.timeout(self._timeout):
                if options.get("connection_class") is UnixDomainSocketConnection:
                    _, protocol = await loop.create_unix_connection(factory, options["path"])
                else:
                    host, port = options.get("host", "localhost"), options.get("port", 6379)
                    tls = options.get("connection_class") is SSLConnection
                    context = _tls(options) if tls else None
                    _, protocol = await loop.create_connection(
                        factory, host, port, ssl=context, server_hostname=host if tls else None
                    )
                await self._handshake(protocol, options)
        except BaseException as exc:
            # A connection whose handshake failed, timed out or was cancelled is closed now.
            if protocol is not None:
                protocol.abort(rexc.ConnectionError("Redis handshake failed"))
            if isinstance(exc, TimeoutError):
                raise rexc.TimeoutError("Timeout connecting to Redis") from exc
            if isinstance(exc, OSError):
                raise rexc.ConnectionError(f"Error connecting to Redis: {exc}") from exc
            raise
        return protocol

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None]) -> Subscription:
        """A connection of its own subscribed to ``channel``: each message's data is handed to
        ``on_message`` as it is read. Await ``closed()`` to learn the subscription ended."""
        protocol = await self._open(lambda: _Subscriber(self._timeout, on_message))
        subscription = Subscription(protocol, self._timeout)
        try:
            async with asyncio.timeout(self._timeout):
                await protocol.send(_pack(("SUBSCRIBE", channel)))
        except BaseException as exc:
            await subscription.aclose()
            if isinstance(exc, TimeoutError):
                raise rexc.TimeoutError("Timeout subscribing") from exc
            raise
        subscription.start()
        return subscription

    async def _handshake(self, protocol: P, options: dict[str, Any]) -> None:
        password, username = options.get("password"), options.get("username")
        if password is not None:
            auth = ("AUTH", username, password) if username else ("AUTH", password)
            await protocol.send(_pack(auth))
        db = int(options.get("db") or 0)
        if db:
            await protocol.send(_pack(("SELECT", db)))

    async def _watch(self) -> None:
        """Drop a connection whose oldest command went unanswered for ``socket_timeout``.

        A tick that comes late means the event loop itself was held up (a long garbage
        collection with thousands of push streams open, or no CPU): the replies that arrived
        meanwhile are still unread, since the loop runs its timers before it reads its
        sockets. Such a tick judges nothing; the next one, after a read, does.
        """
        period = min(self._timeout / 4, 0.5)
        last = time.monotonic()
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            stalled, last = now - last > period * STALLED, now
            if stalled:
                continue
            protocol = self._protocol
            if protocol is not None and protocol.alive and protocol.overdue(now):
                protocol.abort(rexc.TimeoutError("Timeout reading from Redis"))


def _tls(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    reqs = options.get("ssl_cert_reqs")
    if isinstance(reqs, str):
        reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL}.get(reqs, ssl.CERT_REQUIRED)
    check = options.get("ssl_check_hostname")
    if reqs == ssl.CERT_NONE:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif check is not None:
        context.check_hostname = bool(check)
    return context
