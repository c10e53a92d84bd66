"""``/authorize`` (GET and POST): validate, pick the subject and level, open a face challenge.

OIDC Core §3.1.2. Until client_id and redirect_uri are validated every error is an error page;
after that every refusal is a redirect with ``error``, ``stepup_error``, ``state`` and ``iss``.
Every refusal, page or redirect, is a row of the outcome table looked up by name
(``rt.outcomes``), so an operator's ``errors:`` override applies to it. The checks made once
the client is validated, and their order, are the table ``stepup.checks.AUTHORIZE_CHECKS``.

Abuse limits (``challenge.limits``, see ``limits``): an address with too many recent failures
is refused first; then a request whose client_id and redirect_uri (plain query or form
parameters) are registered gets a ``rate_limited`` redirect, anything else a 429 page with
``Retry-After``, before any further work. A refused request counts as one failure of its
address; a request that opens a challenge counts nothing. Then a locked-out subject, or one
with too many failed checks of its own, is refused (``subject_locked``, ``rate_limited``), and
an address holding too many open challenges opens no more (each spends vendor credit).

Pushed requests (RFC 9126 §4): ``client_id`` with a ``request_uri`` from ``/par`` is replaced,
before authlib sees anything, by the request the client pushed; the request_uri is spent.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..audit import events as audit
from ..audit.facts import challenge_opened, code_issued, limit_exceeded
from ..boot.runtime import Runtime
from ..i18n.messages import N_
from ..idenfy.client import VendorNotEnrolled, VendorUnavailable
from ..observe.metrics import rate_limited
from ..oidc.pushed import is_pushed_reference, may_be_ours
from ..oidc.requests import AuthlibRequest
from ..stepup.checks import AUTHORIZE_CHECKS, Pending
from ..stepup.limits import address_state, count_address_failure, ip_identity, opened
from ..stepup.outcomes import Outcome
from ..stepup.policy import Refusal
from ..stepup.reuse import ReuseRecord
from ..store import StoreUnavailable, new_secret_for
from ..web.forms import BadForm, read_form
from ..web.languages import page_language, shown_description, single, vendor_locale
from ..web.responses import (
    NO_STORE,
    error_page,
    error_params,
    log,
    log_outcome,
    outcome_redirect,
    redirect_to_client,
    runtime,
)

# authlib refuses prompt=none when no end user is signed in (LoginRequiredError) and its
# prompt check reads ``request.user``. Here the RP names the person (a hint, a request object)
# and whether prompt=none can be served is the reuse check's to say (stepup/checks.py); authlib
# still refuses prompt=none combined with another value (invalid_request).
NAMED_BY_RP = object()


async def authorize(request: Request) -> Response:
    rt = runtime(request)
    if request.method == "HEAD":
        # A HEAD (a link checker, a prefetch) must not open a vendor session.
        return Response(status_code=405, headers={"Allow": "GET, POST", **NO_STORE})
    ip = ip_identity(request, rt)
    blocked, open_full = await _ip_gate(rt, ip)
    response, failed = await _answer(request, rt, ip, blocked, open_full)
    if failed:
        try:
            await count_address_failure(rt, ip)
        except StoreUnavailable:
            log.warning("a refused /authorize was not counted: Redis unavailable")
    return response


async def _answer(
    request: Request, rt: Runtime, ip: str, blocked: _Blocked | None, open_full: bool
) -> tuple[Response, bool]:
    """The response, and whether it is a refusal that counts against the caller's address."""
    try:
        params = await _params(request, rt)
    except BadForm as exc:
        # The pages before the client is validated: the query's ui_locales, if it was read.
        lang = page_language(rt, request, single(exc.params or {}, "ui_locales"))
        if blocked is not None:
            return _blocked_page(rt, blocked, lang), False
        if exc.params is not None:
            return _repeated(rt, exc.params, exc.description, lang), True
        bad = rt.outcomes.resolve("INVALID_REQUEST", exc.description)
        message = shown_description(rt, lang, bad)
        return error_page(
            rt, exc.status_code, N_("Bad request"), message, bad.stepup_error, lang=lang
        ), True
    lang = page_language(rt, request, single(params, "ui_locales"))
    if blocked is not None:
        return _blocked(rt, params, blocked, lang), False
    pushed = _pushed_reference(rt, params)
    if pushed is not None:
        resolved = await _resolve_pushed(rt, *pushed, lang)
        if isinstance(resolved, Response):
            return resolved, resolved.status_code == 400
        params = resolved
    oauth = AuthlibRequest(
        request.method,
        f"{rt.settings.issuer}/authorize",
        params,
        request.headers,
        form=request.method == "POST",
    )
    try:
        rt.server.get_consent_grant(oauth, end_user=NAMED_BY_RP)
    except OAuth2Error as exc:
        return _protocol_error(rt, oauth, exc, lang), True
    except ValueError:
        # authlib copies an unsupported response_type or an unregistered redirect_uri into
        # its error_description and refuses (ValueError) when the value has characters RFC
        # 6749 §5.2 does not allow there: the request is malformed either way.
        return _malformed(rt, oauth, lang), True
    client = rt.settings.client(oauth.payload.client_id)
    assert client is not None  # authlib validated client_id
    # Now with a verified request object's ui_locales, which wins over the query's.
    locale = page_language(rt, request, oauth.payload.data.get("ui_locales"))
    pending = Pending(
        rt,
        oauth,
        client,
        ip,
        open_full=open_full,
        pushed=pushed is not None,
        cookies=request.cookies,
        locale=locale,
    )
    return await _checked(rt, pending)


