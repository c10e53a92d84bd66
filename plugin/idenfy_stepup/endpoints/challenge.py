"""The challenge page and its actions: show the iframe, finish, retry, give up, cancel.

Every action needs the browser's challenge cookie: only the starting browser finishes. The
page's only input from the iframe is a UI hint; what happened is read from the challenge
record, which only a verified webhook moves: a code only after a verified webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import quote

from markupsafe import Markup
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..audit import sweep
from ..audit.facts import challenge_opened, code_issued, limit_exceeded
from ..boot.runtime import Runtime
from ..i18n.messages import N_
from ..idenfy.client import VendorError, valid_token
from ..observe.metrics import rate_limited
from ..stepup.details import display_items
from ..stepup.limits import address_state, check, ended, ip_identity, opened
from ..stepup.records import StepUpRequest
from ..stepup.reuse import remember
from ..store import FinishMode, State, StoreUnavailable, Verdict, VerdictKind, code_for
from ..web.languages import page_language, vendor_locale
from ..web.responses import (
    NO_STORE,
    error_page,
    log,
    log_outcome,
    outcome_redirect,
    redirect_to_client,
    runtime,
)

# The pages of rows shown to the browser only: title = the row's description, message = its
# hint, detail = its stepup_error (each overridable under ``errors:``).
FORBIDDEN, GONE, DONE = "WRONG_BROWSER", "CHALLENGE_GONE", "CHALLENGE_CONSUMED"
# The outcome a verdict that names none stands for.
_ENDED_AS = {VerdictKind.EXPIRED: "EXPIRED", VerdictKind.CANCELED: "CANCELED"}


def _token(request: Request) -> str:
    token = str(request.path_params["token"])
    if not valid_token(token):
        raise HTTPException(404)
    return token


def _see_other(url: str) -> Response:
    return RedirectResponse(url, status_code=303, headers=NO_STORE)


async def page(request: Request) -> Response:
    rt, token = runtime(request), _token(request)
    binding = rt.binder.binding_of(request, token)
    try:
        peek = await rt.store.peek(token, binding, full=True)
    except StoreUnavailable:
        return _store_down(rt, request)
    if peek.state is None:
        return _outcome_page(rt, request, 410, GONE)
    if not peek.bound or peek.request is None:
        return _outcome_page(rt, request, 403, FORBIDDEN)
    if peek.state == State.RETRYING:
        # Another tab is starting the next attempt: look again shortly (finish would only
        # send the browser back here until the new attempt exists).
        title, message = N_("Starting a new attempt"), N_("This page reloads by itself.")
        page = error_page(rt, 202, title, message, lang=peek.request.locale)
        page.headers["Refresh"] = f"2; url=/challenge/{token}/finish"
        return page
    if peek.state != State.PENDING:
        return _see_other(f"/challenge/{token}/finish")
    return _render_challenge(rt, token, peek.request, peek.attempt)


def _store_down(rt: Runtime, request: Request) -> Response:
    """Nothing could be read: the page is in the browser's own language."""
    outcome, lang = rt.outcomes["STORE_UNAVAILABLE"], page_language(rt, request)
    title = N_("Temporarily unavailable")
    return error_page(rt, 503, title, outcome.hint, outcome.stepup_error, lang=lang)


def _outcome_page(
    rt: Runtime, request: Request, status_code: int, name: str, lang: str | None = None
) -> Response:
    """A row's page. No challenge of this browser's was read (an unknown or another browser's
    token) unless ``lang`` is its stored language: then the browser's own preferences."""
    outcome = rt.outcomes[name]
    lang = lang or page_language(rt, request)
    title = rt.templates.gettext(lang, outcome.description).rstrip(".")
    return error_page(rt, status_code, title, outcome.hint, outcome.stepup_error, lang=lang)


def _client_name(rt: Runtime, req: StepUpRequest) -> str:
    client = rt.settings.client(req.client_id)
    return client.name if client is not None and client.name else req.client_id


def _details(rt: Runtime, req: StepUpRequest) -> list[tuple[str, Markup]]:
    """What the person approves, one line per authorization detail (RFC 9396)."""
    types = rt.settings.authorization_details.compiled()
    return display_items(req.authorization_details, types, req.locale)


def _render_challenge(rt: Runtime, token: str, req: StepUpRequest, attempt: int) -> Response:
    base = f"/challenge/{token}"
    html = (
        rt.templates.get(req.locale)
        .get_template("challenge.html")
        .render(
            token=token,
            iframe_src=f"{rt.settings.idenfy.effective_iframe_base()}/?token={quote(token)}",
            iframe_origin=rt.iframe_origin,
            finish_url=f"{base}/finish",
            events_url=f"{base}/events",
            cancel_url=f"{base}/cancel",
            client_name=_client_name(rt, req),
            attempt=attempt,
            max_attempts=rt.settings.challenge.max_attempts,
            details=_details(rt, req),
        )
    )
    return HTMLResponse(html, headers=NO_STORE)


