"""Responses every endpoint shares: redirects to the RP, error pages, JSON errors."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..audit import events as audit
from ..boot.runtime import Runtime
from ..observe.metrics import OUTCOMES
from ..stepup.outcomes import Outcome
from ..stepup.records import StepUpRequest

log = logging.getLogger("idenfy_stepup")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def add_query(uri: str, params: list[tuple[str, str]]) -> str:
    """Append parameters, keeping any query the registered redirect_uri has (RFC 6749 §3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + params
    return urlunsplit(parts._replace(query=urlencode(query)))


def redirect_to_client(
    rt: Runtime,
    client_id: str,
    redirect_uri: str,
    params: list[tuple[str, str]],
    state: str | None,
    *,
    error: bool,
) -> Response:
    """303 to the RP with ``state`` and, RFC 9207 §2, ``iss`` (switchable per client on errors)."""
    if state is not None:
        params = [*params, ("state", state)]
    client = rt.settings.client(client_id)
    if not error or client is None or client.iss_on_error:
        params = [*params, ("iss", rt.settings.issuer)]
    return RedirectResponse(add_query(redirect_uri, params), status_code=303, headers=NO_STORE)


def error_params(outcome: Outcome) -> list[tuple[str, str]]:
    """The error triple of an outcome, as the RP receives it."""
    return [
        ("error", outcome.error),
        ("error_description", outcome.description),
        ("stepup_error", outcome.stepup_error),
    ]


def outcome_redirect(rt: Runtime, req: StepUpRequest, outcome: Outcome) -> Response:
    log_outcome(req, outcome.stepup_error, outcome.error, row=outcome.name)
    params = error_params(outcome)
    return redirect_to_client(rt, req.client_id, req.redirect_uri, params, req.state, error=True)


def log_outcome(
    req: StepUpRequest, result: str, error: str | None = None, *, row: str | None = None
) -> None:
    """One line per step-up outcome: who, which client, what — never secrets or photos —,
    its count (client and level are configured names, never the subject) and its audit event.
    ``row``: the outcome table's row of a refusal (its audit event names it)."""
    OUTCOMES.labels(req.client_id, req.acr, result).inc()
    log.info(
        "step-up %s",
        result,
        extra={
            "event": "stepup.outcome",
            "result": result,
            "error": error,
            "client_id": req.client_id,
            "subject": req.subject,
            "acr": req.acr,
            # This step-up's id, as the id_token's txn: the RP's record of what was approved
            # and this line name the same face check.
            "txn": req.txn or None,
        },
    )
    audit.emit(
        audit.STEPUP_ENDED,
        req.txn,
        result=result,
        outcome=row,
        error=error,
        **audit.who(req),
    )


def error_page(
    rt: Runtime,
    status_code: int,
    title: str,
    message: str,
    detail: str | None = None,
    *,
    lang: str | None = None,
) -> Response:
    """The error page in ``lang`` (default: ``ui.default_language``). ``title`` and ``message``
    are English source texts (``N_``-marked, or an outcome row's): translated when the catalogue
    has them, shown as given otherwise (an operator's ``errors:`` text)."""
    pages = rt.templates
    html = (
        pages.get(lang)
        .get_template("error.html")
        .render(
            title=pages.gettext(lang, title),
            message=pages.gettext(lang, message),
            status_code=status_code,
            detail=detail,
        )
    )
    return HTMLResponse(html, status_code=status_code, headers=NO_STORE)


def json_error(status_code: int, error: str, description: str, **headers: str) -> Response:
    body: dict[str, Any] = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status_code, headers={**NO_STORE, **headers})


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept
