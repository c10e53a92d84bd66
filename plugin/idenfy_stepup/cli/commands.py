"""``idenfy-stepup``: serve | demo | simulator | check-config | keys | subjects | locks |
challenge | limits."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from importlib import metadata

import uvicorn
from starlette.applications import Starlette

from .. import __version__
from ..app import create_app
from ..boot.preflight import preflight
from ..boot.startup import StartupError
from ..settings import ConfigError, Settings, lint, load_settings
from ..store.embedded import embedded_redis
from . import logs, operator
from .reloading import refused, reread, with_simulator_key
from .serving import (
    CurrentApp,
    LoopServer,
    Reloadable,
    bind,
    demo_server,
    management_server,
    management_socket,
    run_servers,
    server_for,
    simulator_server,
)


def cmd_serve(args: argparse.Namespace, *, demo: bool = False) -> int:
    settings = with_simulator_key(load_settings(args.config))
    server = settings.server
    logs.configure(server.log_format, server.log_level)
    asyncio.run(preflight(settings))  # a bad key or no Redis: one line and an exit code
    host, port = args.host or server.host, args.port if args.port is not None else server.port
    workers = getattr(args, "workers", None) or server.workers
    # The address actually served is what a reload keeps (reloading.py).
    update = {"host": host, "port": port, "workers": 1 if demo else workers}
    settings = settings.model_copy(update={"server": server.model_copy(update=update)})
    # Bound before anything starts, so a taken management port is one line and an exit code.
    manage = management_socket(settings)
    if workers > 1 and not demo:
        from .workers import Supervisor

        return Supervisor(settings, bind(host, port), workers, args.config, manage).run()
    redis = settings.redis
    # Started here, not by the app's lifespan, so that a reloaded app shares it and the
    # retired app's shutdown does not stop it.
    with embedded_redis(redis.url, redis.data_dir) as embedded_url:
        app = create_app(settings, redis_url=embedded_url)
        others: list[uvicorn.Server] = []
        if settings.idenfy.mode == "simulator":
            others.append(simulator_server(settings))
        current = CurrentApp(app)
        if manage is not None:
            others.append(management_server(settings, manage, current))
        try:
            if demo:
                # The demo bank holds the provider's client settings: SIGHUP is logged, ignored.
                provider = server_for(app, host, port, settings)
                run_servers([provider, *others, demo_server(settings, args.demo_port)])
            else:
                reloadable = _reloadable(args.config, settings, app, embedded_url)
                reloadable.swapped = current.swap
                run_servers(others, reloadable)
        except SystemExit:
            # uvicorn exits when the lifespan fails; its StartupError line is already logged.
            failure = getattr(app.state, "startup_error", None)
            if failure is None:
                raise
            return int(failure.exit_code)
    return 0


def _reloadable(path: str, settings: Settings, app: Starlette, redis_url: str | None) -> Reloadable:
    """The single-process provider, and how SIGHUP builds its successor."""
    host, port = settings.server.host, settings.server.port
    current = settings

    async def rebuild() -> LoopServer | None:
        nonlocal current
        try:
            new = await reread(path, current)
        except Exception as exc:  # any failure leaves the running app as it is
            refused(exc)
            return None
        current = new
        return server_for(create_app(new, redis_url=redis_url), host, port, new)

    return Reloadable(server_for(app, host, port, settings), bind(host, port), rebuild)


def cmd_simulator(args: argparse.Namespace) -> int:
    """The simulator alone, for a provider (or several) running elsewhere in ``live`` mode."""
    settings = load_settings(args.config)
    logs.configure(settings.server.log_format, settings.server.log_level)
    if settings.idenfy.webhook_signing_key is None:
        print(
            "warning: idenfy.webhook_signing_key is not set: webhooks are sent unsigned",
            file=sys.stderr,
        )
    run_servers([simulator_server(settings, host=args.host, port=args.port)])
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.file)
    errors = lint.load_errors(settings)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        return 2
    warnings = lint.unsafe_settings(settings)
    for warning in warnings:
        print(f"warning: {warning}")
    print(f"{args.file}: OK ({len(settings.clients)} client(s), mode {settings.idenfy.mode})")
    return 1 if warnings and args.strict else 0


def installed_version() -> str:
    """The installed distribution's version (what pip and bug reports see); the package's own
    ``__version__`` only when it runs from a source tree that was never installed."""
    try:
        return metadata.version("idenfy-stepup")
    except metadata.PackageNotFoundError:
        return __version__


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="idenfy-stepup", description=__doc__)
    p.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
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
    operator.add_commands(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "check-config":
            return cmd_check_config(args)
        if (args.command, getattr(args, "action", None)) in operator.ACTIONS:
            problem = operator.arguments_problem(args)
            if problem is not None:
                parser().error(problem)
            return operator.main(args)
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
