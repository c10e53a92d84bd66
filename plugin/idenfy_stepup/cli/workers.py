"""``serve --workers N``: N provider processes sharing one listening socket.

The parent binds the socket, starts what must exist once (the embedded Redis, the simulator in
simulator mode), then spawns the workers and supervises them: a worker that dies is replaced,
a crash loop stops the service, and SIGINT/SIGTERM stop every worker gracefully. Workers share
nothing but Redis, which already holds every piece of state (challenges, keys, secrets), and
the wake-up channel, which reaches every process.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from types import FrameType

from ..observe import multiproc
from ..settings import Settings
from ..store.embedded import embedded_redis
from .reloading import refused, reread
from .serving import bind

__all__ = ["Supervisor", "bind", "run_simulator", "run_worker"]

log = logging.getLogger("idenfy_stepup")

# More than this many replacements within RESTART_WINDOW seconds is a crash loop: give up.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 15.0
# How long a reload waits for its new workers to accept connections before giving up.
START_TIMEOUT = 30.0


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent_pid: int) -> None:
    """End this process when the supervisor ends, even by SIGKILL (no orphan keeps serving).

    PR_SET_PDEATHSIG has the kernel send SIGTERM, which the worker handles like the
    supervisor's own (a graceful stop), when its parent dies. It is set after the process
    started, so a supervisor that died before that is caught by comparing the parent pid
    with the one it was given: after the parent's death the child is re-parented. A pipe
    watched for EOF would do as well, but costs a thread or a task in every worker; the
    kernel's signal costs nothing. The signal follows the parent *thread* that spawned the
    child: the supervisor spawns from its main thread only, which lives as long as it does.
    Other systems have no such call: there, only the parent-pid check runs.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent_pid:
        os._exit(1)  # the supervisor is already gone
    # SIGHUP is the supervisor's (a reload); a HUP to the whole process group must not stop us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def run_worker(
    settings: Settings,
    redis_url: str | None,
    sock: socket.socket,
    parent_pid: int,
    ready: EventType | None = None,
    manage: socket.socket | None = None,
) -> None:
    """One worker: the provider app on the shared socket (runs in a spawned process); with
    ``manage`` (worker 0), the management port too."""
    die_with_parent(parent_pid)
    import uvloop

    from ..app import create_app
    from . import logs
    from .serving import WorkerServer, management_server, uvicorn_config

    logs.configure(settings.server.log_format, settings.server.log_level)
    app = create_app(settings, redis_url=redis_url)
    config = uvicorn_config(app, settings.server.host, settings.server.port, settings)
    companions = [] if manage is None else [management_server(settings, manage, lambda: app)]
    server = WorkerServer(config, ready, companions)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(server.serve_all([sock]))


def run_simulator(settings: Settings, parent_pid: int) -> None:
    """The simulator beside the workers in simulator mode: one process, its state in memory."""
    die_with_parent(parent_pid)
    from . import logs
    from .serving import simulator_server

    logs.configure(settings.server.log_format, settings.server.log_level)
    simulator_server(settings, own_signals=True).run()


class Supervisor:
    def __init__(
        self,
        settings: Settings,
        sock: socket.socket,
        workers: int,
        path: str | None = None,
        manage: socket.socket | None = None,
    ) -> None:
        self.settings = settings
        self.sock = sock
        # The management port's socket: served by worker 0 (and by its replacement, and by the
        # new worker 0 of a reload, which listens on it before the old one lets go).
        self.manage = manage
        self.count = workers
        self.path = path  # the settings file SIGHUP re-reads
        self.ctx = multiprocessing.get_context("spawn")
        self.stopping = threading.Event()
        self.hangup = threading.Event()
        self.redis_url: str | None = None
        self.restarts: list[float] = []

    def _spawn_worker(
        self, index: int, settings: Settings | None = None, ready: EventType | None = None
    ) -> BaseProcess:
        manage = self.manage if index == 0 else None
        process = self.ctx.Process(
            target=run_worker,
            args=(settings or self.settings, self.redis_url, self.sock, os.getpid(), ready, manage),
            name=f"idenfy-stepup-worker-{index}",
        )
        process.start()
        return process

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def _hup(self, signum: int, frame: FrameType | None) -> None:
        self.hangup.set()  # handled by the main loop: spawning belongs to the main thread

    def run(self) -> int:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._stop)
        signal.signal(signal.SIGHUP, self._hup)
        redis = self.settings.redis
        # Before any process is spawned: each inherits the directory its metrics go to.
        metrics_dir = multiproc.start_run()
        try:
            return self._run(redis.url, redis.data_dir)
        finally:
            multiproc.end_run(metrics_dir)

    def _run(self, redis_url: str, data_dir: Path) -> int:
        # The embedded Redis is stopped last, after every process that uses it.
        with embedded_redis(redis_url, data_dir) as embedded_url:
            self.redis_url = embedded_url or self.redis_url
            helpers: list[BaseProcess] = []
            workers: list[BaseProcess] = []
            try:
                if self.settings.idenfy.mode == "simulator":
                    sim = self.ctx.Process(
                        target=run_simulator,
                        args=(self.settings, os.getpid()),
                        name="idenfy-stepup-simulator",
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
            if self.hangup.is_set():
                self.hangup.clear()
                self._reload(workers)
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
                multiproc.worker_gone(worker.pid)
                workers[index] = self._spawn_worker(index)
        return 0

    def _reload(self, workers: list[BaseProcess]) -> None:
        """A rolling replacement: new workers on the new settings serve before the old stop."""
        if self.path is None:
            return
        try:
            settings = asyncio.run(reread(self.path, self.settings))
        except Exception as exc:  # any failure leaves the running workers as they are
            refused(exc)
            return
        readies = [self.ctx.Event() for _ in workers]
        fresh = [self._spawn_worker(i, settings, r) for i, r in enumerate(readies)]
        deadline = time.monotonic() + START_TIMEOUT
        while not all(r.is_set() for r in readies):
            failed = [p for p in fresh if not p.is_alive()]
            if failed or self.stopping.is_set() or time.monotonic() > deadline:
                if not self.stopping.is_set():
                    log.error(
                        "settings reload failed: a new worker did not start (exit code %s);"
                        " still serving the previous settings",
                        failed[0].exitcode if failed else None,
                    )
                _stop_all(fresh)
                return
            time.sleep(0.05)
        self.settings = settings
        old, workers[:] = list(workers), fresh
        _stop_all(old)  # SIGTERM: each finishes its requests; the new ones accept meanwhile
        for process in old:
            multiproc.worker_gone(process.pid)
        log.info("settings reloaded", extra={"event": "server.reloaded"})


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
