"""``POST /webhooks/idenfy``: iDenfy's signed FACIAL_AUTHENTICATION webhook (docs/idenfy-api.md §2).

Order matters: bound the body (413), verify the HMAC over the raw bytes before reading
anything in it (401), then content type (415), event type and JSON (400). The transition is one
Lua script: duplicates, replays and late deliveries cannot change a terminal state (invariant
4). Unknown tokens get 200 so the vendor stops retrying; Redis down gets 503 so it retries.

After the transition (see ``limits``): the challenge is no longer open for its address; a
denial counts as a failure of that address and, for a failed face check whose subject a signed
hint named, of that subject; a spoofing signal (FAKE_FACE, VIRTUAL_CAMERA, FAKE_CAPTURE) on
such a challenge locks its subject out for ``challenge.limits.spoof_lockout_seconds``. If the
lock cannot be written the answer is 503, and the vendor's retry (a duplicate) sets it then.
"""

from __future__ import annotations

import ipaddress
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..audit import events as audit
from ..audit import sweep
from ..boot.runtime import Runtime
from ..idenfy.risk import RiskDecision, decide
from ..idenfy.webhook import (
    EVENT_TYPE,
    WebhookEvent,
    WebhookRejected,
    check_content_type,
    parse_event,
    verify_signature,
)
from ..observe.metrics import FACE_CHECK_SECONDS
from ..stepup.limits import address_identity, ended, ip_identity
from ..stepup.outcomes import LOCKOUT_OUTCOMES, SUBJECT_FAILURES
from ..stepup.records import StepUpRequest
from ..store import HookResult, HookVerdict, IpMatch, State, StoreUnavailable, WebhookResult
from ..web.addresses import allowed
from ..web.forms import BadForm, read_body
from ..web.responses import log, runtime

# The results whose ending may count against the subject (a transition, or a redelivery).
_COUNTED = (HookResult.APPLIED, HookResult.DUPLICATE, HookResult.IGNORED)


async def idenfy_webhook(request: Request) -> Response:
    rt = runtime(request)
    try:
        event = await _verified_event(request, rt)
    except BadForm as exc:
        return _reject(rt, request, exc.status_code, exc.description)
    except WebhookRejected as exc:
        return _reject(rt, request, exc.status_code, exc.reason)
    if not event.final:
        await _audit(rt, request, event, WebhookResult(HookResult.PENDING, ""))
        return JSONResponse({"result": HookResult.PENDING})
    try:
        applied = await _apply(rt, event)
        if applied.result == HookResult.APPLIED:
            # A browser waiting on this process hears it now; others through the channel.
            rt.notifier.wake(event.token)
            _time_face_check(rt, applied)
        counted = _counted_request(applied)
        await _lock_out(rt, counted, applied, event.token)
    except StoreUnavailable:
        log.error("webhook not stored: Redis unavailable; iDenfy will retry")
        return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
    await _count_ending(rt, event, applied, counted)
    _log(event, applied.result, applied.detail)
    await _audit(rt, request, event, applied)
    return JSONResponse({"result": applied.result})


def _time_face_check(rt: Runtime, applied: WebhookResult) -> None:
    """stepup_face_check_seconds: the challenge opened at its vendor session's expiry less
    ``idenfy.token_lifetime`` (create sets ``expires_at`` so); the webhook script read it."""
    if applied.expires_at is not None:
        opened = applied.expires_at - rt.settings.idenfy.token_lifetime
        FACE_CHECK_SECONDS.observe(max(time.time() - opened, 0.0))


async def _verified_event(request: Request, rt: Runtime) -> WebhookEvent:
    if not allowed(request, rt.webhook_allowlist, rt.trusted_proxies):
        raise WebhookRejected(403, "source address not allowed")
    body = await read_body(request, rt.settings.idenfy.webhook_max_bytes)
    if not verify_signature(body, request.headers.get("idenfy-signature"), rt.webhook_keys):
        raise WebhookRejected(401, "invalid signature")
    check_content_type(request.headers.get("content-type"))
    if request.headers.get("idenfy-event-type", "").strip().upper() != EVENT_TYPE:
        raise WebhookRejected(400, _BAD_EVENT)
    return parse_event(body)