async def _checked(rt: Runtime, pending: Pending) -> tuple[Response, bool]:
    """Run the checks in order; the first refusal answers. Then open the challenge."""
    try:
        for entry in AUTHORIZE_CHECKS:
            try:
                refused = await entry.step(pending)
            except Refusal as exc:
                return _refused(pending, rt.outcomes.resolve(exc.outcome, exc.description)), (
                    entry.counts
                )
            if refused is not None:
                return _refused(pending, rt.outcomes[refused]), entry.counts
            if pending.reused is not None:
                return await _issue_reused(rt, pending, pending.reused), False
        return await _open_challenge(rt, pending), False
    except VendorNotEnrolled:
        return _refused(pending, rt.outcomes["NOT_ENROLLED"]), True
    except VendorUnavailable as exc:
        log.warning("iDenfy unavailable at /authorize: %s", exc)
        return _refused(pending, rt.outcomes["VENDOR_UNAVAILABLE"]), False
    except StoreUnavailable:
        return _refused(pending, rt.outcomes["STORE_UNAVAILABLE"]), False


def _refused(pending: Pending, outcome: Outcome) -> Response:
    """The refusal's redirect; logged as a step-up outcome once the subject is known."""
    rt, req = pending.rt, pending.request()
    if req is not None:
        return outcome_redirect(rt, req, outcome)
    payload = pending.oauth.payload
    acr = pending.level.acr if pending.level is not None else None
    _audit_refusal(payload.client_id, outcome, pending.txn, acr)
    state = payload.data.get("state")
    return redirect_to_client(
        rt, payload.client_id, payload.redirect_uri, error_params(outcome), state, error=True
    )


def _audit_refusal(
    client_id: str, outcome: Outcome, txn: str | None = None, acr: str | None = None
) -> None:
    """A refusal redirected to the RP before the request named its subject."""
    audit.emit(
        audit.STEPUP_ENDED,
        txn,
        result=outcome.stepup_error,
        outcome=outcome.name,
        error=outcome.error,
        client_id=client_id,
        subject=None,
        acr=acr,
    )


# -- pushed authorization requests (RFC 9126 §4) ------------------------------------------------


def _pushed_reference(rt: Runtime, params: dict[str, list[str]]) -> tuple[str, str] | None:
    """The registered client_id and the request_uri of a request that names a pushed request.

    Any other request_uri (https://…) is left to authlib, which refuses it
    (request_uri_not_supported); so is an unknown client_id, which gets its page."""
    uris, client_ids = params.get("request_uri") or [], params.get("client_id") or []
    if len(uris) != 1 or not is_pushed_reference(uris[0]) or len(client_ids) != 1:
        return None
    if rt.settings.client(client_ids[0]) is None:
        return None
    return client_ids[0], uris[0]


async def _resolve_pushed(
    rt: Runtime, client_id: str, request_uri: str, lang: str
) -> dict[str, list[str]] | Response:
    """The pushed request's parameters, and nothing else of the front channel: what the browser
    adds cannot override what the client pushed. The request_uri is consumed (GETDEL) whatever
    happens next, so it starts one authorization at most.

    Not found (unknown, expired, used), or pushed by another client: a page, since the
    redirect_uri and state are in the pushed request (RFC 9101 §6.2's ``invalid_request_uri``
    is its code). The value itself is never logged."""
    try:
        found = await rt.store.take_pushed(request_uri) if may_be_ours(request_uri) else None
    except StoreUnavailable:
        outcome = rt.outcomes["STORE_UNAVAILABLE"]
        title = N_("Temporarily unavailable")
        return error_page(rt, 503, title, outcome.hint, outcome.stepup_error, lang=lang)
    if found is None or found[0] != client_id:
        if found is not None:
            log.warning(
                "a pushed request was presented with another client_id; it is spent",
                extra={"event": "par.client_mismatch", "client_id": client_id},
            )
        outcome = rt.outcomes["INVALID_REQUEST_URI"]
        title = outcome.description
        return error_page(rt, 400, title, outcome.hint, outcome.stepup_error, lang=lang)
    return {name: [value] for name, value in found[1].items()}


