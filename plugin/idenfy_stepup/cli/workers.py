"""``serve --workers N``: N provider processes sharing one listening socket.

The parent binds the socket, starts what must exist once (the embedded Redis, the simulator in
simulator mode), then spawns the workers and supervises them: a worker that dies is replaced,
a crash loop stops the service, and SIGINT/SIGTERM stop every worker gracefully. Workers share
nothing but Redis, which already holds every piece of state (challenges, keys, secrets), and
the wake-up channel, which reaches every process.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from ..settings import Settings
from ..store.embedded import embedded_redis

log = logging.getLogger("idenfy_stepup")

# More than this many replacements within RESTART_WINDOW seconds is a crash loop: give up.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 15.0


def bind(host: str, port: int) -> socket.socket:
    """The listening socket every worker accepts on (the kernel spreads connections)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def run_worker(settings: Settings, redis_url: str | None, sock: socket.socket) -> None:
    """One worker: the provider app on the shared socket (runs in a spawned process)."""
    from ..app import create_app
    from . import logs
    from .serving import WorkerServer, uvicorn_config

    logs.configure(settings.server.log_format, settings.server.log_level)
    app = create_app(settings, redis_url=redis_url)
    config = uvicorn_config(app, settings.server.host, settings.server.port, settings)
    WorkerServer(config).run(sockets=[sock])


def run_simulator(settings: Settings) -> None:
    """The simulator beside the workers in simulator mode: one process, its state in memory."""
    from . import logs
    from .serving import simulator_server

    logs.configure(settings.server.log_format, settings.server.log_level)
    simulator_server(settings, own_signals=True).run()


class Supervisor:
    def __init__(self, settings: Settings, sock: socket.socket, workers: int) -> None:
        self.settings = settings
        self.sock = sock
        self.count = workers
        self.ctx = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        self.redis_url: str | None = None
        self.restarts: list[float] = []

    def _spawn_worker(self, index: int) -> BaseProcess:
        process = self.ctx.Process(
            target=run_worker,
            args=(self.settings, self.redis_url, self.sock),
            name=f"idenfy-stepup-worker-{index}",
        )
        process.start()
        return process

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        redis = self.settings.redis
        # The embedded Redis is stopped last, after every process that uses it.
        with embedded_redis(redis.url, redis.data_dir) as embedded_url:
            self.redis_url = embedded_url or self.redis_url
            helpers: list[BaseProcess] = []
            workers: list[BaseProcess] = []
            try:
                if self.settings.idenfy.mode == "simulator":
                    sim = self.ctx.Process(
                        target=run_simulator, args=(self.settings,), name="idenfy-stepup-simulator"
                    )
                    sim.start()
                    helpers.append(sim)
                workers = [self._spawn_worker(i) for i in range(self.count)]
                log.info("started %d workers", self.count, extra={"event": "server.workers"})
                return self._watch(workers, helpers)
            finally:
                _stop_all([*workers, *helpers])

    def _watch(self, workers: list[BaseProcess], helpers: list[BaseProcess]) -> int:
        while not self.stopping.wait(0.5):
            for helper in helpers:
                if not helper.is_alive():
                    log.error("%s exited (code %s): stopping", helper.name, helper.exitcode)
                    return 1
            for index, worker in enumerate(workers):
                if worker.is_alive() or self.stopping.is_set():
                    continue
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW]
                if len(self.restarts) >= MAX_RESTARTS:
                    log.error("workers keep exiting: stopping (last exit code %s)", worker.exitcode)
                    return 1
                self.restarts.append(now)
                log.warning("%s exited (code %s): replacing it", worker.name, worker.exitcode)
                workers[index] = self._spawn_worker(index)
        return 0


def _stop_all(processes: list[BaseProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()  # SIGTERM: uvicorn finishes in-flight requests
    deadline = time.monotonic() + STOP_TIMEOUT
    for process in processes:
        process.join(max(deadline - time.monotonic(), 0.1))
        if process.is_alive():
            log.warning("%s did not stop in time: killing it", process.name)
            process.kill()
            process.join(1.0)
