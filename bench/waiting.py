"""Many browsers waiting in the face check at once, each on its push stream.

A real step-up spends most of its life waiting: the person is in front of the camera, and the
challenge page holds its push stream (Server-Sent Events at the page's ``data-events-url``)
open until the webhook lands. This scenario measures what N waiting browsers cost the provider
and how fast a webhook reaches the one browser it concerns among them. For N browsers:

1. a fresh stack (load.py's ``Stack``): redis-server, the simulator, and the provider
   (``serve --workers W``); with ``--instances 2`` two ``serve`` processes on one Redis, on two
   ports, as behind a load balancer;
2. each browser, at a bounded rate (``--open-rate``): ``GET /authorize`` (its own subject and
   its own address, sent as X-Forwarded-For through the trusted proxy, so the abuse limits stay
   on) → the challenge page → its push stream, with the binding cookie the provider set;
3. once every stream is open, ``--idle`` seconds of nothing: the streams end and reconnect as
   the provider and EventSource make them;
4. signed SUCCESS webhooks at ``--webhook-rate`` per second, each to an instance other than the
   one holding the browser's stream (with one instance, that one), and for each the time from
   sending it to ``event: done`` on the browser's stream; then ``GET`` the finish URL and
   redeem the code at ``/token`` (the id_token is verified).

The browsers are EventSource as a browser implements it (``EventStream`` below): ``retry:``
sets the reconnection delay, comments are counted, events are dispatched on a blank line, and a
stream that ends without ``done`` (or a connection that fails) is reopened after the last
``retry`` milliseconds with ``Last-Event-ID``; an HTTP error closes it, and the page reopens it
after two seconds as ``static/challenge.js`` does. They are split over ``--drivers`` processes,
one connection per open stream.

    .venv/bin/python bench/load.py --scenario waiting --browsers 1000,10000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import http.cookies
import json
import math
import multiprocessing
import os
import re
import resource
import secrets
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import httpx
from joserfc.jwk import KeySet

from load import (
    ACR,
    BASIC,
    CLIENT_ID,
    MAIN,
    REDIRECT_URI,
    Driver,
    FlowError,
    Stack,
    client_address,
    cpu_seconds,
    deep_merge,
    descendants,
    executable,
    free_port,
    overlay_of,
    percentiles,
    signed_webhook,
)

# What the page does when its stream is closed for good (an HTTP error): reopen it after this
# long, at most this many times in a row (static/challenge.js, REOPEN_DELAY_MS, MAX_REOPENS).
REOPEN_DELAY = 2.0
MAX_REOPENS = 30
# EventSource's reconnection time before the stream sends a retry: field (Chromium's default).
DEFAULT_RETRY_MS = 3000
LINES = re.compile(rb"\r\n|\r|\n")
# Requests other than the stream: a browser waits this long before it counts one as failed.
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)
# Seconds an idle connection stays in the driver's pool: below server.keep_alive_timeout (5).
KEEPALIVE = 2.0
# A stream has no overall deadline (it lives as long as the provider keeps it); connecting does.
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=60)


# -- EventSource ---------------------------------------------------------------------------------


@dataclass
class Event:
    type: str
    data: str
    last_id: str


@dataclass
class EventStream:
    """The event-stream parser of the HTML standard (§9.2.6), fed the body in chunks.

    Lines end in CRLF, LF or CR; ``retry`` and the last event id outlive a connection, the
    event being assembled does not (``reconnected``).
    """

    retry_ms: int = DEFAULT_RETRY_MS
    last_id: str = ""
    comments: int = 0
    _buffer: bytes = b""
    _after_cr: bool = False
    _first: bool = True
    _type: str = ""
    _data: list[str] = field(default_factory=list)

    def reconnected(self) -> None:
        self._buffer, self._after_cr, self._first = b"", False, True
        self._type, self._data = "", []

    def feed(self, chunk: bytes) -> list[Event]:
        if self._after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]  # the LF of a CRLF split over two chunks
        if chunk:
            self._after_cr = chunk.endswith(b"\r")
        lines = LINES.split(self._buffer + chunk)
        self._buffer = lines.pop()  # what follows the last line end: not a line yet
        events = []
        for raw in lines:
            event = self._line(raw.decode("utf-8", errors="replace"))
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> Event | None:
        if self._first:
            self._first = False
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> Event | None:
        data, kind = self._data, self._type or "message"
        self._type, self._data = "", []
        if not data:
            return None
        return Event(kind, "\n".join(data), self.last_id)


# -- one browser ---------------------------------------------------------------------------------


@dataclass
class Browser:
    index: int
    base: str  # the instance it talks to
    hook_base: str  # the instance its webhook is sent to
    cookies: dict[str, tuple[str, str]] = field(default_factory=dict)  # name → (value, path)
    stream: EventStream = field(default_factory=EventStream)
    token: str = ""
    finish_url: str = ""
    events_url: str = ""
    state: str = ""
    nonce: str = ""
    verifier: str = ""
    opened: bool = False  # its stream answered 200 at least once
    settled: bool = False  # opened, or will not open any sooner
    finish_target: str = ""
    sent_at: float = 0.0  # perf_counter when its webhook was sent
    hook_failed: bool = False  # its webhook was not applied (counted as that error)
    done_at: float = 0.0  # perf_counter when "done" was dispatched
    reconnects: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), why)

    @property
    def subject(self) -> str:
        return f"u{self.index}"

    @property
    def address(self) -> str:
        return client_address(self.index)

    def remember(self, response: aiohttp.ClientResponse) -> None:
        """Keep the response's cookies as a browser does (name, value, path; max-age 0 drops)."""
        for header in response.headers.getall("Set-Cookie", []):
            jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
            with contextlib.suppress(http.cookies.CookieError):
                jar.load(header)
            for name, morsel in jar.items():
                if morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = (morsel.value, morsel["path"] or "/")

    def headers(self, path: str) -> dict[str, str]:
        """X-Forwarded-For and the cookies whose path matches ``path`` (RFC 6265 §5.1.4)."""
        sent = [
            f"{name}={value}"
            for name, (value, where) in self.cookies.items()
            if path == where
            or (path.startswith(where) and (where.endswith("/") or path[len(where)] == "/"))
        ]
        headers = {"X-Forwarded-For": self.address}
        if sent:
            headers["Cookie"] = "; ".join(sent)
        return headers


