"""``idenfy-stepup``: serve | demo | simulator | check-config | subjects (design.md §7)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType

import uvicorn
from pydantic import SecretStr
from starlette.types import ASGIApp

from . import checks, http_edge, logs
from .app import create_app
from .config import ConfigError, Settings, load_settings
from .startup import StartupError, preflight, unreachable
from .store import EmbeddedRedis, Store, StoreUnavailable, connect


def with_simulator_key(settings: Settings) -> Settings:
    """In simulator mode with no signing key, sign with a fresh one known to both sides."""
    idenfy = settings.idenfy
    if idenfy.mode != "simulator" or idenfy.webhook_signing_key is not None:
        return settings
    key = SecretStr(secrets.token_hex(32))
    return settings.model_copy(
        update={"idenfy": idenfy.model_copy(update={"webhook_signing_key": key})}
    )


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
    """uvloop and httptools (``uvicorn[standard]``) behind the edge's limits, no access log.

    Every server (provider, worker, simulator, demo app) is configured here, so each gets the
    ``server:`` edge limits; the connection cap stays below this process' file descriptors.
    """
    server = settings.server
    limits = http_edge.EdgeLimits(
        header_timeout=server.header_timeout,
        body_timeout=server.body_timeout,
        max_header_bytes=server.max_header_bytes,
        max_request_line_bytes=server.max_request_line_bytes,
        max_connections=http_edge.connection_cap(server.max_connections,
                                                 http_edge.raise_fd_limit()),
    )  # fmt: skip
    return uvicorn.Config(
        app, host=host, port=port, log_level=server.log_level, access_log=False,
        log_config=None, proxy_headers=False, server_header=False, loop="uvloop",
        http=http_edge.protocol_class(limits), timeout_keep_alive=server.keep_alive_timeout,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        ws="none",  # no WebSocket route anywhere: an upgrade would only leave the edge's watch
    )  # fmt: skip


def _server(app: ASGIApp, host: str, port: int, settings: Settings) -> uvicorn.Server:
    return _Server(uvicorn_config(app, host, port, settings))


def simulator_server(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    own_signals: bool = False,
) -> uvicorn.Server:
    from .simulator import create_simulator_app

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


def cmd_serve(args: argparse.Namespace, *, demo: bool = False) -> int:
    settings = with_simulator_key(load_settings(args.config))
    server = settings.server
    logs.configure(server.log_format, server.log_level)
    asyncio.run(preflight(settings))  # a bad key or no Redis: one line and an exit code
    host, port = args.host or server.host, args.port if args.port is not None else server.port
    workers = getattr(args, "workers", None) or server.workers
    if workers > 1 and not demo:
        from .workers import Supervisor, bind

        update = {"host": host, "port": port}
        settings = settings.model_copy(update={"server": server.model_copy(update=update)})
        return Supervisor(settings, bind(host, port), workers).run()
    app = create_app(settings)
    servers = [_server(app, host, port, settings)]
    if settings.idenfy.mode == "simulator":
        servers.append(simulator_server(settings))
    if demo:
        servers.append(demo_server(settings, args.demo_port))
    try:
        run_servers(servers)
    except SystemExit:
        # uvicorn exits when the lifespan fails; its StartupError line is already logged.
        failure = getattr(app.state, "startup_error", None)
        if failure is None:
            raise
        return int(failure.exit_code)
    return 0


def run_servers(servers: list[uvicorn.Server]) -> None:
    """Serve on uvloop (``uvicorn.Server.serve`` leaves the loop to its caller)."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve_all(servers))


def demo_server(settings: Settings, port: int) -> uvicorn.Server:
    from .demo.app import create_demo_app

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
    return _server(app, settings.server.host, port, settings)


def cmd_simulator(args: argparse.Namespace) -> int:
    """The simulator alone, for a provider (or several) running elsewhere in ``live`` mode."""
    settings = load_settings(args.config)
    logs.configure(settings.server.log_format, settings.server.log_level)
    if settings.idenfy.webhook_signing_key is None:
        print("warning: idenfy.webhook_signing_key is not set: webhooks are sent unsigned",
              file=sys.stderr)  # fmt: skip
    run_servers([simulator_server(settings, host=args.host, port=args.port)])
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    errors = checks.load_errors(settings)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 2
    warnings = checks.unsafe_settings(settings)
    for warning in warnings:
        print(f"warning: {warning}")
    print(f"{args.file}: OK ({len(settings.clients)} client(s), mode {settings.idenfy.mode})")
    return 1 if warnings and args.strict else 0


async def _subjects(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    embedded = None
    url = None
    if settings.redis.url == "embedded":
        embedded = EmbeddedRedis(settings.redis.data_dir)
        await asyncio.to_thread(embedded.start)
        url = embedded.url
    redis = connect(settings.redis, url)
    store = Store(redis, settings.redis.key_prefix)
    try:
        return await _subject_action(args, store)
    except StoreUnavailable:
        raise unreachable(settings.redis.url) from None
    finally:
        await redis.aclose()
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)


async def _subject_action(args: argparse.Namespace, store: Store) -> int:
    if args.action == "set":
        await store.set_subject(args.subject, args.scan_ref)
        print(f"{args.subject} -> {args.scan_ref}")
    elif args.action == "get":
        found = await store.get_subject(args.subject)
        print(found if found is not None else f"{args.subject}: not set")
        return 0 if found is not None else 1
    else:
        deleted = await store.delete_subject(args.subject)
        print(f"{args.subject}: {'deleted' if deleted else 'not set'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="idenfy-stepup", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the provider"), ("demo", "provider + demo app")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--config", required=True, help="YAML settings file")
        s.add_argument("--host")
        s.add_argument("--port", type=int)
        if name == "demo":
            s.add_argument("--demo-port", type=int, default=9000)
        else:
            s.add_argument("--workers", type=int, help="worker processes (server.workers)")
    m = sub.add_parser("simulator", help="run only the iDenfy simulator (idenfy.simulator)")
    m.add_argument("--config", required=True, help="YAML settings file")
    m.add_argument("--host")
    m.add_argument("--port", type=int)
    c = sub.add_parser("check-config", help="validate a settings file and warn about risks")
    c.add_argument("file")
    c.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    s = sub.add_parser("subjects", help="map subjects to iDenfy scanRefs in Redis")
    s.add_argument("action", choices=["set", "get", "delete"])
    s.add_argument("subject")
    s.add_argument("scan_ref", nargs="?")
    s.add_argument("--config", required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return cmd_check_config(args)
        if args.command == "subjects":
            if args.action == "set" and not args.scan_ref:
                parser().error("subjects set needs SUBJECT SCANREF")
            return asyncio.run(_subjects(args))
        if args.command == "simulator":
            return cmd_simulator(args)
        if getattr(args, "workers", None) is not None and not 1 <= args.workers <= 64:
            parser().error("--workers must be between 1 and 64")
        return cmd_serve(args, demo=args.command == "demo")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
