"""``create_app(settings)``: the Starlette app; its lifespan owns Redis and the vendor edge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .audit import events as audit
from .audit.sweep import sweep_forever
from .boot.runtime import STATIC, Runtime, build_runtime
from .boot.startup import StartupError, with_redis
from .endpoints import authorize, challenge, discovery, events, par, token, webhook
from .i18n.messages import N_
from .idenfy.http11 import Http11Fetch
from .idenfy.transport import VendorFetch
from .observe import tracing
from .observe.http import Observed
from .observe.vendor import MeteredFetch
from .oidc.keys import KeyLoadError
from .settings import Settings
from .store import Notifier, Store, open_backend
from .store.embedded import embedded_redis_async
from .web.addresses import networks
from .web.branding import STATIC_PREFIX, static_app
from .web.headers import SecurityHeaders, security_headers
from .web.languages import page_language
from .web.push_lane import PushLane
from .web.responses import error_page, json_error, wants_json

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("idenfy_stepup")
TOKEN = "{token:str}"


def routes(settings: Settings) -> list[Route | Mount]:
    c = f"/challenge/{TOKEN}"
    return [
        Route("/.well-known/openid-configuration", discovery.openid_configuration),
        Route("/jwks", discovery.jwks),
        Route("/authorize", authorize.authorize, methods=["GET", "POST"]),
        Route("/token", token.token, methods=["POST"]),
        # Every method reaches the endpoint, which answers all but POST with a JSON 405.
        Route("/par", par.par, methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
        Route("/userinfo", discovery.userinfo, methods=["GET", "POST"]),
        Route("/webhooks/idenfy", webhook.idenfy_webhook, methods=["POST"]),
        Route(c, challenge.page),
        Route(f"{c}/events", events.events),
        Route(f"{c}/finish", challenge.finish),
        Route(f"{c}/retry", challenge.retry, methods=["POST"]),
        Route(f"{c}/give-up", challenge.give_up, methods=["POST"]),
        Route(f"{c}/cancel", challenge.cancel, methods=["POST"]),
        Route("/healthz", discovery.healthz),
        Route("/readyz", discovery.readyz),
        # The operator's static files (ui.static_dir) first, ours for what they lack.
        Mount(STATIC_PREFIX, static_app(settings.ui, STATIC), name="static"),
    ]


def create_app(
    settings: Settings,
    *,
    redis_url: str | None = None,
    vendor_fetch: VendorFetch | None = None,
    span_exporter: SpanExporter | None = None,
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            async with _running(settings, redis_url, vendor_fetch) as rt:
                app.state.runtime = rt
                _say_limits_off(settings)
                sweeping = asyncio.create_task(sweep_forever(rt), name="stepup-audit-sweep")
                try:
                    yield
                finally:
                    sweeping.cancel()
                    await asyncio.gather(sweeping, return_exceptions=True)
        except StartupError as exc:
            app.state.startup_error = exc  # for OneLineStartupFailure and the CLI's exit code
            raise

    tracing.install(settings.tracing, span_exporter)  # the exporter: tests' in-memory one
    app = Starlette(
        routes=routes(settings),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    headers = security_headers(settings)
    app.add_middleware(SecurityHeaders, headers=headers)
    app.add_middleware(OneLineStartupFailure, state=app.state)
    # Push streams, held for minutes by the thousand, skip the layers above (web/push_lane.py).
    app.add_middleware(PushLane, endpoint=events.events, headers=headers)
    # Outermost: it times the whole answer and sees the status every other layer settled on.
    app.add_middleware(
        Observed,
        routes=app.routes,
        proxies=networks(settings.server.trusted_proxies),
        access=settings.server.access_log,
    )
    # authlib logs issued tokens and client credentials at DEBUG (no secrets in logs): whatever
    # logging set-up embeds this app, those lines never reach a handler.
    logging.getLogger("authlib").setLevel(logging.INFO)
    # The audit stream (docs/audit-events.md) follows this app's settings, as logging is set
    # per process: one app per process (a reload's new app takes over).
    audit.configure(enabled=settings.audit.enabled, addresses=settings.audit.addresses)
    return app


def _say_limits_off(settings: Settings) -> None:
    off = settings.limits_defaulted_off()
    if off:
        log.warning(
            "simulator mode: abuse limits not set in the settings file are off: %s",
            ", ".join(off),
            extra={"event": "server.limits_off"},
        )


@contextlib.asynccontextmanager
async def _running(
    settings: Settings, redis_url: str | None, fetch: VendorFetch | None
) -> AsyncIterator[Runtime]:
    own_redis = settings.redis.url if redis_url is None else ""
    async with (
        embedded_redis_async(own_redis, settings.redis.data_dir) as embedded_url,
        _connected(settings, redis_url or embedded_url, fetch) as rt,
    ):
        yield rt


@contextlib.asynccontextmanager
async def _connected(
    settings: Settings, redis_url: str | None, fetch: VendorFetch | None
) -> AsyncIterator[Runtime]:
    store = Store(open_backend(settings.redis, redis_url), settings.redis.key_prefix)
    notifier = Notifier(store.backend, store.channel)
    own: Http11Fetch | None = None  # the vendor edge, unless the caller brought one
    if fetch is None:
        fetch = own = Http11Fetch()
    fetch = MeteredFetch(fetch)  # counted and timed at the edge, whatever sends the request
    watch: asyncio.Task[None] | None = None
    rt: Runtime | None = None
    try:
        rt = await _build_with_retry(settings, store, notifier, fetch)
        await notifier.start()
        if rt.shared is not None and rt.shared.held:
            watch = asyncio.create_task(rt.shared.watch())
        yield rt
    finally:
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        await notifier.stop()
        if rt is not None:
            await rt.vendor.aclose()  # a readiness probe in flight
        if own is not None:
            await own.aclose()
        await store.aclose()


async def _build_with_retry(
    settings: Settings, store: Store, notifier: Notifier, vendor: VendorFetch
) -> Runtime:
    """Keys and secrets live in Redis: wait for it a little at start-up, then give up loudly
    with one line naming the setting (StartupError)."""
    try:
        return await with_redis(
            lambda: build_runtime(settings, store, notifier, vendor),
            settings.redis.url,
            lambda: log.warning("waiting for Redis at start-up"),
        )
    except KeyLoadError as exc:
        raise StartupError(str(exc)) from None


class OneLineStartupFailure:
    """A lifespan that fails with StartupError reports its one line, not a traceback.

    Starlette sends the formatted traceback as the failure message, which uvicorn logs; this
    replaces it with the error's text. Anything else still reports its traceback.
    """

    def __init__(self, app: ASGIApp, state: State) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_clean(message: Message) -> None:
            failure = getattr(self.state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and failure is not None:
                message = {**message, "message": str(failure)}
            await send(message)

        await self.app(scope, receive, send_clean)


# An HTTP error's page: its title, and the sentence under it.
_HTTP_ERRORS = {
    404: (N_("Not found"), N_("Not found.")),
    405: (N_("Method not allowed"), N_("Method not allowed.")),
}
_REQUEST_FAILED = (N_("Request failed"), N_("Request failed."))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title, message = _HTTP_ERRORS.get(exc.status_code, _REQUEST_FAILED)
    if wants_json(request) or not hasattr(request.app.state, "runtime"):
        return json_error(exc.status_code, "invalid_request", title)
    rt = request.app.state.runtime
    return error_page(rt, exc.status_code, title, message, lang=_language(rt, request))


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    message = N_("Something went wrong on our side. Try again from the application.")
    if wants_json(request) or not hasattr(request.app.state, "runtime"):
        return json_error(500, "server_error", "Unexpected error.")
    rt = request.app.state.runtime
    lang = _language(rt, request)
    return error_page(rt, 500, N_("Unexpected error"), message, "server_error", lang=lang)


def _language(rt: Runtime, request: Request) -> str:
    """An error page's language: the query's ``ui_locales`` (Starlette's lenient reading: the
    query may be what is wrong), then Accept-Language."""
    values = request.query_params.getlist("ui_locales")
    return page_language(rt, request, values[0] if len(values) == 1 else None)
