"""Verify and parse iDenfy's ``FACIAL_AUTHENTICATION`` webhook (docs/idenfy-api.md §2)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from ..web.jsontext import has_lone_surrogate
from .client import valid_token

EVENT_TYPE = "FACIAL_AUTHENTICATION"

# §2.3: hex SHA-256 is 64 characters; case is unstated, so the header is lower-cased first.
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# application/json or any structured-syntax +json type (RFC 6839 §3.1), parameters ignored.
_JSON_TYPE = re.compile(r"application/(?:json|[a-z0-9!#$&^_.-]+\+json)")
_MAX_ID = 255
# riskTags: enum values are upper-case identifiers (the only documented one: UNTRUSTED_ENVIRONMENT).
_RISK_TAG = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_MAX_RISK_TAGS = 32
# A tag of another shape is kept as this placeholder: still a flag (denied by default), but
# nothing the vendor sent in it reaches a log line or a token.
MALFORMED_TAG = "MALFORMED_TAG"


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """The fields of §2.1 we act on. Enums are upper-cased; unknown values are kept as sent."""

    id: str
    token: str
    scan_ref: str | None
    client_id: str | None
    status: str
    fail_reason: str | None
    type: str | None
    method: str | None
    # What the vendor flagged (riskTags, normalised by _risk_tags) and the end user's address
    # as it saw it (ipAddress): see idenfy/risk.py and endpoints/webhook.py.
    risk_tags: tuple[str, ...] = ()
    ip_address: str | None = None

    @property
    def final(self) -> bool:
        # OA lists a PENDING status (§2.2 [C]); every other value ends the session.
        return self.status != "PENDING"

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


class WebhookRejected(Exception):
    """The request is refused with ``status_code``; ``reason`` is safe to send back."""

    def __init__(self, status_code: int, reason: str) -> None:
        self.status_code = status_code
        self.reason = reason
        super().__init__(reason)


def event_body(
    token: str,
    status: str,
    *,
    event_id: str | None = None,
    scan_ref: str | None,
    client_id: str | None,
    type_: str | None = "AUTHENTICATION",
    method: str | None = "FACE_MATCHING",
    face_photo: str | None = None,
    ip_address: str | None = None,
    fail_reason: str | None = None,
    risk_tags: Sequence[str] | None = None,
) -> bytes:
    """A ``FACIAL_AUTHENTICATION`` body as the vendor sends it (docs/idenfy-api.md §2.1):
    exactly its field set, absent values as null, compact UTF-8 JSON. What the simulator sends
    and what the benchmarks post; ``event_id`` defaults to a fresh random id."""
    payload = {
        "id": event_id if event_id is not None else secrets.token_hex(16),
        "scanRef": scan_ref,
        "clientId": client_id,
        "status": status,
        "token": token,
        "type": type_,
        "method": method,
        "facePhoto": face_photo,
        "ipAddress": ip_address,
        "failReason": fail_reason,
        "riskTags": None if risk_tags is None else list(risk_tags),
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(body: bytes, key: str) -> str:
    """The ``Idenfy-Signature`` value for ``body``: lower-case hex HMAC-SHA256 (§2.3)."""
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, keys: Sequence[str]) -> bool:
    """True if ``header`` signs the raw ``body`` under any key; two keys allow rotation."""
    if not header:
        return False  # no signing key set in the dashboard means no header (§2.3): refuse
    candidate = header.strip().lower()
    if _HEX_DIGEST.fullmatch(candidate) is None:
        return False
    matched = False
    for key in keys:  # no early exit, so timing does not tell which key matched
        if key:
            try:
                expected = sign(body, key)
            except UnicodeEncodeError:
                continue
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def check_content_type(value: str | None) -> None:
    """Accept only JSON (§2: iDenfy posts ``application/json``)."""
    mime = (value or "").split(";", 1)[0].strip().lower()
    if _JSON_TYPE.fullmatch(mime) is None:
        raise WebhookRejected(415, "content type must be application/json")


def parse_event(body: bytes) -> WebhookEvent:
    """Parse a verified body. Never echoes body content in errors."""
    data = _load_object(body)
    status = data.get("status")
    if not isinstance(status, str):
        raise WebhookRejected(400, "status must be a string")
    status = status.strip().upper()
    return WebhookEvent(
        id=_event_id(data),
        token=_token(data),
        scan_ref=_optional(data, "scanRef"),
        client_id=_optional(data, "clientId"),
        status="CANCELED" if status == "CANCELLED" else status,
        fail_reason=_upper(_optional(data, "failReason")),
        type=_upper(_optional(data, "type")),
        method=_upper(_optional(data, "method")),
        risk_tags=_risk_tags(data),
        ip_address=_optional(data, "ipAddress"),
    )


def _load_object(body: bytes) -> dict[str, object]:
    try:
        data = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except (ValueError, RecursionError):  # covers UnicodeDecodeError and JSONDecodeError
        # `from None`: the decoder's message quotes the offending bytes.
        raise WebhookRejected(400, "body is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise WebhookRejected(400, "body must be a JSON object")
    if has_lone_surrogate(data):
        # JSON allows the escape "\ud800" and Python decodes it; UTF-8 cannot encode the
        # result (a Redis write or a log line would fail: a 500, which iDenfy retries for
        # ever). Anywhere in the body, fields we ignore included: it is not text we can keep.
        raise WebhookRejected(400, "body has a string that is not valid Unicode")
    return data


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    # Two parsers could pick different copies of a repeated key; refuse the ambiguity.
    data = dict(pairs)
    if len(data) != len(pairs):
        raise ValueError("duplicate key")
    return data


def _no_constants(name: str) -> object:
    raise ValueError("NaN and Infinity are not JSON")


def _event_id(data: dict[str, object]) -> str:
    value = data.get("id")
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise WebhookRejected(400, "id must be a non-empty string")
    return value


def _token(data: dict[str, object]) -> str:
    # Same rule as tokens we accept from the API: they become Redis keys and URL parts.
    value = data.get("token")
    if not isinstance(value, str) or not valid_token(value):
        raise WebhookRejected(400, "token must be a short URL-safe string")
    return value


def _optional(data: dict[str, object], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise WebhookRejected(400, f"{name} must be a string or null")
    return value or None


def _upper(value: str | None) -> str | None:
    if value is None:
        return None
    return value.strip().upper() or None


def _risk_tags(data: dict[str, object]) -> tuple[str, ...]:
    """``riskTags``: null or an array of strings; upper-cased, de-duplicated, order kept.

    Unknown values are tolerated (they are flags we do not know yet); only the shape is
    refused, like any other mistyped field.
    """
    value = data.get("riskTags")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > _MAX_RISK_TAGS:
        raise WebhookRejected(400, f"riskTags must be null or at most {_MAX_RISK_TAGS} strings")
    tags: list[str] = []
    for item in value:
        if not isinstance(item, str):
            raise WebhookRejected(400, "riskTags must contain strings")
        tag = item.strip().upper()
        if not tag:
            continue
        if _RISK_TAG.fullmatch(tag) is None:
            tag = MALFORMED_TAG
        if tag not in tags:
            tags.append(tag)
    return tuple(tags)
