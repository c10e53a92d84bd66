"""The servers the command line runs: uvicorn behind the edge's limits, the simulator and the
demo app beside the provider, and the loop that stops them all at once."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
from collections.abc import Iterator
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

from ..settings import ConfigError, Settings
from ..web import edge


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to ``_serve_all``, which stops all servers at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WorkerServer(uvicorn.Server):
    """A uvicorn server handling its own signals (a worker process), ending push streams first."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        closing(self)
        super().handle_exit(sig, frame)


def closing(server: uvicorn.Server) -> None:
    """Tell the provider app behind ``server`` that it is stopping (see Notifier)."""
    state = getattr(server.config.app, "state", None)
    runtime = getattr(state, "runtime", None)
    if runtime is not None:
        runtime.notifier.close_waiters()


# On SIGTERM, requests in flight get this long; open push streams (which would otherwise last
# up to challenge.push_timeout) are then closed, and the browser's EventSource reconnects.
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


def server_for(app: ASGIApp, host: str, port: int, settings: Settings) -> uvicorn.Server:
    return _Server(uvicorn_config(app, host, port, settings))


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
    return uvicorn.Server(config) if own_signals else _Server(config)


async def _serve_all(servers: list[uvicorn.Server]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop, servers)
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()


def _stop(servers: list[uvicorn.Server]) -> None:
    for server in servers:
        closing(server)
        server.should_exit = True


def run_servers(servers: list[uvicorn.Server]) -> None:
    """Serve on uvloop (``uvicorn.Server.serve`` leaves the loop to its caller)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_all(servers))


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