async def finish(request: Request) -> Response:
    return await _conclude(request, FinishMode.FINISH)


async def cancel(request: Request) -> Response:
    return await _conclude(request, FinishMode.CANCEL)


async def give_up(request: Request) -> Response:
    return await _conclude(request, FinishMode.GIVE_UP)


async def _conclude(request: Request, mode: FinishMode) -> Response:
    rt, token = runtime(request), _token(request)
    if request.method == "HEAD":
        # A HEAD (a prefetch, a link checker) never consumes anything.
        return Response(status_code=405, headers={"Allow": "GET", **NO_STORE})
    secret = rt.binder.secret_of(request, token)
    binding = rt.binder.binding(secret) if secret else ""
    max_attempts = rt.settings.challenge.max_attempts
    # Issued only if this finish consumes an approval; the same browser's repeated finish
    # derives the same code, so a lost response is answered again (see Store.finish).
    code = code_for(token, secret) if secret else ""
    lifetime = rt.settings.challenge.code_lifetime
    try:
        verdict = await rt.store.finish(
            token, binding, mode=mode, max_attempts=max_attempts, code=code, code_lifetime=lifetime
        )
        if verdict.ip:
            # An ending no webhook decided (expired, canceled): it counts once, here.
            await ended(rt, verdict.ip, token, failure=True)
    except StoreUnavailable:
        return _store_down(rt, request)
    return await _answer(rt, request, token, verdict, code)


async def _answer(
    rt: Runtime, request: Request, token: str, verdict: Verdict, code: str = ""
) -> Response:
    req = verdict.request
    if verdict.kind == VerdictKind.MISSING:
        return _outcome_page(rt, request, 410, GONE)
    if verdict.kind == VerdictKind.FORBIDDEN or req is None:
        return _outcome_page(rt, request, 403, FORBIDDEN)
    if verdict.kind == VerdictKind.APPROVED and code:
        return await _issue_code(rt, req, code, verdict)
    if verdict.kind == VerdictKind.CANCELED:
        await sweep.finished(rt, token)  # an approval canceled by its browser is not unfinished
    if verdict.kind in (VerdictKind.DENIED, VerdictKind.EXPIRED, VerdictKind.CANCELED):
        name = _ENDED_AS.get(verdict.kind, verdict.detail)
        return outcome_redirect(rt, req, rt.outcomes[_known(rt, name)])
    if verdict.kind == VerdictKind.RETRY:
        return _render_retry(rt, token, req, verdict.detail, verdict.attempt)
    if verdict.kind in (VerdictKind.MOVED, VerdictKind.CONSUMED) and verdict.detail:
        return _see_other(f"/challenge/{verdict.detail}")
    if verdict.kind == VerdictKind.PENDING:
        return _see_other(f"/challenge/{token}")
    # An approval whose code was redeemed (or expired): the RP has had its answer.
    return _outcome_page(rt, request, 410, DONE, req.locale)


def _known(rt: Runtime, name: str) -> str:
    try:
        rt.outcomes[name]
    except KeyError:
        return "UNKNOWN"
    return name


async def _issue_code(rt: Runtime, req: StepUpRequest, code: str, verdict: Verdict) -> Response:
    """RFC 6749 §4.1.2: a short-lived, single-use code, stored (by the finish script, with the
    approval's consumption) only as its SHA-256. For a client that reuses face checks, the
    browser also gets the check's reuse record (stepup/reuse.py)."""
    log_outcome(req, "approved")
    code_issued(req, code, reused=False)
    await sweep.finished(rt, code.rpartition(".")[0])
    params = [("code", code)]
    response = redirect_to_client(
        rt, req.client_id, req.redirect_uri, params, req.state, error=False
    )
    try:
        await remember(rt, response, req, verdict.auth_time, verdict.flagged)
    except StoreUnavailable:
        log.warning("no reuse record for this face check: Redis unavailable")
    return response


def _render_retry(
    rt: Runtime, token: str, req: StepUpRequest, outcome_name: str, attempt: int
) -> Response:
    outcome = rt.outcomes[_known(rt, outcome_name)]
    max_attempts = rt.settings.challenge.max_attempts
    pages, lang = rt.templates, req.locale
    html = (
        pages.get(lang)
        .get_template("retry.html")
        .render(
            client_name=_client_name(rt, req),
            hint=pages.gettext(lang, outcome.hint),
            description=pages.gettext(lang, outcome.description),
            attempt=attempt,
            max_attempts=max_attempts,
            attempts_left=max(max_attempts - attempt, 0),
            retry_url=f"/challenge/{token}/retry",
            give_up_url=f"/challenge/{token}/give-up",
            details=_details(rt, req),
        )
    )
    return HTMLResponse(html, headers=NO_STORE)


