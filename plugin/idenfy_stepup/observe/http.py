"""``Observed``: the outermost ASGI middleware. For every HTTP request it keeps the request
id, the trace context, a span, the HTTP metrics and one access-log line.

Labels and the log line carry the route *template* (``/challenge/{token}``), found from the
endpoint the router chose, never the path: a path holds tokens, and an unknown path would be a
new time series. Requests the router did not match are ``other``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..stepup.limits import identity_of
from ..web.addresses import Network
from . import tracing
from .metrics import HTTP_REQUEST_SECONDS, HTTP_REQUESTS
from .requests import new_trace_id, request_id, trace_id_of, trace_parent

access_log = logging.getLogger("idenfy_stepup.access")

OTHER = "other"
# Methods are labels too: anything else a client sends is "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Set in the scope by the management listener: its probes are neither counted nor logged.
MANAGEMENT = "idenfy_stepup.management"


def route_templates(routes: Iterable[BaseRoute]) -> dict[int, str]:
    """Each endpoint's route template, keyed by the endpoint's id (what the router sets as
    ``scope["endpoint"]``)."""
    templates: dict[int, str] = {}
    for route in routes:
        if isinstance(route, Route):
            templates[id(route.endpoint)] = route.path.replace(":str}", "}")
        elif isinstance(route, Mount):
            templates[id(route.app)] = route.path + "/{path}"
    return templates


# The labelled children of each route, method and status (bounded sets): looked up once, not
# through ``labels()`` (validation and a lock) on every request.
@functools.cache
def _counted(route: str, method: str, status: int) -> Counter:
    return HTTP_REQUESTS.labels(route, method, str(status))


@functools.cache
def _timed(route: str, method: str) -> Histogram:
    return HTTP_REQUEST_SECONDS.labels(route, method)


class Observed:
    def __init__(
        self,
        app: ASGIApp,
        routes: Iterable[BaseRoute],
        proxies: tuple[Network, ...],
        access: bool,
    ) -> None:
        self.app = app
        self.templates = route_templates(routes)
        self.proxies = proxies
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(MANAGEMENT):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = Request(scope).headers
        rid = request_id(headers.get("x-request-id"))
        parent = trace_parent(headers.get("traceparent"))
        method = scope["method"] if scope["method"] in METHODS else OTHER
        status = 500  # unless a response starts: an exception the app did not answer
        echo = (b"x-request-id", rid.encode())

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), echo]
            await send(message)

        with tracing.span(f"{method} request", kind="server", traceparent=parent) as current:
            try:
                await self.app(scope, receive, send_observed)
            finally:
                route = self.templates.get(id(scope.get("endpoint")), OTHER)
                seconds = time.perf_counter() - start
                _counted(route, method, status).inc()
                _timed(route, method).observe(seconds)
                trace = tracing.trace_id(current)
                if current is not None:
                    current.update_name(f"{method} {route}")
                    current.set_attribute("http.route", route)
                    current.set_attribute("http.request.method", method)
                    current.set_attribute("http.response.status_code", status)
                    current.set_attribute("stepup.request_id", rid)
                if self.access:
                    if trace is None:
                        trace = trace_id_of(parent) if parent else new_trace_id()
                    forwarded = headers.get("x-forwarded-for", "") if self.proxies else ""
                    self._log(scope, forwarded, method, route, status, seconds, rid, trace)

    def _log(
        self,
        scope: Scope,
        forwarded: str,
        method: str,
        route: str,
        status: int,
        seconds: float,
        rid: str,
        trace: str,
    ) -> None:
        peer = scope.get("client")
        client = identity_of(peer[0] if peer else "", forwarded, self.proxies)
        access_log.info(
            "%s %s %d",
            method,
            route,
            status,
            extra={
                "event": "http.access",
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "request_id": rid,
                "trace_id": trace,
                "client": client,
            },
        )
