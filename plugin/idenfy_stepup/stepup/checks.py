"""Every check ``/authorize`` makes once authlib has validated the client, in order, as one table.

Before this table the endpoint has already refused, in this order: an address over its failure
budget (``failures_per_ip``, a read), a repeated single-valued parameter or an unreadable query or
form, and everything authlib checks (client_id, redirect_uri, response_type, the PKCE method,
prompt's syntax, a request object's signature, aud and exp, request_uri). Until client_id and
redirect_uri are validated those are pages; from here on every refusal is a redirect to the RP.

Each :class:`Check` names the rows of the outcome table it may refuse with and whether such a
refusal counts against the caller's address (``counts``: a refusal the caller could have
avoided does; a refusal for capacity, the vendor or a setting does not). Its step looks at the
:class:`Pending` request, may record what it found there for the steps after it, and returns the
row name of a refusal (or raises :class:`.policy.Refusal` for one with a specific description),
or ``None`` to go on; a step that records a reuse on the Pending (``reused``) ends the checks
with a code instead of a challenge. Steps that ask Redis or the vendor are async and keep
their place in the order: whatever a step costs, no step runs after a refusal, and iDenfy
is called only once every cheaper check passed. ``local`` marks the checks that ask neither:
``/par`` runs exactly those on a pushed request (RFC 9126 §2.1), which ``/authorize`` then
checks in full.

``StoreUnavailable`` and ``VendorUnavailable`` raised by a step are the endpoint's to report
(``STORE_UNAVAILABLE``, ``VENDOR_UNAVAILABLE``; neither counts against the address).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..audit import events as audit
from ..audit.facts import limit_exceeded
from ..boot.runtime import Runtime
from ..idenfy.client import VendorNotEnrolled
from ..observe.metrics import rate_limited
from ..oidc.request_objects import replay_marker
from ..oidc.requests import AuthlibRequest
from ..settings import ClientSettings
from .details import DetailsError, parse_details
from .limits import check
from .policy import Level, Subject, choose_level, invalid, parse_claims, resolve_subject
from .records import StepUpRequest
from .reuse import Ask, ReuseRecord, find_reuse, prompts

log = logging.getLogger("idenfy_stepup")


@dataclass
class Pending:
    """An authorization request on its way through the checks, and what they found."""

    rt: Runtime
    oauth: AuthlibRequest
    client: ClientSettings
    ip: str
    claims: dict[str, Any] = field(default_factory=dict)
    level: Level | None = None
    subject: Subject | None = None
    max_age: int | None = None
    scan_ref: str | None = None
    check_type: str = "AUTHENTICATION"
    # The address was at its open-challenge cap (read with its failures, at the gate).
    open_full: bool = False
    # The request came from /par: pushed there by an authenticated client, or being pushed now.
    pushed: bool = False
    # The request's cookies (the reuse cookie of its client, if any).
    cookies: Mapping[str, str] = field(default_factory=dict)
    # A recent face check of this browser that answers the request: the checks end with a
    # code for it instead of a challenge (stepup/reuse.py).
    reused: ReuseRecord | None = None
    # The pages' language negotiated for this request (stored with the challenge).
    locale: str | None = None
    authorization_details: list[dict[str, Any]] = field(default_factory=list)
    # This step-up's id (the id_token's txn): drawn once per request, whoever asks for it.
    txn: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = self.oauth.payload.data
        return data

    def request(self) -> StepUpRequest | None:
        """The request as it is stored with the challenge (once level and subject are known)."""
        if self.level is None or self.subject is None:
            return None
        data = self.oauth.payload.data
        return StepUpRequest(
            client_id=self.client.client_id,
            redirect_uri=self.oauth.payload.redirect_uri,
            scope="openid",
            subject=self.subject.name,
            verified=self.subject.verified,
            scan_ref=self.scan_ref or "",
            check_type=self.check_type,
            acr=self.level.acr,
            method=self.level.method,
            state=data.get("state"),
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            max_age=self.max_age,
            claims=self.claims,
            locale=self.locale,
            authorization_details=self.authorization_details,
            txn=self.txn,
        )


Step = Callable[[Pending], Awaitable[str | None]]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    refuses: tuple[str, ...]  # the outcome rows this check may refuse with
    counts: bool  # a refusal counts against the caller's address
    step: Step
    # Touches neither Redis nor the vendor: /par runs these on a pushed request (RFC 9126 §2.1).
    local: bool = False


async def _pushed(p: Pending) -> str | None:
    required = p.client.require_pushed_authorization_requests and not p.pushed
    return "PAR_REQUIRED" if required else None


async def _scope(p: Pending) -> str | None:
    return None if "openid" in (p.data.get("scope") or "").split() else "INVALID_SCOPE"


async def _response_mode(p: Pending) -> str | None:
    if p.data.get("response_mode", "query") != "query":
        raise invalid("Only response_mode=query is supported.")
    return None


async def _pkce(p: Pending) -> str | None:
    required = p.client.require_pkce and not p.data.get("code_challenge")
    return "PKCE_REQUIRED" if required else None


async def _claims(p: Pending) -> str | None:
    p.claims = parse_claims(p.data.get("claims"))
    return None


async def _authorization_details(p: Pending) -> str | None:
    """RFC 9396 §2: the parameter's value only (query, form, a request object's claim or a
    pushed request give the same text); every refusal is invalid_authorization_details (§5)."""
    raw = p.data.get("authorization_details")
    signed = p.oauth.stepup_request_object
    if signed is not None and "authorization_details" in signed:
        if not isinstance(signed["authorization_details"], list):
            raise invalid(_IN_OBJECT, "INVALID_AUTHORIZATION_DETAILS")
        raw = json.dumps(signed["authorization_details"], separators=(",", ":"))
    settings = p.rt.settings.authorization_details
    try:
        p.authorization_details = parse_details(
            raw, settings.compiled(), p.client.authorization_details_types, settings.max_bytes
        )
    except DetailsError as exc:
        raise invalid(str(exc), "INVALID_AUTHORIZATION_DETAILS") from None
    return None


_IN_OBJECT = "In a request object, authorization_details must be a JSON array."


async def _level(p: Pending) -> str | None:
    p.level = choose_level(p.rt.settings, p.client, p.data.get("acr_values"), p.claims)
    return None


async def _subject(p: Pending) -> str | None:
    rt = p.rt
    p.subject = resolve_subject(
        rt.settings, p.client, p.data, rt.keys, p.oauth.stepup_request_object
    )
    return None


async def _max_age(p: Pending) -> str | None:
    raw = p.data.get("max_age")
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 9:
        raise invalid("max_age must be a non-negative integer.")
    p.max_age = int(raw)
    return None


async def _request_object_once(p: Pending) -> str | None:
    """RFC 9101 §10.8: a request object's jti may be used once (authlib, synchronous, could
    not ask Redis; it checked that exp and jti are there and exp is near)."""
    claims = p.oauth.stepup_request_object
    if claims is None:
        return None
    name, ttl = replay_marker(claims, p.oauth.payload.client_id)
    if await p.rt.store.first_use(name, ttl):
        return None
    audit.emit(
        audit.REPLAY_DETECTED,
        p.txn,
        kind="request_object",
        endpoint="/authorize",
        client_id=p.client.client_id,
        subject=None,
        challenge_id=None,
        **audit.address_fields(p.ip),
    )
    raise invalid("The request object was already used.", "INVALID_REQUEST_OBJECT")


async def _directory(p: Pending) -> str | None:
    """The subject's scanRef (``directory.static``, then Redis); its absence is refused only
    after the subject's own limits, so that a locked subject always hears it is locked."""
    assert p.subject is not None
    settings = p.rt.settings
    found = settings.directory.static.get(p.subject.name)
    if found is None and settings.directory.redis:
        found = await p.rt.store.get_subject(p.subject.name)
    p.scan_ref = found
    return None