async def _apply(rt: Runtime, event: WebhookEvent) -> WebhookResult:
    if event.success:
        verdict, outcome = HookVerdict.SUCCESS, "SUCCESS"
    else:
        verdict, outcome = (
            HookVerdict.DENIED,
            rt.outcomes.for_webhook(event.status, event.fail_reason).name,
        )
    retryable = verdict == HookVerdict.DENIED and rt.outcomes[outcome].retryable
    ttl = rt.settings.idenfy.token_lifetime + rt.settings.challenge.grace_seconds
    # What the vendor flagged and where the check was finished can turn a SUCCESS into a
    # denial: decided inside the transition script, so no redelivery can approve it instead.
    risk = decide(event.risk_tags, rt.settings.idenfy.risk_policy())
    ip_policy = rt.settings.idenfy.webhook_ip_policy
    applied = await rt.store.webhook_transition(
        token=event.token,
        webhook_id=event.id,
        verdict=verdict,
        outcome=outcome,
        retryable=retryable,
        scan_ref=event.scan_ref,
        check_type=event.type,
        method=event.method,
        marker_ttl=ttl,
        risk_denial=risk.outcome if event.success else "",
        risk_allowed=risk.allowed if event.success else (),
        ip=None if ip_policy == "off" else _address(event.ip_address),
        ip_policy=ip_policy,
        risk_retryable=bool(risk.outcome) and rt.outcomes[risk.outcome].retryable,
        ip_retryable=rt.outcomes["IP_MISMATCH"].retryable,
    )
    if applied.result == HookResult.APPLIED:
        _log_flags(event, risk, applied, ip_policy)
    return applied


def _address(raw: str | None) -> str | None:
    """The webhook's ipAddress as limits count an address (an IPv6 host as its /64, so a
    privacy address rotating inside one network is not "another address"); None: unknown."""
    value = (raw or "").strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return address_identity(value)


def _log_flags(
    event: WebhookEvent, risk: RiskDecision, applied: WebhookResult, policy: str
) -> None:
    """Tag names, decisions and "differs"/"unknown" only: never an address."""
    hint = event.token[:6]
    if event.risk_tags:
        decision = risk.action if event.success else "not_a_success"
        level = log.warning if risk.denied and event.success else log.info
        level(
            "webhook riskTags %s: %s",
            " ".join(event.risk_tags),
            decision,
            extra={
                "event": "webhook.risk",
                "risk_tags": list(event.risk_tags),
                "decision": decision,
                "outcome": applied.outcome,
                "token_hint": hint,
            },
        )
    if policy == "off" or applied.ip == IpMatch.SAME:
        return
    denied = applied.outcome == "IP_MISMATCH"
    if applied.ip == IpMatch.DIFFERS:
        log.warning(
            "webhook ipAddress differs from the address that opened the challenge (%s)",
            "denied" if denied else f"policy {policy}",
            extra={
                "event": "webhook.ip",
                "ip": "differs",
                "policy": policy,
                "denied": denied,
                "token_hint": hint,
            },
        )
    else:
        log.info(
            "webhook ipAddress unknown: not compared",
            extra={"event": "webhook.ip", "ip": "unknown", "policy": policy, "token_hint": hint},
        )


def _counted_request(applied: WebhookResult) -> StepUpRequest | None:
    """The challenge's request, when this webhook's ending may count against its subject."""
    if applied.result not in _COUNTED or applied.state == State.APPROVED:
        return None
    if applied.outcome not in SUBJECT_FAILURES:
        return None  # expired, canceled: not a failed face check of the subject's own
    request = applied.request
    return request if request is not None and request.verified else None


