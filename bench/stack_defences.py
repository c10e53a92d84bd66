"""The edge's defences, probed over raw sockets against a serving stack (uvicorn or granian).

Each probe is one of tests/test_http_edge.py's checks (same limits, same bytes on the wire),
rewritten to report what happened instead of asserting, so that a stack which lacks a defence
is described rather than failed: ``{"held": bool, "seen": "what the server did"}``. The stack
runs with the tests' short limits (header 2 s, body 3 s, keep-alive 1 s, 4096 header bytes,
1024 request-line bytes, 100 connections); granian gets the options it has for the same ends
(``--http1-header-read-timeout 2000``, ``--http1-buffer-size 8192``, its minimum, and
``--backpressure 100``, which bounds requests in progress, not connections).

Used by ``bench/serving_stacks.py --defences``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

CAP = 100
EDGE = {
    "header_timeout": 2,
    "body_timeout": 3,
    "keep_alive_timeout": 1,
    "max_header_bytes": 4096,
    "max_request_line_bytes": 1024,
    "max_connections": CAP,
}
GRANIAN_EDGE = [
    *("--http1-header-read-timeout", "2000", "--http1-buffer-size", "8192"),
    *("--backpressure", str(CAP)),
]
WAIT = 10.0  # far beyond every deadline above: a socket still open then is held


class Probe:
    def __init__(self, port: int) -> None:
        self.port = port

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)

    def healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5).is_success
        return False


def answer(sock: socket.socket) -> tuple[bytes, str]:
    """What the server sends until it closes, and how it ended (closed, reset, still open)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received, f"still open after {WAIT:.0f} s"
    except ConnectionResetError:
        return received, "reset"
    return received, "closed"


def first_line(raw: bytes) -> str:
    return raw.split(b"\r\n", 1)[0].decode(errors="replace") or "(nothing)"


def _status(raw: bytes) -> int | None:
    with contextlib.suppress(IndexError, ValueError):
        return int(raw.split(b" ", 2)[1])
    return None


def dripping_headers(p: Probe) -> dict[str, Any]:
    started = time.monotonic()
    with p.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.settimeout(0.5)
        received, how = b"", f"still open after {WAIT:.0f} s"
        while time.monotonic() < started + WAIT:
            try:
                sock.sendall(b"a")
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                how = "reset"
                break
            if not chunk:
                how = "closed"
                break
            received += chunk
    took = time.monotonic() - started
    return {
        "held": _status(received) == 408,
        "seen": f"{first_line(received)}, {how} after {took:.1f} s",
    }


def silent_connection(p: Probe) -> dict[str, Any]:
    started = time.monotonic()
    with p.connect() as sock:
        received, how = answer(sock)
    took = time.monotonic() - started
    return {
        "held": how == "closed" and not received,
        "seen": f"{first_line(received)}, {how} after {took:.1f} s",
    }


def stalled_body(p: Probe) -> dict[str, Any]:
    started = time.monotonic()
    with p.connect() as sock:
        sock.sendall(
            b"POST /token HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\n\r\ngrant_type="
        )
        received, how = answer(sock)
    took = time.monotonic() - started
    return {
        "held": _status(received) == 408,
        "seen": f"{first_line(received)}, {how} after {took:.1f} s",
    }


def idle_keep_alive(p: Probe) -> dict[str, Any]:
    with p.connect() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        started = time.monotonic()
        sock.settimeout(4.0)  # keep_alive_timeout is 1 s
        try:
            while sock.recv(65536):
                pass
            how = f"closed after {time.monotonic() - started:.1f} s idle"
        except TimeoutError:
            how = "still open after 4 s idle"
    return {"held": how.startswith("closed"), "seen": f"{first_line(first)}; {how}"}


def _refusal(p: Probe, request: bytes, wanted: int) -> dict[str, Any]:
    with p.connect() as sock:
        sock.sendall(request)
        received, how = answer(sock)
    return {"held": _status(received) == wanted, "seen": f"{first_line(received)}, {how}"}


def big_header(p: Probe) -> dict[str, Any]:
    # 5,000 bytes: over max_header_bytes (4096), under granian's smallest buffer (8192).
    return _refusal(
        p, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431
    )


def many_headers(p: Probe) -> dict[str, Any]:
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(120))
    return _refusal(p, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n", 431)


def long_target(p: Probe) -> dict[str, Any]:
    return _refusal(p, b"GET /authorize?x=" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)


def still_sending_after_refusal(p: Probe) -> dict[str, Any]:
    with p.connect() as sock:
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 16384)
            time.sleep(0.3)
            for _ in range(8):
                sock.sendall(b"a" * 1024)
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            return {"held": False, "seen": "reset while the client was still sending"}
        received, how = answer(sock)
    return {
        "held": _status(received) == 431 and how == "closed",
        "seen": f"{first_line(received)}, {how}",
    }


