"""Real Redis topologies on loopback: a 3-master Cluster, and master + replica + Sentinel.

Every process runs in its own temporary folder and is killed (and its folder removed) by the
fixture that started it, whatever the test did.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from redis import Redis

from idenfy_stepup.store import redis_server_binary

from ..harness.rp import Flow
from ..harness.servers import stop_process
from ..test_push import events_url, finish_url_of, next_event, wait_for_done


def free_port(*, bus: bool = False) -> int:
    """A free loopback port; with ``bus``, one whose cluster-bus port (port + 10000) is free too."""
    for _ in range(200):
        with contextlib.closing(socket.socket()) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not bus:
            return port
        if port + 10000 > 65535:
            continue
        with contextlib.closing(socket.socket()) as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair")


def wait_for(check: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if check():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(step)


def info(port: int, section: str) -> dict[str, str]:
    with Redis(port=port, socket_timeout=1, decode_responses=True) as r:
        return {k: str(v) for k, v in r.info(section).items()}


class Server:
    """One ``redis-server`` (or sentinel) process on 127.0.0.1."""

    def __init__(
        self, root: Path, name: str, *args: str, port: int | None = None, bus: bool = False
    ) -> None:
        self.port = port or free_port(bus=bus)
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, config: Path | None = None) -> None:
        head = [redis_server_binary(), *([str(config)] if config else [])]
        args = [
            *head,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)),
            *("--save", "", "--daemonize", "no", "--loglevel", "warning"),
            *("--logfile", str(self.dir / "log")),
            *self.args,
        ]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_for(self.answers, 10, f"redis on {self.port}", step=0.02)

    def answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"redis on {self.port} exited; see {self.dir / 'log'}")
        with Redis(port=self.port, socket_timeout=0.5) as r:
            return bool(r.ping())

    def client(self) -> Redis:
        return Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown (no final AOF rewrite, no goodbye to replicas)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


class Topology:
    def __init__(self, prefix: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.servers: list[Server] = []

    def server(self, name: str, *args: str, bus: bool = False) -> Server:
        server = Server(self.root, name, *args, bus=bus)
        self.servers.append(server)
        return server

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Cluster(Topology):
    """Three masters, no replicas, all 16384 slots assigned."""

    def __init__(self) -> None:
        super().__init__("stepup-cluster-")
        args = [
            *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
            *("--cluster-node-timeout", "5000", "--appendonly", "no"),
        ]
        self.nodes = [self.server(f"node{i}", *args, bus=True) for i in range(3)]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addrs = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addrs,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        for node in self.nodes:
            wait_for(
                lambda n=node: info_cluster(n.port)["cluster_state"] == "ok",  # type: ignore[misc]
                20,
                f"cluster_state:ok on {node.port}",
            )
            # every node must also know the whole slot map before clients ask it
            wait_for(
                lambda n=node: info_cluster(n.port)["cluster_slots_ok"] == "16384",  # type: ignore[misc]
                20,
                "all slots ok",
            )

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def node_of(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot."""
        with self.nodes[0].client() as r:
            slot = int(r.execute_command("CLUSTER", "KEYSLOT", key))
            for start, end, master, *_ in r.execute_command("CLUSTER", "SLOTS"):
                if int(start) <= slot <= int(end):
                    return int(master[1])
        raise AssertionError(f"no node owns slot {slot}")

    def keys_by_node(self, pattern: str = "*") -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for node in self.nodes:
            with node.client() as r:
                found[node.port] = sorted(r.keys(pattern))
        return found


def info_cluster(port: int) -> dict[str, str]:
    with Redis(port=port, socket_timeout=1, decode_responses=True) as r:
        text = str(r.execute_command("CLUSTER", "INFO"))
    return dict(line.split(":", 1) for line in text.split() if ":" in line)


class SentinelSet(Topology):
    """A master, one replica (AOF on both) and one sentinel watching them as ``mymaster``."""

    SERVICE = "mymaster"

    def __init__(self) -> None:
        super().__init__("stepup-sentinel-")
        self.master = self.server(
            "master", "--appendonly", "yes", "--repl-diskless-sync-delay", "0"
        )
        self.replica = self.server("replica", "--appendonly", "yes")
        self.sentinel = self.server("sentinel")

    def start(self) -> None:
        self.master.start()
        self.replica.args += ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica.start()
        wait_for(
            lambda: info(self.replica.port, "replication")["master_link_status"] == "up",
            15,
            "replica link",
        )
        conf = self.sentinel.dir / "sentinel.conf"
        conf.write_text(
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.SERVICE} 1000\n"
            f"sentinel failover-timeout {self.SERVICE} 5000\n"
            f"sentinel parallel-syncs {self.SERVICE} 1\n"
        )
        self.sentinel.args.append("--sentinel")
        self.sentinel.start(config=conf)
        # The sentinel learns of the replica from the master's INFO; failover needs it known.
        wait_for(
            lambda: len(self._sentinel("REPLICAS", self.SERVICE)) == 1,
            15,
            "the sentinel to see the replica",
        )

    def _sentinel(self, *args: str) -> list[object]:
        with self.sentinel.client() as r:
            reply = r.execute_command("SENTINEL", *args)
        return list(reply or [])

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/{self.SERVICE}"

    def master_port(self) -> int:
        return int(self._sentinel("GET-MASTER-ADDR-BY-NAME", self.SERVICE)[1])  # type: ignore[call-overload]

    def wait_replicated(self, timeout: float = 10) -> None:
        """Until the replica has acknowledged everything the master wrote so far."""

        def caught_up() -> bool:
            master = info(self.master.port, "replication")
            replica = info(self.replica.port, "replication")
            return int(replica["slave_repl_offset"]) >= int(master["master_repl_offset"])

        wait_for(caught_up, timeout, "replication to catch up", step=0.02)

    def fail_over(self, timeout: float = 20) -> float:
        """Crash the master and wait until the sentinel promotes the replica; the seconds taken."""
        began = time.monotonic()
        self.master.kill()
        wait_for(
            lambda: self.master_port() == self.replica.port,
            timeout,
            "the sentinel to promote the replica",
            step=0.1,
        )
        wait_for(
            lambda: info(self.replica.port, "replication")["role"] == "master",
            timeout,
            "the replica to become master",
        )
        return time.monotonic() - began


async def approve_with_push(attempt: Flow, *, within: float) -> dict[str, str]:
    """Hold the push stream open, let the webhook land, and follow the pushed finish URL.

    ``within`` is well under the push channel's 15 s fallback re-read: "done" must come from
    the notifier's subscription, i.e. from the PUBLISH in the webhook script.
    """
    async with attempt.browser.stream("GET", events_url(attempt)) as response:
        lines = response.aiter_lines()
        assert await next_event(lines) == ["retry: 500"]
        outcome = asyncio.create_task(attempt.stack.outcome(attempt.token, "SUCCESS"))
        async with asyncio.timeout(within):
            block = await wait_for_done(lines)
        assert (await outcome).json()["delivered"] == 200
    assert finish_url_of(block) == f"/challenge/{attempt.token}/finish"
    return await attempt.result()


T = TypeVar("T", bound=Topology)


@contextlib.contextmanager
def started(topology: T) -> Iterator[T]:
    try:
        topology.start()
        yield topology
    finally:
        topology.close()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with started(Cluster()) as topology:
        yield topology


@pytest.fixture
def sentinel_set() -> Iterator[SentinelSet]:
    with started(SentinelSet()) as topology:
        yield topology
