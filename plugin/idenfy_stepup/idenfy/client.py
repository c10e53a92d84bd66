"""Async client for the iDenfy face-authentication partner API (docs/idenfy-api.md §1)."""

from __future__ import annotations

import base64
import re
from json import dumps, loads
from typing import Any
from urllib.parse import quote, urlencode

from .breaker import Breaker
from .health import CIRCUIT_OPEN, VendorHealth, VendorStatus
from .transport import (
    FetchError,
    FetchTimeout,
    VendorFetch,
    VendorRequest,
    VendorResponse,
    VendorTimeout,
)

# The token goes into the iframe URL, the sessions path and Redis keys, so only URL-unreserved
# characters are accepted (RFC 3986 §2.3). The vendor documents ≤40 (docs/idenfy-api.md
# §1.2); 64 leaves room. At least one non-dot character so it can never be a "." / ".." path
# segment.
_TOKEN = re.compile(r"(?=.*[^.])[A-Za-z0-9._~-]{1,64}")
# Vendor identifiers are upper-case constants (§1.5); anything else is dropped so that text the
# vendor reflects back (it may echo our input) never reaches logs via str(error).
_IDENTIFIER = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_CHECK_TYPES = frozenset({"AUTHENTICATION", "ENROLLMENT"})
_STATUS_KINDS = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}
# The readiness probe's check-status subject: no KYC verification can have this scanRef, so the
# vendor answers 404 once it has accepted our key pair (docs/idenfy-api.md §1.1).
PROBE_SCAN_REF = "idenfy-stepup-readiness-probe"


