"""The management listener: ``/metrics``, ``/healthz`` and ``/readyz`` on a port of their own
(``server.management``, 127.0.0.1:9000 by default, as Keycloak's), apart from the OIDC port.

``/healthz`` and ``/readyz`` are handed to the provider app itself (the very endpoints of the
public port, so both ports answer the same readiness); ``/metrics`` is Prometheus' text format,
summed over every worker under ``serve --workers N``. The provider app is looked up at each
request, so a SIGHUP reload's successor answers as soon as it has replaced the old one.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from . import multiproc
from .http import MANAGEMENT

PROBES = ("/healthz", "/readyz")


def metrics_text() -> bytes:
    registry = multiproc.registry()
    return generate_latest(REGISTRY if registry is None else registry)


class ManagementApp:
    """ASGI app of the management port; ``provider()`` gives the provider app serving now."""

    def __init__(self, provider: Callable[[], ASGIApp]) -> None:
        self.provider = provider

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _no_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            response: Response = JSONResponse({"error": "method not allowed"}, status_code=405)
        elif path == "/metrics":
            response = Response(metrics_text(), media_type=CONTENT_TYPE_LATEST)
        elif path in PROBES:
            app = self.provider()
            if path == "/readyz" and not hasattr(getattr(app, "state", None), "runtime"):
                # The provider's lifespan has not finished starting: not ready, not an error.
                response = JSONResponse({"status": "starting"}, status_code=503)
            else:
                await app({**scope, MANAGEMENT: True}, receive, send)
                return
        else:
            response = JSONResponse({"error": "not found"}, status_code=404)
        response.headers["Cache-Control"] = "no-store"
        await response(scope, receive, send)


async def _no_lifespan(receive: Receive, send: Send) -> None:
    """The provider app's own lifespan runs in its server; this one has nothing to start."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
