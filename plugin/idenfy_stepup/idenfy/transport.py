"""The network edge to iDenfy: an httpx transport whose HTTP/1.1 is aiohttp's.

The vendor client speaks httpx (``httpx.Request`` in, ``httpx.Response`` out), so tests replace
this edge with ``httpx.MockTransport``. In production each request goes through aiohttp's
connection pool and C parser, which costs a fraction of httpcore's pure-Python HTTP/1.1 on the
hot path (two vendor calls per ``/authorize``); see docs/performance.md.

Behaviour kept from httpx: no redirects are followed, keep-alive connections are reused,
encoded bodies are decoded, timeouts come from the request's ``timeout`` extension, and every
failure is the matching ``httpx`` exception. ``fetch`` is the same without httpx's request and
response objects (the vendor client's hot path uses it when the transport has it).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

# Connections kept open to the vendor (per host): enough for bursts of /authorize.
POOL_SIZE = 100


_DECODED = (b"content-encoding", b"content-length", b"transfer-encoding")


@dataclass(frozen=True, slots=True)
class Reply:
    """A vendor reply as the client reads it (``httpx.Response`` offers the same three)."""

    status_code: int
    content: bytes
    headers: list[tuple[bytes, bytes]]

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return json.loads(self.content)


class AiohttpTransport(httpx.AsyncBaseTransport):
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

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.raw}
        reply = await self.fetch(
            request.method,
            str(request.url),
            headers,
            await request.aread() or None,
            request.extensions.get("timeout"),
            request=request,
        )
        # The body is already decoded: its encoding and length headers no longer describe it.
        kept = [(k, v) for k, v in reply.headers if k.lower() not in _DECODED]
        return httpx.Response(
            reply.status_code, headers=kept, content=reply.content, request=request
        )

    async def fetch(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        timeouts: dict[str, float | None] | None,
        *,
        request: httpx.Request | None = None,
    ) -> Reply:
        """One request; the whole (decoded) reply. Failures raise httpx's exceptions."""
        try:
            async with self._client().request(
                method, url, headers=headers, data=body, allow_redirects=False,
                timeout=_timeout(timeouts),
            ) as reply:  # fmt: skip
                content = await reply.read()
                return Reply(reply.status, content, list(reply.raw_headers))
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
        except (aiohttp.SocketTimeoutError, aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except aiohttp.ClientResponseError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            await asyncio.sleep(0)  # let the connector's close callbacks run


def _timeout(spec: dict[str, float | None] | None) -> aiohttp.ClientTimeout:
    """httpx's per-operation timeouts: ``pool`` + ``connect`` bound getting a connection,
    ``read`` each wait for the vendor's bytes."""
    if not isinstance(spec, dict):
        return aiohttp.ClientTimeout(total=None)
    pool, connect, read = spec.get("pool"), spec.get("connect"), spec.get("read")
    acquire = None if pool is None and connect is None else (pool or 0) + (connect or 0)
    return aiohttp.ClientTimeout(total=None, connect=acquire, sock_connect=connect, sock_read=read)
