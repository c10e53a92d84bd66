"""The network edge to iDenfy: one fetch, behind a one-method protocol.

``IdenfyClient`` needs only "send this request, give me the status and body": that is
:class:`VendorFetch`. In production it is :class:`AiohttpFetch` (aiohttp's connection pool
and C parser, a fraction of httpcore's pure-Python HTTP/1.1 on the hot path: two vendor calls
per ``/authorize``; see docs/performance.md); tests pass a fake fetch, or run the simulator
over real HTTP.

What the edge promises: no redirects are followed (a 3xx is the reply), keep-alive
connections are reused, no cookies are kept, no proxy settings are read from the environment,
encoded bodies are decoded, connecting and waiting for a pooled connection are bounded by the
timeout's ``connect`` and ``pool``, each wait for the vendor's bytes by its ``read``. Every
failure is a :class:`FetchError` (:class:`FetchTimeout` for a timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

# Connections kept open to the vendor (per host): enough for bursts of /authorize.
POOL_SIZE = 100


@dataclass(frozen=True, slots=True)
class VendorTimeout:
    """Seconds: ``connect`` to open a connection, ``pool`` to wait for a pooled one, ``read``
    for each wait for the reply's bytes."""

    connect: float
    read: float
    pool: float


@dataclass(frozen=True, slots=True)
class VendorRequest:
    """One request to the vendor's API: what the client asks the edge to send."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    timeouts: VendorTimeout


@dataclass(frozen=True, slots=True)
class VendorResponse:
    """A vendor reply as the client reads it: the status and the whole (decoded) body."""

    status: int
    body: bytes


class FetchError(Exception):
    """The request got no reply: refused, reset, DNS, TLS, a broken or truncated reply."""


class FetchTimeout(FetchError):
    """Connecting, waiting for a pooled connection, or the reply took too long."""


class VendorFetch(Protocol):
    async def __call__(self, request: VendorRequest) -> VendorResponse:
        """One request; the whole reply, whatever its status. Failures raise FetchError."""
        ...


class AiohttpFetch:
    """One per app; its session is opened on first use inside the running loop."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, enable_cleanup_closed=True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                skip_auto_headers=("User-Agent", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        return self._session

    async def __call__(self, request: VendorRequest) -> VendorResponse:
        try:
            async with self._client().request(
                request.method,
                request.url,
                headers=dict(request.headers),
                data=request.body,
                allow_redirects=False,
                timeout=_timeout(request.timeouts),
            ) as reply:
                return VendorResponse(reply.status, await reply.read())
        except (aiohttp.ConnectionTimeoutError, aiohttp.SocketTimeoutError) as exc:
            raise FetchTimeout(str(exc) or "timeout") from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise FetchTimeout(str(exc) or "timeout") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise FetchError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            await asyncio.sleep(0)  # let the connector's close callbacks run


def _timeout(spec: VendorTimeout) -> aiohttp.ClientTimeout:
    """``pool`` + ``connect`` bound getting a connection, ``read`` each wait for the vendor's
    bytes; no bound on the whole exchange beyond those."""
    return aiohttp.ClientTimeout(
        total=None,
        connect=spec.pool + spec.connect,
        sock_connect=spec.connect,
        sock_read=spec.read,
    )
