"""CPU per vendor call: the provider's fetch (Http11Fetch) against aiohttp's, same run.

A tiny keep-alive server in a child process answers every request with a small JSON reply;
this process sends ``--calls`` sequential vendor calls through each fetch in turn (the two
calls of a flow, alternately: the create-token POST and the check-status GET), for
``--rounds`` rounds, alternating which fetch goes first, and prints the process CPU time per
call (µs) of each round and the median. The event loop is uvloop, as in the provider.

    python bench/vendor_fetch.py --calls 5000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import cast

import aiohttp
import httptools
import uvloop

from idenfy_stepup.idenfy.client import default_timeout
from idenfy_stepup.idenfy.http11 import Http11Fetch
from idenfy_stepup.idenfy.transport import VendorFetch, VendorRequest, VendorResponse

REPLY_BODY = json.dumps({"token": "T" * 40, "type": "AUTHENTICATION", "lifetime": 600}).encode()
REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(REPLY_BODY),
    REPLY_BODY,
)


class AiohttpFetch:
    """The provider's vendor fetch before Http11Fetch, kept here to compare against."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, request: VendorRequest) -> VendorResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, enable_cleanup_closed=True),
                skip_auto_headers=("User-Agent", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
        spec = request.timeouts
        timeout = aiohttp.ClientTimeout(
            total=None, connect=spec.pool + spec.connect, sock_connect=spec.connect,
            sock_read=spec.read,
        )  # fmt: skip
        async with self._session.request(
            request.method,
            request.url,
            headers=dict(request.headers),
            data=request.body,
            allow_redirects=False,
            timeout=timeout,
        ) as reply:
            return VendorResponse(reply.status, await reply.read())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Answer(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: alike, no subclass
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.transport.write(REPLY)


def serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Answer, sock=sock)
        await server.serve_forever()

    uvloop.run(main())


async def calls(fetch: VendorFetch, base: str, count: int) -> float:
    """µs of this process's CPU per call, over ``count`` sequential calls."""
    headers: Mapping[str, str] = {"Accept": "application/json", "Authorization": "Basic a2V5"}
    post_headers = {**headers, "Content-Type": "application/json"}
    body = json.dumps({"scanRef": "S" * 36, "type": "AUTHENTICATION", "lifetime": 600}).encode()
    timeout = default_timeout(5)
    create = VendorRequest(
        "POST", f"{base}/partner/authentication-info", post_headers, body, timeout
    )
    check = VendorRequest(
        "GET",
        f"{base}/identification/facial-auth/{'S' * 36}/check-status/?method=FACE_MATCHING",
        headers,
        None,
        timeout,
    )
    for request in (create, check):  # connections open, TLS and DNS out of the figure
        await fetch(request)
    started = time.process_time()
    for number in range(count):
        reply = await fetch(create if number % 2 == 0 else check)
        assert reply.status == 200
    return (time.process_time() - started) / count * 1e6


async def compare(base: str, count: int, rounds: int) -> dict[str, list[float]]:
    fetches: dict[str, AiohttpFetch | Http11Fetch] = {
        "aiohttp": AiohttpFetch(),
        "http11": Http11Fetch(),
    }
    figures: dict[str, list[float]] = {name: [] for name in fetches}
    try:
        for number in range(rounds):
            order = list(fetches) if number % 2 == 0 else list(reversed(fetches))
            for name in order:
                figures[name].append(await calls(fetches[name], base, count))
    finally:
        for fetch in fetches.values():
            await fetch.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fd is not None:
        serve(socket.socket(fileno=args.serve_fd))
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve-fd", str(sock.fileno())],
        pass_fds=[sock.fileno()],
        env={**os.environ},
    )
    try:
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        figures = uvloop.run(compare(base, args.calls, args.rounds))
    finally:
        child.terminate()
        child.wait(10)
        sock.close()
    for name, values in figures.items():
        rounds = ", ".join(f"{value:.1f}" for value in values)
        print(f"{name:8} µs CPU per call: {rounds}; median {statistics.median(values):.1f}")


if __name__ == "__main__":
    main()
