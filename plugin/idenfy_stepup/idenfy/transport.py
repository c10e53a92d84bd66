"""The network edge to iDenfy: one fetch, behind a one-method protocol.

``IdenfyClient`` needs only "send this request, give me the status and body": that is
:class:`VendorFetch`. In production it is :class:`~.http11.Http11Fetch`, a small HTTP/1.1
client on asyncio and httptools' C parser: each request leaves in one write, and a call costs
a fraction of the CPU of aiohttp's (which it replaced) or httpcore's (two vendor calls per
``/authorize``; see docs/performance.md). Tests pass a fake fetch, or run the simulator over
real HTTP.

What the edge promises: no redirects are followed (a 3xx is the reply), keep-alive
connections are reused, no cookies are kept, no proxy settings are read from the environment,
encoded bodies are decoded, connecting and waiting for a pooled connection are bounded by the
timeout's ``connect`` and ``pool``, each wait for the vendor's bytes by its ``read``. Every
failure is a :class:`FetchError` (:class:`FetchTimeout` for a timeout). ``Http11Fetch`` adds:
a reply (or its decoded body) over 1 MiB is a FetchError, header names, values and the URL
are checked for characters that could split the request (CR, LF, controls), TLS always
verifies the certificate and host name, and a request is sent again only if it is idempotent
and its kept-alive connection closed before any byte of a reply came back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

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
