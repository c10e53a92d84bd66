"""`idenfy-stepup serve --workers N` and `idenfy-stepup simulator`, as real processes.

Nothing is faked: a real redis-server, the simulator as its own process (or started by the
supervisor in simulator mode), the provider's parent and its spawned workers, all found and
signalled through /proc and os.kill like an operator would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from joserfc import jwt
from joserfc.jwk import KeySet

from .harness.redis import RedisProcess
from .harness.rp import pkce, query
from .harness.servers import free_socket
from .harness.settings import CLIENT_SECRET, REDIRECT_URI, SHOP_CLIENT, live_settings

pytestmark = pytest.mark.slow

EXE = Path(sys.executable).with_name("idenfy-stepup")
SIGNING_KEY = "workers-test-webhook-signing-key-0123456789"
API_KEY, API_SECRET = "workers-api-key", "workers-api-secret"
START_TIMEOUT = 30.0


# -- processes, as /proc shows them ---------------------------------------------------------


@dataclass(frozen=True)
class Ps:
    pid: int
    ppid: int
    state: str
    started: int  # clock ticks after boot: tells a pid apart from a later reuse of it
    cmdline: str


def ps() -> dict[int, Ps]:
    found: dict[int, Ps] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            pid = int(entry.name)
            found[pid] = Ps(pid, int(fields[1]), fields[0], int(fields[19]), cmdline)
    return found


def alive(proc: Ps) -> bool:
    """Still running (a zombie has exited; it only waits to be reaped)."""
    now = ps().get(proc.pid)
    return now is not None and now.started == proc.started and now.state not in "ZX"


def children(pid: int) -> list[Ps]:
    return [p for p in ps().values() if p.ppid == pid and p.state not in "ZX"]


def descendants(pid: int) -> list[Ps]:
    table = ps()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        below = [p for p in table.values() if p.ppid == current and p.state not in "ZX"]
        found.extend(below)
        todo.extend(p.pid for p in below)
    return found


def spawned(pid: int) -> list[Ps]:
    """The multiprocessing children of ``pid`` (workers, and the simulator in simulator mode).

    The spawn start method also starts a resource tracker (``resource_tracker``), which is no
    worker; neither is the embedded redis-server.
    """
    return [p for p in children(pid) if "spawn_main" in p.cmdline]


def listeners(port: int) -> set[int]:
    """The pids that hold the listening TCP socket on ``port`` (from /proc/net and fd links)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            if os.readlink(fd) in inodes:
                pids.add(int(fd.parts[2]))
    return pids


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        return int(sock.getsockname()[1])


def wait_for(
    what: str,
    ready: Callable[[], Any],
    *,
    timeout: float = START_TIMEOUT,
    procs: tuple[Proc, ...] = (),
) -> None:
    """Poll ``ready`` until it returns something true; fail (with the logs) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError, OSError):
            if ready():
                return
        exited = [p for p in procs if p.popen.poll() is not None]
        if exited or time.monotonic() > deadline:
            logs = "\n".join(p.logs() for p in procs)
            why = f"{exited[0].name} exited" if exited else "timed out"
            raise AssertionError(f"{what}: {why}\n{logs}")
        time.sleep(0.05)


def answers(url: str, status: int | None = 200) -> bool:
    code = httpx.get(url, timeout=5).status_code
    return status is None or code == status


# -- a command-line process and everything below it -------------------------------------------


@dataclass
class Proc:
    """``idenfy-stepup ARGS`` in its own session, stdout and stderr in files."""

    name: str
    args: list[str]
    folder: Path
    popen: subprocess.Popen[bytes] = field(init=False)
    seen: dict[int, Ps] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out, self.err = self.folder / f"{self.name}.out", self.folder / f"{self.name}.err"
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.popen = subprocess.Popen(
                [str(EXE), *self.args],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def text(self) -> str:
        """Everything it wrote (logs() is the tail, for failure messages): the access log
        writes a line per request, so a line to look for can be far from the end."""
        return self.out.read_text() + self.err.read_text()

    def logs(self) -> str:
        return (
            f"--- {self.name} {self.args} (exit {self.popen.poll()})\n"
            f"{self.out.read_text()[-3000:]}{self.err.read_text()[-3000:]}"
        )

    def tree(self) -> list[Ps]:
        """Every live process below this one, remembered for the clean-up."""
        below = descendants(self.pid)
        self.seen.update((p.pid, p) for p in below)
        return below

    def workers(self) -> list[Ps]:
        found = spawned(self.pid)
        self.seen.update((p.pid, p) for p in found)
        return found

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still runs after {timeout} s\n{self.logs()}"
            ) from None

    def stop(self) -> None:
        """The clean-up: SIGTERM to the session, SIGKILL for whatever is left."""
        if self.popen.poll() is None:
            self.tree()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        for proc in self.seen.values():  # e.g. the embedded redis-server, in its own session
            if alive(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``idenfy-stepup`` processes; stop every one of them (and their children) after."""
    procs: list[Proc] = []

    def start(name: str, *args: str) -> Proc:
        proc = Proc(name, list(args), tmp_path)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in reversed(procs):
            proc.stop()


