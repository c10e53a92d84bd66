"""Whole step-up flows under load: throughput, latency per step, and what each flow costs.

Every scenario starts from nothing: a fresh ``redis-server`` (AOF on, as the embedded one), the
iDenfy simulator as its own process (``idenfy-stepup simulator``), and the provider
(``idenfy-stepup serve --workers W``) in ``live`` mode pointed at the simulator's URLs, so the
provider's figures are the provider's alone. Two driver processes run C virtual users between
them; each user has its own cookie jar, its own subject and its own client address (sent as
X-Forwarded-For through a trusted proxy, so the default abuse limits stay on) and loops:

    GET /authorize (PKCE S256, nonce, acr_values, login_hint)  → 303 to the challenge page
    GET /challenge/<token>                                      → 200, the page
    GET <events URL> (the push channel, Server-Sent Events)     → stream open
    POST /webhooks/idenfy, a signed SUCCESS, sent by the driver → 200 applied
    … "event: done" on the push channel
    GET <finish URL>                                            → 303 to redirect_uri?code&state&iss
    POST /token (client_secret_basic, code_verifier)            → id_token, verified with /jwks

After the warm-up, the measured time is cut into rounds. For each round the provider's CPU
(``/proc/<pid>/stat`` of its processes), Redis' commands (``INFO commandstats``) and CPU
(``INFO cpu``) are read before and after and divided by the flows completed in it. Then 10,000
pending challenges are opened (``/authorize`` only) and ``INFO memory`` says what they hold.

    .venv/bin/python bench/load.py                         # 1 worker, 32 users, 20 s
    .venv/bin/python bench/load.py --workers 1,2 --users 32,128
    .venv/bin/python bench/load.py --scenario waiting --browsers 1000   # bench/waiting.py

Prints one JSON document. Not a test: no thresholds (tests/test_bench.py runs it small).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import math
import multiprocessing
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import httpx
import redis
import yaml
from joserfc import jwt
from joserfc.jwk import KeySet

from idenfy_stepup.idenfy.webhook import event_body

ROOT = Path(__file__).resolve().parent.parent
CLIENT_ID = "bench"
CLIENT_SECRET = "bench-client-secret-0123456789-0123456789"
REDIRECT_URI = "http://127.0.0.1:9/callback"
ACR = "urn:idenfy:stepup:face"
# Every process of a run must use the same key to read the generated secrets in Redis.
ENCRYPTION_KEY = "5e" * 32
API_KEY, API_SECRET = "bench-api-key", "bench-api-secret"
BASIC = {
    "Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
LIMITS = (
    "failures_per_ip",
    "open_challenges_per_ip",
    "failures_per_subject",
    "spoof_lockout_seconds",
    "token_failures_per_client",
    "token_failures_per_ip",
)
STEPS = ("authorize", "page", "events_open", "webhook", "push", "finish", "token")
MAIN = re.compile(r'data-finish-url="([^"]+)" data-events-url="([^"]+)"')


# -- the stack: redis-server, simulator, provider ---------------------------------------------


def client_address(index: int, block: int = 0) -> str:
    """Virtual user ``index``'s own address (sent as X-Forwarded-For): 62,500 per /8 block."""
    return f"10.{block + index // 62500}.{index // 250 % 250}.{index % 250 + 1}"