@dataclass
class WaitingDriver:
    """One driver process: its browsers over one aiohttp session (no connection limit: each open
    stream holds a connection of its own) and the webhooks to them."""

    http: aiohttp.ClientSession
    verifier: Driver  # load.py's driver, for its id_token check
    signing_key: str
    browsers: list[Browser]
    open_rate: float
    errors: Counter[str] = field(default_factory=Counter)
    redeemed: int = 0
    settled: int = 0  # browsers whose stream opened, or that gave up trying
    all_settled: asyncio.Event = field(default_factory=asyncio.Event)

    def error(self, kind: str) -> None:
        self.errors[kind] += 1

    def settle(self, b: Browser) -> None:
        if b.settled:
            return
        b.settled = True
        self.settled += 1
        if self.settled == len(self.browsers):
            self.all_settled.set()

    async def life(self, b: Browser, open_at: float, gate: asyncio.Semaphore) -> None:
        """A browser from /authorize to its redeemed code."""
        await asyncio.sleep(max(open_at + b.index / self.open_rate - time.time(), 0))
        try:
            async with gate:
                await self.authorize(b)
        except FlowError as exc:
            self.error(exc.kind)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.error(f"authorize/page: {type(exc).__name__}")
        if not b.events_url:
            self.settle(b)
            return
        await self.listen(b)
        if b.done_at:
            try:
                await self.finish(b)
            except FlowError as exc:
                self.error(exc.kind)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError) as exc:
                self.error(f"finish/token: {type(exc).__name__}")

    async def authorize(self, b: Browser) -> None:
        b.verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(b.verifier.encode()).digest()
        b.state, b.nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                "state": b.state,
                "nonce": b.nonce,
                "acr_values": ACR,
                "login_hint": b.subject,
                "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
                "code_challenge_method": "S256",
            }
        )
        async with self.http.get(
            f"{b.base}/authorize?{query}",
            headers=b.headers("/authorize"),
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        ) as response:
            await response.read()
            b.remember(response)
            if response.status != 303:
                raise FlowError(f"authorize: HTTP {response.status}")
            location = response.headers["location"]
        if not location.startswith("/challenge/"):
            # Refused: the error redirect's stepup_error (or error) says why.
            refusal = parse_qs(urlsplit(location).query)
            why = (refusal.get("stepup_error") or refusal.get("error") or [location])[0]
            raise FlowError(f"authorize: refused ({why})")
        b.token = location.rsplit("/", 1)[1]
        async with self.http.get(
            f"{b.base}{location}",
            headers=b.headers(location),
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        ) as response:
            page = await response.text()
            b.remember(response)
            if response.status != 200:
                raise FlowError(f"page: HTTP {response.status}")
        found = MAIN.search(page)
        if found is None:
            raise FlowError("page: no data-finish-url / data-events-url")
        b.finish_url, b.events_url = found.groups()

    async def listen(self, b: Browser) -> None:
        """EventSource on the page's events URL, and the page's script around it."""
        reopens = 0
        while True:
            headers = {**b.headers(b.events_url), "Accept": "text/event-stream"}
            headers["Cache-Control"] = "no-cache"
            if b.stream.last_id:
                headers["Last-Event-ID"] = b.stream.last_id
            b.stream.reconnected()
            why = "ended"
            try:
                async with self.http.get(
                    f"{b.base}{b.events_url}", headers=headers, timeout=STREAM_TIMEOUT
                ) as response:
                    kind = response.headers.get("content-type", "").split(";")[0].strip()
                    if response.status != 200 or kind != "text/event-stream":
                        # EventSource fails the connection for good; the page reopens it.
                        await response.read()
                        self.error(f"events: HTTP {response.status} {kind}".rstrip())
                        self.settle(b)
                        reopens += 1
                        if reopens > MAX_REOPENS:
                            self.error("events: the page gave up reopening")
                            return
                        await asyncio.sleep(REOPEN_DELAY)
                        continue
                    reopens = 0
                    b.opened = True
                    self.settle(b)
                    async for chunk in response.content.iter_any():
                        for event in b.stream.feed(chunk):
                            if event.type == "done":
                                self._done(b, event)
                                return
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                why = f"failed: {type(exc).__name__}"
                self.error(f"events: connection {why}")
                self.settle(b)  # it will not open any sooner
            # Ended without done, or the connection failed: EventSource reconnects by itself.
            b.reconnects.append((time.time(), why))
            await asyncio.sleep(b.stream.retry_ms / 1000)

    def _done(self, b: Browser, event: Event) -> None:
        b.done_at = time.perf_counter()
        if not b.sent_at:
            self.error("events: done before the webhook")
        target = ""
        with contextlib.suppress(ValueError):
            data = json.loads(event.data)
            if isinstance(data, dict) and isinstance(data.get("finish"), str):
                target = data["finish"]
        # As the page: only a URL of the provider's own origin, else the page's finish URL.
        if not target.startswith("/") or target.startswith("//"):
            self.error("events: done without a same-origin finish URL")
            target = b.finish_url
        b.finish_target = target

    async def webhook(self, b: Browser) -> None:
        body, headers = signed_webhook(self.signing_key, b.token, b.subject)
        b.sent_at = time.perf_counter()
        try:
            async with self.http.post(
                f"{b.hook_base}/webhooks/idenfy",
                data=body,
                headers=headers,
                timeout=REQUEST_TIMEOUT,
            ) as response:
                if response.status != 200:
                    b.hook_failed = True
                    self.error(f"webhook: HTTP {response.status}")
                    return
                result = (await response.json()).get("result")
            if result != "applied":
                b.hook_failed = True
                self.error(f"webhook: {result}")
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            b.hook_failed = True
            self.error(f"webhook: {type(exc).__name__}")

    async def finish(self, b: Browser) -> None:
        async with self.http.get(
            f"{b.base}{b.finish_target}",
            headers=b.headers(b.finish_target),
            allow_redirects=False,
            timeout=REQUEST_TIMEOUT,
        ) as response:
            await response.read()
            b.remember(response)
            if response.status != 303:
                raise FlowError(f"finish: HTTP {response.status}")
            params = parse_qs(urlsplit(response.headers["location"]).query)
        if params.get("state") != [b.state] or params.get("iss") != [self.verifier.issuer]:
            raise FlowError("finish: state or iss do not match")
        if "code" not in params:
            raise FlowError(f"finish: {params.get('stepup_error', ['no code'])[0]}")
        form = {
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": b.verifier,
        }
        async with self.http.post(
            f"{b.base}/token", data=form, headers=BASIC, timeout=REQUEST_TIMEOUT
        ) as response:
            if response.status != 200:
                raise FlowError(f"token: HTTP {response.status}")
            tokens = await response.json()
        self.verifier.check_id_token(tokens["id_token"], b.subject, b.nonce)
        self.redeemed += 1


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _receive(conn: Connection) -> Any:
    return await asyncio.to_thread(conn.recv)


