"""``/authorize`` (GET and POST): validate, pick the subject and level, open a face challenge.

OIDC Core §3.1.2. Until client_id and redirect_uri are validated every error is an error page
(invariant 5); after that every refusal is a redirect with ``error``, ``stepup_error``,
``state`` and ``iss``.

Abuse limits (``challenge.limits``, see ``limits``): an address with too many recent failures
is refused first; then a request whose client_id and redirect_uri (plain query or form
parameters) are registered gets a ``rate_limited`` redirect, anything else a 429 page with
``Retry-After``, before any further work. A refused request counts as one failure of its
address; a request that opens a challenge counts nothing. Then a locked-out subject, or one
with too many failed checks of its own, is refused (``subject_locked``, ``rate_limited``), and
an address holding too many open challenges opens no more (each spends vendor credit).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import OAuth2Error
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..boot.runtime import Runtime
from ..idenfy.client import VendorNotEnrolled, VendorUnavailable
from ..oidc.request_objects import replay_marker
from ..oidc.requests import AuthlibRequest
from ..stepup.limits import check, count_address_failure, ip_identity, open_wait, opened
from ..stepup.outcomes import Outcome
from ..stepup.policy import Refusal, choose_level, invalid, parse_claims, resolve_subject
from ..stepup.records import StepUpRequest
from ..store import StoreUnavailable
from ..web.forms import BadForm, read_form
from ..web.responses import (
    NO_STORE,
    error_page,
    error_params,
    log,
    outcome_redirect,
    redirect_to_client,
    runtime,
)


async def authorize(request: Request) -> Response:
    rt = runtime(request)
    if request.method == "HEAD":
        # A HEAD (a link checker, a prefetch) must not open a vendor session.
        return Response(status_code=405, headers={"Allow": "GET, POST", **NO_STORE})
    ip = ip_identity(request, rt)
    blocked = await _ip_gate(rt, ip)
    response, failed = await _answer(request, rt, ip, blocked)
    if failed:
        try:
            await count_address_failure(rt, ip)
        except StoreUnavailable:
            log.warning("a refused /authorize was not counted: Redis unavailable")
    return response


async def _answer(
    request: Request, rt: Runtime, ip: str, blocked: _Blocked | None
) -> tuple[Response, bool]:
    """The response, and whether it is a refusal that counts against the caller's address."""
    try:
        params = await _params(request, rt)
    except BadForm as exc:
        if blocked is not None:
            return _blocked_page(rt, blocked), False
        if exc.params is not None:
            return _repeated(rt, exc.params, exc.description), True
        page = error_page(rt, exc.status_code, "Bad request", exc.description, "invalid_request")
        return page, True
    if blocked is not None:
        return _blocked(rt, params, blocked), False
    oauth = AuthlibRequest(
        request.method, f"{rt.settings.issuer}/authorize", params, request.headers,
        form=request.method == "POST",
    )  # fmt: skip
    try:
        grant = rt.server.get_consent_grant(oauth, end_user=None)
    except OAuth2Error as exc:
        return _protocol_error(rt, oauth, exc), True
    except ValueError:
        # authlib copies an unsupported response_type or an unregistered redirect_uri into
        # its error_description and refuses (ValueError) when the value has characters RFC
        # 6749 §5.2 does not allow there: the request is malformed either way.
        return _malformed(rt, oauth), True
    try:
        req = _step_up_request(rt, oauth, grant)
        replayed = await _request_object_replayed(rt, oauth)
    except Refusal as exc:
        return _refusal(rt, oauth, exc), True
    except StoreUnavailable:
        return outcome_redirect(rt, req, rt.outcomes["STORE_UNAVAILABLE"]), False
    if replayed:
        return _refusal(rt, oauth, REPLAYED), True
    return await _open_challenge(rt, req, ip)


REPLAYED = Refusal("invalid_request_object", "invalid_request_object",
                   "The request object was already used.")  # fmt: skip


async def _request_object_replayed(rt: Runtime, oauth: AuthlibRequest) -> bool:
    """RFC 9101 §10.8: a request object's jti may be used once (authlib, synchronous, could
    not ask Redis; it checked that exp and jti are there and exp is near)."""
    claims = oauth.stepup_request_object
    if claims is None:
        return False
    name, ttl = replay_marker(claims, oauth.payload.client_id)
    return not await rt.store.first_use(name, ttl)


# -- abuse limits ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Blocked:
    """Why a request is refused before its client was validated, and for how long."""

    outcome: Outcome
    status_code: int
    retry_after: float = 0.0