def gone(procs: list[Ps]) -> bool:
    return not any(alive(p) for p in procs)


def assert_all_gone(procs: list[Ps], serve: Proc) -> None:
    """Every process once below ``serve`` has exited (the resource tracker may take a moment)."""
    with contextlib.suppress(AssertionError):
        wait_for("children exit", lambda: gone(procs), timeout=5)
    left = [p for p in procs if alive(p)]
    assert not left, f"processes left behind: {left}\n{serve.logs()}"


# -- settings files -------------------------------------------------------------------------


def live_config(port: int, sim_port: int, redis_url: str, **server: Any) -> dict[str, Any]:
    """``mode: live`` pointed at a simulator run on its own (as bench/load.py runs it)."""
    return live_settings(
        port,
        sim_port,
        redis_url,
        api_key=API_KEY,
        api_secret=API_SECRET,
        signing_key=SIGNING_KEY,
        **server,
    )


def simulator_config(port: int, sim_port: int, data_dir: Path, **server: Any) -> dict[str, Any]:
    """config/demo.yaml's shape: simulator mode, embedded Redis, no webhook signing key."""
    return {
        "issuer": f"http://127.0.0.1:{port}",
        "server": {"host": "127.0.0.1", "port": port, "management": {"port": None}, **server},
        "redis": {"url": "embedded", "data_dir": str(data_dir)},
        "idenfy": {
            "mode": "simulator",
            "simulator": {"port": sim_port, "scan_refs": {"SCAN-ALICE": "AUTHENTICATION"}},
        },
        "directory": {"static": {"alice": "SCAN-ALICE"}},
        "clients": [SHOP_CLIENT],
    }


