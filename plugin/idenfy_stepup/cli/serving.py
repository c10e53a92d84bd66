"""The servers the command line runs: uvicorn behind the edge's limits, the simulator and the
demo app beside the provider, and the loop that stops them all at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from types import FrameType
from typing import cast

import uvicorn
from starlette.types import ASGIApp

from ..boot.startup import StartupError
from ..settings import ConfigError, Settings
from ..web import edge
from . import collector

log = logging.getLogger("idenfy_stepup")


class LoopServer(uvicorn.Server):
    """A uvicorn server that leaves signals to ``_serve_all``, which stops all servers at once;
    ``up`` is set once it accepts connections (a reload waits for it)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.up = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.up.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ListeningServer(LoopServer):
    """A LoopServer on a socket bound beforehand (so a taken port is a start-up error)."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket) -> None:
        super().__init__(config)
        self.sock = sock

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await super().serve(sockets or [self.sock])


def management_socket(settings: Settings) -> socket.socket | None:
    """The management port's socket (None: ``server.management.port: null``)."""
    where = settings.server.management
    if where.port is None:
        return None
    try:
        return bind(where.host, where.port)
    except OSError as exc:
        message = f"server.management: cannot listen on {where.host}:{where.port}: {exc.strerror}"
        raise StartupError(message) from None


def management_server(
    settings: Settings, sock: socket.socket, provider: Callable[[], ASGIApp]
) -> ListeningServer:
    """/metrics, /healthz and /readyz (observe/management.py) beside the provider."""
    from ..observe.management import ManagementApp

    where = settings.server.management
    config = uvicorn_config(ManagementApp(provider), where.host, where.port or 0, settings)
    return ListeningServer(config, sock)


class WorkerServer(uvicorn.Server):
    """A uvicorn server handling its own signals (a worker process), ending push streams first;
    ``ready`` is set once it accepts connections (a rolling reload waits for it)."""

    def __init__(
        self,
        config: uvicorn.Config,
        ready: EventType | None = None,
        companions: Sequence[uvicorn.Server] = (),
    ) -> None:
        super().__init__(config)
        self.ready = ready
        self.companions = companions  # servers of this process that stop with it

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            collector.settle()
        if self.started and self.ready is not None:
            self.ready.set()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        closing(self)
        for companion in self.companions:
            companion.should_exit = True
        super().handle_exit(sig, frame)

    async def serve_all(self, sockets: list[socket.socket]) -> None:
        """This server on ``sockets`` and its companions, until this one ends."""
        others = [asyncio.create_task(c.serve()) for c in self.companions]
        try:
            await self.serve(sockets)
        finally:
            for companion in self.companions:
                companion.should_exit = True
            await asyncio.gather(*others, return_exceptions=True)


def closing(server: uvicorn.Server) -> None:
    """Tell the provider app behind ``server`` that it is stopping (see Notifier)."""
    state = getattr(server.config.app, "state", None)
    runtime = getattr(state, "runtime", None)
    if runtime is not None:
        runtime.notifier.close_waiters()


# On SIGTERM, requests in flight get this long; open push streams (which would otherwise last
# as long as their challenge waits) are then closed, and the browser's EventSource reconnects.
GRACEFUL_SHUTDOWN_SECONDS = 5


def uvicorn_config(app: ASGIApp, host: str, port: int, settings: Settings) -> uvicorn.Config:
    """uvloop and httptools (both direct dependencies) behind the edge's limits, no access log.

    Every server (provider, worker, simulator, demo app) is configured here, so each gets the
    ``server:`` edge limits; the connection cap stays below this process' file descriptors.
    """
    server = settings.server
    limits = edge.EdgeLimits(
        header_timeout=server.header_timeout,
        body_timeout=server.body_timeout,
        max_header_bytes=server.max_header_bytes,
        max_request_line_bytes=server.max_request_line_bytes,
        max_connections=edge.connection_cap(server.max_connections, edge.raise_fd_limit()),
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=server.log_level,
        access_log=False,
        log_config=None,
        proxy_headers=False,
        server_header=False,
        loop="uvloop",
        http=edge.protocol_class(limits),
        timeout_keep_alive=server.keep_alive_timeout,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ws="none",  # no WebSocket route anywhere: an upgrade would only leave the edge's watch
    )


def server_for(app: ASGIApp, host: str, port: int, settings: Settings) -> LoopServer:
    return LoopServer(uvicorn_config(app, host, port, settings))


def simulator_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    own_signals: bool = False,
) -> uvicorn.Server:
    from ..simulator import create_simulator_app

    sim = settings.idenfy.simulator
    key = settings.idenfy.webhook_signing_key
    app = create_simulator_app(
        sim,
        webhook_url=sim.webhook_url or f"{settings.issuer}/webhooks/idenfy",
        signing_key=key.get_secret_value() if key is not None else None,
    )
    config = uvicorn_config(app, host or sim.host, sim.port if port is None else port, settings)
    return uvicorn.Server(config) if own_signals else LoopServer(config)