async def _subject_limits(p: Pending) -> str | None:
    """A read: whoever sends the request, it adds nothing to the subject's state."""
    assert p.subject is not None
    found = await check(p.rt, p.subject.name, "failures_per_subject", lock=True)
    if found.locked or found.wait:
        limit = "spoof_lockout_seconds" if found.locked else "failures_per_subject"
        limit_exceeded(
            limit,
            "/authorize",
            p.ip,
            p.txn,
            client_id=p.client.client_id,
            subject=p.subject.name,
            retry_after=found.wait,
        )
    if found.locked:
        rate_limited("spoof_lockout")
        return "SUBJECT_LOCKED"
    if found.wait:
        rate_limited("failures_per_subject")
        return "RATE_LIMITED"
    return None


async def _enrolled(p: Pending) -> str | None:
    return "NOT_ENROLLED" if p.scan_ref is None else None


async def _reuse(p: Pending) -> str | None:
    """A recent face check of this browser may answer the request (``p.reused``: the checks
    end with a code). Without one, prompt=none ends here: a new face check needs the user."""
    assert p.subject is not None and p.level is not None
    ask = Ask(
        client_id=p.client.client_id,
        subject=p.subject.name,
        method=p.level.method,
        prompt=prompts(p.data.get("prompt")),
        max_age=p.max_age,
        authorization_details=bool(p.authorization_details),
        reuse_within=p.client.reuse_within,
    )
    p.reused = await find_reuse(p.rt, p.cookies, ask)
    return "LOGIN_REQUIRED" if p.reused is None and "none" in ask.prompt else None