class VendorError(Exception):
    """iDenfy could not give an answer. ``str()`` carries only kind, status and identifier."""

    def __init__(self, kind: str, status: int | None = None, identifier: str | None = None) -> None:
        self.kind = kind
        self.status = status
        self.identifier = identifier
        parts = [f"iDenfy {kind}"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if identifier is not None:
            parts.append(identifier)
        super().__init__(" ".join(parts))


class VendorNotEnrolled(VendorError):
    """The subject cannot do face auth: unknown scanRef or KYC needed first (§1.1)."""


class VendorUnavailable(VendorError):
    """Anything else: credentials, credits, rate limit, outage or an unexpected reply (§1.5)."""


def valid_token(value: object) -> bool:
    """True if ``value`` is safe to use as a face-auth session token (URLs and Redis keys)."""
    return isinstance(value, str) and _TOKEN.fullmatch(value) is not None


def default_timeout(total: float) -> VendorTimeout:
    """Connecting and waiting for a pooled connection are capped at 2 s each, so an unreachable
    vendor fails fast, while a slow reply may use ``total`` for each wait for its bytes."""
    quick = min(2.0, total)
    return VendorTimeout(connect=quick, read=total, pool=quick)


class IdenfyClient:
    """One per app; ``fetch`` is the caller's long-lived network edge (connections are
    reused). Requests go to it directly: no redirects, cookies or client-level hooks."""

    def __init__(
        self,
        fetch: VendorFetch,
        base_url: str,
        api_key: str,
        api_secret: str,
        timeout: VendorTimeout,
        health: VendorHealth | None = None,
    ) -> None:
        self._fetch = fetch
        # Without one given (a client built by hand), a breaker that never opens.
        self.health = VendorHealth(Breaker(0, 1.0, 1.0), 0) if health is None else health
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        # HTTP Basic with key:secret on every call (§0); built once, never in a URL or a repr.
        basic = base64.b64encode(f"{api_key}:{api_secret}".encode()).decode("ascii")
        self._headers = {"Accept": "application/json", "Authorization": f"Basic {basic}"}

    def __repr__(self) -> str:
        return f"IdenfyClient(base_url={self._base!r})"

    async def check_status(self, scan_ref: str, method: str = "FACE_MATCHING") -> str:
        """Return ``AUTHENTICATION`` or ``ENROLLMENT`` (§1.1); raise if face auth is impossible."""
        if scan_ref.strip(".") == "":
            # Empty or dot-only would change the path; no such scanRef can exist (§1.1: 404).
            raise VendorNotEnrolled("not_found")
        path = f"/identification/facial-auth/{quote(scan_ref, safe='')}/check-status/"
        try:
            data = await self._call("GET", path, params={"method": method})
        except VendorUnavailable as exc:
            if exc.kind == "not_found":
                raise VendorNotEnrolled("not_found", exc.status, exc.identifier) from None
            raise
        raw = data.get("type")
        kind = raw.upper() if isinstance(raw, str) else None
        if kind == "IDENTIFICATION":
            raise VendorNotEnrolled("identification_required")
        if kind is None or kind not in _CHECK_TYPES:
            raise VendorUnavailable("bad_response")
        return kind

    async def create_authentication(
        self, scan_ref: str, type_: str, method: str, lifetime: int, locale: str | None = None
    ) -> str:
        """Create a face-auth session and return its token (§1.2)."""
        body: dict[str, object] = {
            "scanRef": scan_ref,
            "type": type_,
            "method": method,
            "lifetime": lifetime,
        }
        if locale is not None:
            body["locale"] = locale
        data = await self._call("POST", "/partner/authentication-info", json=body)
        # Official samples read "token"; an unofficial one reads "authToken" (§1.2).
        token = data.get("token") or data.get("authToken")
        if isinstance(token, str) and valid_token(token):
            return token
        raise VendorUnavailable("bad_response")

    async def get_session(self, token: str) -> dict[str, object]:
        """Fetch ``FacialAuthenticationSession`` for ``token`` (§1.3); the polling fallback."""
        if not valid_token(token):
            raise VendorUnavailable("not_found")  # such a token was never issued
        return await self._call("GET", f"/api/v2/facial-authentication-sessions/{token}/")

    def status(self) -> VendorStatus:
        """The vendor's state for readiness; never waits (a due probe runs in the background)."""
        return self.health.status(self._probe)

    async def _probe(self) -> str | None:
        try:
            await self.check_status(PROBE_SCAN_REF)
        except VendorNotEnrolled:
            return None
        except VendorError as exc:
            return exc.kind
        return None

    async def aclose(self) -> None:
        """Stops a readiness probe in flight; the fetch belongs to the caller."""
        await self.health.aclose()

    async def _call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, json: Any = None
    ) -> dict[str, object]:
        """One call through the breaker: refused at once while it is open (no request made)."""
        ticket = self.health.admit()
        if ticket is None:
            raise VendorUnavailable(CIRCUIT_OPEN)
        try:
            data = await self._exchange(method, path, params=params, json=json)
        except VendorUnavailable as exc:
            self.health.settle(ticket, exc.kind, exc.status)
            raise
        else:
            self.health.settle(ticket, None)
        finally:
            self.health.abandon(ticket)  # cancelled: frees the probe slot (no-op once settled)
        return data

    async def _exchange(
        self, method: str, path: str, *, params: dict[str, str] | None, json: Any
    ) -> dict[str, object]:
        # Nothing is retried here, whatever the answer: a retry is the user's new attempt.
        url = self._base + path + (f"?{urlencode(params)}" if params else "")
        headers, body = self._headers, None
        if json is not None:
            body = dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
            headers = {**headers, "Content-Type": "application/json"}
        try:
            response = await self._fetch(VendorRequest(method, url, headers, body, self._timeout))
        except FetchTimeout as exc:
            raise VendorUnavailable("timeout") from exc
        except FetchError as exc:  # connection refused/reset, DNS, TLS, bad encoding
            raise VendorUnavailable("network") from exc
        if not 200 <= response.status < 300:
            raise _status_error(response)
        data = _json(response)
        if not isinstance(data, dict):
            raise VendorUnavailable("bad_response", response.status)
        return data


def _json(response: VendorResponse) -> object:
    try:
        return loads(response.body)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def _status_error(response: VendorResponse) -> VendorUnavailable:
    status = response.status
    body = _json(response)
    raw = body.get("identifier") if isinstance(body, dict) else None
    identifier = raw if isinstance(raw, str) and _IDENTIFIER.fullmatch(raw) else None
    if identifier == "TOO_MANY_REQUESTS":  # the rate limit may come back as a 400 (§5)
        kind = "rate_limited"
    elif status >= 500:
        kind = "server_error"
    elif status in _STATUS_KINDS:
        kind = _STATUS_KINDS[status]
    else:
        kind = "bad_request" if status >= 400 else "bad_response"  # 3xx: we never follow redirects
    return VendorUnavailable(kind, status, identifier)