@dataclass
class Reloadable:
    """The provider server SIGHUP replaces: its socket, shared by each successor, and how to
    build that successor from the settings file (None: refused, the old one stays)."""

    server: LoopServer
    sock: socket.socket
    rebuild: Callable[[], Awaitable[LoopServer | None]]
    # Told the successor's app once it serves (the management port follows it).
    swapped: Callable[[ASGIApp], None] | None = None


class _Service:
    """Every server of one process, stopped together; the provider may be swapped on SIGHUP."""

    def __init__(self, servers: list[uvicorn.Server], reloadable: Reloadable | None) -> None:
        self.running: dict[asyncio.Task[None], uvicorn.Server] = {}
        # Tasks whose end is no reason to stop: a retired provider, or a successor not yet up.
        self.expected: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()
        self.reloadable = reloadable
        self.reloading = False
        self.stopping = False
        for server in servers:
            self.running[asyncio.create_task(server.serve())] = server
        if reloadable is not None:
            self.provider = asyncio.create_task(reloadable.server.serve([reloadable.sock.dup()]))
            self.running[self.provider] = reloadable.server

    def stop(self) -> None:
        self.stopping = True
        for server in self.running.values():
            closing(server)
            server.should_exit = True

    async def wait(self) -> None:
        """Until a server ends (or a signal stops them): then stop the rest and wait for them."""
        while True:
            wake = asyncio.create_task(self.changed.wait())
            done, _ = await asyncio.wait({*self.running, wake}, return_when=asyncio.FIRST_COMPLETED)
            wake.cancel()
            self.changed.clear()
            ended = [task for task in self.running if task in done]
            for task in ended:
                del self.running[task]
            unexpected = [task for task in ended if task not in self.expected]
            self.expected.difference_update(ended)
            if unexpected:
                break
        self.stop()
        await asyncio.gather(*self.running, return_exceptions=True)
        for task in unexpected:
            task.result()

    def hangup(self) -> None:
        if self.reloadable is None:
            log.info("SIGHUP ignored: this command does not reload its settings")
        elif self.reloading:
            log.warning("SIGHUP ignored: a settings reload is already running")
        else:
            self.reloading = True
            asyncio.get_running_loop().create_task(self._reload(self.reloadable))

    async def _reload(self, reloadable: Reloadable) -> None:
        try:
            successor = await reloadable.rebuild()
            if successor is None or self.stopping:
                return
            task = asyncio.create_task(_serve_guarded(successor, reloadable.sock.dup()))
            self.running[task] = successor
            self.expected.add(task)
            self.changed.set()
            # The successor listens on the same socket before the old server lets go of it:
            # the kernel's accept queue is never without a server.
            up = asyncio.create_task(successor.up.wait())
            await asyncio.wait({task, up}, return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            if task.done() or successor.should_exit:
                if task.done():
                    log.error("settings reload failed: the new app did not start; still serving")
                return
            self.expected.discard(task)
            retired, old = self.provider, self.running[self.provider]
            self.expected.add(retired)
            self.provider = task
            closing(old)  # its push streams end; the browsers reconnect to the successor
            old.should_exit = True
            if reloadable.swapped is not None:
                reloadable.swapped(cast(ASGIApp, successor.config.app))
            log.info("settings reloaded", extra={"event": "server.reloaded"})
        finally:
            self.reloading = False


async def _serve_guarded(server: uvicorn.Server, sock: socket.socket) -> None:
    """A successor whose lifespan fails exits (uvicorn raises SystemExit): not the process."""
    with contextlib.suppress(SystemExit):
        await server.serve([sock])


async def _serve_all(servers: list[uvicorn.Server], reloadable: Reloadable | None) -> None:
    loop = asyncio.get_running_loop()
    service = _Service(servers, reloadable)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    loop.add_signal_handler(signal.SIGHUP, service.hangup)
    settling = asyncio.create_task(collector.settle_when_started(list(service.running.values())))
    try:
        await service.wait()
    finally:
        settling.cancel()


def run_servers(servers: list[uvicorn.Server], reloadable: Reloadable | None = None) -> None:
    """Serve on uvloop (``uvicorn.Server.serve`` leaves the loop to its caller); with
    ``reloadable``, SIGHUP swaps in a provider built from the settings file again."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_all(servers, reloadable))


def bind(host: str, port: int) -> socket.socket:
    """A listening socket servers (or worker processes) share (the kernel spreads connections)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def demo_server(settings: Settings, port: int) -> uvicorn.Server:
    from ..demo.app import create_demo_app

    client = next((c for c in settings.clients if f":{port}/" in c.redirect_uris[0]), None)
    if client is None or client.client_secret is None:
        raise ConfigError([("clients", f"no client with a redirect_uri on port {port}")])
    app = create_demo_app(
        issuer=settings.issuer,
        client_id=client.client_id,
        client_secret=client.client_secret.get_secret_value(),
        redirect_uri=client.redirect_uris[0],
        subject=next(iter(settings.directory.static), "alice"),
        session_secret=secrets.token_urlsafe(32),
    )
    return server_for(app, settings.server.host, port, settings)


class CurrentApp:
    """The provider app serving now (a SIGHUP reload replaces it), for the management port."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self) -> ASGIApp:
        return self.app

    def swap(self, app: ASGIApp) -> None:
        self.app = app
