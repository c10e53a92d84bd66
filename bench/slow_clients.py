"""Slow and oversized clients against a real provider on loopback, and a webhook amid them.

Starts ``idenfy-stepup serve`` (simulator mode, embedded Redis, a webhook signing key) from
``--code`` (a ``plugin`` folder: this worktree's by default, or an older checkout's), then:

* ``slow``: opens ``--slow`` sockets that each send a partial request header and then one byte
  every ``--drip`` seconds, holds them ``--hold`` seconds, and meanwhile delivers signed
  webhooks to POST /webhooks/idenfy on fresh connections, timing each answer;
* ``big``: ``--big`` sockets each stream a ``--big-mb`` MB header, while webhooks are timed.

For each it reports the sockets the provider still holds (seen from this side: not closed by
the server) at the webhook and at the end, the provider's RSS before, at its peak and after,
and the webhooks' answers and times. Loopback only; every count and duration is bounded, and
the provider is stopped at the end. Raises its own RLIMIT_NOFILE soft limit to the hard one.

    PYTHONPATH=plugin .venv/bin/python bench/slow_clients.py
    PYTHONPATH=plugin .venv/bin/python bench/slow_clients.py --code /tmp/old/plugin --slow 2000

Prints one JSON document. Not a test: no thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from idenfy_stepup.idenfy.webhook import event_body

KEY = "bench-webhook-signing-key-0123456789abcdef"
MAX_SLOW = 18_000
MAX_HOLD = 120.0


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_provider(code: Path, folder: Path, port: int) -> subprocess.Popen[bytes]:
    settings = {
        "issuer": f"http://127.0.0.1:{port}",
        "server": {"host": "127.0.0.1", "port": port, "log_level": "warning"},
        "redis": {"url": "embedded", "data_dir": str(folder / "redis")},
        "idenfy": {
            "mode": "simulator",
            "webhook_signing_key": KEY,
            "simulator": {"port": free_port()},
        },
        "directory": {"static": {"alice": "SCAN-ALICE"}},
        "clients": [
            {
                "client_id": "shop",
                "client_secret": "s" * 40,
                "redirect_uris": ["http://127.0.0.1:9/cb"],
            }
        ],
    }
    config = folder / "settings.yaml"
    config.write_text(json.dumps(settings))  # JSON is YAML
    env = {**os.environ, "PYTHONPATH": str(code)}
    with (folder / "provider.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "idenfy_stepup.cli", "serve", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("provider did not start:\n" + (folder / "provider.log").read_text()[-2000:])


async def webhook(port: int) -> dict[str, Any]:
    """One signed delivery on a fresh connection (an unknown token: 200, result "unknown")."""
    raw = event_body("t" * 32, "SUCCESS", event_id="bench-1", scan_ref="SCAN-ALICE", client_id="c")
    headers = {
        "Content-Type": "application/json",
        "Idenfy-Event-Type": "FACIAL_AUTHENTICATION",
        "Idenfy-Signature": hmac.new(KEY.encode(), raw, hashlib.sha256).hexdigest(),
    }
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.post(
                f"http://127.0.0.1:{port}/webhooks/idenfy", content=raw, headers=headers
            )
        answer: str = f"{r.status_code} {r.text}"
    except httpx.HTTPError as exc:
        answer = f"failed: {type(exc).__name__}"
    return {"answer": answer, "ms": round((time.perf_counter() - started) * 1000, 1)}


class Held:
    """The client side of the flood: which sockets the server has not closed yet."""

    def __init__(self, count: int) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.closed = 0
        self.failed = 0
        self.count = count
        self.all_tried = asyncio.Event()

    def tried(self) -> None:
        if len(self.writers) + self.failed >= self.count:
            self.all_tried.set()

    @property
    def open(self) -> int:
        return len(self.writers) - self.closed


async def open_slow(port: int, held: Held) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        held.failed += 1
        held.tried()
        return
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    held.writers.append(writer)
    held.tried()
    await reader.read(65536)  # returns when the server answers or closes
    held.closed += 1


async def drip(held: Held, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        for writer in held.writers:
            if not writer.is_closing():
                writer.write(b"a")


async def sample_rss(pid: int, peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], rss_kib(pid))
        await asyncio.sleep(0.2)


async def slow_scenario(
    port: int, pid: int, count: int, hold: float, every: float
) -> dict[str, Any]:
    held, peak = Held(count), [rss_kib(pid)]
    before = peak[0]
    tasks = []
    sampler = asyncio.create_task(sample_rss(pid, peak))
    started = time.monotonic()
    for i in range(0, count, 500):
        tasks += [asyncio.create_task(open_slow(port, held)) for _ in range(min(500, count - i))]
        await asyncio.sleep(0.05)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(held.all_tried.wait(), 60)
    opened = time.monotonic() - started
    dripper = asyncio.create_task(drip(held, every))
    await asyncio.sleep(1.0)
    at_webhook = held.open
    hooks = [await webhook(port) for _ in range(5)]
    await asyncio.sleep(max(0.0, hold - (time.monotonic() - started)))
    result = {
        "sockets": count,
        "connect_failed": held.failed,
        "open_seconds": round(opened, 1),
        "held_at_webhook": at_webhook,
        "held_at_end": held.open,
        "hold_seconds": round(time.monotonic() - started, 1),
        "rss_mib_before": round(before / 1024),
        "rss_mib_peak": round(peak[0] / 1024),
        "webhooks": hooks,
        "webhook_max_ms": max(h["ms"] for h in hooks),
    }
    for task in (dripper, sampler, *tasks):
        task.cancel()
    for writer in held.writers:
        writer.close()
    await asyncio.gather(dripper, sampler, *tasks, return_exceptions=True)
    await asyncio.sleep(2.0)
    result["rss_mib_after"] = round(rss_kib(pid) / 1024)
    result["provider_alive_after"] = (await webhook(port))["answer"]
    return result


async def send_big(port: int, megabytes: int, sent: list[int]) -> str:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return f"connect failed: {exc}"
    chunk = b"a" * 65536
    outcome = "sent in full"
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        for _ in range(megabytes * 16):
            writer.write(chunk)
            await writer.drain()
            sent[0] += len(chunk)
            if reader.at_eof() or writer.is_closing():
                break
        writer.write(b"\r\n\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(200), 30)
        outcome = answer.split(b"\r\n", 1)[0].decode() or "closed"
    except (TimeoutError, OSError) as exc:
        outcome = f"cut off: {type(exc).__name__}"
    finally:
        writer.close()
    return outcome


async def big_scenario(port: int, pid: int, count: int, megabytes: int) -> dict[str, Any]:
    peak = [rss_kib(pid)]
    before = peak[0]
    sampler = asyncio.create_task(sample_rss(pid, peak))
    sent = [0]
    senders = [asyncio.create_task(send_big(port, megabytes, sent)) for _ in range(count)]
    await asyncio.sleep(0.5)
    hooks = [await webhook(port)]
    outcomes = await asyncio.gather(*senders)
    hooks.append(await webhook(port))
    sampler.cancel()
    await asyncio.gather(sampler, return_exceptions=True)
    await asyncio.sleep(1.0)
    return {
        "sockets": count,
        "header_mib_each": megabytes,
        "mib_sent_in_all": round(sent[0] / 2**20),
        "outcomes": sorted(set(outcomes)),
        "rss_mib_before": round(before / 1024),
        "rss_mib_peak": round(peak[0] / 1024),
        "rss_mib_after": round(rss_kib(pid) / 1024),
        "webhooks": hooks,
        "webhook_max_ms": max(h["ms"] for h in hooks),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--code", type=Path, default=Path(__file__).parent.parent / "plugin")
    p.add_argument("--slow", type=int, default=10_000)
    p.add_argument("--hold", type=float, default=25.0)
    p.add_argument("--drip", type=float, default=5.0)
    p.add_argument("--big", type=int, default=10)
    p.add_argument("--big-mb", type=int, default=50)
    args = p.parse_args()
    slow, hold = min(args.slow, MAX_SLOW), min(args.hold, MAX_HOLD)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="stepup-slow-") as tmp:
        proc = start_provider(args.code.resolve(), Path(tmp), port)
        try:
            report: dict[str, Any] = {"code": str(args.code), "fd_limit": hard}
            if slow:
                report["slow_headers"] = asyncio.run(
                    slow_scenario(port, proc.pid, slow, hold, args.drip)
                )
            if args.big:
                report["big_headers"] = asyncio.run(
                    big_scenario(port, proc.pid, min(args.big, 50), min(args.big_mb, 200))
                )
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
