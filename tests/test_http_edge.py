"""The HTTP edge against slow and oversized clients: `idenfy-stepup serve` as a real process.

Each test speaks raw HTTP/1.1 over loopback sockets to a provider started from the command
line (so the uvicorn configuration under test is the one operators run), with short limits so
that the deadlines pass within a test. The provider's log (text format, debug level) is read
back from its stderr file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from idenfy_stepup.idenfy.webhook import sign

from .harness.redis import RedisProcess
from .harness.servers import free_socket, stop_process
from .harness.settings import CLIENT_SECRET, REDIRECT_URI, merge

pytestmark = pytest.mark.slow

EXE = Path(sys.executable).with_name("idenfy-stepup")
PLUGIN = Path(__file__).resolve().parent.parent / "plugin"
KEY = "edge-test-webhook-signing-key-0123456789abcdef"
CAP = 100
EDGE = {
    "header_timeout": 2,
    "body_timeout": 3,
    "keep_alive_timeout": 1,
    "max_header_bytes": 4096,
    "max_request_line_bytes": 1024,
    "max_connections": CAP,
}
WAIT = 15.0  # far beyond every deadline above: a socket still open then is held forever


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        return int(sock.getsockname()[1])


class Provider:
    """``idenfy-stepup COMMAND`` on loopback ports, its log in a file."""

    def __init__(self, folder: Path, redis_url: str, *args: str, **extra: Any) -> None:
        self.port, self.sim_port, self.demo_port = free_port(), free_port(), free_port()
        settings = merge(
            {
                "issuer": f"http://127.0.0.1:{self.port}",
                "server": {
                    "host": "127.0.0.1",
                    "port": self.port,
                    "log_format": "text",
                    "log_level": "debug",
                    "management": {"port": None},  # its fixed default port would collide
                    **EDGE,
                },
                "redis": {"url": redis_url},
                "idenfy": {
                    "mode": "simulator",
                    "webhook_signing_key": KEY,
                    "simulator": {"host": "127.0.0.1", "port": self.sim_port},
                },
                "directory": {"static": {"alice": "SCAN-ALICE"}},
                "clients": [
                    {
                        "client_id": "shop",
                        "client_secret": CLIENT_SECRET,
                        "redirect_uris": [
                            f"http://127.0.0.1:{self.demo_port}/callback",
                            REDIRECT_URI,
                        ],
                    }
                ],
            },
            extra,
        )
        config = folder / "settings.yaml"
        config.write_text(yaml.safe_dump(settings))
        self.log = folder / "provider.log"
        command = [str(EXE), args[0], "--config", str(config), *args[1:]]
        if args[0] == "demo":
            command += ["--demo-port", str(self.demo_port)]
        env = {**os.environ, "PYTHONPATH": str(PLUGIN)}
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )
        ports = [self.port, self.sim_port] + ([self.demo_port] if args[0] == "demo" else [])
        deadline = time.monotonic() + 30
        for port in ports:
            while not _accepts(port):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    stop_process(self.proc)
                    raise AssertionError(f"provider did not start:\n{self.log.read_text()}")
                time.sleep(0.05)

    def connect(self, port: int | None = None) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port or self.port), timeout=WAIT)
        return sock

    def healthy(self) -> bool:
        return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).status_code == 200

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        stop_process(self.proc, timeout=10)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


@pytest.fixture(scope="module")
def provider(
    redis_proc: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provider]:
    started = Provider(tmp_path_factory.mktemp("edge"), redis_proc.url, "serve")
    yield started
    started.stop()


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (b"" when it closes without a word)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def webhook_raw() -> tuple[bytes, dict[str, str]]:
    """A signed delivery for a token nobody opened: the provider verifies it and says so."""
    raw = json.dumps(
        {
            "id": "edge-1",
            "token": "u" * 32,
            "scanRef": "SCAN-ALICE",
            "clientId": "c",
            "status": "SUCCESS",
            "type": "AUTHENTICATION",
            "method": "FACE_MATCHING",
            "failReason": None,
        }
    ).encode()
    return raw, {
        "Content-Type": "application/json",
        "Idenfy-Event-Type": "FACIAL_AUTHENTICATION",
        "Idenfy-Signature": sign(raw, KEY),
    }


def deliver_webhook(port: int) -> httpx.Response:
    raw, headers = webhook_raw()
    return httpx.post(
        f"http://127.0.0.1:{port}/webhooks/idenfy", content=raw, headers=headers, timeout=10
    )


def established(port: int) -> int:
    """Accepted TCP connections on the server side of ``port`` (from /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


# -- deadlines --------------------------------------------------------------------------------


def test_request_headers_dripping_one_byte_at_a_time_are_cut_off_with_408(
    provider: Provider,
) -> None:
    with provider.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.settimeout(0.5)
        received = b""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                sock.sendall(b"a")  # keeps the socket busy: no idle timer may end it
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        assert status(received) == 408
    assert provider.healthy()


def test_connection_that_never_sends_a_request_is_closed_silently(provider: Provider) -> None:
    with provider.connect() as sock:
        assert answer(sock) == b""


def test_stalled_body_is_cut_off_with_408_and_no_error_logged(provider: Provider) -> None:
    with provider.connect() as sock:
        sock.sendall(
            b"POST /token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\ngrant_type="
        )
        assert status(answer(sock)) == 408
    assert provider.healthy()
    assert not [line for line in provider.lines() if " ERROR " in line]


def test_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(provider: Provider) -> None:
    with provider.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(4.0)  # keep_alive_timeout is 1 s; uvicorn's default (5 s) is longer
        first = sock.recv(65536)
        assert status(first) == 200
        with contextlib.suppress(TimeoutError):
            while sock.recv(65536):
                pass
            return
        pytest.fail("the idle keep-alive connection was not closed")


# -- sizes ------------------------------------------------------------------------------------


def test_request_headers_over_max_header_bytes_get_431(provider: Provider) -> None:
    with provider.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
        assert status(answer(sock)) == 431


def test_many_small_headers_over_the_limit_get_431(provider: Provider) -> None:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(120))
    with provider.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert status(answer(sock)) == 431


