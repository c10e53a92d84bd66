"""``Http11Fetch``: the vendor edge's own HTTP/1.1 client, on asyncio and httptools.

It does only what two small JSON calls per flow need, and nothing per request that they do not:
the request (request line, headers and body) is built as one byte string and leaves in ONE
write; the reply is parsed by httptools (llhttp, the C parser uvicorn serves with), which also
decodes chunked bodies. Connections are pooled per origin (scheme, host, port) and kept alive.

What it promises is the edge's (``transport.py``): no redirects followed, no cookies, nothing
read from the environment (no proxy), encoded bodies decoded, the pool wait bounded by
``pool``, connecting (DNS, TCP and the TLS handshake) by ``connect``, each wait for the
vendor's bytes by ``read``; every failure a ``FetchError`` (``FetchTimeout`` for a timeout).
Error messages never carry the URL, a header or the body: the path holds a scanRef, the
headers the API key.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

from .transport import POOL_SIZE, FetchError, FetchTimeout, VendorRequest, VendorResponse

# A vendor reply is a small JSON document (a few hundred bytes; docs/idenfy-api.md). Everything
# received for one reply (status line, headers, body) and its decoded body are each capped:
# the read timeout bounds each wait, not the whole reply, so without a cap a broken or hostile
# server (or an api_base pointing at the wrong thing) could make every one of the pooled
# connections buffer without limit, and a small gzip body could inflate to gigabytes.
MAX_REPLY_BYTES = 1024 * 1024
# A pooled connection idle longer than this is closed instead of reused. Servers close idle
# keep-alive connections on a timer of their own (uvicorn 5 s, nginx 75 s, load balancers
# 60 s): a request written as that timer fires meets a closed connection. Staying under the
# shortest common one makes that race rare; under load connections are never idle that long.
IDLE_REUSE_SECONDS = 4.0
# The methods this edge sends (the vendor's API uses GET and POST). Rules as data.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# Methods a request of which may be sent again without changing anything more than the first
# would have (RFC 9110 §9.2.2): only these are retried on a fresh connection (see _send).
IDEMPOTENT = frozenset({"GET", "PUT", "DELETE"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# Framing and connection management belong to the edge: a caller's header cannot set them.
EDGE_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te"}
)
DEFAULT_PORTS = {"http": 80, "https": 443}

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110 §5.6.2)
_BAD_VALUE = re.compile(r"[^\t\x20-\x7e]")  # CR, LF, NUL, other controls, non-ASCII
_BAD_TARGET = re.compile(r"[^\x21-\x7e]")  # no space, control or non-ASCII in a URL
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_PORT = re.compile(r"[0-9]{1,5}")
_ACCEPT_ENCODING = "accept-encoding"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a URL's requests go: one pool per origin."""

    scheme: str
    host: str  # for DNS and TLS (no brackets)
    port: int
    host_header: str


def split_url(url: str, origins: dict[str, Origin]) -> tuple[Origin, str]:
    """``(origin, request target)``; FetchError for a URL this edge will not send.

    The URL is checked whole before it is split: ``urllib.parse`` silently deletes CR, LF and
    tab, which would let a header injection through as an innocent-looking path. What reaches
    the path is a scanRef (percent-encoded by the client) or a checked token, but the edge
    does not rely on that."""
    if _BAD_TARGET.search(url) is not None:
        raise FetchError("the URL holds a space, control or non-ASCII character")
    scheme, sep, rest = url.partition("://")
    end = min((i for i in map(rest.find, "/?#") if i != -1), default=len(rest))
    authority, target = rest[:end], rest[end:].partition("#")[0]  # no fragment on the wire
    if not target.startswith("/"):
        target = "/" + target
    origin = origins.get(scheme + "://" + authority) if sep else None
    if origin is None:
        origin = _origin(scheme.lower(), authority) if sep else None
        if origin is None:
            raise FetchError("not an http(s) URL with a host this edge can send to")
        if len(origins) < 64:  # one or two in practice: the configured api_base
            origins[scheme + "://" + authority] = origin
    return origin, target