def endless_header(p: Probe) -> dict[str, Any]:
    sent = 0
    with p.connect() as sock, contextlib.suppress(ConnectionError, TimeoutError):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        while sent < 50 * 2**20:
            sock.sendall(b"a" * 65536)
            sent += 65536
    return {
        "held": sent < 50 * 2**20 and p.healthy(),
        "seen": f"the server hung up after {sent / 2**20:.1f} MiB",
    }


def established(port: int) -> int:
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


def flood_beyond_cap(p: Probe) -> dict[str, Any]:
    socks = []
    try:
        for _ in range(3 * CAP):
            sock = p.connect()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(sock)
        ok = p.healthy()
        deadline = time.monotonic() + 1.0
        while established(p.port) > CAP and time.monotonic() < deadline:
            time.sleep(0.05)
        held = established(p.port)
    finally:
        for sock in socks:
            sock.close()
    return {
        "held": ok and held <= CAP,
        "seen": f"{3 * CAP} slow sockets opened: the server holds {held}; a request: "
        + ("answered" if ok else "not answered"),
    }


def busy_connections_503(p: Probe) -> dict[str, Any]:
    busy = []
    try:
        for _ in range(CAP):
            sock = p.connect()
            sock.sendall(
                b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n\r\n"
            )
            busy.append(sock)
        time.sleep(0.3)
        with p.connect() as sock:
            sock.settimeout(3.0)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                received = sock.recv(65536)
            except TimeoutError:
                received = b""
    finally:
        for sock in busy:
            sock.close()
    return {
        "held": _status(received) == 503 and b"retry-after:" in received.lower(),
        "seen": f"connection {CAP + 1}: "
        + (first_line(received) if received else "no answer in 3 s"),
    }


PROBES: dict[str, Callable[[Probe], dict[str, Any]]] = {
    "408 for headers dripping a byte at a time (header deadline)": dripping_headers,
    "a connection that sends nothing is closed": silent_connection,
    "408 for a stalled body (body deadline)": stalled_body,
    "idle keep-alive closed after keep_alive_timeout": idle_keep_alive,
    "431 for a header over max_header_bytes": big_header,
    "431 for many small headers over the limit": many_headers,
    "414 for a target over max_request_line_bytes": long_target,
    "a client still sending after its refusal is not reset (lingering close)": (
        still_sending_after_refusal
    ),
    "an endless header is cut off early": endless_header,
    "connection cap: slow sockets evicted, a request still answered": flood_beyond_cap,
    "connection cap: 503 with Retry-After when every connection is busy": busy_connections_503,
}


def probe_all(port: int) -> dict[str, Any]:
    p = Probe(port)
    found: dict[str, Any] = {}
    for name, run in PROBES.items():
        try:
            found[name] = run(p)
        except OSError as exc:
            found[name] = {"held": False, "seen": f"probe failed: {type(exc).__name__}: {exc}"}
    return found


def open_push_stream(issuer: str) -> tuple[httpx.Client, Any]:
    """A real challenge's push stream (``/authorize``, its page, its events URL), open and past
    its first line; the caller closes both."""
    import load  # bench/load.py: the same request a driver sends

    query = urlencode(
        {
            "response_type": "code",
            "client_id": load.CLIENT_ID,
            "redirect_uri": load.REDIRECT_URI,
            "scope": "openid",
            "state": "s" * 22,
            "nonce": "n" * 22,
            "acr_values": load.ACR,
            "login_hint": "u0",
            "code_challenge": "c" * 43,
            "code_challenge_method": "S256",
        }
    )
    client = httpx.Client(base_url=issuer, headers={"X-Forwarded-For": "10.9.9.9"}, timeout=30)
    location = client.get(f"/authorize?{query}").headers["location"]
    found = load.MAIN.search(client.get(location).text)
    if found is None:
        raise RuntimeError("the challenge page has no events URL")
    stream = client.stream("GET", found.group(2))
    response = stream.__enter__()
    lines = response.iter_lines()
    next(lines)  # "retry: …": the stream is open
    return client, (stream, lines)


def graceful_stop(proc: subprocess.Popen[bytes], issuer: str) -> dict[str, Any]:
    """SIGTERM while a browser's push stream is open: how soon the stream ends (the browser's
    EventSource then reconnects, to a successor or a sibling) and the server exits."""
    client, (stream, lines) = open_push_stream(issuer)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    ended = "stream still open"
    try:
        for _ in lines:
            pass
        ended = f"stream ended after {time.monotonic() - started:.1f} s"
    except httpx.HTTPError as exc:
        ended = f"stream broken after {time.monotonic() - started:.1f} s ({type(exc).__name__})"
    try:
        proc.wait(40)
        code: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        code = "still running after 40 s"
    with contextlib.suppress(Exception):
        stream.__exit__(None, None, None)
    client.close()
    return {"stream": ended, "exit": code, "exit_seconds": round(time.monotonic() - started, 1)}


if __name__ == "__main__":  # pragma: no cover - a port of a running server
    import sys

    print(json.dumps(probe_all(int(sys.argv[1])), indent=2))