def write_report(report: dict[str, Any], out: Path | None) -> None:
    """The JSON document on stdout, and in ``out`` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def executable() -> str:
    found = Path(sys.executable).with_name("idenfy-stepup")
    return str(found) if found.exists() else shutil.which("idenfy-stepup") or "idenfy-stepup"


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid onto ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def overlay_of(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise SystemExit(f"{path}: the settings overlay must be a YAML mapping")
    return loaded


def redis_binary() -> str:
    sys.path.insert(0, str(ROOT / "plugin"))
    from idenfy_stepup.store import redis_server_binary

    return redis_server_binary()


@dataclass
class Stack:
    """Everything one scenario runs against; ``stop()`` removes it all."""

    workers: int
    subjects: int
    alg: str = "RS256"
    provider_src: Path | None = None
    provider_python: str = sys.executable
    endpoint_cpu: Path | None = None
    limits: bool = True  # the default abuse limits; off: challenge.limits all switched off
    # Laid over the generated settings (--settings-overlay): e.g. server.access_log false, to
    # tell what one feature costs within one build.
    overlay: dict[str, Any] = field(default_factory=dict)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="stepup-bench-")))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    signing_key: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = field(default_factory=free_port)
    sim_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redis_socket(self) -> Path:
        return self.directory / "redis.sock"

    def redis(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.redis_socket), decode_responses=True)

    def config(self) -> dict[str, Any]:
        sim = f"http://127.0.0.1:{self.sim_port}"
        subjects = {f"u{i}": f"SCAN-U{i}" for i in range(self.subjects)}
        return {
            "issuer": self.issuer,
            "server": {
                "host": "127.0.0.1",
                "port": self.port,
                "trusted_proxies": ["127.0.0.1/32"],
                # On, as in production, but on a port of its own: runs side by side must
                # not collide on the default 9000.
                "management": {"host": "127.0.0.1", "port": self.management_port},
            },
            "redis": {"url": f"unix://{self.redis_socket}"},
            "keys": {"encryption_key": ENCRYPTION_KEY},  # live mode: secrets encrypted in Redis
            "idenfy": {
                "mode": "live",
                "api_base": sim,
                "iframe_base": sim,
                "api_key": API_KEY,
                "api_secret": API_SECRET,
                "webhook_signing_key": self.signing_key,
                "simulator": {
                    "port": self.sim_port,
                    "api_key": API_KEY,
                    "api_secret": API_SECRET,
                    "scan_refs": dict.fromkeys(subjects.values(), "AUTHENTICATION"),
                },
            },
            "directory": {"static": subjects, "redis": False},
            **({} if self.limits else {"challenge": {"limits": dict.fromkeys(LIMITS, None)}}),
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [REDIRECT_URI],
                    "subject_hints": ["login_hint"],
                    "id_token_signed_response_alg": self.alg,
                }
            ],
        }

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()  # a stack that did not start leaves no process behind
            raise

    def _start(self) -> None:
        path = self.directory / "stepup.yaml"
        path.write_text(yaml.safe_dump(deep_merge(self.config(), self.overlay)))
        self._spawn(
            [
                redis_binary(),
                "--port",
                "0",
                "--unixsocket",
                str(self.redis_socket),
                "--unixsocketperm",
                "700",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--loglevel",
                "warning",
            ]
        )
        self._wait(lambda: self.redis().ping())
        exe = executable()
        self._spawn([exe, "simulator", "--config", str(path)])
        self._wait(lambda: httpx.get(f"http://127.0.0.1:{self.sim_port}/x").status_code == 404)
        self._spawn(self.provider_command(exe, path))
        self._wait(lambda: httpx.get(f"{self.issuer}/readyz").status_code == 200)
        # With several workers, any one answers first: wait until every one has started.
        self._wait(
            lambda: len(self.provider_pids()) >= (1 if self.workers == 1 else 1 + self.workers)
        )
        for _ in range(20 * self.workers):
            httpx.get(f"{self.issuer}/readyz").raise_for_status()

    def provider_command(self, exe: str, config: Path) -> list[str]:
        args = ["serve", "--config", str(config)]
        if self.workers != 1:
            args += ["--workers", str(self.workers)]
        if self.endpoint_cpu is not None:
            return [self.provider_python, str(ROOT / "bench" / "endpoint_cpu.py"), *args]
        if self.provider_src is not None or self.provider_python != sys.executable:
            # Another build (e.g. a worktree of an older commit, on PYTHONPATH: see _spawn).
            return [self.provider_python, "-m", "idenfy_stepup.cli", *args]
        return [exe, *args]

    def _spawn(self, args: list[str]) -> None:
        log = (self.directory / f"{Path(args[0]).name}-{len(self.procs)}.log").open("wb")
        env = dict(os.environ)
        if self.endpoint_cpu is not None:
            env["STEPUP_ENDPOINT_CPU"] = str(self.endpoint_cpu)
        if self.provider_src is not None and "serve" in args:
            env["PYTHONPATH"] = os.pathsep.join([str(self.provider_src), env.get("PYTHONPATH", "")])
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        self.procs.append(proc)

    def _wait(self, ready: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                if ready():
                    return
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in self.directory.glob("*.log"))
                raise RuntimeError(f"the stack did not start:\n{logs}")
            time.sleep(0.05)

    def provider_pids(self) -> list[int]:
        return descendants(self.procs[2].pid)

    def simulator_pids(self) -> list[int]:
        return descendants(self.procs[1].pid)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (read from /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes, from /proc/<pid>/stat (fields 14 and 15)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


@dataclass
class Sample:
    at: float
    provider_cpu: float
    simulator_cpu: float
    redis_cpu: float
    commands: dict[str, int]


def sample(stack: Stack, client: redis.Redis, provider: list[int], sim: list[int]) -> Sample:
    info: dict[str, Any] = client.info("cpu")
    stats: dict[str, Any] = client.info("commandstats")
    commands = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    redis_cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return Sample(time.time(), cpu_seconds(provider), cpu_seconds(sim), redis_cpu, commands)


# -- the virtual users ---------------------------------------------------------------------------


def signed_webhook(signing_key: str, token: str, subject: str) -> tuple[bytes, dict[str, str]]:
    """iDenfy's SUCCESS webhook for ``token`` (``subject``'s scanRef), body and signed headers."""
    body = event_body(
        token,
        "SUCCESS",
        event_id=str(uuid.uuid4()),
        scan_ref=f"SCAN-{subject.upper()}",
        client_id="bench",
    )
    signature = hmac.new(signing_key.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "Idenfy-Event-Type": "FACIAL_AUTHENTICATION",
        "Idenfy-Signature": signature,
    }
    return body, headers


class FlowError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _expect(status: int, wanted: int, step: str) -> None:
    if status != wanted:
        raise FlowError(f"{step}: HTTP {status}")


@dataclass
class Driver:
    """One driver process: its share of the users, one vendor-side session for the webhooks.

    HTTP is aiohttp's: measured here, httpx spends about five times the CPU per request, which
    on a 2-core machine would leave the driver, not the provider, as the bottleneck.
    """

    issuer: str
    signing_key: str
    alg: str
    keys: KeySet
    vendor: aiohttp.ClientSession
    start: float
    end: float
    flows: list[dict[str, float]] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    async def user(self, index: int) -> None:
        subject = f"u{index}"
        address = client_address(index)
        # Its own cookie jar (unsafe: the provider is on an IP address) and connections.
        session = aiohttp.ClientSession(
            base_url=self.issuer,
            headers={"X-Forwarded-For": address},
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        async with session:
            await asyncio.sleep(max(self.start - time.time(), 0) + index % 50 / 1000)
            while time.time() < self.end:
                try:
                    timings = await self.flow(session, subject)
                except FlowError as exc:
                    self.errors[exc.kind] += 1
                    await asyncio.sleep(0.05)
                except (aiohttp.ClientError, OSError, ValueError, TimeoutError) as exc:
                    self.errors[f"exception: {type(exc).__name__}"] += 1
                    await asyncio.sleep(0.05)
                else:
                    self.flows.append(timings)
                session.cookie_jar.clear()

    async def flow(self, session: aiohttp.ClientSession, subject: str) -> dict[str, float]:
        t: dict[str, float] = {}
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": CLIENT_ID,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid",
                "state": state,
                "nonce": nonce,
                "acr_values": ACR,
                "login_hint": subject,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        begin = mark = time.perf_counter()

        def lap(step: str) -> None:
            nonlocal mark
            now = time.perf_counter()
            t[step] = (now - mark) * 1000
            mark = now

        async with session.get(f"/authorize?{query}", allow_redirects=False) as response:
            _expect(response.status, 303, "authorize")
            location = response.headers["location"]
            await response.read()
        if not location.startswith("/challenge/"):
            raise FlowError(f"authorize: redirected to {urlsplit(location).path or location}")
        token = location.rsplit("/", 1)[1]
        lap("authorize")
        async with session.get(location, allow_redirects=False) as response:
            _expect(response.status, 200, "page")
            found = MAIN.search(await response.text())
        if found is None:
            raise FlowError("page: no data-finish-url / data-events-url")
        finish_url, events_url = found.groups()
        lap("page")
        async with session.get(events_url) as stream:
            _expect(stream.status, 200, "events")
            first = await stream.content.readline()
            if not first.startswith(b"retry:"):
                raise FlowError("events: no retry line")
            lap("events_open")
            sent = time.perf_counter()
            hook = asyncio.create_task(self.webhook(token, subject))
            try:
                async for line in stream.content:
                    if line.rstrip() == b"event: done":
                        break
                else:
                    await hook  # a refused webhook is the reason, when there is one
                    raise FlowError("events: stream ended without done")
                t["push"] = (time.perf_counter() - sent) * 1000
                t["webhook"] = await hook
            finally:
                hook.cancel()
        mark = time.perf_counter()
        async with session.get(finish_url, allow_redirects=False) as response:
            _expect(response.status, 303, "finish")
            params = parse_qs(urlsplit(response.headers["location"]).query)
            await response.read()
        if params.get("state") != [state] or params.get("iss") != [self.issuer]:
            raise FlowError("finish: state or iss do not match")
        if "code" not in params:
            raise FlowError(f"finish: {params.get('stepup_error', ['no code'])[0]}")
        lap("finish")
        form = {
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
        async with session.post("/token", data=form, headers=BASIC) as response:
            _expect(response.status, 200, "token")
            tokens = await response.json()
        self.check_id_token(tokens["id_token"], subject, nonce)
        lap("token")
        t["flow"] = (time.perf_counter() - begin) * 1000
        t["done_at"] = time.time()
        return t

    async def webhook(self, token: str, subject: str) -> float:
        body, headers = signed_webhook(self.signing_key, token, subject)
        begin = time.perf_counter()
        url = f"{self.issuer}/webhooks/idenfy"
        async with self.vendor.post(url, data=body, headers=headers) as response:
            _expect(response.status, 200, "webhook")
            result = (await response.json()).get("result")
        if result != "applied":
            raise FlowError(f"webhook: {result}")
        return (time.perf_counter() - begin) * 1000

    def check_id_token(self, id_token: str, subject: str, nonce: str) -> None:
        try:
            decoded = jwt.decode(id_token, self.keys, algorithms=[self.alg])
        except ValueError as exc:
            raise FlowError(f"token: id_token signature ({type(exc).__name__})") from exc
        claims = decoded.claims
        expected = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "sub": subject,
            "nonce": nonce,
            "acr": ACR,
        }
        wrong = sorted(k for k, v in expected.items() if claims.get(k) != v)
        if wrong or claims.get("exp", 0) < time.time():
            raise FlowError(f"token: id_token claims {', '.join(wrong) or 'exp'}")


async def drive(args: dict[str, Any], ready: Any, go: Any, clock: Any) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as vendor:
        async with vendor.get(f"{args['issuer']}/jwks") as response:
            keys = KeySet.import_key_set(await response.json())
        # The clock starts once every driver is here: a driver slow to start (imports on a
        # busy machine) would otherwise find its measured window already over.
        ready.put(os.getpid())
        await asyncio.to_thread(go.wait)
        start = clock.value
        args = {
            **args,
            "start": start,
            "measure_from": start + args["warmup"],
            "end": start + args["warmup"] + args["duration"],
        }
        driver = Driver(
            args["issuer"],
            args["signing_key"],
            args["alg"],
            keys,
            vendor,
            args["start"],
            args["end"],
        )
        rusage: list[tuple[float, float]] = []

        async def cpu_at(moment: float) -> None:
            await asyncio.sleep(max(moment - time.time(), 0))
            usage = resource.getrusage(resource.RUSAGE_SELF)
            rusage.append((time.time(), usage.ru_utime + usage.ru_stime))

        watches = [asyncio.create_task(cpu_at(m)) for m in (args["measure_from"], args["end"])]
        await asyncio.gather(*(driver.user(i) for i in args["users"]))
        await asyncio.gather(*watches)
    return {"flows": driver.flows, "errors": dict(driver.errors), "cpu": rusage}


def driver_process(args: dict[str, Any], results: Any, ready: Any, go: Any, clock: Any) -> None:
    import uvloop

    results.put(uvloop.run(drive(args, ready, go, clock)))


# -- a scenario --------------------------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(math.ceil(p * len(ordered)) - 1, 0)], 2)

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": round(ordered[-1], 2)}


def run_scenario(workers: int, users: int, opts: argparse.Namespace) -> dict[str, Any]:
    cpu_file = None
    if opts.endpoint_cpu:
        if workers != 1:
            raise SystemExit("--endpoint-cpu measures one provider process: use --workers 1")
        cpu_file = Path(tempfile.mkstemp(prefix="stepup-endpoint-cpu-", suffix=".json")[1])
    stack = Stack(
        workers=workers,
        subjects=max(users, opts.pending),
        alg=opts.alg,
        provider_src=opts.provider_src,
        endpoint_cpu=cpu_file,
        provider_python=opts.provider_python or sys.executable,
        overlay=overlay_of(opts.settings_overlay),
    )
    stack.start()
    try:
        result = _measure(stack, workers, users, opts)
        if opts.census:
            result["redis"]["census"] = command_census(stack, opts.census)
    finally:
        stack.stop()
    if cpu_file is not None:
        with contextlib.suppress(ValueError):
            result["endpoint_cpu_us"] = json.loads(cpu_file.read_text())
        cpu_file.unlink()
    return result


def _measure(stack: Stack, workers: int, users: int, opts: argparse.Namespace) -> dict[str, Any]:
    client = stack.redis()
    provider, sim = stack.provider_pids(), stack.simulator_pids()
    ctx = multiprocessing.get_context("spawn")
    results, ready, go, clock = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    drivers = []
    for d in range(opts.drivers):
        args = {
            "issuer": stack.issuer,
            "signing_key": stack.signing_key,
            "warmup": opts.warmup,
            "duration": opts.duration,
            "alg": stack.alg,
            "users": list(range(d, users, opts.drivers)),
        }
        process = ctx.Process(
            target=driver_process, args=(args, results, ready, go, clock), daemon=True
        )
        process.start()
        drivers.append(process)
    for _ in drivers:
        ready.get(timeout=120)
    start = time.time() + 0.5
    measure_from = start + opts.warmup
    end = measure_from + opts.duration
    clock.value = start
    go.set()
    cuts = [measure_from + opts.duration * r / opts.rounds for r in range(opts.rounds + 1)]
    samples = []
    profilers: list[subprocess.Popen[bytes]] = []
    for cut in cuts:
        time.sleep(max(cut - time.time(), 0))
        samples.append(sample(stack, client, provider, sim))
        if opts.profile and not profilers:
            profilers = profile(provider, opts.profile, f"w{workers}-c{users}", opts.duration)
    for profiler in profilers:
        profiler.wait(60)
    reports = [results.get(timeout=opts.duration + opts.warmup + 120) for _ in drivers]
    for process in drivers:
        process.join(10)
    flows = [f for r in reports for f in r["flows"] if measure_from <= f["done_at"] < end]
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report["errors"])
    rounds = [_round(a, b, flows) for a, b in itertools.pairwise(samples)]
    driver_cpu = sum(r["cpu"][1][1] - r["cpu"][0][1] for r in reports)
    total = _round(samples[0], samples[-1], flows)
    result: dict[str, Any] = {
        "scenario": {
            "workers": workers,
            "users": users,
            "warmup_s": opts.warmup,
            "duration_s": opts.duration,
            "rounds": opts.rounds,
            "drivers": opts.drivers,
            "provider_processes": len(provider),
        },
        "flows": len(flows),
        "flows_per_s": round(len(flows) / opts.duration, 1),
        "errors": dict(errors),
        "error_count": sum(errors.values()),
        "latency_ms": {step: percentiles([f[step] for f in flows]) for step in ("flow", *STEPS)},
        "webhook_to_push_ms": percentiles([f["push"] for f in flows]),
        "provider_cpu_ms_per_flow": {
            "median_of_rounds": _median([r["provider_cpu_ms"] for r in rounds]),
            "rounds": [r["provider_cpu_ms"] for r in rounds],
            "cores_busy": round(total["provider_cpu_s"] / opts.duration, 2),
        },
        "redis": {
            "commands_per_flow": total["commands"],
            "calls_per_flow": total["calls"],
            "cpu_ms_per_flow": total["redis_cpu_ms"],
        },
        "simulator_cpu_ms_per_flow": total["simulator_cpu_ms"],
        "driver_cpu": {
            "ms_per_flow": round(driver_cpu * 1000 / max(len(flows), 1), 3),
            "cores_busy": round(driver_cpu / opts.duration, 2),
        },
    }
    return result


def profile(
    pids: list[int], folder: Path, name: str, seconds: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy flame graphs of the provider's processes over the measured time."""
    spy = py_spy()
    folder.mkdir(parents=True, exist_ok=True)
    spies = []
    for n, pid in enumerate(p for p in pids if _is_python(p)):
        out = folder / f"provider-{name}-{n}.svg"
        args = [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "flamegraph",
            "--output",
            str(out),
        ]
        spies.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return spies


