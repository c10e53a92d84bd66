"""Northwind Bank: a demo relying party whose €500 transfer needs a step-up face check."""

from __future__ import annotations

import json
import logging
import warnings
from datetime import UTC, datetime
from typing import Any

import httpx
from authlib.deprecate import AuthlibDeprecationWarning
from authlib.integrations.base_client import MismatchingStateError, OAuthError
from jinja2 import PackageLoader
from joserfc.errors import JoseError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..web.templating import environment

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
STATE_MISMATCH = "This answer matches no transfer started in this browser (or was used)."
UNREACHABLE = "Northwind Bank could not complete the check with the verification service."
SESSION_COOKIE = "northwind_session"  # cookies ignore ports: keep clear of the provider's names
# The transfer the person is asked to approve, as an RFC 9396 authorization detail of the type
# config/demo.yaml configures (payment_initiation); the id_token must carry it back unchanged.
TRANSFER: dict[str, Any] = {
    "type": "payment_initiation",
    "instructedAmount": {"amount": "500.00", "currency": "EUR"},
    "creditorName": "ACME Ltd",
    "creditorAccount": {"iban": "DE89370400440532013000"},
    "remittanceInformationUnstructured": "Invoice 2026-0042",
}
TRANSFER_TEXT = "Pay 500.00 EUR to ACME Ltd"
MISMATCH = (
    "The face check approved something other than this transfer: the ID token's "
    "authorization_details do not match it, so no money was sent."
)
# What a failed exchange with the provider looks like; anything else is logged as a bug.
PROVIDER_FAILURES = (OAuthError, JoseError, httpx.HTTPError, ValueError, KeyError)


