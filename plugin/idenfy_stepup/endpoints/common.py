"""Responses every endpoint shares: redirects to the RP, error pages, JSON errors, form reading."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..idenfy.outcomes import Outcome
from ..runtime import Runtime
from ..stepup import StepUpRequest

log = logging.getLogger("idenfy_stepup")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class BadForm(Exception):
    """The request is not one we can read (too large, wrong type, not UTF-8, repeated
    parameters). ``params``: what was read, when it was (repeated parameters)."""

    def __init__(
        self, status_code: int, description: str, params: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(description)
        self.status_code = status_code
        self.description = description
        self.params = params


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
    log_outcome(req, outcome.stepup_error, outcome.error)
    params = error_params(outcome)
    return redirect_to_client(rt, req.client_id, req.redirect_uri, params, req.state, error=True)


def log_outcome(req: StepUpRequest, result: str, error: str | None = None) -> None:
    """One line per step-up outcome: who, which client, what — never secrets or photos."""
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
        },
    )


def error_page(
    rt: Runtime, status_code: int, title: str, message: str, detail: str | None = None
) -> Response:
    html = rt.templates.get_template("error.html").render(
        title=title, message=message, status_code=status_code, detail=detail
    )
    return HTMLResponse(html, status_code=status_code, headers=NO_STORE)


def json_error(status_code: int, error: str, description: str, **headers: str) -> Response:
    body: dict[str, Any] = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=status_code, headers={**NO_STORE, **headers})


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes before reading them all (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise BadForm(413, "The request body is too large.")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BadForm(413, "The request body is too large.")
            chunks.append(chunk)
    except ClientDisconnect:
        # The client left (or the edge cut off a stalled body): nobody hears the answer, and
        # it is no fault of ours, so no error line. The HTTPException handler answers quietly.
        log.debug("client closed the connection mid-body", extra={"event": "http.client_gone"})
        raise HTTPException(400, "The client closed the connection mid-body.") from None
    return b"".join(chunks)


async def read_form(request: Request, limit: int) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body as a multi-dict (RFC 6749 §4.1.3)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise BadForm(400, "The body must be application/x-www-form-urlencoded.")
    raw = await read_body(request, limit)
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadForm(400, "The body is not valid UTF-8 form data.") from None
    form: dict[str, list[str]] = {}
    for key, value in pairs:
        form.setdefault(key, []).append(value)
    return form