async def _ip_gate(rt: Runtime, ip: str) -> _Blocked | None:
    """An address with too many recent failures is refused before any further work (a read:
    this request itself counts only if it, too, fails)."""
    try:
        wait = (await check(rt, ip, "failures_per_ip")).wait
    except StoreUnavailable:
        return _Blocked(rt.outcomes["STORE_UNAVAILABLE"], 503)
    if wait:
        log.warning("authorize rate limit hit", extra={"event": "stepup.rate_limited",
                                                       "limit": "failures_per_ip"})  # fmt: skip
        return _Blocked(rt.outcomes["RATE_LIMITED"], 429, wait)
    return None


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


def _blocked(rt: Runtime, params: dict[str, list[str]], blocked: _Blocked) -> Response:
    """A redirect when client_id and redirect_uri are registered, else a page.

    Only plain parameters are looked at: under a flood, no request object or hint is verified.
    """
    registered = _registered(rt, params)
    if registered is None:
        return _blocked_page(rt, blocked)
    outcome = blocked.outcome
    response = redirect_to_client(
        rt, *registered, error_params(outcome), _single_state(params), error=True
    )
    return _with_retry_after(response, blocked.retry_after)


def _repeated(rt: Runtime, params: dict[str, list[str]], description: str) -> Response:
    """A repeated parameter (RFC 6749 §3.1) is reported to a registered redirect_uri when
    client_id and redirect_uri themselves are single and registered; otherwise a page."""
    registered = _registered(rt, params)
    if registered is None:
        return error_page(rt, 400, "Bad request", description, "invalid_request")
    query = [("error", "invalid_request"), ("error_description", description),
             ("stepup_error", "invalid_request")]  # fmt: skip
    return redirect_to_client(rt, *registered, query, _single_state(params), error=True)


def _blocked_page(rt: Runtime, blocked: _Blocked) -> Response:
    title = "Too many requests" if blocked.status_code == 429 else "Temporarily unavailable"
    outcome = blocked.outcome
    page = error_page(rt, blocked.status_code, title, outcome.hint, outcome.stepup_error)
    return _with_retry_after(page, blocked.retry_after)


def _with_retry_after(response: Response, seconds: float) -> Response:
    if seconds > 0:
        response.headers["Retry-After"] = str(max(1, math.ceil(seconds)))
    return response


async def _subject_gate(rt: Runtime, req: StepUpRequest) -> Response | None:
    """A locked-out subject, or one with too many failed checks of its own, is refused. A read:
    whoever sends the request, it adds nothing to the subject's state."""
    found = await check(rt, req.subject, "failures_per_subject", lock=True)
    if found.locked:
        return outcome_redirect(rt, req, rt.outcomes["SUBJECT_LOCKED"])
    if found.wait:
        return outcome_redirect(rt, req, rt.outcomes["RATE_LIMITED"])
    return None


# Every authorization request parameter we read (OIDC Core §3.1.2.1, §6, RFC 7636 §4.3).
# authlib checks only five of them for repeats; unknown parameters stay ignored, repeated or not.
SINGLE_VALUED = frozenset(
    {
        "response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
        "response_mode", "prompt", "max_age", "id_token_hint", "login_hint", "acr_values",
        "claims", "request", "request_uri", "code_challenge", "code_challenge_method",
    }
)  # fmt: skip


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


def _malformed(rt: Runtime, oauth: AuthlibRequest) -> Response:
    description = "The request has a parameter with characters that are not allowed."
    client_id = oauth.payload.client_id
    client = rt.server.query_client(client_id) if client_id else None
    redirect_uri = oauth.payload.redirect_uri
    if client is None or not redirect_uri or not client.check_redirect_uri(redirect_uri):
        return error_page(
            rt, 400, "This request cannot be processed", description, "invalid_request"
        )
    params = [("error", "invalid_request"), ("error_description", description),
              ("stepup_error", "invalid_request")]  # fmt: skip
    state = oauth.payload.data.get("state")
    return redirect_to_client(rt, client_id, redirect_uri, params, state, error=True)


def _protocol_error(rt: Runtime, oauth: AuthlibRequest, exc: OAuth2Error) -> Response:
    description = exc.description or exc.error.replace("_", " ")
    redirect_uri = getattr(exc, "redirect_uri", None)
    client_id = oauth.payload.client_id
    if not redirect_uri or not client_id or rt.server.query_client(client_id) is None:
        # Invariant 5: nothing we could trust to redirect to.
        return error_page(rt, 400, "This request cannot be processed", description, exc.error)
    error = exc.error
    if error == "unsupported_response_type" and not oauth.payload.data.get("response_type"):
        # RFC 6749 §4.1.2.1: a missing required parameter is invalid_request; authlib reports
        # "no grant for this response_type" (oidcc-response-type-missing).
        error, description = "invalid_request", "The response_type parameter is missing."
    params = [("error", error), ("error_description", description), ("stepup_error", error)]
    state = oauth.payload.data.get("state")
    return redirect_to_client(rt, client_id, redirect_uri, params, state, error=True)