def write(tmp_path: Path, config: dict[str, Any], name: str = "stepup.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


# -- the flow -------------------------------------------------------------------------------


def step_up(issuer: str, simulator: str) -> dict[str, Any]:
    """One whole step-up for alice; the verified id_token claims.

    The browser opens a new connection for every request, so that its requests (and the
    webhook, and the token request) land on whichever worker the kernel picks.
    """
    verifier, challenge = pkce()
    state, nonce = os.urandom(8).hex(), os.urandom(8).hex()
    params = {
        "response_type": "code",
        "client_id": "shop",
        "scope": "openid",
        "redirect_uri": REDIRECT_URI,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": "alice",
    }
    fresh = httpx.Limits(max_keepalive_connections=0)
    with httpx.Client(base_url=issuer, limits=fresh, timeout=20) as browser:
        started = browser.get("/authorize", params=params)
        assert started.status_code == 303, started.text
        location = started.headers["location"]
        assert location.startswith("/challenge/"), location
        token = location.rsplit("/", 1)[1]
        assert browser.cookies, "the challenge cookie was not set"
        page = browser.get(f"/challenge/{token}")
        assert page.status_code == 200, page.text
        outcome = httpx.post(
            f"{simulator}/_simulator/sessions/{token}/outcome",
            json={"status": "SUCCESS"},
            timeout=30,
        )
        assert outcome.status_code == 200, outcome.text
        assert outcome.json()["delivered"] == 200, outcome.text
        done = browser.get(f"/challenge/{token}/finish")
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(REDIRECT_URI), done.headers["location"]
    result = query(done.headers["location"])
    assert result["state"] == state and result["iss"] == issuer, result
    tokens = httpx.post(
        f"{issuer}/token",
        auth=("shop", CLIENT_SECRET),
        timeout=20,
        data={
            "grant_type": "authorization_code",
            "code": result["code"],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
    )
    assert tokens.status_code == 200, tokens.text
    keys = KeySet.import_key_set(httpx.get(f"{issuer}/jwks", timeout=20).json())
    claims = dict(jwt.decode(tokens.json()["id_token"], keys).claims)
    assert claims["sub"] == "alice" and claims["nonce"] == nonce, claims
    return claims


# -- live mode: redis-server, `idenfy-stepup simulator`, `serve --workers 2` ------------------


@dataclass
class Live:
    serve: Proc
    simulator: Proc
    issuer: str
    simulator_url: str


@contextlib.contextmanager
def live_stack(
    tmp_path: Path, redis: RedisProcess, *serve_args: str, **server: Any
) -> Iterator[Live]:
    port, sim_port = free_port(), free_port()
    path = write(tmp_path, live_config(port, sim_port, redis.url, **server))
    issuer, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    with running(tmp_path) as start:
        simulator = start("simulator", "simulator", "--config", str(path))
        wait_for(
            "the simulator answers", lambda: answers(f"{sim}/?token=x", 404), procs=(simulator,)
        )
        serve = start("serve", "serve", "--config", str(path), *serve_args)
        wait_for("/readyz", lambda: answers(f"{issuer}/readyz"), procs=(serve, simulator))
        yield Live(serve, simulator, issuer, sim)


def wait_workers(live: Live, count: int) -> list[Ps]:
    """Wait until ``count`` workers run (any one may answer /readyz before the others)."""
    wait_for(f"{count} workers", lambda: len(live.serve.workers()) == count, procs=(live.serve,))
    return live.serve.workers()


def test_workers_serve_a_whole_step_up(tmp_path: Path, own_redis: RedisProcess) -> None:
    with live_stack(tmp_path, own_redis, "--workers", "2") as live:
        workers = wait_workers(live, 2)
        tree = live.serve.tree()
        assert {w.pid for w in workers} <= {p.pid for p in children(live.serve.pid)}
        assert not [p for p in tree if "redis-server" in p.cmdline], "no embedded Redis in live"
        assert not [p for p in tree if p.ppid != live.serve.pid], f"grandchildren: {tree}"
        # The parent bound the socket; it and both workers hold it, nothing else does.
        port = int(live.issuer.rsplit(":", 1)[1])
        assert listeners(port) == {live.serve.pid, *(w.pid for w in workers)}
        for _ in range(3):
            claims = step_up(live.issuer, live.simulator_url)
            assert claims["amr"] == ["face"]
        for _ in range(20):
            assert httpx.get(f"{live.issuer}/readyz").status_code == 200
        assert "unsigned" not in live.simulator.err.read_text()
        assert len(live.serve.workers()) == 2, live.serve.logs()


def test_a_killed_worker_is_replaced(tmp_path: Path, own_redis: RedisProcess) -> None:
    with live_stack(tmp_path, own_redis, "--workers", "2") as live:
        workers = wait_workers(live, 2)
        victim, survivor = workers
        os.kill(victim.pid, signal.SIGKILL)

        def replaced() -> bool:
            now = live.serve.workers()
            pids = {p.pid for p in now}
            return len(now) == 2 and victim.pid not in pids and survivor.pid in pids

        wait_for("a replacement worker", replaced, timeout=15, procs=(live.serve,))
        assert not alive(victim)
        for _ in range(20):
            assert httpx.get(f"{live.issuer}/readyz").status_code == 200
        step_up(live.issuer, live.simulator_url)
        assert live.serve.popen.poll() is None
        wait_for(
            "the replacement is logged", lambda: "replacing it" in live.serve.text(), timeout=5
        )


def test_a_crash_loop_stops_the_service(tmp_path: Path, own_redis: RedisProcess) -> None:
    """More than 5 replacements within 60 s: the parent gives up with exit code 1."""
    with live_stack(tmp_path, own_redis, "--workers", "2") as live:
        wait_workers(live, 2)
        killed: dict[int, Ps] = {}
        deadline = time.monotonic() + 30
        while live.serve.popen.poll() is None and time.monotonic() < deadline:
            for worker in live.serve.workers():
                if worker.pid not in killed:
                    killed[worker.pid] = worker
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(worker.pid, signal.SIGKILL)
            time.sleep(0.05)
        assert live.serve.wait(20) == 1, live.serve.logs()
        assert len(killed) >= 6, (killed, live.serve.logs())
        assert "workers keep exiting: stopping" in live.serve.text()
        assert_all_gone(list(live.serve.seen.values()), live.serve)


def test_sigterm_stops_parent_and_workers(tmp_path: Path, own_redis: RedisProcess) -> None:
    with live_stack(tmp_path, own_redis, "--workers", "2") as live:
        wait_workers(live, 2)
        tree = live.serve.tree()
        live.serve.popen.send_signal(signal.SIGTERM)  # the parent only, as systemd would
        started = time.monotonic()
        assert live.serve.wait(15) == 0, live.serve.logs()
        assert time.monotonic() - started < 15
        assert_all_gone(tree, live.serve)
        assert "replacing it" not in live.serve.text()
        assert live.simulator.popen.poll() is None  # a process of its own: untouched


def test_ctrl_c_to_the_process_group_stops_everything(
    tmp_path: Path, own_redis: RedisProcess
) -> None:
    """A terminal's Ctrl-C reaches the parent and every worker at once: no worker is replaced."""
    with live_stack(tmp_path, own_redis, "--workers", "2") as live:
        wait_workers(live, 2)
        tree = live.serve.tree()
        os.killpg(live.serve.pid, signal.SIGINT)
        assert live.serve.wait(15) == 0, live.serve.logs()
        assert_all_gone(tree, live.serve)
        assert "replacing it" not in live.serve.text()


def open_push_stream(issuer: str) -> tuple[threading.Thread, list[str]]:
    """A browser on a challenge page, its push channel open; what it read ends up in the list."""
    _, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": "shop",
        "scope": "openid",
        "redirect_uri": REDIRECT_URI,
        "state": "s",
        "nonce": "n",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "login_hint": "alice",
    }
    browser = httpx.Client(base_url=issuer, timeout=60)
    started = browser.get("/authorize", params=params)
    token = started.headers["location"].rsplit("/", 1)[1]
    lines: list[str] = []
    opened = threading.Event()

    def read() -> None:
        try:
            with browser.stream("GET", f"/challenge/{token}/events") as stream:
                for line in stream.iter_lines():
                    lines.append(line)
                    opened.set()
            lines.append("<end>")
        except httpx.HTTPError as exc:
            lines.append(f"<{type(exc).__name__}>")
        finally:
            opened.set()
            browser.close()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(10), "the push channel did not open"
    return reader, lines


@pytest.mark.parametrize("workers", ["1", "2"])
def test_stopping_ends_open_push_streams_at_once(
    tmp_path: Path, own_redis: RedisProcess, workers: str
) -> None:
    """A push stream lasts as long as its challenge waits; SIGTERM must not wait for it,
    nor cut it: the stream ends cleanly and EventSource reconnects (elsewhere)."""
    with live_stack(tmp_path, own_redis, "--workers", workers) as live:
        if workers == "2":
            wait_workers(live, 2)
        reader, lines = open_push_stream(live.issuer)
        time.sleep(0.3)  # the stream is registered with the notifier
        live.serve.popen.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert live.serve.wait(15) == 0, live.serve.logs()
        assert time.monotonic() - started < 3, live.serve.logs()
        reader.join(5)
        assert lines[-1] == "<end>", lines
        assert ": server stopping" in lines, lines
        assert "Cancel" not in live.serve.text() and "killing" not in live.serve.text()


def test_workers_flag_overrides_config(tmp_path: Path, own_redis: RedisProcess) -> None:
    """server.workers: 3 in the file, --workers 1 on the command line: one plain process."""
    with live_stack(tmp_path, own_redis, "--workers", "1", workers=3) as live:
        assert live.serve.tree() == []
        step_up(live.issuer, live.simulator_url)
        assert live.serve.tree() == []


# -- simulator mode: the supervisor starts the embedded Redis and the simulator once ---------


@dataclass
class Embedded:
    serve: Proc
    issuer: str
    simulator_url: str
    data: Path
    simulator: Ps
    workers: list[Ps]


@contextlib.contextmanager
def simulator_mode(tmp_path: Path) -> Iterator[Embedded]:
    """config/demo.yaml's set-up with ``server.workers: 2`` from the file (no flag)."""
    port, sim_port = free_port(), free_port()
    data = tmp_path / "data"
    path = write(tmp_path, simulator_config(port, sim_port, data, workers=2))
    issuer, sim = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{sim_port}"
    with running(tmp_path) as start:
        serve = start("serve", "serve", "--config", str(path))
        wait_for("/readyz", lambda: answers(f"{issuer}/readyz"), procs=(serve,))
        wait_for(
            "the simulator answers", lambda: answers(f"{sim}/?token=unknown", None), procs=(serve,)
        )
        # 2 workers + the simulator are spawned: the simulator is the one on its port
        wait_for("2 workers and the simulator", lambda: len(serve.workers()) == 3, procs=(serve,))
        spawned_ = serve.workers()
        on_sim_port = listeners(sim_port)
        simulator = [p for p in spawned_ if p.pid in on_sim_port]
        assert len(simulator) == 1 and on_sim_port == {simulator[0].pid}, (spawned_, on_sim_port)
        workers = [p for p in spawned_ if p.pid not in on_sim_port]
        assert listeners(port) == {serve.pid, *(w.pid for w in workers)}
        yield Embedded(serve, issuer, sim, data, simulator[0], workers)


def test_workers_with_embedded_redis_and_simulator(tmp_path: Path) -> None:
    with simulator_mode(tmp_path) as stack:
        serve = stack.serve
        assert httpx.get(f"{stack.simulator_url}/?token=unknown").status_code == 404
        tree = serve.tree()
        redis_servers = [p for p in tree if "redis-server" in p.cmdline]
        assert len(redis_servers) == 1, tree
        assert redis_servers[0].ppid == serve.pid
        assert str(stack.data / "redis.sock") in redis_servers[0].cmdline
        assert (stack.data / "redis.sock").exists()
        # The simulator signs with a key the parent made up, which every worker knows.
        claims = step_up(stack.issuer, stack.simulator_url)
        assert claims["amr"] == ["face"]
        # ... and the parent stops all of it, the embedded Redis included.
        serve.popen.send_signal(signal.SIGTERM)
        assert serve.wait(15) == 0, serve.logs()
        assert_all_gone(tree, serve)
        assert not (stack.data / "redis.sock").exists(), "embedded Redis left running"


def test_simulator_exit_stops_the_service(tmp_path: Path) -> None:
    """The simulator is not replaced like a worker: without it nothing works, so all stops."""
    with simulator_mode(tmp_path) as stack:
        tree = stack.serve.tree()
        os.kill(stack.simulator.pid, signal.SIGKILL)
        assert stack.serve.wait(15) == 1, stack.serve.logs()
        assert "idenfy-stepup-simulator exited" in stack.serve.text()
        assert_all_gone(tree, stack.serve)
        assert not (stack.data / "redis.sock").exists(), "embedded Redis left running"


def test_demo_ignores_server_workers(tmp_path: Path) -> None:
    port, sim_port, demo_port = free_port(), free_port(), free_port()
    config = simulator_config(port, sim_port, tmp_path / "data", workers=4)
    config["clients"][0]["redirect_uris"] = [f"http://127.0.0.1:{demo_port}/callback"]
    path = write(tmp_path, config)
    issuer = f"http://127.0.0.1:{port}"
    with running(tmp_path) as start:
        demo = start("demo", "demo", "--config", str(path), "--demo-port", str(demo_port))
        wait_for("/readyz", lambda: answers(f"{issuer}/readyz"), procs=(demo,))
        wait_for(
            "the demo app", lambda: answers(f"http://127.0.0.1:{demo_port}/", None), procs=(demo,)
        )
        assert demo.workers() == []
        assert [p.cmdline for p in demo.tree() if "redis-server" not in p.cmdline] == []


# -- refused worker counts --------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


@pytest.mark.parametrize("count", ["0", "65", "-1"])
def test_workers_out_of_range_is_refused(tmp_path: Path, count: str) -> None:
    port = free_port()
    path = write(tmp_path, simulator_config(port, free_port(), tmp_path / "data"))
    result = run("serve", "--config", str(path), "--workers", count)
    assert result.returncode == 2, result
    assert "--workers must be between 1 and 64" in result.stderr
    assert not (tmp_path / "data").exists(), "nothing may start for a refused command"


@pytest.mark.parametrize("count", [0, 65])
def test_server_workers_out_of_range_is_refused(tmp_path: Path, count: int) -> None:
    path = write(
        tmp_path, simulator_config(free_port(), free_port(), tmp_path / "data", workers=count)
    )
    result = run("serve", "--config", str(path))
    assert result.returncode == 2, result
    assert "server.workers" in result.stderr
    checked = run("check-config", str(path))
    assert checked.returncode == 2 and "server.workers" in checked.stderr


# -- `idenfy-stepup simulator` on its own -----------------------------------------------------


def test_simulator_without_signing_key_warns_and_serves(tmp_path: Path) -> None:
    config_port, port = free_port(), free_port()
    path = write(tmp_path, simulator_config(free_port(), config_port, tmp_path / "data"))
    with running(tmp_path) as start:
        simulator = start(
            "simulator",
            "simulator",
            "--config",
            str(path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(
            "the simulator answers",
            lambda: answers(f"{url}/?token=unknown", 404),
            procs=(simulator,),
        )
        err = simulator.err.read_text()
        assert "warning: idenfy.webhook_signing_key is not set: webhooks are sent unsigned" in err
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{config_port}/?token=unknown")  # --port won
        sessions = httpx.get(
            f"{url}/api/v2/facial-authentication-sessions/",
            auth=("simulator-api-key", "simulator-api-secret"),
        )
        assert sessions.status_code == 200 and sessions.json() == []
        simulator.popen.send_signal(signal.SIGTERM)
        assert simulator.wait(15) == 0, simulator.logs()
        assert not (tmp_path / "data").exists(), "the simulator alone needs no Redis"


def test_simulator_with_signing_key_does_not_warn(tmp_path: Path) -> None:
    port, sim_port = free_port(), free_port()
    path = write(tmp_path, live_config(port, sim_port, "redis://127.0.0.1:1/0"))
    with running(tmp_path) as start:
        simulator = start("simulator", "simulator", "--config", str(path))
        url = f"http://127.0.0.1:{sim_port}"
        wait_for(
            "the simulator answers", lambda: answers(f"{url}/?token=x", 404), procs=(simulator,)
        )
        wrong = httpx.get(
            f"{url}/api/v2/facial-authentication-sessions/",
            auth=("simulator-api-key", "simulator-api-secret"),
        )
        assert wrong.status_code == 401, wrong.text
        right = httpx.get(
            f"{url}/api/v2/facial-authentication-sessions/", auth=(API_KEY, API_SECRET)
        )
        assert right.status_code == 200, right.text
        assert "unsigned" not in simulator.err.read_text()