def _is_python(pid: int) -> bool:
    """A provider process (not multiprocessing's resource tracker, which has no app)."""
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"resource_tracker" not in cmdline
    return False


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def _round(a: Sample, b: Sample, flows: list[dict[str, float]]) -> dict[str, Any]:
    n = sum(1 for f in flows if a.at <= f["done_at"] < b.at)
    calls = {k: v - a.commands.get(k, 0) for k, v in b.commands.items()}
    calls = {k: v for k, v in calls.items() if v > 0 and k not in ("info", "ping")}

    def per(value: float, scale: float = 1000) -> float | None:
        return round(value * scale / n, 3) if n else None

    # Redis counts a script's EVALSHA and every command the script calls: both are in here.
    return {
        "flows": n,
        "provider_cpu_s": b.provider_cpu - a.provider_cpu,
        "provider_cpu_ms": per(b.provider_cpu - a.provider_cpu),
        "simulator_cpu_ms": per(b.simulator_cpu - a.simulator_cpu),
        "redis_cpu_ms": per(b.redis_cpu - a.redis_cpu),
        "commands": per(sum(calls.values()), 1),
        "calls": {k: per(v, 1) for k, v in sorted(calls.items())},
    }


# -- which commands a flow sends: a MONITOR census ----------------------------------------------