def create_demo_app(
    *,
    issuer: str,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    subject: str = "alice",
    acr_values: str | None = None,
    session_secret: str,
    http_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The demo RP. Discovery is fetched lazily, on the first "Confirm transfer".

    ``http_transport`` replaces the network edge of every httpx client authlib opens (tests
    pass an ``ASGITransport`` or ``MockTransport``; authlib closes its clients after each call,
    so the transport must stay usable after ``aclose``).
    """
    client_kwargs: dict[str, Any] = {
        "scope": "openid",
        "code_challenge_method": "S256",
        "token_endpoint_auth_method": "client_secret_basic",
        "timeout": TIMEOUT,
    }
    if http_transport is not None:
        client_kwargs["transport"] = http_transport
    oauth = _oauth_registry()
    stepup = oauth.register(
        name="stepup",
        server_metadata_url=f"{issuer}/.well-known/openid-configuration",
        client_id=client_id,
        client_secret=client_secret,
        client_kwargs=client_kwargs,
    )
    pages = _Pages(stepup, issuer, client_id, redirect_uri, subject, acr_values)
    routes = [
        Route("/", pages.index, name="index"),
        Route("/transfer", pages.transfer, methods=["POST"], name="transfer"),
        Route("/callback", pages.callback, name="callback"),
        Mount("/static", StaticFiles(packages=[("idenfy_stepup.demo", "static")]), name="static"),
    ]
    session = Middleware(
        SessionMiddleware,
        secret_key=session_secret,
        session_cookie=SESSION_COOKIE,
        max_age=1800,
        same_site="lax",  # the callback is a top-level GET from the provider's origin
        https_only=redirect_uri.startswith("https:"),
    )
    return Starlette(routes=routes, middleware=[session])


def _oauth_registry() -> Any:
    # authlib 1.9 prefers the httpx2 fork and warns once when it falls back to httpx, which this
    # project pins; that import-time warning says nothing about our code, so it is silenced here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The httpx module", AuthlibDeprecationWarning)
        from authlib.integrations.starlette_client import OAuth
    return OAuth()


class _Pages:
    """The three pages; ``stepup`` is authlib's untyped ``StarletteOAuth2App``."""

    def __init__(
        self,
        stepup: Any,
        issuer: str,
        client_id: str,
        redirect_uri: str,
        subject: str,
        acr_values: str | None,
    ) -> None:
        self.stepup, self.issuer, self.client_id = stepup, issuer, client_id
        self.redirect_uri, self.subject, self.acr_values = redirect_uri, subject, acr_values
        self.env = environment(PackageLoader("idenfy_stepup.demo", "templates"))

    async def index(self, request: Request) -> Response:
        return self._render(request, "index.html")

    async def transfer(self, request: Request) -> Response:
        extra = {"acr_values": self.acr_values} if self.acr_values else {}
        try:
            response: Response = await self.stepup.authorize_redirect(
                request,
                self.redirect_uri,
                login_hint=self.subject,
                authorization_details=json.dumps([TRANSFER], separators=(",", ":")),
                **extra,
            )
        except Exception as exc:
            return self._failed(request, exc)
        return response

    async def callback(self, request: Request) -> Response:
        query = request.query_params
        try:
            metadata: dict[str, Any] = await self.stepup.load_server_metadata()
            self._check_iss(request, metadata, on_error="error" in query)
            if "error" in query:
                await self._consume_state(request)
                return self._denied(request)
            if "code" not in query:
                return self._error(request, 400, "invalid_request", "No code and no error.")
            token = await self.stepup.authorize_access_token(
                request, claims_options=self._claims_options()
            )
            if "userinfo" not in token:
                raise OAuthError("invalid_id_token", "The token response carried no ID token.")
        except MismatchingStateError:
            return self._error(request, 400, "invalid_state", STATE_MISMATCH)
        except Exception as exc:
            return self._failed(request, exc)
        claims = dict(token["userinfo"])
        if not _approved_this_transfer(claims):
            return self._error(request, 403, "transaction_mismatch", MISMATCH)
        return self._render(
            request,
            "success.html",
            claims=_readable(claims),
            approved=TRANSFER_TEXT,
            txn=claims["txn"],
        )

    async def _consume_state(self, request: Request) -> None:
        """Error responses carry ``state`` too (RFC 6749 §4.1.2.1): check it, then forget it."""
        state = request.query_params.get("state", "")
        if not state or not await self.stepup.framework.get_state_data(request.session, state):
            raise MismatchingStateError()
        await self.stepup.framework.clear_state_data(request.session, state)

    def _check_iss(self, request: Request, metadata: dict[str, Any], *, on_error: bool) -> None:
        """RFC 9207 §2.4 (authlib's client does not): a present ``iss`` must be ours; a missing
        one is refused on success when advertised. The provider may omit it on errors for some
        gateways (``clients[].iss_on_error``, docs/architecture.md), so a missing ``iss`` on an
        error response is accepted."""
        iss = request.query_params.get("iss")
        advertised = metadata.get("authorization_response_iss_parameter_supported") is True
        if iss is None and (on_error or not advertised):
            return
        if iss != self.issuer:
            raise OAuthError("invalid_issuer", "The authorization response names another issuer.")

    def _claims_options(self) -> dict[str, Any]:
        # authlib checks the signature and nonce but not aud; sub matters because the subject
        # came from a plain login_hint (docs/architecture.md: "then the RP must check `sub`").
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": self.issuer},
            "aud": {"essential": True, "value": self.client_id},
            "sub": {"essential": True, "value": self.subject},
        }
        if self.acr_values:
            options["acr"] = {"essential": True, "values": self.acr_values.split()}
        return options

    def _denied(self, request: Request) -> Response:
        q = request.query_params
        fields = (q.get("error", ""), q.get("error_description", ""), q.get("stepup_error", ""))
        return self._error(request, 200, *fields)

    def _failed(self, request: Request, exc: Exception) -> Response:
        """A 502 page naming what went wrong; the demo shows which check failed on purpose."""
        if not isinstance(exc, PROVIDER_FAILURES):
            log.exception("demo RP: unexpected failure")
            return self._error(request, 502, "server_error", UNREACHABLE)
        log.warning("demo RP: provider exchange failed: %s: %s", type(exc).__name__, exc)
        if isinstance(exc, OAuthError):
            return self._error(request, 502, exc.error, exc.description or UNREACHABLE)
        if isinstance(exc, JoseError):
            text = f"The ID token did not pass the bank's checks: {exc.description}"
            return self._error(request, 502, "invalid_id_token", text)
        return self._error(request, 502, "provider_unreachable", UNREACHABLE)

    def _error(
        self, request: Request, status: int, error: str, description: str, stepup_error: str = ""
    ) -> Response:
        ctx = {"error": error, "error_description": description, "stepup_error": stepup_error}
        return self._render(request, "error.html", status=status, **ctx)

    def _render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        html = self.env.get_template(name).render(
            css=request.url_for("static", path="demo.css"),
            icon=request.url_for("static", path="favicon.svg"),
            home=request.url_for("index"),
            transfer_url=request.url_for("transfer"),
            subject=self.subject,
            **ctx,
        )
        return HTMLResponse(html, status_code=status)


def _approved_this_transfer(claims: dict[str, Any]) -> bool:
    """Dynamic linking (PSD2 RTS Art. 5): the face check must be for this very transfer, and
    name its step-up (``txn``, kept with the payment). Anything else, even one changed cent,
    is no approval."""
    txn = claims.get("txn")
    return claims.get("authorization_details") == [TRANSFER] and isinstance(txn, str) and bool(txn)


def _readable(claims: dict[str, Any]) -> list[tuple[str, str]]:
    """The claims a newcomer should look at, as (name, text) rows."""
    rows = []
    for name in ("sub", "acr", "amr", "auth_time", "txn", "iss", "aud", "nonce"):
        value = claims.get(name)
        if isinstance(value, list):
            text = ", ".join(str(v) for v in value)
        elif name == "auth_time" and isinstance(value, int | float):
            when = datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            text = f"{value} ({when})"
        else:
            text = "(absent)" if value is None else str(value)
        rows.append((name, text))
    return rows