# -- abuse limits ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Blocked:
    """Why a request is refused before its client was validated, and for how long."""

    outcome: Outcome
    status_code: int
    retry_after: float = 0.0


async def _ip_gate(rt: Runtime, ip: str) -> tuple[_Blocked | None, bool]:
    """An address with too many recent failures is refused before any further work (a read:
    this request itself counts only if it, too, fails). Read with it, in the same round trip:
    whether the address is at its open-challenge cap, which a later check refuses."""
    try:
        state = await address_state(rt, ip)
    except StoreUnavailable:
        return _Blocked(rt.outcomes["STORE_UNAVAILABLE"], 503), False
    if state.wait:
        log.warning(
            "authorize rate limit hit",
            extra={"event": "stepup.rate_limited", "limit": "failures_per_ip"},
        )
        limit_exceeded("failures_per_ip", "/authorize", ip, retry_after=state.wait)
        rate_limited("failures_per_ip")
        return _Blocked(rt.outcomes["RATE_LIMITED"], 429, state.wait), state.open_full
    return None, state.open_full


def _registered(rt: Runtime, params: dict[str, list[str]]) -> tuple[str, str] | None:
    """client_id and redirect_uri, when both are single plain parameters and registered."""
    client_ids, uris = params.get("client_id") or [], params.get("redirect_uri") or []
    if len(client_ids) != 1 or len(uris) != 1:
        return None
    client = rt.settings.client(client_ids[0])
    if client is None or uris[0] not in client.redirect_uris:
        return None
    return client_ids[0], uris[0]


def _single_state(params: dict[str, list[str]]) -> str | None:
    states = params.get("state") or []
    return states[0] if len(states) == 1 else None


def _blocked(rt: Runtime, params: dict[str, list[str]], blocked: _Blocked, lang: str) -> Response:
    """A redirect when client_id and redirect_uri are registered, else a page.

    Only plain parameters are looked at: under a flood, no request object or hint is verified.
    """
    registered = _registered(rt, params)
    if registered is None:
        return _blocked_page(rt, blocked, lang)
    outcome = blocked.outcome
    _audit_refusal(registered[0], outcome)
    response = redirect_to_client(
        rt, *registered, error_params(outcome), _single_state(params), error=True
    )
    return _with_retry_after(response, blocked.retry_after)


def _repeated(rt: Runtime, params: dict[str, list[str]], description: str, lang: str) -> Response:
    """A repeated parameter (RFC 6749 §3.1) is reported to a registered redirect_uri when
    client_id and redirect_uri themselves are single and registered; otherwise a page."""
    registered = _registered(rt, params)
    outcome = rt.outcomes.resolve("INVALID_REQUEST", description)
    if registered is None:
        message = shown_description(rt, lang, outcome)
        return error_page(rt, 400, N_("Bad request"), message, outcome.stepup_error, lang=lang)
    query = error_params(outcome)
    _audit_refusal(registered[0], outcome)
    return redirect_to_client(rt, *registered, query, _single_state(params), error=True)


def _blocked_page(rt: Runtime, blocked: _Blocked, lang: str) -> Response:
    too_many = blocked.status_code == 429
    title = N_("Too many requests") if too_many else N_("Temporarily unavailable")
    outcome = blocked.outcome
    code = outcome.stepup_error
    page = error_page(rt, blocked.status_code, title, outcome.hint, code, lang=lang)
    return _with_retry_after(page, blocked.retry_after)


def _with_retry_after(response: Response, seconds: float) -> Response:
    if seconds > 0:
        response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


# Every authorization request parameter we read (OIDC Core §3.1.2.1, §6, RFC 7636 §4.3).
# authlib checks only five of them for repeats; unknown parameters stay ignored, repeated or not.
SINGLE_VALUED = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "response_mode",
        "prompt",
        "max_age",
        "id_token_hint",
        "login_hint",
        "acr_values",
        "claims",
        "request",
        "request_uri",
        "code_challenge",
        "code_challenge_method",
        "ui_locales",  # the pages' language (web/languages.py)
        "authorization_details",
    }
)


async def _params(request: Request, rt: Runtime) -> dict[str, list[str]]:
    if request.method == "POST":
        params = await read_form(request, rt.settings.server.max_form_bytes)
    else:
        params = _query(request)
    repeated = sorted(k for k in SINGLE_VALUED if len(params.get(k, ())) > 1)
    if repeated:
        # RFC 6749 §3.1: parameters MUST NOT be included more than once. Which copy a
        # component reads must never be a question, so the request is refused outright.
        raise BadForm(
            400, f"The parameter {repeated[0]} is included more than once.", params=params
        )
    return params


