"""The HTTP edge: deadlines, size limits and a connection cap in front of uvicorn's httptools.

uvicorn's httptools protocol has no deadline for a request's headers (only an idle timer armed
after a response), no limit on their size (httptools buffers a header until its end), and its
``limit_concurrency`` only answers 503 once a request's headers are complete, so sockets that
never finish them are never refused. ``EdgeProtocol`` adds all three at the asyncio-protocol
level, where a slow or oversized request costs no task and never reaches the app:

* a connection gets ``header_timeout`` seconds (from its opening, or from the end of the
  previous response) to complete a request's headers, then it is closed (408 if it had
  started one); a body gets ``body_timeout`` seconds after its headers (408, closed);
* more than ``max_header_bytes`` before the end of the headers is 431; a request target longer
  than ``max_request_line_bytes`` is 414 (RFC 9112 §3); both answer and close;
* every refusal after a request began is a lingering close: the answer, a half-close, then
  up to ``LINGER`` seconds of dropped input, so a client still sending is not reset;
* past ``max_connections`` a new connection evicts the connection that has waited longest for
  its headers (a slow client, or an idle keep-alive one); when every connection is busy with a
  request, the newcomer gets 503 with ``Retry-After`` and is closed.

A response goes out in one write, not two: uvicorn writes its status line and headers as soon
as the app starts the response, then the body; ``CorkedTransport`` holds the first write until
the next one (or the end of the loop iteration) and sends them joined. On loopback and behind a
proxy each write is a syscall that runs the peer's TCP receive path too.

The deadlines cost no timer per request: connections waiting for headers (and bodies being
read) sit in insertion-ordered dicts, oldest first, and one sweep every ``TICK`` seconds closes
those at the front whose deadline has passed. Per request that is two dict writes and a clock
read (uvloop caches it per loop iteration).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass, field
from typing import ClassVar

import httptools
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger("idenfy_stepup")

TICK = 0.5  # seconds between sweeps: deadlines are kept to within this
# Seconds a refused connection goes on reading (and dropping) what its client still sends,
# after the answer and a half-close. Closing a socket with unread input makes the kernel send
# RST, and a client that is still writing then loses the answer it was sent (a lingering
# close, as Apache httpd and nginx do). It ends sooner when the client closes its side.
# It also ends once it has dropped LINGER_BYTES: a client that floods is not read for free.
LINGER = 2.0
LINGER_BYTES = 64 * 1024
# Writes held for joining, at most: a response's headers and a body of ordinary size.
CORK_BYTES = 64 * 1024
# File descriptors kept for everything that is not a client connection: Redis and vendor
# connections, the listening sockets, log files, the embedded Redis' pipes.
FD_RESERVE = 1024


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout: float
    body_timeout: float
    max_header_bytes: int
    max_request_line_bytes: int
    max_connections: int


def raise_fd_limit() -> int:
    """Raise this process' soft RLIMIT_NOFILE to its hard limit; return the soft limit now.

    Children (workers, the simulator) inherit it. A hard limit of "unlimited" is left alone:
    some kernels refuse a soft limit that large.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # pragma: no cover - a sandbox may refuse
            pass
    return soft


