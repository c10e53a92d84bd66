"""A small fake of iDenfy's partner API at the network boundary, for the in-process tier.

The provider's vendor client is given ``FakeIdenfy().fetch`` (a ``VendorFetch``) instead of
its network edge: every call it makes to iDenfy lands in ``handle`` here, and nothing else of
the provider is replaced. This is the only place the in-process tests fake the vendor.

It answers the two calls a step-up makes (check-status, create a session) as the vendor
documents them (docs/idenfy-api.md), and writes the webhook iDenfy would send for a session.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from idenfy_stepup.idenfy.transport import VendorRequest, VendorResponse
from idenfy_stepup.idenfy.webhook import event_body, sign

from .settings import SCAN_REFS, SIGNING_KEY

API_BASE = "https://ivs.idenfy.test"
IFRAME_BASE = "https://face.idenfy.test"
API_KEY = "fake-api-key"
API_SECRET = "fake-api-secret-0123456789"


@dataclass
class FakeSession:
    token: str
    scan_ref: str
    type: str
    method: str
    lifetime: int
    locale: str | None = None  # the interface language the provider asked for


@dataclass
class FakeIdenfy:
    """The vendor's side: known scanRefs (scanRef → check-status type) and the sessions made."""

    scan_refs: dict[str, str] = field(default_factory=lambda: dict(SCAN_REFS))
    sessions: dict[str, FakeSession] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    # When set, every call is answered with this HTTP status (an outage or a refusal).
    fail_status: int | None = None

    async def fetch(self, request: VendorRequest) -> VendorResponse:
        """What the provider's vendor client is given instead of the network."""
        return self.handle(request)

    def handle(self, request: VendorRequest) -> VendorResponse:
        path = urlsplit(request.url).path
        self.calls.append(f"{request.method} {path}")
        headers = {k.lower(): v for k, v in request.headers.items()}
        if headers.get("authorization") != _basic(API_KEY, API_SECRET):
            return _error(401, "UNAUTHORIZED")
        if self.fail_status is not None:
            return _error(self.fail_status, "SERVICE_UNAVAILABLE")
        parts = path.strip("/").split("/")
        if request.method == "GET" and parts[:2] == ["identification", "facial-auth"]:
            known = self.scan_refs.get(parts[2]) if len(parts) == 4 else None
            if known is None:
                return _error(404, "NOT_FOUND")
            return _json(200, {"type": known})
        if request.method == "POST" and path == "/partner/authentication-info":
            return self._create(json.loads(request.body or b"{}"))
        return _error(404, "NOT_FOUND")

    def _create(self, body: dict[str, Any]) -> VendorResponse:
        scan_ref = body.get("scanRef")
        if not isinstance(scan_ref, str) or scan_ref not in self.scan_refs:
            return _error(404, "NOT_FOUND")
        session = FakeSession(
            token=secrets.token_urlsafe(24),
            scan_ref=scan_ref,
            type=str(body.get("type")),
            method=str(body.get("method")),
            lifetime=int(body.get("lifetime", 0)),
            locale=body.get("locale"),
        )
        self.sessions[session.token] = session
        return _json(200, {"token": session.token, "scanRef": scan_ref})

    def webhook(
        self, token: str, status: str, fail_reason: str | None = None, *, key: str = SIGNING_KEY
    ) -> tuple[bytes, dict[str, str]]:
        """The signed FACIAL_AUTHENTICATION webhook iDenfy sends when session ``token`` ends:
        its body and headers."""
        session = self.sessions[token]
        body = event_body(
            token,
            status,
            scan_ref=session.scan_ref,
            client_id="fake-idenfy",
            type_=session.type,
            method=session.method,
            fail_reason=fail_reason,
        )
        headers = {
            "Content-Type": "application/json",
            "Idenfy-Event-Type": "FACIAL_AUTHENTICATION",
            "Idenfy-Signature": sign(body, key),
        }
        return body, headers


def live_mode() -> dict[str, Any]:
    """Settings (to ``merge`` over the base settings) that point the provider at this fake."""
    return {
        "idenfy": {
            "mode": "live",
            "api_base": API_BASE,
            "iframe_base": IFRAME_BASE,
            "api_key": API_KEY,
            "api_secret": API_SECRET,
        },
    }


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _json(status: int, data: dict[str, Any]) -> VendorResponse:
    return VendorResponse(status, json.dumps(data).encode())


def _error(status: int, identifier: str) -> VendorResponse:
    return _json(status, {"identifier": identifier, "message": identifier})