def command_census(stack: Stack, flows: int) -> dict[str, Any]:
    """Run ``flows`` flows one after another while MONITOR lists every command Redis runs: the
    ones the provider sends and the ones its scripts call (``[lua]``), per flow.

    INFO commandstats counts both kinds together; only MONITOR tells them apart. PINGs (the
    subscription's health checks) and this census' own commands are left out.
    """
    seen: list[dict[str, Any]] = []
    listening = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        with stack.redis().monitor() as monitor:  # type: ignore[no-untyped-call]
            listening.set()
            for entry in monitor.listen():
                if stop.is_set():
                    return
                seen.append(entry)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    listening.wait(10)
    time.sleep(0.2)
    done = asyncio.run(_sequential_flows(stack, flows))
    stop.set()
    stack.redis().ping()  # wakes the watcher
    watcher.join(10)
    sent: Counter[str] = Counter()
    scripted: Counter[str] = Counter()
    for entry in seen:
        name = entry["command"].split(" ", 1)[0].strip('"').lower()
        if name in ("ping", "monitor", "info"):
            continue
        (scripted if entry["client_type"] == "lua" else sent)[name] += 1
    per = max(done, 1)
    return {
        "flows": done,
        "sent_per_flow": round(sum(sent.values()) / per, 2),
        "in_scripts_per_flow": round(sum(scripted.values()) / per, 2),
        "sent": {k: round(v / per, 2) for k, v in sorted(sent.items())},
        "in_scripts": {k: round(v / per, 2) for k, v in sorted(scripted.items())},
    }