async def drive(args: dict[str, Any], conn: Connection) -> dict[str, Any]:
    """One driver process: told when to open and when to send webhooks by the main process."""
    fds = raise_fd_limit()
    instances: list[str] = args["instances"]
    count = len(instances)
    browsers = [
        Browser(i, instances[i % count], instances[(i + 1) % count]) for i in args["browsers"]
    ]
    if fds < len(browsers) + 256:
        raise SystemExit(f"driver: {fds} file descriptors for {len(browsers)} browsers")
    # Idle pooled connections are dropped before the provider's keep-alive timeout (5 s) can
    # close them under a request being sent: aiohttp's default (15 s) would make some POSTs
    # fail with a reset, which browsers retry and the figures must not show.
    connector = aiohttp.TCPConnector(
        limit=0, limit_per_host=0, use_dns_cache=False, keepalive_timeout=KEEPALIVE
    )
    session = aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    )
    async with session:
        async with session.get(f"{instances[0]}/jwks") as response:
            keys = KeySet.import_key_set(await response.json())
        verifier = Driver(args["issuer"], args["signing_key"], args["alg"], keys, session, 0, 0)
        driver = WaitingDriver(session, verifier, args["signing_key"], browsers, args["open_rate"])
        cpu: dict[str, float] = {}
        conn.send({"ready": True})
        open_at = float((await _receive(conn))["open_at"])
        cpu["open"] = _cpu()
        gate = asyncio.Semaphore(64)  # /authorize and the page: at most this many at once
        lives = [asyncio.create_task(driver.life(b, open_at, gate)) for b in browsers]
        if not browsers:
            driver.all_settled.set()
        await driver.all_settled.wait()
        cpu["idle"] = _cpu()
        opened = sum(1 for b in browsers if b.opened and not b.done_at)
        conn.send({"opened": opened})
        hooks_at = float((await _receive(conn))["hooks_at"])
        cpu["webhooks"] = _cpu()
        rate = args["webhook_rate"]
        waiting = [b for b in browsers if b.opened and not b.done_at]
        hooks = []
        for b in waiting:
            await asyncio.sleep(max(hooks_at + b.index / rate - time.time(), 0))
            hooks.append(asyncio.create_task(driver.webhook(b)))
        await asyncio.gather(*hooks)
        _, late = await asyncio.wait(lives, timeout=args["done_timeout"])
        for life in late:
            life.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        cpu["end"] = _cpu()
    for b in waiting:
        if not b.done_at and not b.hook_failed:
            driver.error("events: no done after the webhook")
    return {
        "latencies_ms": [
            (b.done_at - b.sent_at) * 1000 for b in waiting if b.done_at > b.sent_at > 0
        ],
        "sent": [b.sent_at for b in waiting if b.sent_at],
        "done": [b.done_at for b in waiting if b.done_at],
        "reconnects": [r for b in browsers for r in b.reconnects],
        "comments": sum(b.stream.comments for b in browsers),
        "errors": dict(driver.errors),
        "redeemed": driver.redeemed,
        "cpu": cpu,
    }


