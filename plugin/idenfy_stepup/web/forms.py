"""Reading request bodies: a size limit before reading, form decoding, one error type."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

log = logging.getLogger("idenfy_stepup")


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
