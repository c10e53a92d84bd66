"""Building, signing and delivering ``FACIAL_AUTHENTICATION`` webhooks as iDenfy does (§2)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import dataclass

import httpx

from ..idenfy.webhook import event_body
from .state import Outcome, Session, photo_url

log = logging.getLogger(__name__)

EVENT_TYPE = "FACIAL_AUTHENTICATION"


def sign(body: bytes, key: str) -> str:
    """Lower-case hex HMAC-SHA256 of the raw body (docs/idenfy-api.md §2.3).

    Kept here rather than imported from ``idenfy.webhook`` so the simulator stands on its own.
    """
    return hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook_body(
    session: Session, outcome: Outcome, event_id: str, *, client_id: str, base_url: str
) -> bytes:
    """A ``FacialAuthenticationWebhook`` (docs/idenfy-api.md §2.1) for this session's outcome."""
    return event_body(
        session.token,
        outcome.status,
        event_id=event_id,
        scan_ref=session.scan_ref,
        client_id=client_id,
        type_=session.type,
        method=session.method,
        face_photo=photo_url(base_url, session.token, outcome.status),
        ip_address=outcome.ip_address,
        fail_reason=outcome.fail_reason if outcome.status == "FAILED" else None,
        risk_tags=outcome.risk_tags,
    )


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The provider's last HTTP status (None: no answer at all) and how many POSTs it took."""

    status_code: int | None
    attempts: int


class Deliverer:
    """POSTs bodies to the provider, retrying failures like "resend failed webhooks" (§2.4)."""

    # §2.4: up to 10 retries; the vendor spaces them "up to 10 seconds" apart, we stay quicker.
    RETRIES = 10
    FIRST_BACKOFF = 0.2
    MAX_BACKOFF = 2.0

    def __init__(
        self, client: httpx.AsyncClient, url: str, signing_key: str | None, delay_ms: int
    ) -> None:
        self._client = client
        self._url = url
        self._signing_key = signing_key
        self._delay = delay_ms / 1000

    def headers(self, body: bytes) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Idenfy-Event-Type": EVENT_TYPE}
        # Without a signing key the vendor simply sends no signature header (§2.3).
        if self._signing_key is not None:
            headers["Idenfy-Signature"] = sign(body, self._signing_key)
        return headers

    async def send(self, body: bytes) -> DeliveryResult:
        if self._delay:
            await asyncio.sleep(self._delay)
        backoff = self.FIRST_BACKOFF
        status: int | None = None
        for attempt in range(1, self.RETRIES + 2):
            status = await self._attempt(body)
            if status is not None and 200 <= status < 300:
                return DeliveryResult(status, attempt)
            if attempt <= self.RETRIES:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.MAX_BACKOFF)
        log.warning("webhook to %s not accepted after %d attempts", self._url, self.RETRIES + 1)
        return DeliveryResult(status, self.RETRIES + 1)

    async def _attempt(self, body: bytes) -> int | None:
        try:
            response = await self._client.post(self._url, content=body, headers=self.headers(body))
        except httpx.TransportError as exc:
            log.info("webhook to %s failed: %s", self._url, exc.__class__.__name__)
            return None
        return response.status_code