def _refusal(rt: Runtime, oauth: AuthlibRequest, exc: Refusal) -> Response:
    params = [
        ("error", exc.error),
        ("error_description", exc.description),
        ("stepup_error", exc.stepup_error),
    ]
    client_id = oauth.payload.client_id
    state = oauth.payload.data.get("state")
    return redirect_to_client(rt, client_id, oauth.payload.redirect_uri, params, state, error=True)


def _step_up_request(rt: Runtime, oauth: AuthlibRequest, grant: object) -> StepUpRequest:
    data = oauth.payload.data
    client = rt.settings.client(oauth.payload.client_id)
    assert client is not None  # authlib validated client_id
    if "openid" not in (data.get("scope") or "").split():
        raise Refusal("invalid_scope", "invalid_scope", "The scope must include openid.")
    if data.get("response_mode", "query") != "query":
        raise invalid("Only response_mode=query is supported.")
    if client.require_pkce and not data.get("code_challenge"):
        raise invalid("PKCE is required: send code_challenge with code_challenge_method=S256.")
    claims = parse_claims(data.get("claims"))
    level = choose_level(rt.settings, client, data.get("acr_values"), claims)
    subject = resolve_subject(rt.settings, client, data, rt.keys, oauth.stepup_request_object)
    return StepUpRequest(
        client_id=client.client_id,
        redirect_uri=oauth.payload.redirect_uri,
        scope="openid",
        subject=subject.name,
        verified=subject.verified,
        scan_ref="",
        acr=level.acr,
        method=level.method,
        state=data.get("state"),
        nonce=data.get("nonce"),
        code_challenge=data.get("code_challenge"),
        code_challenge_method=data.get("code_challenge_method"),
        max_age=_max_age(data.get("max_age")),
        claims=claims,
    )


def _max_age(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise invalid("max_age must be a non-negative integer.")
    return int(raw)


async def _open_challenge(rt: Runtime, req: StepUpRequest, ip: str) -> tuple[Response, bool]:
    """Directory → limits → check-status → new vendor session → PENDING challenge → page."""
    try:
        scan_ref = await _scan_ref(rt, req.subject)
        refused = await _subject_gate(rt, req)
        if refused is not None:
            return refused, True
        if scan_ref is None:
            return outcome_redirect(rt, req, rt.outcomes["NOT_ENROLLED"]), True
        # Each challenge spends vendor credits: the cap is checked before iDenfy is called.
        if await open_wait(rt, ip):
            limit = {"event": "stepup.rate_limited", "limit": "open_challenges_per_ip"}
            log.warning("open challenge cap hit", extra=limit)
            return outcome_redirect(rt, req, rt.outcomes["RATE_LIMITED"]), False
        check_type = await rt.vendor.check_status(scan_ref, req.method)
        req = replace(req, scan_ref=scan_ref, check_type=check_type)
        if check_type == "ENROLLMENT" and not rt.settings.idenfy.allow_enrollment:
            # A first capture proves less than a comparison: refused before any vendor session.
            return outcome_redirect(rt, req, rt.outcomes["ENROLLMENT_REFUSED"]), False
        lifetime = rt.settings.idenfy.token_lifetime
        token = await rt.vendor.create_authentication(
            scan_ref, check_type, req.method, lifetime, rt.settings.idenfy.locale
        )
        secret = rt.binder.new_secret()
        expires_at = int(time.time()) + lifetime
        await rt.store.create_challenge(
            token, req, binding=rt.binder.binding(secret), attempt=1, expires_at=expires_at,
            ttl=lifetime + rt.settings.challenge.grace_seconds, ip=ip,
        )  # fmt: skip
        await opened(rt, ip, token, expires_at)
    except VendorNotEnrolled:
        return outcome_redirect(rt, req, rt.outcomes["NOT_ENROLLED"]), True
    except VendorUnavailable as exc:
        log.warning("iDenfy unavailable at /authorize: %s", exc)
        return outcome_redirect(rt, req, rt.outcomes["VENDOR_UNAVAILABLE"]), False
    except StoreUnavailable:
        return outcome_redirect(rt, req, rt.outcomes["STORE_UNAVAILABLE"]), False
    response = RedirectResponse(f"/challenge/{token}", status_code=303, headers=NO_STORE)
    rt.binder.attach(response, token, secret)
    return response, False


async def _scan_ref(rt: Runtime, subject: str) -> str | None:
    found = rt.settings.directory.static.get(subject)
    if found is None and rt.settings.directory.redis:
        found = await rt.store.get_subject(subject)
    return found