async def _sequential_flows(stack: Stack, flows: int) -> int:
    async with aiohttp.ClientSession() as vendor:
        async with vendor.get(f"{stack.issuer}/jwks") as response:
            keys = KeySet.import_key_set(await response.json())
        driver = Driver(stack.issuer, stack.signing_key, stack.alg, keys, vendor, 0, 0)
        session = aiohttp.ClientSession(
            base_url=stack.issuer,
            headers={"X-Forwarded-For": "10.99.0.1"},
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )
        async with session:
            for _ in range(flows):
                await driver.flow(session, "u0")
                session.cookie_jar.clear()
    return flows


# -- pending challenges: Redis memory ------------------------------------------------------------


async def open_pending(issuer: str, count: int) -> int:
    """Open ``count`` challenges (``/authorize`` only), each its own subject and address."""
    opened = 0
    queue = iter(range(count))

    async def worker() -> None:
        nonlocal opened
        async with aiohttp.ClientSession(base_url=issuer) as session:
            for i in queue:
                query = urlencode(
                    {
                        "response_type": "code",
                        "client_id": CLIENT_ID,
                        "redirect_uri": REDIRECT_URI,
                        "scope": "openid",
                        "state": secrets.token_urlsafe(16),
                        "nonce": secrets.token_urlsafe(16),
                        "acr_values": ACR,
                        "login_hint": f"u{i}",
                        "code_challenge": secrets.token_urlsafe(32),
                        "code_challenge_method": "S256",
                    }
                )
                address = client_address(i, block=100)
                headers = {"X-Forwarded-For": address}
                async with session.get(
                    f"/authorize?{query}", headers=headers, allow_redirects=False
                ) as response:
                    location = response.headers.get("location", "")
                    if response.status == 303 and location.startswith("/challenge/"):
                        opened += 1

    await asyncio.gather(*(worker() for _ in range(32)))
    return opened