def driver_process(args: dict[str, Any], conn: Connection) -> None:
    import uvloop

    try:
        conn.send({"report": uvloop.run(drive(args, conn))})
    except BaseException as exc:
        conn.send({"failed": f"{type(exc).__name__}: {exc}"})
        raise


# -- the provider's side ---------------------------------------------------------------------------


@dataclass
class WaitingStack(Stack):
    """load.py's stack with ``instances`` provider processes (each ``serve --workers W``) on
    one Redis, on ports of their own; the first one's URL is the issuer."""

    instances: int = 1
    extra_ports: list[int] = field(default_factory=list)
    directory: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="stepup-waiting-"))
    )

    def config(self) -> dict[str, Any]:
        config = super().config()
        # Two instances on one host cannot share the management port; neither needs it here.
        config["server"]["management"] = {"port": None}
        return config

    @property
    def urls(self) -> list[str]:
        return [self.issuer, *(f"http://127.0.0.1:{p}" for p in self.extra_ports)]

    def start(self) -> None:
        super().start()
        config = self.directory / "stepup.yaml"
        processes = 1 if self.workers == 1 else 1 + self.workers
        for _ in range(self.instances - 1):
            port = free_port()
            self.extra_ports.append(port)
            self._spawn([*self.provider_command(executable(), config), "--port", str(port)])
            self._wait(partial(_ready, f"http://127.0.0.1:{port}", self.procs[-1].pid, processes))

    def provider_pids(self) -> list[int]:
        return [pid for proc in self.procs[2:] for pid in descendants(proc.pid)]