def _origin(scheme: str, authority: str) -> Origin | None:
    if scheme not in DEFAULT_PORTS or "@" in authority:  # no credentials in a URL
        return None
    host, port_text = authority, ""
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, port_text = authority[:end], authority[end:].removeprefix(":")
        if end == 0 or (authority[end:] and not authority[end:].startswith(":")):
            return None
    elif ":" in authority:
        host, port_text = authority.rsplit(":", 1)
    if _HOST.fullmatch(host) is None or (port_text and _PORT.fullmatch(port_text) is None):
        return None
    port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        return None
    default = port == DEFAULT_PORTS[scheme]
    return Origin(scheme, host.strip("[]"), port, host if default else f"{host}:{port}")


def request_bytes(method: str, target: str, origin: Origin, request: VendorRequest) -> bytes:
    """The whole request, head and body, as the one byte string that is written."""
    if method not in METHODS:
        raise FetchError("a method this edge does not send")
    lines = [f"{method} {target} HTTP/1.1\r\nHost: {origin.host_header}\r\n"]
    encodings = False
    for name, value in request.headers.items():
        if _TOKEN.fullmatch(name) is None or _BAD_VALUE.search(value) is not None:
            raise FetchError("a request header holds a character HTTP does not allow")
        lower = name.lower()
        if lower in EDGE_HEADERS:
            raise FetchError("a request header the edge sets itself")
        encodings = encodings or lower == _ACCEPT_ENCODING
        lines.append(f"{name}: {value}\r\n")
    if not encodings:
        # The replies are small JSON: compressing them saves a few hundred bytes and costs CPU
        # at both ends. A server that compresses anyway is still decoded (_decoded).
        lines.append("Accept-Encoding: identity\r\n")
    body = request.body
    if body is not None or method in BODY_METHODS:
        lines.append(f"Content-Length: {len(body or b'')}\r\n")
    lines.append("\r\n")
    head = "".join(lines).encode("ascii")
    return head + body if body else head


class _Stale(FetchError):
    """A reused connection ended before any byte of the reply arrived."""


class Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight, its reply parsed as it comes."""

    def __init__(self, loop: asyncio.AbstractEventLoop, lost: Callable[[Connection], None]):
        self._loop = loop
        self._lost = lost  # tells the pool when an idle connection goes away
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._reply: asyncio.Future[VendorResponse] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_seconds = 0.0
        self._last_bytes = 0.0
        self.closed = False
        self.served = 0  # replies read on this connection: above 0 it is a reused one
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.received = 0  # bytes of the reply in flight
        self._body: list[bytes] = []
        self._encoding: bytes | None = None
        self._framed = False  # Content-Length or Transfer-Encoding: not read until close
        self._headers_done = False
        self._keep_alive = False
        self._extra = False  # bytes after the reply: the connection is not clean

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, only alike.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reply = self._reply
        if reply is None or reply.done():
            self._extra = True  # nothing was asked: a server that talks out of turn
            self.close()
            return
        self._last_bytes = self._loop.time()
        self.received += len(data)
        if self.received > MAX_REPLY_BYTES:
            self._fail(FetchError(f"the reply is larger than {MAX_REPLY_BYTES} bytes"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(FetchError("the server switched protocols"))
        except httptools.HttpParserError:
            self._fail(FetchError("the reply is not valid HTTP/1.1"))

    def eof_received(self) -> bool:
        self.closed = True  # not reused from now on, even before connection_lost runs
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_timer()
        self._lost(self)
        reply = self._reply
        if reply is None or reply.done():
            return
        if self._headers_done and not self._framed:  # a body read until the server closes
            self._finish(keep_alive=False)
        elif self.received == 0 and self.served:
            reply.set_exception(_Stale("the server closed the connection"))
        else:
            reply.set_exception(FetchError("the connection closed before the whole reply"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-encoding":
            self._encoding = value if self._encoding is None else self._encoding + b"," + value
        elif lower in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_begin(self) -> None:
        if self._reply is None or self._reply.done():
            self._extra = True

    def on_message_complete(self) -> None:
        if self._reply is None or self._reply.done():
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an informational reply: the real one follows
            received = self.received
            self._reset()
            self.received = received
            return
        self._finish(keep_alive=self._parser.should_keep_alive())

    # the request

    def send(self, data: bytes, read_seconds: float) -> asyncio.Future[VendorResponse]:
        """Writes the whole request at once; the future gets the reply or its FetchError."""
        assert self._transport is not None
        self._reset()
        self._reply = reply = self._loop.create_future()
        self._read_seconds = read_seconds
        self._last_bytes = now = self._loop.time()
        self._timer = self._loop.call_at(now + read_seconds, self._check_read)
        self._transport.write(data)
        return reply

    @property
    def reusable(self) -> bool:
        """True once a reply was read whole on a connection both ends keep open."""
        reply = self._reply
        return (
            not self.closed
            and self._keep_alive
            and not self._extra
            and reply is not None
            and reply.done()
            and not reply.cancelled()
            and reply.exception() is None
        )

    def close(self) -> None:
        self._cancel_timer()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def _finish(self, *, keep_alive: bool) -> None:
        self._cancel_timer()
        self._keep_alive = keep_alive
        assert self._reply is not None
        try:
            body = _decoded(self._encoding, b"".join(self._body))
        except FetchError as exc:
            self._reply.set_exception(exc)
            return
        self.served += 1
        self._reply.set_result(VendorResponse(self._parser.get_status_code(), body))

    def _fail(self, error: FetchError) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.set_exception(error)
        self.close()

    def _check_read(self) -> None:
        # One timer per request, moved on only when it fires: bytes arriving cost a clock read,
        # not a new timer.
        self._timer = None
        due = self._last_bytes + self._read_seconds
        if self._loop.time() < due:
            self._timer = self._loop.call_at(due, self._check_read)
        else:
            self._fail(FetchTimeout("no byte of the reply within the read timeout"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _decoded(encoding: bytes | None, body: bytes) -> bytes:
    """The body without its Content-Encoding (gzip or deflate), within the size cap."""
    name = b"identity" if encoding is None else encoding.strip().lower()
    if name == b"identity":
        return body
    if name in (b"gzip", b"x-gzip"):
        return _inflate(body, 16 + zlib.MAX_WBITS)
    if name == b"deflate":  # zlib-wrapped as the RFC says, or raw as some servers send it
        try:
            return _inflate(body, zlib.MAX_WBITS)
        except FetchError:
            return _inflate(body, -zlib.MAX_WBITS)
    raise FetchError("the reply is in an encoding this edge does not decode")


def _inflate(body: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, MAX_REPLY_BYTES + 1)
    except zlib.error as exc:
        raise FetchError("the reply's encoded body is broken") from exc
    if len(data) > MAX_REPLY_BYTES:
        raise FetchError(f"the reply is larger than {MAX_REPLY_BYTES} bytes")
    if not inflater.eof:
        raise FetchError("the reply's encoded body is truncated")
    return data


class Pool:
    """The connections of one origin: at most ``size`` open, idle ones reused newest first."""

    def __init__(self, size: int) -> None:
        self.slots = asyncio.Semaphore(size)  # one per connection in use
        self.idle: list[Connection] = []
        self.open: set[Connection] = set()

    async def acquire(self, seconds: float) -> None:
        if not self.slots.locked():
            await self.slots.acquire()  # free: returns at once
            return
        try:
            async with asyncio.timeout(seconds):
                await self.slots.acquire()
        except TimeoutError:
            raise FetchTimeout("no free connection within the pool timeout") from None

    def take_idle(self, now: float, idle_seconds: float) -> Connection | None:
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed and now - connection.idle_since < idle_seconds:
                return connection
            connection.close()
        return None

    def put_idle(self, connection: Connection, now: float) -> None:
        connection.idle_since = now
        self.idle.append(connection)

    def lost(self, connection: Connection) -> None:
        """The server closed a connection (idle or not): it leaves the pool."""
        self.open.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)

    def close(self) -> None:
        for connection in list(self.open):
            # A pool left behind by a loop that has closed cannot schedule the close: its
            # sockets went with the loop.
            with contextlib.suppress(RuntimeError):
                connection.close()
        self.idle.clear()


class Http11Fetch:
    """One per app: its pools and TLS context are made on first use, in the running loop.

    ``tls`` replaces the default context (the system's CAs) only to trust another CA (tests);
    a context that does not verify certificates and host names is refused."""

    def __init__(
        self,
        pool_size: int = POOL_SIZE,
        *,
        tls: ssl.SSLContext | None = None,
        idle_seconds: float = IDLE_REUSE_SECONDS,
    ) -> None:
        if tls is not None and (tls.verify_mode != ssl.CERT_REQUIRED or not tls.check_hostname):
            raise ValueError("the vendor edge verifies certificates and host names")
        self._pool_size = pool_size
        self._tls = tls
        self._idle_seconds = idle_seconds
        self._pools: dict[tuple[str, str, int], Pool] = {}
        self._origins: dict[str, Origin] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, request: VendorRequest) -> VendorResponse:
        origin, target = split_url(request.url, self._origins)
        data = request_bytes(request.method, target, origin, request)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # pools (and their semaphores) belong to one loop
            self._close_pools()
            self._loop = loop
        key = (origin.scheme, origin.host, origin.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool(self._pool_size)
        timeouts = request.timeouts
        await pool.acquire(timeouts.pool)
        try:
            connection = pool.take_idle(loop.time(), self._idle_seconds)
            if connection is None:
                connection = await self._connect(loop, pool, origin, timeouts.connect)
            try:
                return await self._exchange(loop, pool, connection, data, timeouts.read)
            except _Stale:
                # The server closed a kept-alive connection (idle, from its side) while our
                # request was on its way: not one byte of a reply came back. Such a server never
                # read the request, so sending it again is not sending it twice; but "no byte
                # back" cannot tell that apart from a server that read it, acted on it and died
                # before answering. RFC 9112 §9.3.1 allows an automatic retry only where a
                # second send is harmless, so (like aiohttp and urllib3; unlike browsers, which
                # retry any method here) only idempotent methods are retried, once, on a fresh
                # connection. A POST (the create-token call spends a credit) is a FetchError:
                # the user's next attempt is the retry, as for every other vendor failure.
                # IDLE_REUSE_SECONDS keeps the race itself rare.
                if request.method not in IDEMPOTENT:
                    raise FetchError("the server closed the connection") from None
                connection = await self._connect(loop, pool, origin, timeouts.connect)
                return await self._exchange(loop, pool, connection, data, timeouts.read)
        finally:
            pool.slots.release()

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: Pool,
        connection: Connection,
        data: bytes,
        read_seconds: float,
    ) -> VendorResponse:
        try:
            return await connection.send(data, read_seconds)
        finally:
            # Back to the pool only after a whole reply on a connection both ends keep open;
            # anything else (an error, a timeout, a cancelled caller mid-reply) closes it.
            if connection.reusable:
                pool.put_idle(connection, loop.time())
            else:
                connection.close()

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, pool: Pool, origin: Origin, seconds: float
    ) -> Connection:
        tls = self._context() if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(seconds):
                _, connection = await loop.create_connection(
                    lambda: Connection(loop, pool.lost),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,
                )
        except TimeoutError:
            raise FetchTimeout("no connection within the connect timeout") from None
        except OSError as exc:  # refused, unreachable, DNS, TLS (ssl.SSLError is an OSError)
            raise FetchError(str(exc) or type(exc).__name__) from exc
        pool.open.add(connection)
        return connection

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            # The system's CAs, certificate and host name verified (loaded once: ~tens of ms).
            self._tls = ssl.create_default_context()
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    def _close_pools(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    async def aclose(self) -> None:
        """Closes every connection; a later request opens new ones."""
        self._close_pools()
        await asyncio.sleep(0)  # let the transports' close callbacks run
