"""The simulator's engine: records outcomes, sends their webhooks, expires idle sessions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import httpx
from starlette.requests import ClientDisconnect, Request

from ..settings import SimulatorSettings
from .delivery import Deliverer, webhook_body
from .outage import Outage
from .state import Outcome, Registry, Session, WebhookRecord

MAX_JSON_BYTES = 64 * 1024
EXPIRY_TICK = 1.0


class Simulator:
    """State plus behaviour shared by the vendor API, the iframe and the scripting endpoints."""

    def __init__(
        self, settings: SimulatorSettings, *, webhook_url: str, signing_key: str | None
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url()
        self.registry = Registry(settings.scan_refs)
        self.outage = Outage()  # scripted by /_simulator/outage
        self._webhook_url = webhook_url
        self._signing_key = signing_key
        self._deliverer: Deliverer | None = None
        self._tasks: set[asyncio.Task[object]] = set()

    @contextlib.asynccontextmanager
    async def running(self, client: httpx.AsyncClient) -> AsyncIterator[None]:
        """Deliver through ``client`` and expire sessions until the app shuts down."""
        delay = self.settings.webhook_delay_ms
        self._deliverer = Deliverer(client, self._webhook_url, self._signing_key, delay)
        self._spawn(self._expire_forever())
        try:
            yield
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._deliverer = None

    async def finish(
        self, session: Session, outcome: Outcome, *, force: bool
    ) -> WebhookRecord | None:
        """Record the first outcome and deliver its webhook; None if already finished.

        ``force`` sends a webhook for ``outcome`` anyway, with a fresh id, leaving the recorded
        outcome alone: the vendor sending a late or conflicting duplicate (§2.4).
        """
        deliverer = self._running()
        if session.outcome is not None and not force:
            return None
        if session.outcome is None:
            # Set before the first await so two concurrent clicks cannot both win.
            session.outcome = outcome
        event_id = str(uuid.uuid4())
        body = webhook_body(
            session, outcome, event_id, client_id=self.settings.client_id, base_url=self.base_url
        )
        record = WebhookRecord(event_id, body, outcome.status)
        return await self._deliver(deliverer, session, record)

    async def resend(self, session: Session) -> WebhookRecord | None:
        """Send the last body again, byte for byte with the same id; None if nothing was sent."""
        deliverer = self._running()
        if not session.webhooks:
            return None
        last = session.webhooks[-1]
        copy = WebhookRecord(last.id, last.body, last.status)
        return await self._deliver(deliverer, session, copy)

    def _running(self) -> Deliverer:
        if self._deliverer is None:
            raise RuntimeError("the simulator's lifespan is not running; no webhook client")
        return self._deliverer

    @staticmethod
    async def _deliver(
        deliverer: Deliverer, session: Session, record: WebhookRecord
    ) -> WebhookRecord:
        session.webhooks.append(record)
        result = await deliverer.send(record.body)
        record.delivered, record.attempts = result.status_code, result.attempts
        return record

    async def _expire_forever(self) -> None:
        # The vendor sends EXPIRED when a token's lifetime passes unused (§2.2; timing is [I]).
        while True:
            for session in self.registry.due(time.monotonic()):
                self._spawn(self.finish(session, Outcome("EXPIRED"), force=False))
            await asyncio.sleep(EXPIRY_TICK)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def read_object(request: Request) -> dict[str, Any] | None:
    """The request's JSON object, or None when the body is too large, not JSON or not an object."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_JSON_BYTES:
                return None
            chunks.append(chunk)
    except ClientDisconnect:  # the caller's answer goes nowhere; no traceback in the log
        return None
    try:
        data = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