async def retry(request: Request) -> Response:
    """A new vendor session for the same OIDC request; one claim per click (RETRY_CLAIM)."""
    rt, token = runtime(request), _token(request)
    secret = rt.binder.secret_of(request, token)
    binding = rt.binder.binding(secret) if secret else ""
    settings = rt.settings
    try:
        claim = await rt.store.claim_retry(token, binding, settings.challenge.max_attempts)
        if claim.kind == VerdictKind.MOVED:
            claim = await _linked(rt, token, binding)
        if claim.kind == VerdictKind.CONSUMED and claim.detail:
            # A second click (double click, reload): the same next attempt, with its cookie,
            # since the browser may never have seen the first answer.
            return _to_attempt(rt, claim.detail, secret)
        if claim.kind == VerdictKind.CONSUMED:
            # Ended without a next attempt: the finish URL repeats how it ended.
            return _see_other(f"/challenge/{token}/finish")
        if claim.kind != VerdictKind.CLAIMED or claim.request is None:
            return await _answer(rt, request, token, _after_refused_claim(claim))
        req, attempt = claim.request, int(claim.detail) + 1
        # A new attempt spends vendor credits like a new challenge: same limits, checked first
        # (the failure that led here was counted when its webhook landed).
        ip = ip_identity(request, rt)
        refused = await _retry_refused(rt, req, ip)
        if refused is not None:
            row, limit = refused
            limit_exceeded(
                limit, "/challenge/retry", ip, req.txn, client_id=req.client_id, subject=req.subject
            )
            await rt.store.link_retry(token, None, row)
            return outcome_redirect(rt, req, rt.outcomes[row])
        next_token = await _new_attempt(rt, req, binding, attempt, ip)
        await rt.store.link_retry(token, next_token)
    except StoreUnavailable:
        return _store_down(rt, request)
    if next_token is None:
        return outcome_redirect(rt, req, rt.outcomes["VENDOR_UNAVAILABLE"])
    return _to_attempt(rt, next_token, secret)


async def _retry_refused(rt: Runtime, req: StepUpRequest, ip: str) -> tuple[str, str] | None:
    """The outcome refusing a new attempt, and the limit that does, if one does."""
    found, address = await asyncio.gather(
        check(rt, req.subject, "failures_per_subject", lock=True), address_state(rt, ip)
    )
    if found.locked:
        rate_limited("spoof_lockout")
        return "SUBJECT_LOCKED", "spoof_lockout_seconds"
    # The first limit that refuses is the one counted.
    for over, limit in (
        (found.wait, "failures_per_subject"),
        (address.wait, "failures_per_ip"),
        (address.open_full, "open_challenges_per_ip"),
    ):
        if over:
            rate_limited(limit)
            return "RATE_LIMITED", limit
    return None


def _to_attempt(rt: Runtime, next_token: str, secret: str) -> Response:
    response = _see_other(f"/challenge/{next_token}")
    rt.binder.attach(response, next_token, secret)
    return response


async def _linked(rt: Runtime, token: str, binding: str) -> Verdict:
    """Another click of this browser is creating the next attempt: wait for its link.

    RETRY_LINK publishes on the challenge's channel, so this waits for a push, not a poll;
    the deadline covers the vendor call the other click is making.
    """
    max_attempts = rt.settings.challenge.max_attempts
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 2 * rt.settings.idenfy.timeout + 1
    async with rt.notifier.waiting(token) as woken:
        while True:
            woken.clear()  # before reading, so a wake-up during the read is not lost
            claim = await rt.store.claim_retry(token, binding, max_attempts)
            remaining = deadline - loop.time()
            if claim.kind != VerdictKind.MOVED or remaining <= 0:
                return claim
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=remaining)


def _after_refused_claim(claim: Verdict) -> Verdict:
    if claim.kind == VerdictKind.REFUSED:
        return Verdict(VerdictKind.PENDING, claim.request, "")
    return claim


async def _new_attempt(
    rt: Runtime, req: StepUpRequest, binding: str, attempt: int, ip: str
) -> str | None:
    lifetime = rt.settings.idenfy.token_lifetime
    try:
        token = await rt.vendor.create_authentication(
            req.scan_ref, req.check_type, req.method, lifetime, vendor_locale(rt, req)
        )
    except VendorError as exc:
        log.warning("iDenfy unavailable on retry: %s", exc)
        return None
    expires_at = int(time.time()) + lifetime
    await rt.store.create_challenge(
        token,
        req,
        binding=binding,
        attempt=attempt,
        expires_at=expires_at,
        ttl=lifetime + rt.settings.challenge.grace_seconds,
        ip=ip,
    )
    await opened(rt, ip, token, expires_at)
    challenge_opened(req, token, attempt, expires_at, ip)
    return token
