"""The simulator's in-memory vendor state: scanRefs, face-auth sessions and the webhooks sent."""

from __future__ import annotations

import heapq
import secrets
import string
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Tokens are ≤40 characters (docs/idenfy-api.md §1.2, §4); the full length makes guessing hopeless.
TOKEN_LENGTH = 40
_TOKEN_ALPHABET = string.ascii_letters + string.digits
# Outcomes after which the vendor has a selfie to point facePhoto at (docs/idenfy-api.md §2.1).
_PHOTO_STATUSES = frozenset({"SUCCESS", "FAILED"})


def new_token() -> str:
    return "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(TOKEN_LENGTH))


def photo_url(base_url: str, token: str, status: str) -> str | None:
    return f"{base_url}/_simulator/photos/{token}.jpg" if status in _PHOTO_STATUSES else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the person ended the face check: a webhook ``status`` plus its ``failReason``."""

    status: str
    fail_reason: str | None = None
    # The webhook's riskTags and ipAddress (null unless a scripted outcome sets them).
    risk_tags: tuple[str, ...] | None = None
    ip_address: str | None = None


@dataclass(slots=True)
class WebhookRecord:
    """One delivery of one webhook body; a resend appends a record with the same id and body."""

    id: str
    body: bytes
    status: str
    delivered: int | None = None
    attempts: int = 0

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "delivered": self.delivered,
            "attempts": self.attempts,
        }


@dataclass(slots=True)
class Session:
    """A face-auth session as created by ``POST /partner/authentication-info`` (§1.2)."""

    token: str
    scan_ref: str
    type: str
    method: str
    lifetime: int
    locale: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=time.time)
    deadline: float = 0.0
    outcome: Outcome | None = None
    webhooks: list[WebhookRecord] = field(default_factory=list)

    @property
    def approved(self) -> bool | None:
        # §1.4 has only this tri-state; null = no decision yet [I], any ending but SUCCESS = false.
        return None if self.outcome is None else self.outcome.status == "SUCCESS"

    def vendor_view(self, base_url: str) -> dict[str, Any]:
        """The ``FacialAuthenticationSession`` schema, exactly (docs/idenfy-api.md §1.4)."""
        status = self.outcome.status if self.outcome else ""
        return {
            "id": self.id,
            "tokenString": self.token,
            "approved": self.approved,
            "givenScanRef": self.scan_ref,
            "type": self.type,
            "authenticationMethod": self.method,
            "facePhoto": photo_url(base_url, self.token, status),
        }

    def simulator_view(self, base_url: str) -> dict[str, Any]:
        """Everything the simulator knows, for integrators' scripted tests."""
        return {
            **self.vendor_view(base_url),
            "token": self.token,
            "scanRef": self.scan_ref,
            "method": self.method,
            "lifetime": self.lifetime,
            "locale": self.locale,
            "created": self.created,
            "expiresAt": self.created + self.lifetime,
            "status": self.outcome.status if self.outcome else None,
            "failReason": self.outcome.fail_reason if self.outcome else None,
            "webhooks": [record.view() for record in self.webhooks],
        }


class Registry:
    """All sessions plus the scanRef → check-status table; one instance per simulator app."""

    def __init__(self, scan_refs: Mapping[str, str]) -> None:
        self.scan_refs: dict[str, str] = dict(scan_refs)
        self._sessions: dict[str, Session] = {}
        # A heap of (deadline, token) so the once-a-second expiry check touches only due sessions.
        self._deadlines: list[tuple[float, str]] = []

    def create(
        self, scan_ref: str, type_: str, method: str, lifetime: int, locale: str | None = None
    ) -> Session:
        session = Session(new_token(), scan_ref, type_, method, lifetime, locale)
        session.deadline = time.monotonic() + lifetime
        self._sessions[session.token] = session
        heapq.heappush(self._deadlines, (session.deadline, session.token))
        return session

    def get(self, token: str) -> Session | None:
        return self._sessions.get(token)

    def all(self) -> list[Session]:
        return list(self._sessions.values())

    def due(self, now: float) -> list[Session]:
        """Sessions whose lifetime has passed without an outcome (they expire, §2.2)."""
        found = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, token = heapq.heappop(self._deadlines)
            session = self._sessions[token]
            if session.outcome is None:
                found.append(session)
        return found
