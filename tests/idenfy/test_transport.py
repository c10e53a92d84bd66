"""The vendor's network edge (Http11Fetch) against real HTTP servers on loopback.

Same request on the wire as the client built it, the reply's status and (decoded) body, no
redirects followed, connections kept alive, and every failure a FetchError (FetchTimeout for
a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from idenfy_stepup.idenfy.client import IdenfyClient, VendorUnavailable, default_timeout
from idenfy_stepup.idenfy.http11 import Http11Fetch
from idenfy_stepup.idenfy.transport import (
    FetchError,
    FetchTimeout,
    VendorRequest,
    VendorResponse,
)

from ..harness.servers import free_socket, serve_in_loop


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": dict(request.headers),
            "body": body.decode(),
            "client_port": request.client.port if request.client else None,
        },
        headers={"X-Vendor": "yes"},
    )


async def gzipped(request: Request) -> Response:
    payload = gzip.compress(json.dumps({"type": "AUTHENTICATION"}).encode())
    return Response(payload, media_type="application/json", headers={"Content-Encoding": "gzip"})


async def redirect(request: Request) -> Response:
    return RedirectResponse("/echo", status_code=302)


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return JSONResponse({})


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["GET", "POST"]),
        Route("/gzip", gzipped),
        Route("/redirect", redirect),
        Route("/slow", slow),
    ]
)


@pytest.fixture
async def server() -> AsyncIterator[str]:
    sock = free_socket()
    uvicorn_server, task = await serve_in_loop(APP, sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        uvicorn_server.should_exit = True
        await task


@pytest.fixture
async def fetch() -> AsyncIterator[Http11Fetch]:
    edge = Http11Fetch()
    try:
        yield edge
    finally:
        await edge.aclose()


async def get(
    fetch: Http11Fetch,
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    seconds: float = 5.0,
) -> VendorResponse:
    return await fetch(VendorRequest(method, url, headers or {}, body, default_timeout(seconds)))


def seen(reply: VendorResponse) -> dict[str, object]:
    data: dict[str, object] = json.loads(reply.body)
    return data


async def test_request_and_response_go_through_unchanged(server: str, fetch: Http11Fetch) -> None:
    headers = {
        "Authorization": "Basic a2V5OnNlY3JldA==",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }
    reply = await get(
        fetch,
        f"{server}/echo?method=FACE_MATCHING",
        method="POST",
        headers=headers,
        body=b'{"scanRef":"S-1"}',
    )
    assert reply.status == 200
    echoed = seen(reply)
    assert (echoed["method"], echoed["path"], echoed["query"]) == (
        "POST",
        "/echo",
        "method=FACE_MATCHING",
    )
    assert echoed["body"] == '{"scanRef":"S-1"}'  # the client's bytes, as they were
    sent = echoed["headers"]
    assert isinstance(sent, dict)
    assert sent["authorization"] == "Basic a2V5OnNlY3JldA=="
    assert sent["accept"] == "application/json"
    assert sent["content-type"] == "application/json"
    assert "cookie" not in sent and "user-agent" not in sent


async def test_encoded_bodies_are_decoded_once(server: str, fetch: Http11Fetch) -> None:
    reply = await get(fetch, f"{server}/gzip")
    assert json.loads(reply.body) == {"type": "AUTHENTICATION"}


async def test_redirects_are_not_followed(server: str, fetch: Http11Fetch) -> None:
    reply = await get(fetch, f"{server}/redirect")
    assert reply.status == 302


async def test_connections_are_kept_alive(server: str, fetch: Http11Fetch) -> None:
    ports = {seen(await get(fetch, f"{server}/echo"))["client_port"] for _ in range(3)}
    assert len(ports) == 1


async def test_slow_vendor_is_a_timeout(server: str, fetch: Http11Fetch) -> None:
    with pytest.raises(FetchTimeout):
        await get(fetch, f"{server}/slow", seconds=0.2)


async def test_refused_connection_is_a_fetch_error_not_a_timeout(fetch: Http11Fetch) -> None:
    with contextlib.closing(free_socket()) as sock:
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(FetchError) as info:
            await get(fetch, f"http://127.0.0.1:{port}/")
    assert not isinstance(info.value, FetchTimeout)


async def test_broken_reply_is_a_fetch_error(fetch: Http11Fetch) -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"type"')
        await writer.drain()
        writer.close()

    broken = await asyncio.start_server(half, "127.0.0.1", 0)
    port = broken.sockets[0].getsockname()[1]
    try:
        with pytest.raises(FetchError):
            await get(fetch, f"http://127.0.0.1:{port}/")
    finally:
        broken.close()
        await broken.wait_closed()


async def test_aclose_then_use_opens_a_new_session(server: str, fetch: Http11Fetch) -> None:
    await get(fetch, f"{server}/echo")
    await fetch.aclose()
    assert (await get(fetch, f"{server}/echo")).status == 200


async def test_vendor_client_over_the_real_edge(server: str, fetch: Http11Fetch) -> None:
    client = IdenfyClient(fetch, server, "key", "secret", default_timeout(5))
    with pytest.raises(VendorUnavailable) as info:
        # /partner/authentication-info is a 404 on this server
        await client.create_authentication("scan-1", "AUTHENTICATION", "FACE_MATCHING", 600)
    assert (info.value.kind, info.value.status) == ("not_found", 404)