def connection_cap(wanted: int, fd_limit: int) -> int:
    """``wanted``, lowered so that client sockets can never use up the file descriptors."""
    reserve = max(64, min(FD_RESERVE, fd_limit // 4))
    return max(1, min(wanted, fd_limit - reserve))


@dataclass
class Edge:
    """What one server's connections share: the limits and who waits for what, oldest first."""

    limits: EdgeLimits
    waiting: dict[EdgeProtocol, float] = field(default_factory=dict)  # headers not complete
    reading: dict[EdgeProtocol, float] = field(default_factory=dict)  # body not complete
    sweeping: asyncio.TimerHandle | None = None

    def wait_for_headers(self, conn: EdgeProtocol) -> None:
        self.waiting[conn] = conn.loop.time()
        if self.sweeping is None:
            self.sweeping = conn.loop.call_later(TICK, self.sweep, conn.loop)

    def read_body(self, conn: EdgeProtocol) -> None:
        self.reading[conn] = conn.loop.time()
        if self.sweeping is None:
            self.sweeping = conn.loop.call_later(TICK, self.sweep, conn.loop)

    def forget(self, conn: EdgeProtocol) -> None:
        self.waiting.pop(conn, None)
        self.reading.pop(conn, None)

    def evict_one(self) -> bool:
        """Close the connection that has waited longest for its headers, if there is one."""
        conn = next(iter(self.waiting), None)
        if conn is None:
            return False
        del self.waiting[conn]
        log.debug(
            "connection cap reached: closing the longest-waiting connection",
            extra={"event": "http.evicted"},
        )
        conn.transport.close()
        return True

    def sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for table, timeout, expire in (
            (self.waiting, self.limits.header_timeout, EdgeProtocol.headers_expired),
            (self.reading, self.limits.body_timeout, EdgeProtocol.body_expired),
        ):
            cutoff = now - timeout
            while table:
                conn, since = next(iter(table.items()))
                if since > cutoff:
                    break
                del table[conn]
                expire(conn)
        busy = self.waiting or self.reading
        self.sweeping = loop.call_later(TICK, self.sweep, loop) if busy else None


class CorkedTransport:
    """A connection's transport as its request cycles see it: the writes made within one loop
    iteration leave as one (a response's headers and its body), at the latest when the
    iteration ends, and before a close or a half-close."""

    __slots__ = ("_held", "_loop", "_size", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self.flush)
        self._held.append(data)
        self._size += len(data)
        if self._size >= CORK_BYTES:
            # A large body goes on at once: the transport's own buffer is what pauses the
            # writer (uvicorn's flow control), and it must see the bytes to do so.
            self.flush()

    def flush(self) -> None:
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            self._size = 0
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()


class LazyFlowControl(FlowControl):
    """uvicorn's flow control, with its asyncio.Event made only while writing is paused.

    uvicorn makes one Event (and its deque, about 0.7 KiB) per connection for the rare moment
    the socket's write buffer is full; a waiting push stream never gets there.
    """

    def __init__(self, transport: asyncio.Transport) -> None:  # not super's: no Event
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._writable: asyncio.Event | None = None

    async def drain(self) -> None:
        writable = self._writable
        if writable is not None:
            await writable.wait()

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            self._writable = asyncio.Event()

    def resume_writing(self) -> None:
        if self.write_paused:
            self.write_paused = False
            writable, self._writable = self._writable, None
            if writable is not None:
                writable.set()


class _Pipeline(list[tuple[object, object]]):
    """uvicorn's queue of pipelined requests (a deque, about 0.6 KiB even when empty, as
    nearly every connection's is) as a list: the same two operations, oldest popped first."""

    __slots__ = ()

    def appendleft(self, item: tuple[object, object]) -> None:
        self.insert(0, item)


class _EdgeState:
    """What the edge tracks of one connection."""

    __slots__ = ("corked", "counting", "header_bytes", "lingered", "lingering", "refusal")

    def __init__(self, corked: CorkedTransport) -> None:
        self.corked = corked
        self.header_bytes = 0  # bytes read since the last request ended, while in its headers
        self.counting = True
        self.refusal = 0
        self.lingering = False  # answered and half-closed: input is read and dropped
        self.lingered = 0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the answer is in ``EdgeProtocol.refusal``."""


def _plain(status: int, message: str, *extra: bytes) -> bytes:
    body = message.encode("ascii")
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\n" % len(body),
            *extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


TOO_MANY = _plain(503, "Too many connections.", b"retry-after: 1\r\n")
TIMEOUT = _plain(408, "The request took too long to arrive.")
TOO_LARGE = {
    414: _plain(414, "The request target is too long."),
    431: _plain(431, "The request headers are too large."),
}


class EdgeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the edge's deadlines, size limits and cap."""

    edge: ClassVar[Edge]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.url = b""
        # One attribute for the edge's state: uvicorn's protocol already sets 27, and an
        # instance with more than 30 loses CPython's shared-key dict (about 1.5 KiB more per
        # connection, thousands of which are push streams).
        self.at = _EdgeState(CorkedTransport(transport, self.loop))
        self.flow = LazyFlowControl(transport)
        self.pipeline = _Pipeline()  # type: ignore[assignment]
        edge = self.edge
        if len(self.connections) > edge.limits.max_connections and not edge.evict_one():
            log.debug(
                "connection refused: every connection is busy", extra={"event": "http.refused"}
            )
            # Closed at once, not lingering: at the cap a file descriptor matters more, and a
            # client that has only just connected has rarely sent anything to reset on.
            transport.write(TOO_MANY)
            transport.close()
            return
        edge.wait_for_headers(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.edge.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with the size check around the parser and its own refusals answered.
        if self.at.lingering:
            # Answered and half-closed: what still arrives is dropped, up to a budget.
            self.at.lingered += len(data)
            if self.at.lingered > LINGER_BYTES:
                self.transport.close()
            return
        if self.at.counting:
            self.at.header_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self.at.refusal:
                self._refuse(self.at.refusal)
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self.at.counting and self.at.header_bytes > self.edge.limits.max_header_bytes:
            # Still in the headers and already too many bytes: answer before buffering more.
            limits = self.edge.limits
            self._refuse(414 if len(self.url) > limits.max_request_line_bytes else 431)

    def on_headers_complete(self) -> None:
        limits = self.edge.limits
        if len(self.url) > limits.max_request_line_bytes:
            self.at.refusal = 414
            raise _Refused
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > limits.max_header_bytes:
            self.at.refusal = 431
            raise _Refused
        self.at.counting = False
        self.edge.waiting.pop(self, None)
        self.edge.read_body(self)
        super().on_headers_complete()
        # The cycle writes through the connection's corked transport (one per connection, so
        # that pipelined responses stay in order).
        if self.cycle is not None:  # None when uvicorn returned early (an upgrade)
            self.cycle.transport = self.at.corked  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self.edge.reading.pop(self, None)
        self.at.counting, self.at.header_bytes, self.url = True, 0, b""
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self.edge.wait_for_headers(self)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to a malformed request, closed as every other refusal is.
        body = msg.encode("ascii")
        self._answer_and_close(
            b"".join(
                [
                    STATUS_LINE[400],
                    *(b"%s: %s\r\n" % pair for pair in self.server_state.default_headers),
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: %d\r\n" % len(body),
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )

    def _answer_and_close(self, answer: bytes) -> None:
        """Write ``answer``, half-close, and read and drop input until the client closes,
        ``LINGER`` seconds pass or ``LINGER_BYTES`` have been dropped."""
        transport = self.transport
        if self.at.lingering or transport.is_closing():
            return
        self.at.corked.flush()  # what a cycle already wrote goes first
        self.at.lingering = True
        self.edge.forget(self)
        transport.write(answer)
        if not transport.can_write_eof():  # pragma: no cover - TCP and unix sockets can
            transport.close()
            return
        transport.write_eof()
        if self.flow is not None:
            self.flow.resume_reading()  # a paused socket would keep its unread input
        self.loop.call_later(LINGER, transport.close)

    def _refuse(self, status: int) -> None:
        log.debug("request refused: %d", status, extra={"event": "http.too_large"})
        self.at.counting = False
        self._answer_and_close(TOO_LARGE[status])

    def headers_expired(self) -> None:
        if self.at.lingering or self.transport.is_closing():
            return
        started = self.at.header_bytes > 0 or bool(self.url)
        log.debug("request headers too slow: closing", extra={"event": "http.header_timeout"})
        if started:
            self._answer_and_close(TIMEOUT)
        else:
            self.transport.close()

    def body_expired(self) -> None:
        if self.at.lingering or self.transport.is_closing():
            return
        log.debug("request body too slow: closing", extra={"event": "http.body_timeout"})
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app waiting on receive() hears a disconnect, and its answer goes nowhere.
            cycle.disconnected = True
            cycle.message_event.set()
            self._answer_and_close(TIMEOUT)
        else:
            self.transport.close()


def protocol_class(limits: EdgeLimits) -> type[EdgeProtocol]:
    """A protocol class of its own per server: its connections share one ``Edge``."""
    return type("EdgeProtocol", (EdgeProtocol,), {"edge": Edge(limits)})