async def _open_cap(p: Pending) -> str | None:
    """Each challenge spends vendor credits: the cap is checked before iDenfy is called."""
    if p.open_full:
        limit = {"event": "stepup.rate_limited", "limit": "open_challenges_per_ip"}
        log.warning("open challenge cap hit", extra=limit)
        rate_limited("open_challenges_per_ip")
        subject = p.subject.name if p.subject is not None else None
        limit_exceeded(
            "open_challenges_per_ip",
            "/authorize",
            p.ip,
            p.txn,
            client_id=p.client.client_id,
            subject=subject,
        )
        return "RATE_LIMITED"
    return None


async def _check_status(p: Pending) -> str | None:
    assert p.scan_ref is not None and p.level is not None
    try:
        p.check_type = await p.rt.vendor.check_status(p.scan_ref, p.level.method)
    except VendorNotEnrolled:
        return "NOT_ENROLLED"
    return None


async def _enrollment_allowed(p: Pending) -> str | None:
    # A first capture proves less than a comparison: refused before any vendor session.
    refused = p.check_type == "ENROLLMENT" and not p.rt.settings.idenfy.allow_enrollment
    return "ENROLLMENT_REFUSED" if refused else None


# The order is the behaviour: cheap, local checks first (``local``: /par runs them too); then
# Redis (the request object's jti, the directory, the subject's limits, the address's open
# challenges); iDenfy last.
AUTHORIZE_CHECKS: tuple[Check, ...] = (
    Check("pushed (/par) if the client requires it", ("PAR_REQUIRED",), True, _pushed, local=True),
    Check("scope includes openid", ("INVALID_SCOPE",), True, _scope, local=True),
    Check("response_mode is query", ("INVALID_REQUEST",), True, _response_mode, local=True),
    Check("PKCE when the client requires it", ("PKCE_REQUIRED",), True, _pkce, local=True),
    Check("claims is a JSON object", ("INVALID_REQUEST",), True, _claims, local=True),
    Check(
        "authorization_details valid for the client",
        ("INVALID_AUTHORIZATION_DETAILS",),
        True,
        _authorization_details,
        local=True,
    ),
    Check("acr level offered", ("ACR_UNSUPPORTED",), True, _level, local=True),
    Check(
        "subject from a hint the client may use",
        ("SUBJECT_REQUIRED", "SUBJECT_CONFLICT", "INVALID_ID_TOKEN_HINT"),
        True,
        _subject,
        local=True,
    ),
    Check("max_age is a non-negative integer", ("INVALID_REQUEST",), True, _max_age, local=True),
    Check(
        "request object's jti used once", ("INVALID_REQUEST_OBJECT",), True, _request_object_once
    ),
    Check("subject's scanRef looked up", (), True, _directory),
    Check(
        "subject not locked, not over its failed checks",
        ("SUBJECT_LOCKED", "RATE_LIMITED"),
        True,
        _subject_limits,
    ),
    Check("subject in the directory", ("NOT_ENROLLED",), True, _enrolled),
    # Ends the checks with a code when a recent face check answers the request.
    Check("a recent face check reused, or prompt=none refused", ("LOGIN_REQUIRED",), False, _reuse),
    Check("address under its open-challenge cap", ("RATE_LIMITED",), False, _open_cap),
    Check(
        "iDenfy check-status: face authentication possible", ("NOT_ENROLLED",), True, _check_status
    ),
    Check("an enrollment is allowed", ("ENROLLMENT_REFUSED",), False, _enrollment_allowed),
)