def _query(request: Request) -> dict[str, list[str]]:
    """The query as a multi-dict; invalid UTF-8 is refused, not replaced with U+FFFD.

    Starlette's ``query_params`` substitutes undecodable bytes, which would alter ``state``
    (echoed to the RP) or ``login_hint`` (the subject) without anyone noticing.
    """
    raw: bytes = request.scope.get("query_string", b"")
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadForm(400, "The query string is not valid UTF-8.") from None
    params: dict[str, list[str]] = {}
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    return params


def _malformed(rt: Runtime, oauth: AuthlibRequest, lang: str) -> Response:
    description = "The request has a parameter with characters that are not allowed."
    outcome = rt.outcomes.resolve("INVALID_REQUEST", description)
    client_id = oauth.payload.client_id
    client = rt.server.query_client(client_id) if client_id else None
    redirect_uri = oauth.payload.redirect_uri
    if client is None or not redirect_uri or not client.check_redirect_uri(redirect_uri):
        return _cannot_process(rt, outcome, lang)
    state = oauth.payload.data.get("state")
    _audit_refusal(client_id, outcome)
    return redirect_to_client(rt, client_id, redirect_uri, error_params(outcome), state, error=True)


def _cannot_process(rt: Runtime, outcome: Outcome, lang: str) -> Response:
    """Nothing we could trust to redirect to: a page."""
    title = N_("This request cannot be processed")
    message = shown_description(rt, lang, outcome)
    return error_page(rt, 400, title, message, outcome.stepup_error, lang=lang)


def _protocol_error(rt: Runtime, oauth: AuthlibRequest, exc: OAuth2Error, lang: str) -> Response:
    outcome = rt.outcomes.protocol(exc.error, exc.description or exc.error.replace("_", " "))
    redirect_uri = getattr(exc, "redirect_uri", None)
    client_id = oauth.payload.client_id
    if not redirect_uri or not client_id or rt.server.query_client(client_id) is None:
        return _cannot_process(rt, outcome, lang)
    if exc.error == "unsupported_response_type" and not oauth.payload.data.get("response_type"):
        # RFC 6749 §4.1.2.1: a missing required parameter is invalid_request; authlib reports
        # "no grant for this response_type" (oidcc-response-type-missing).
        outcome = rt.outcomes.resolve("INVALID_REQUEST", "The response_type parameter is missing.")
    state = oauth.payload.data.get("state")
    _audit_refusal(client_id, outcome)
    return redirect_to_client(rt, client_id, redirect_uri, error_params(outcome), state, error=True)


async def _issue_reused(rt: Runtime, pending: Pending, reused: ReuseRecord) -> Response:
    """A recent face check answers the request: a code at once, with the check's auth_time and
    the requested level; no vendor session, nothing in the address's open set."""
    req = pending.request()
    assert req is not None
    token = secrets.token_urlsafe(32)  # a record of its own: never a vendor token
    code = new_secret_for(token)
    challenge = rt.settings.challenge
    await rt.store.issue_reused_code(
        token,
        req,
        code=code,
        auth_time=reused.auth_time,
        code_lifetime=challenge.code_lifetime,
        ttl=challenge.code_lifetime + challenge.grace_seconds,
    )
    log_outcome(req, "reused")
    code_issued(req, code, reused=True)
    params = [("code", code)]
    return redirect_to_client(rt, req.client_id, req.redirect_uri, params, req.state, error=False)


async def _open_challenge(rt: Runtime, pending: Pending) -> Response:
    """Every check passed: a new vendor session, its PENDING challenge, and the page."""
    req = pending.request()
    assert req is not None and pending.scan_ref is not None
    lifetime = rt.settings.idenfy.token_lifetime
    token = await rt.vendor.create_authentication(
        pending.scan_ref, req.check_type, req.method, lifetime, vendor_locale(rt, req)
    )
    secret = rt.binder.new_secret()
    expires_at = int(time.time()) + lifetime
    await rt.store.create_challenge(
        token,
        req,
        binding=rt.binder.binding(secret),
        attempt=1,
        expires_at=expires_at,
        ttl=lifetime + rt.settings.challenge.grace_seconds,
        ip=pending.ip,
    )
    await opened(rt, pending.ip, token, expires_at)
    challenge_opened(req, token, 1, expires_at, pending.ip)
    response = RedirectResponse(f"/challenge/{token}", status_code=303, headers=NO_STORE)
    rt.binder.attach(response, token, secret)
    return response