def _ready(url: str, pid: int, processes: int) -> bool:
    """The instance answers, and every one of its workers has started."""
    return httpx.get(f"{url}/readyz").status_code == 200 and len(descendants(pid)) >= processes


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def open_fds(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


def runqueue_seconds(pids: list[int]) -> float:
    """Time these processes spent runnable but waiting for a CPU (/proc/<pid>/schedstat, the
    second field, in ns): on a shared machine, what other work took from the provider."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
    return total / 1e9


@dataclass
class Reading:
    at: float
    rss: int
    fds: int
    cpu: float
    runqueue: float  # seconds the provider's processes were ready to run but had no CPU
    simulator_cpu: float
    redis_memory: int
    redis_cpu: float
    load: float  # the machine's 1-minute load average


def reading(stack: WaitingStack) -> Reading:
    pids = stack.provider_pids()
    client = stack.redis()
    cpu: dict[str, Any] = client.info("cpu")
    return Reading(
        time.time(),
        rss_bytes(pids),
        open_fds(pids),
        cpu_seconds(pids),
        runqueue_seconds(pids),
        cpu_seconds(stack.simulator_pids()),
        int(client.info("memory")["used_memory"]),
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        os.getloadavg()[0],
    )


def challenge_lifetime(browsers: int, opts: argparse.Namespace) -> int:
    """The vendor session's lifetime (``idenfy.token_lifetime``, which the simulator honours):
    the default 600 s unless the run could outlast it, so no challenge expires while waiting.
    On a busy machine opening and webhooks run well below their rates: allow ten times."""
    needed = 10 * (browsers / opts.open_rate + browsers / opts.webhook_rate) + opts.idle + 300
    return max(600, math.ceil(float(needed)))


def run_waiting(
    browsers: int, workers: int, instances: int, opts: argparse.Namespace
) -> dict[str, Any]:
    lifetime = challenge_lifetime(browsers, opts)
    overlay = {"idenfy": {"token_lifetime": lifetime}}
    user = overlay_of(opts.settings_overlay)

    stack = WaitingStack(
        workers=workers,
        subjects=browsers,
        alg=opts.alg,
        provider_src=opts.provider_src,
        provider_python=opts.provider_python or sys.executable,
        overlay=deep_merge(overlay, user),
        instances=instances,
    )
    began = time.time()
    stack.start()
    try:
        result = _measure(stack, browsers, opts)
    finally:
        stack.stop()
    challenge = deep_merge(overlay, user).get("challenge", {})
    result["settings"] = {
        "idle_s": opts.idle,
        "open_rate_per_s": opts.open_rate,
        "webhook_rate_per_s": opts.webhook_rate,
        "challenge_lifetime_s": lifetime,
        # The push settings laid over the provider's defaults (--settings-overlay), if any.
        "push_overlay": {k: v for k, v in challenge.items() if k.startswith("push")},
    }
    result["wall_s"]["stack_start"] = round(result.pop("_started") - began, 2)
    result["wall_s"]["total"] = round(time.time() - began, 2)
    return {"browsers": browsers, "workers": workers, "instances": instances, **result}


def _measure(stack: WaitingStack, browsers: int, opts: argparse.Namespace) -> dict[str, Any]:
    started = time.time()
    drivers = max(1, min(opts.drivers, browsers))
    ctx = multiprocessing.get_context("spawn")
    pipes, processes = [], []
    for d in range(drivers):
        args = {
            "issuer": stack.issuer,
            "instances": stack.urls,
            "signing_key": stack.signing_key,
            "alg": stack.alg,
            "browsers": list(range(d, browsers, drivers)),
            "open_rate": opts.open_rate,
            "webhook_rate": opts.webhook_rate,
            "done_timeout": 60 + browsers / opts.webhook_rate,
        }
        mine, theirs = ctx.Pipe()
        process = ctx.Process(target=driver_process, args=(args, theirs), daemon=True)
        process.start()
        pipes.append(mine)
        processes.append(process)
    try:
        return _phases(stack, browsers, pipes, started, opts)
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()


def _expect(pipes: list[Connection], key: str, timeout: float) -> list[Any]:
    answers = []
    for pipe in pipes:
        if not pipe.poll(timeout):
            raise RuntimeError(f"a driver did not report {key!r} within {timeout:.0f} s")
        message = pipe.recv()
        if "failed" in message:
            raise RuntimeError(f"a driver failed: {message['failed']}")
        answers.append(message[key])
    return answers


def _phases(
    stack: WaitingStack,
    browsers: int,
    pipes: list[Connection],
    started: float,
    opts: argparse.Namespace,
) -> dict[str, Any]:
    _expect(pipes, "ready", 120)
    before = reading(stack)
    open_at = time.time() + 0.2
    for pipe in pipes:
        pipe.send({"open_at": open_at})
    opened = int(sum(_expect(pipes, "opened", 120 + 10 * browsers / opts.open_rate)))
    idle_from = reading(stack)
    time.sleep(max(idle_from.at + opts.idle - time.time(), 0))
    idle_to = reading(stack)
    hooks_at = time.time() + 0.2
    for pipe in pipes:
        pipe.send({"hooks_at": hooks_at})
    reports = _expect(pipes, "report", 300 + 2 * browsers / opts.webhook_rate)
    end = reading(stack)
    ended = end.at
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report["errors"])
    latencies = [v for r in reports for v in r["latencies_ms"]]
    reconnects = [at_why for r in reports for at_why in r["reconnects"]]
    during_idle = [why for at, why in reconnects if idle_from.at <= at < idle_to.at]
    sent = [v for r in reports for v in r["sent"]]
    done = [v for r in reports for v in r["done"]]
    idle = idle_to.at - idle_from.at
    webhooks = (max(done) - min(sent)) if sent and done else 0.0

    def driver_cores(start: str, end: str, seconds: float) -> float:
        spent = sum(float(r["cpu"][end] - r["cpu"][start]) for r in reports)
        return round(spent / seconds, 3) if seconds > 0 else 0.0

    def cores(a: Reading, b: Reading, drivers: tuple[str, str]) -> dict[str, float]:
        seconds = b.at - a.at
        return {
            "provider": round((b.cpu - a.cpu) / seconds, 3),
            "provider_waiting_for_cpu": round((b.runqueue - a.runqueue) / seconds, 3),
            "simulator": round((b.simulator_cpu - a.simulator_cpu) / seconds, 3),
            "redis": round((b.redis_cpu - a.redis_cpu) / seconds, 3),
            "drivers": driver_cores(*drivers, seconds),
        }

    def per_browser_kib(at: Reading) -> float:
        return round((at.rss - before.rss) / 1024 / max(opened, 1), 2)

    return {
        "drivers": len(pipes),
        "provider_processes": len(stack.provider_pids()),
        "streams_opened": opened,
        "memory_kib_per_waiting_browser": per_browser_kib(idle_to),
        "memory_kib_per_waiting_browser_at_open": per_browser_kib(idle_from),
        "provider_rss_mib": {
            "before": round(before.rss / 2**20, 1),
            "waiting": round(idle_to.rss / 2**20, 1),
        },
        "provider_open_fds": {"before": before.fds, "waiting": idle_to.fds},
        "provider_cpu_cores_idle": round((idle_to.cpu - idle_from.cpu) / idle, 3),
        "redis_used_memory_bytes": {
            "before": before.redis_memory,
            "waiting": idle_to.redis_memory,
        },
        "redis_cpu_cores_idle": round((idle_to.redis_cpu - idle_from.redis_cpu) / idle, 3),
        "webhook_to_done_ms": percentiles(latencies),
        "webhook_rate_achieved_per_s": round(len(sent) / max(max(sent) - min(sent), 1e-9), 1)
        if len(sent) > 1
        else None,
        "reconnects_during_idle": len(during_idle),
        "reconnects": {
            "total": len(reconnects),
            "during_idle": len(during_idle),
            "by_reason": dict(Counter(why for _, why in reconnects)),
        },
        "comments_received": sum(r["comments"] for r in reports),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "codes_redeemed": sum(r["redeemed"] for r in reports),
        "wall_s": {
            "open": round(idle_from.at - open_at, 2),
            "idle": round(idle, 2),
            "webhooks": round(webhooks, 2),
            "after_webhooks": round(ended - idle_to.at, 2),
        },
        # Every process of the stack, by phase: the drivers must not be what is busy.
        "cpu_cores": {
            "open": cores(before, idle_from, ("open", "idle")),
            "idle": cores(idle_from, idle_to, ("idle", "webhooks")),
            "webhooks": cores(idle_to, end, ("webhooks", "end")),
        },
        # Other work on the same machine shows here: the 1-minute load average before the
        # browsers open, when all are open, after the idle window and at the end.
        "load_average": [round(r.load, 2) for r in (before, idle_from, idle_to, end)],
        "_started": started,
    }


# -- the command line (load.py's) ------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("the waiting scenario (--scenario waiting or both)")
    g.add_argument("--browsers", default="1000,10000", help="waiting browsers, e.g. 1000,10000")
    g.add_argument(
        "--idle",
        type=float,
        default=40.0,
        help="seconds every browser waits before the webhooks start (default 40: longer "
        "than a push stream's default 25 s)",
    )
    g.add_argument("--webhook-rate", type=float, default=500.0, help="webhooks per second")
    g.add_argument("--open-rate", type=float, default=300.0, help="browsers opened per second")
    g.add_argument(
        "--instances",
        default="1",
        help="provider processes (serve) on one Redis, e.g. 1,2; a webhook goes to another "
        "instance than the one holding its browser's stream",
    )


def waiting_runs(opts: argparse.Namespace) -> list[dict[str, Any]]:
    runs = []
    for instances in (int(i) for i in opts.instances.split(",")):
        for workers in (int(w) for w in opts.workers.split(",")):
            for browsers in (int(b) for b in opts.browsers.split(",")):
                print(
                    f"waiting: {browsers} browsers, {workers} worker(s), {instances} instance(s)",
                    file=sys.stderr,
                )
                runs.append(run_waiting(browsers, workers, instances, opts))
    return runs