def pending_memory(count: int, opts: argparse.Namespace, *, limits: bool) -> dict[str, Any]:
    """``INFO memory`` before and after opening ``count`` challenges, each for a different
    person from a different address (so each also has its own abuse-limit counters)."""
    stack = Stack(
        workers=1,
        subjects=count,
        provider_src=opts.provider_src,
        limits=limits,
        provider_python=opts.provider_python or sys.executable,
        overlay=overlay_of(opts.settings_overlay),
    )
    stack.start()
    try:
        client = stack.redis()
        before = int(client.info("memory")["used_memory"])
        keys_before = int(client.dbsize())
        opened = asyncio.run(open_pending(stack.issuer, count))
        after = int(client.info("memory")["used_memory"])
        keys_after = int(client.dbsize())
        one = next(client.scan_iter(match="stepup:{*}:challenge", count=1000), None)
        return {
            "pending_challenges": opened,
            "used_memory_delta_bytes": after - before,
            "bytes_per_pending": round((after - before) / max(opened, 1), 1),
            "keys_per_pending": round((keys_after - keys_before) / max(opened, 1), 2),
            "challenge_key_memory_usage_bytes": client.memory_usage(one) if one else None,
        }
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    import waiting  # bench/waiting.py: many browsers waiting on their push streams

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--scenario",
        choices=["flows", "waiting", "both"],
        default="flows",
        help="whole flows (and the pending-challenge memory), waiting browsers, or both",
    )
    p.add_argument("--workers", default="1", help="provider worker counts, e.g. 1,2")
    p.add_argument("--users", default="32", help="concurrent virtual users, e.g. 32,128")
    p.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=5, help="the measured time is cut into rounds")
    p.add_argument("--drivers", type=int, default=2, help="driver processes")
    p.add_argument(
        "--pending",
        type=int,
        default=10_000,
        help="pending challenges for the memory figure (0: skip)",
    )
    p.add_argument(
        "--census",
        type=int,
        default=20,
        help="flows run under MONITOR to count the commands sent (0: skip)",
    )
    p.add_argument(
        "--alg",
        choices=["RS256", "ES256"],
        default="RS256",
        help="the client's id_token_signed_response_alg",
    )
    p.add_argument(
        "--provider-src", type=Path, help="run the provider from another checkout's plugin/ folder"
    )
    p.add_argument(
        "--endpoint-cpu",
        action="store_true",
        help="also report CPU per request, by endpoint (one worker)",
    )
    p.add_argument("--provider-python", help="the Python (virtualenv) the provider runs on")
    p.add_argument(
        "--settings-overlay",
        type=Path,
        help="a YAML file laid over the provider's generated settings (keys the build knows)",
    )
    p.add_argument("--profile", type=Path, help="write py-spy flame graphs of the provider here")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    waiting.add_arguments(p)
    opts = p.parse_args(argv)
    # Stopped from outside (e.g. `timeout`): unwind, so every scenario's processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "settings": {
            "alg": opts.alg,
            "provider_src": str(opts.provider_src or ""),
            "provider_python": opts.provider_python or sys.executable,
            "settings_overlay": overlay_of(opts.settings_overlay),
        },
        "scenarios": [],
    }
    flows = opts.scenario in ("flows", "both")
    for workers in (int(w) for w in opts.workers.split(",")) if flows else ():
        for users in (int(u) for u in opts.users.split(",")):
            print(f"scenario: {workers} worker(s), {users} users", file=sys.stderr)
            report["scenarios"].append(run_scenario(workers, users, opts))
    if opts.scenario in ("waiting", "both"):
        report["waiting"] = waiting.waiting_runs(opts)
    if opts.pending and flows:
        print(f"memory: {opts.pending} pending challenges", file=sys.stderr)
        report["memory"] = pending_memory(opts.pending, opts, limits=True)
        # The same with the abuse limits off: the challenges' own records only.
        report["memory_without_limits"] = pending_memory(opts.pending, opts, limits=False)
    write_report(report, opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
