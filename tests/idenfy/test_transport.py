"""The vendor's network edge (AiohttpTransport) against real HTTP servers on loopback.

It must behave as httpx's own transport does for IdenfyClient: same request on the wire, the
response as sent (encoded bodies decoded by httpx), no redirects followed, connections kept
alive, and every failure raised as the matching httpx exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from idenfy_stepup.idenfy.client import IdenfyClient, VendorUnavailable, default_timeout
from idenfy_stepup.idenfy.transport import AiohttpTransport

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
async def transport() -> AsyncIterator[AiohttpTransport]:
    edge = AiohttpTransport()
    try:
        yield edge
    finally:
        await edge.aclose()


def request(method: str, url: str, timeout: float = 5.0, **kwargs: object) -> httpx.Request:
    extensions = {"timeout": default_timeout(timeout).as_dict()}
    return httpx.Request(method, url, extensions=extensions, **kwargs)  # type: ignore[arg-type]


async def send(transport: AiohttpTransport, req: httpx.Request) -> httpx.Response:
    response = await transport.handle_async_request(req)
    await response.aread()
    return response


async def test_request_and_response_go_through_unchanged(
    server: str, transport: AiohttpTransport
) -> None:
    req = request(
        "POST",
        f"{server}/echo",
        params={"method": "FACE_MATCHING"},
        json={"scanRef": "S-1"},
        headers={"Authorization": "Basic a2V5OnNlY3JldA==", "Accept": "application/json"},
    )
    response = await send(transport, req)
    assert response.status_code == 200
    assert response.headers["x-vendor"] == "yes"
    seen = response.json()
    assert (seen["method"], seen["path"], seen["query"]) == (
        "POST",
        "/echo",
        "method=FACE_MATCHING",
    )
    assert json.loads(seen["body"]) == {"scanRef": "S-1"}
    assert seen["headers"]["authorization"] == "Basic a2V5OnNlY3JldA=="
    assert seen["headers"]["accept"] == "application/json"
    assert seen["headers"]["content-type"] == "application/json"
    assert "cookie" not in seen["headers"]


async def test_encoded_bodies_are_decoded_once(server: str, transport: AiohttpTransport) -> None:
    response = await send(transport, request("GET", f"{server}/gzip"))
    assert response.json() == {"type": "AUTHENTICATION"}


async def test_redirects_are_not_followed(server: str, transport: AiohttpTransport) -> None:
    response = await send(transport, request("GET", f"{server}/redirect"))
    assert response.status_code == 302
    assert response.headers["location"] == "/echo"


async def test_connections_are_kept_alive(server: str, transport: AiohttpTransport) -> None:
    ports = set()
    for _ in range(3):
        response = await send(transport, request("GET", f"{server}/echo"))
        ports.add(response.json()["client_port"])
    assert len(ports) == 1


async def test_slow_vendor_is_a_read_timeout(server: str, transport: AiohttpTransport) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await send(transport, request("GET", f"{server}/slow", timeout=0.2))


async def test_refused_connection_is_a_connect_error(transport: AiohttpTransport) -> None:
    with contextlib.closing(free_socket()) as sock:
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(httpx.ConnectError):
            await send(transport, request("GET", f"http://127.0.0.1:{port}/"))


async def test_broken_reply_is_a_transport_error(transport: AiohttpTransport) -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"type"')
        await writer.drain()
        writer.close()

    broken = await asyncio.start_server(half, "127.0.0.1", 0)
    port = broken.sockets[0].getsockname()[1]
    try:
        with pytest.raises(httpx.TransportError):
            await send(transport, request("GET", f"http://127.0.0.1:{port}/"))
    finally:
        broken.close()
        await broken.wait_closed()


async def test_aclose_then_use_opens_a_new_session(
    server: str, transport: AiohttpTransport
) -> None:
    await send(transport, request("GET", f"{server}/echo"))
    await transport.aclose()
    response = await send(transport, request("GET", f"{server}/echo"))
    assert response.status_code == 200


async def test_vendor_client_over_the_real_edge(server: str, transport: AiohttpTransport) -> None:
    client = IdenfyClient(transport, server, "key", "secret", default_timeout(5))
    with pytest.raises(VendorUnavailable) as info:
        # /partner/authentication-info is a 404 on this server
        await client.create_authentication("scan-1", "AUTHENTICATION", "FACE_MATCHING", 600)
    assert (info.value.kind, info.value.status) == ("not_found", 404)