def test_request_target_over_max_request_line_bytes_gets_414(provider: Provider) -> None:
    with provider.connect() as sock:
        sock.sendall(b"GET /authorize?x=" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(answer(sock)) == 414


def test_a_client_still_sending_after_its_refusal_is_not_reset(provider: Provider) -> None:
    """A refusal is a lingering close: the answer, a half-close, then what the client still
    sends is read and dropped for a while. A socket closed at once answers that input with
    RST, which makes the client's kernel fail its writes and can discard an unread answer."""
    with provider.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192)
        time.sleep(0.3)  # the server has answered by now
        for _ in range(8):  # still writing, as a client streaming a large request would
            sock.sendall(b"a" * 1024)
            time.sleep(0.1)
        assert status(answer(sock)) == 431
    assert provider.healthy()


def data_segments_received(sock: socket.socket) -> int:
    """``tcpi_data_segs_in`` of Linux's ``struct tcp_info``: segments that carried data."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, 152)[0])


def test_a_response_leaves_in_one_write(provider: Provider) -> None:
    """Status line, headers and body in one segment: uvicorn alone writes the headers as the
    response starts and the body after them, two segments (and two syscalls) per response."""
    with provider.connect() as sock:
        for _ in range(3):
            before = data_segments_received(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            received = b""
            while b"\r\n\r\n" not in received or not received.endswith(b"}"):
                received += sock.recv(65536)
            assert status(received) == 200
            time.sleep(0.05)  # nothing more is on its way
            assert data_segments_received(sock) - before == 1


def test_pipelined_requests_are_answered_in_order(provider: Provider) -> None:
    with provider.connect() as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        received = answer(sock)
    statuses = [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]
    assert statuses == [200, 404, 200]


def test_endless_header_is_refused_before_it_is_read_in_full(provider: Provider) -> None:
    sent = 0
    with provider.connect() as sock:
        with contextlib.suppress(ConnectionError):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            while sent < 50 * 2**20:
                sock.sendall(b"a" * 65536)
                sent += 65536
        assert sent < 50 * 2**20  # the server hung up long before 50 MiB
    assert provider.healthy()


def test_request_within_the_limits_is_served(provider: Provider) -> None:
    response = httpx.get(
        f"http://127.0.0.1:{provider.port}/healthz?x={'a' * 900}",
        headers={"X-Fill": "b" * 2500},
        timeout=5,
    )
    assert response.status_code == 200


# -- connection cap ---------------------------------------------------------------------------


def test_flood_beyond_max_connections_sheds_slow_sockets_and_the_webhook_is_answered(
    provider: Provider,
) -> None:
    socks = []
    try:
        for _ in range(3 * CAP):
            sock = provider.connect()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(sock)
        response = deliver_webhook(provider.port)
        assert response.status_code == 200
        assert response.json() == {"result": "unknown"}
        # The provider holds at most its cap: the longest-waiting sockets made room.
        deadline = time.monotonic() + 1.0
        while established(provider.port) > CAP and time.monotonic() < deadline:
            time.sleep(0.05)
        assert established(provider.port) <= CAP
    finally:
        for sock in socks:
            sock.close()
    assert provider.healthy()


def test_when_every_connection_is_busy_a_new_one_gets_503_with_retry_after(
    provider: Provider,
) -> None:
    busy = []
    try:
        for _ in range(CAP):  # requests whose bodies are still to come: nothing to evict
            sock = provider.connect()
            sock.sendall(
                b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            )
            busy.append(sock)
        time.sleep(0.3)
        with provider.connect() as sock:
            refused = answer(sock)
        assert status(refused) == 503
        assert b"\r\nretry-after: 1\r\n" in refused.lower()
    finally:
        for sock in busy:
            sock.close()
    assert provider.healthy()


# -- a client that leaves mid-body ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/token", "application/x-www-form-urlencoded"),
        ("/authorize", "application/x-www-form-urlencoded"),
        ("/webhooks/idenfy", "application/json"),
    ],
)
def test_client_leaving_mid_body_is_a_debug_line_not_an_error(
    provider: Provider, path: str, ctype: str
) -> None:
    before = len(provider.lines())
    raw, headers = webhook_raw()
    extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items() if k != "Content-Type")
    with provider.connect() as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n".encode()
            + extra
            + b"Content-Length: %d\r\n\r\n" % len(raw)
            + raw[:20]
        )
        time.sleep(0.2)
    deadline = time.monotonic() + 5
    while not any("mid-body" in line for line in provider.lines()[before:]):
        assert time.monotonic() < deadline, "\n".join(provider.lines()[before:])
        time.sleep(0.05)
    assert provider.healthy()
    new = provider.lines()[before:]
    assert not [line for line in new if " ERROR " in line or "Traceback" in line], new
    assert [line for line in new if "mid-body" in line and " DEBUG " in line]


# -- every server the command line starts -----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "server"),
    [
        (("serve", "--workers", "2"), "provider"),
        (("serve",), "simulator"),
        (("demo",), "demo"),
    ],
)
def test_every_server_cuts_off_dripping_headers(
    redis_proc: RedisProcess, tmp_path: Path, args: tuple[str, ...], server: str
) -> None:
    started = Provider(tmp_path, redis_proc.url, *args)
    try:
        port = {"provider": started.port, "simulator": started.sim_port, "demo": started.demo_port}[
            server
        ]
        with started.connect(port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            assert status(answer(sock)) == 408
        with started.connect(port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
            assert status(answer(sock)) == 431
    finally:
        started.stop()
