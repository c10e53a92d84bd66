"""The audit stream's event types, as data, and ``emit``: one JSON object per fact.

Each :class:`EventType` names its fields (type, whether it may be null, what it holds); the
envelope every event carries is :data:`ENVELOPE`. docs/audit-events.md and
docs/audit-events.schema.json are generated from these tables (``audit.schema``), and the
tests check every captured event against that schema.

The events go to the logger ``idenfy_stepup.audit`` with the envelope and fields as the
record's attributes, so the process's own formatter (``cli/logs.py``: JSON or text) writes
them: in JSON one object per line, ``event``, ``time``, ``version``, ``correlation_id``, then
the fields (beside the formatter's ``level``, ``logger`` and ``message``).

What never goes in: a secret, a challenge token, a code or access token (only a digest
prefix), a scanRef, a face-photo URL, a webhook body, the webhook's ipAddress.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal, Protocol

from ..store import tag

AUDIT_LOGGER = "idenfy_stepup.audit"
VERSION = 1  # of the envelope and the field tables; raised when a field changes meaning

audit_log = logging.getLogger(AUDIT_LOGGER)
log = logging.getLogger("idenfy_stepup")

Kind = Literal["string", "integer", "boolean", "array"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    kind: Kind
    description: str
    nullable: bool = False


@dataclass(frozen=True, slots=True)
class EventType:
    name: str
    when: str  # when it is emitted
    fields: tuple[Field, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


ENVELOPE: tuple[Field, ...] = (
    Field("event", "string", "the event type (the headings below)"),
    Field("time", "string", "when it happened, UTC, RFC 3339 with milliseconds"),
    Field("version", "integer", f"the schema's version: {VERSION}"),
    Field(
        "correlation_id",
        "string",
        "the step-up's `txn` (the id_token's `txn`, the same across its retries); null when "
        "the event belongs to no step-up",
        nullable=True,
    ),
)

# Fields several events share.
CLIENT = Field("client_id", "string", "the relying party")
CLAIMED_CLIENT = Field(
    "client_id", "string", "a registered client the request named (unverified)", nullable=True
)
SUBJECT = Field("subject", "string", "the person being stepped up")
ACR = Field("acr", "string", "the level, e.g. urn:idenfy:stepup:face")
CHALLENGE = Field(
    "challenge_id",
    "string",
    "this attempt's challenge: 128 bits of SHA-256 of its vendor token, base64url (never the "
    "token)",
)
CODE_DIGEST = Field(
    "code_digest", "string", "the first 16 hex digits of the code's SHA-256 (never the code)"
)
ENDPOINT = Field("endpoint", "string", "the path that answered: /authorize, /token, /par, …")
ADDRESS = Field(
    "address",
    "string",
    "the caller's address (an IPv6 address as its /64), trusted proxies applied; null with "
    "`audit.addresses: false`",
    nullable=True,
)
ADDRESS_TAG = Field(
    "address_tag",
    "string",
    "128 bits of SHA-256 of the address, base64url: the tag its Redis keys carry; joins "
    "events of one address without the address",
)

CHALLENGE_OPENED = EventType(
    "challenge.opened",
    "a vendor session and its PENDING challenge were created: at /authorize, and for each "
    "retry (attempt 2, 3, …)",
    (
        CLIENT,
        SUBJECT,
        ACR,
        Field("method", "string", "the vendor's method: FACE_MATCHING or ACTIVE_LIVENESS"),
        Field("attempt", "integer", "1 for the first attempt, + 1 per retry"),
        Field("enrollment", "boolean", "check-status said ENROLLMENT (a first capture)"),
        Field("verified", "boolean", "a signed hint named the subject (not a plain login_hint)"),
        Field("expires_at", "integer", "the vendor session's end, unix seconds"),
        CHALLENGE,
        ADDRESS,
        ADDRESS_TAG,
    ),
)
STEPUP_ENDED = EventType(
    "stepup.ended",
    "an ending reached the relying party: a code (approved, reused) or an error redirect "
    "(every refusal at /authorize once the client is validated, a denial, an expiry, a "
    "cancel, a failed retry)",
    (
        Field(
            "result",
            "string",
            "approved, reused, or the `stepup_error` the RP received (an `errors:` override "
            "changes it)",
        ),
        Field(
            "outcome",
            "string",
            "the outcome table's row, e.g. ACR_UNSUPPORTED (stable whatever `errors:` says); "
            "null for approved and reused",
            nullable=True,
        ),
        Field("error", "string", "the OAuth `error` the RP received; null for a code", True),
        CLIENT,
        Field("subject", "string", "the subject, once it was known", nullable=True),
        Field("acr", "string", "the level, once it was known", nullable=True),
    ),
)
APPROVAL_UNFINISHED = EventType(
    "approval.unfinished",
    "a webhook approved a challenge but its browser never finished it: emitted once the "
    "challenge can no longer be finished (the approval + `idenfy.token_lifetime` + "
    "`challenge.grace_seconds`, when its record has expired), by the first process to sweep it",
    (
        CLIENT,
        SUBJECT,
        ACR,
        CHALLENGE,
        Field("approved_at", "integer", "when the approving webhook was applied, unix seconds"),
    ),
)
CODE_ISSUED = EventType(
    "code.issued",
    "an authorization code went to the RP: the finish of an approval (a repeated finish "
    "repeats it, same code_digest), or a reused face check",
    (
        CLIENT,
        SUBJECT,
        ACR,
        CHALLENGE,
        CODE_DIGEST,
        Field("reused", "boolean", "the code stands for a recent face check (reuse_within)"),
    ),
)
TOKEN_ISSUED = EventType(
    "token.issued",
    "/token redeemed a code: an id_token and access token went to the client",
    (
        CLIENT,
        SUBJECT,
        ACR,
        CHALLENGE,
        CODE_DIGEST,
        Field("auth_time", "integer", "the id_token's auth_time"),
    ),
)
CLIENT_AUTH_FAILED = EventType(
    "client.auth_failed",
    "client authentication failed at /token or /par (401 invalid_client); it counts toward "
    "token_failures_per_ip and token_failures_per_client",
    (
        ENDPOINT,
        CLAIMED_CLIENT,
        Field(
            "reason",
            "string",
            "credentials_refused (wrong or missing secret or assertion), assertion_replayed, "
            "credentials_not_utf8",
        ),
        ADDRESS,
        ADDRESS_TAG,
    ),
)
REPLAY_DETECTED = EventType(
    "replay.detected",
    "something meant for one use came a second time: a client assertion's jti (/token, "
    "/par), a request object's jti (/authorize), an authorization code (/token; its tokens "
    "are revoked). The refusal has its own event too",
    (
        Field("kind", "string", "client_assertion, request_object or code"),
        ENDPOINT,
        Field("client_id", "string", "the client that sent it (authenticated for a code)"),
        Field("subject", "string", "the code's subject (kind code)", nullable=True),
        Field("challenge_id", "string", "the code's challenge (kind code)", nullable=True),
        ADDRESS,
        ADDRESS_TAG,
    ),
)
_SOURCE = (
    "the webhook sender's address (trusted proxies applied); null with `audit.addresses: false`"
)
WEBHOOK_ACCEPTED = EventType(
    "webhook.accepted",
    "a verified webhook for a known challenge was answered 200",
    (
        Field(
            "result",
            "string",
            "applied (it decided the challenge), duplicate, ignored (already decided), pending",
        ),
        Field("status", "string", "the webhook's status, e.g. SUCCESS, FAILED, EXPIRED"),
        Field(
            "state",
            "string",
            "the challenge's state after it: APPROVED or DENIED (applied), else as found",
            nullable=True,
        ),
        Field(
            "outcome",
            "string",
            "the denial's row, e.g. FACE_MISMATCH, RISK_FLAGGED; null for an approval",
            nullable=True,
        ),
        Field("risk_tags", "array", "the webhook's riskTags (names only)"),
        CHALLENGE,
        Field("address", "string", _SOURCE, nullable=True),
        ADDRESS_TAG,
    ),
)
WEBHOOK_REFUSED = EventType(
    "webhook.refused",
    "a webhook was refused or could not be matched: nothing changed",
    (
        Field(
            "reason",
            "string",
            "address_not_allowed (403), too_large (413), bad_signature (401), "
            "bad_content_type (415), bad_event_type (400), malformed (400), unknown_token "
            "(200: no such challenge), mismatch (200: scanRef, type or method differ)",
        ),
        Field("http_status", "integer", "the answer's status code"),
        Field("detail", "string", "for a mismatch, what differed: scanRef, type, method", True),
        Field("challenge_id", "string", "the challenge it named, once verified", nullable=True),
        Field("address", "string", _SOURCE, nullable=True),
        ADDRESS_TAG,
    ),
)
LIMIT_EXCEEDED = EventType(
    "limit.exceeded",
    "an abuse limit refused a request (rate_limited, subject_locked, a 429)",
    (
        Field(
            "limit",
            "string",
            "failures_per_ip, open_challenges_per_ip, failures_per_subject, "
            "spoof_lockout_seconds (a locked subject), token_failures_per_ip, "
            "token_failures_per_client, push_streams_per_ip",
        ),
        ENDPOINT,
        Field("client_id", "string", "the client, when validated", nullable=True),
        Field("subject", "string", "the subject, when known", nullable=True),
        Field("retry_after", "integer", "seconds until the limit lets it through", True),
        ADDRESS,
        ADDRESS_TAG,
    ),
)
SUBJECT_LOCKED = EventType(
    "subject.locked",
    "a spoofing signal (FAKE_FACE, VIRTUAL_CAMERA, FAKE_CAPTURE) on a challenge a signed hint "
    "opened locked its subject out",
    (
        CLIENT,
        SUBJECT,
        Field("outcome", "string", "the spoofing signal's row"),
        Field("seconds", "integer", "how long the lock lasts"),
        CHALLENGE,
        Field(
            "address_tag",
            "string",
            "the tag of the address that opened the challenge (its challenge.opened event, "
            "joined by correlation_id, has the address)",
        ),
    ),
)

EVENTS: tuple[EventType, ...] = (
    CHALLENGE_OPENED,
    STEPUP_ENDED,
    APPROVAL_UNFINISHED,
    CODE_ISSUED,
    TOKEN_ISSUED,
    CLIENT_AUTH_FAILED,
    REPLAY_DETECTED,
    WEBHOOK_ACCEPTED,
    WEBHOOK_REFUSED,
    LIMIT_EXCEEDED,
    SUBJECT_LOCKED,
)
BY_NAME = {e.name: e for e in EVENTS}

_PYTHON: dict[Kind, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list, tuple),
}


@dataclass
class _Switches:
    enabled: bool = True
    addresses: bool = True


# Set by create_app from ``audit:`` (as it caps authlib's logger): logging is per process.
_switches = _Switches()


def configure(*, enabled: bool, addresses: bool) -> None:
    _switches.enabled, _switches.addresses = enabled, addresses
    # INFO whatever server.log_level says: the stream is not debugging output.
    audit_log.setLevel(logging.INFO if enabled else logging.CRITICAL + 1)


def enabled() -> bool:
    return _switches.enabled


def address_fields(identity: str | None) -> dict[str, str | None]:
    """``address`` and ``address_tag`` of an address identity (stepup.limits)."""
    value = identity or "unknown"
    return {"address": value if _switches.addresses else None, "address_tag": tag(value)}


def challenge_id(token: str) -> str:
    return tag(token)


def _problems(event: EventType, fields: dict[str, object]) -> list[str]:
    problems = [f"unknown field {name}" for name in fields if name not in event.names]
    for f in event.fields:
        if f.name not in fields:
            problems.append(f"missing {f.name}")
            continue
        value = fields[f.name]
        if value is None:
            if not f.nullable:
                problems.append(f"{f.name} is null")
        elif not isinstance(value, _PYTHON[f.kind]) or (
            f.kind == "integer" and isinstance(value, bool)
        ):
            problems.append(f"{f.name} is not {f.kind}")
    return problems


class StepUp(Protocol):
    """A step-up's record (StepUpRequest, CodeGrant, an unfinished approval)."""

    @property
    def client_id(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def acr(self) -> str: ...


def who(step_up: StepUp) -> dict[str, str]:
    """The client, subject and level every event about a step-up names."""
    return {"client_id": step_up.client_id, "subject": step_up.subject, "acr": step_up.acr}


def emit(event: EventType, correlation_id: str | None, **fields: object) -> None:
    """Write one event: the envelope, then ``fields`` (each of the type's, None when absent).

    A field set that does not match the table is a bug: it is logged as an error and the event
    is still written, so the stream never loses a fact and a request never fails for it."""
    if not _switches.enabled:
        return
    problems = _problems(event, fields)
    if problems:
        log.error("audit event %s does not match its table: %s", event.name, "; ".join(problems))
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    values = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    record = {
        "event": event.name,
        "time": stamp,
        "version": VERSION,
        "correlation_id": correlation_id or None,
        **values,
    }
    audit_log.info("audit %s", event.name, extra=record)


def envelope(record: logging.LogRecord) -> dict[str, object]:
    """The event a record of ``idenfy_stepup.audit`` holds (what its JSON line carries)."""
    event = BY_NAME[getattr(record, "event")]  # noqa: B009
    names = [f.name for f in ENVELOPE] + list(event.names)
    return {name: getattr(record, name) for name in names if hasattr(record, name)}