async def _lock_out(
    rt: Runtime, request: StepUpRequest | None, applied: WebhookResult, token: str
) -> None:
    """Lock the subject after a spoofing signal in a check a signed hint asked for (a claimed
    login_hint can neither set nor extend a lock); a redelivery only sets a missing lock."""
    seconds = rt.settings.challenge.limits.spoof_lockout_seconds
    if not seconds or request is None or applied.outcome not in LOCKOUT_OUTCOMES:
        return
    fresh = applied.result == HookResult.APPLIED
    await rt.store.lock_subject(request.subject, seconds, extend=fresh)
    if fresh:
        log.warning(
            "subject locked out after %s",
            applied.outcome,
            extra={
                "event": "stepup.subject_locked",
                "subject": request.subject,
                "outcome": applied.outcome,
                "seconds": seconds,
            },
        )
        audit.emit(
            audit.SUBJECT_LOCKED,
            request.txn,
            client_id=request.client_id,
            subject=request.subject,
            outcome=applied.outcome,
            seconds=seconds,
            challenge_id=audit.challenge_id(token),
            address_tag=applied.opened_by,
        )


async def _count_ending(
    rt: Runtime, event: WebhookEvent, applied: WebhookResult, request: StepUpRequest | None
) -> None:
    """Best effort, once (only the delivery that applied the transition counts): the decision
    stands whether or not its counters could be written."""
    if applied.result != HookResult.APPLIED:
        return
    try:
        await ended(
            rt,
            applied.opened_by,
            event.token,
            failure=applied.state != State.APPROVED,
            failed_check=request,
        )
    except StoreUnavailable:
        log.warning("abuse-limit counters not updated: Redis unavailable")


def _reject(rt: Runtime, request: Request, status_code: int, reason: str) -> Response:
    log.warning("webhook rejected: %s", reason, extra={"event": "webhook.rejected"})
    audit.emit(
        audit.WEBHOOK_REFUSED,
        None,
        reason="bad_event_type"
        if reason == _BAD_EVENT
        else _REFUSALS.get(status_code, "malformed"),
        http_status=status_code,
        detail=None,
        challenge_id=None,
        **audit.address_fields(ip_identity(request, rt)),
    )
    return JSONResponse({"error": reason}, status_code=status_code)


# The audit event's reason for each refusal before the body is trusted, by its status code.
_REFUSALS = {
    403: "address_not_allowed",
    413: "too_large",
    401: "bad_signature",
    415: "bad_content_type",
}
_BAD_EVENT = "unexpected Idenfy-Event-Type"
# Verified, but naming no challenge of ours, or not this one.
_UNMATCHED = {HookResult.UNKNOWN: "unknown_token", HookResult.MISMATCH: "mismatch"}


async def _audit(rt: Runtime, request: Request, event: WebhookEvent, done: WebhookResult) -> None:
    """The verified webhook's audit event, with its step-up's txn; an approval is remembered
    until its browser finishes (audit/sweep.py). Best effort: the answer stands."""
    if not audit.enabled():
        return
    address = audit.address_fields(ip_identity(request, rt))
    challenge = audit.challenge_id(event.token)
    stepup = done.request  # read by the webhook script
    try:
        approved = done.result == HookResult.APPLIED and done.state == State.APPROVED
        if approved and stepup is not None:
            await sweep.approved(rt, event.token, stepup)
    except StoreUnavailable:
        log.warning("audit: a webhook's approval was not recorded: Redis unavailable")
    txn = stepup.txn if stepup is not None else None
    if done.result in _UNMATCHED:
        audit.emit(
            audit.WEBHOOK_REFUSED,
            txn,
            reason=_UNMATCHED[done.result],
            http_status=200,
            detail=done.detail or None if done.result == HookResult.MISMATCH else None,
            challenge_id=challenge if stepup is not None else None,
            **address,
        )
        return
    audit.emit(
        audit.WEBHOOK_ACCEPTED,
        txn,
        result=str(done.result),
        status=event.status,
        state=done.state or None,
        outcome=None if done.state == State.APPROVED else done.outcome or None,
        risk_tags=list(event.risk_tags),
        challenge_id=challenge,
        **address,
    )


def _log(event: WebhookEvent, result: str, detail: str) -> None:
    # The token and status only: never the body, the face photo URL or the IP address.
    level = log.warning if result in (HookResult.UNKNOWN, HookResult.MISMATCH) else log.info
    level(
        "webhook %s",
        result,
        extra={
            "event": "webhook.received",
            "result": result,
            "detail": detail,
            "status": event.status,
            "fail_reason": event.fail_reason,
            "token_hint": event.token[:6],
        },
    )
