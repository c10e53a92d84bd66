"""What the provider knows about iDenfy as a dependency: the breaker, the alerts, the probe.

``VERDICTS`` says how each way a vendor call can end counts for the breaker; ``ALERTS`` which
refusals mean that our account needs an operator (an ERROR line with a stable event name,
and a count per event). Readiness (``boot/readiness.py``) reads :meth:`VendorHealth.status`,
which never waits for the vendor: a probe, when one is due, runs in the background and its
result shows on the next readiness answer.

The probe is a check-status for a scanRef that cannot exist (docs/idenfy-api.md §1.1): a 404
proves the vendor answers and accepts our key pair, it creates no session, so it spends no
credit, and it is made at most once per ``probe_interval``, only when no real call has been
answered for that long, plus the one half-open probe when the breaker's open period is over
and no real call came to make it (an instance out of its load balancer's rotation gets no
traffic, and would otherwise stay open for ever). All state is per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..observe.metrics import VENDOR_ALERTS, VENDOR_BREAKER_OPEN
from .breaker import Breaker, Pass, State, Verdict

log = logging.getLogger("idenfy_stepup")

# Error kinds (idenfy/client.py) → what they say about the vendor. A kind not listed, and
# a success, is an answer: 404 not-enrolled, 400 bad value, an unexpected body are about
# one request, and the vendor that said so is up.
VERDICTS: dict[str, Verdict] = {
    "timeout": Verdict.FAILED,
    "network": Verdict.FAILED,
    "server_error": Verdict.FAILED,
    # Our account's hourly budget (docs/idenfy-api.md §5): every call would get it.
    "rate_limited": Verdict.FAILED,
    "unauthorized": Verdict.REFUSED,
    "payment_required": Verdict.REFUSED,
    "forbidden": Verdict.REFUSED,
}


@dataclass(frozen=True, slots=True)
class AlertRule:
    event: str  # the log line's stable event name, and the counter's label
    reason: str  # what /readyz says
    message: str  # what the operator should do


# Refusals of our account (docs/idenfy-api.md §1.5): nothing a user or a retry can fix.
ALERTS: dict[str, AlertRule] = {
    "unauthorized": AlertRule(
        "vendor.credentials_rejected",
        "credentials_rejected",
        "iDenfy rejected our API key pair (HTTP 401): check idenfy.api_key and idenfy.api_secret",
    ),
    "payment_required": AlertRule(
        "vendor.credit_exhausted",
        "credit_exhausted",
        "iDenfy refused for lack of funds or a spending limit (HTTP 402): top up the account",
    ),
    "forbidden": AlertRule(
        "vendor.access_forbidden",
        "access_forbidden",
        "iDenfy refused our account (HTTP 403): partner inactive, or keys of another environment",
    ),
}
UNREACHABLE = "unreachable"  # /readyz's reason for timeouts, connection errors, 5xx, 429
CIRCUIT_OPEN = "circuit_open"  # the error kind of a call the breaker refused


@dataclass(frozen=True, slots=True)
class Alert:
    event: str
    status: int | None
    at: float  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class VendorStatus:
    """The vendor as readiness reports it."""

    up: bool
    breaker: State
    reason: str | None  # why it is down: unreachable, credentials_rejected, …


Probe = Callable[[], Awaitable[str | None]]  # makes one call; the error kind, None if answered


class VendorHealth:
    """One per client: the breaker plus what metrics and readiness read.

    ``alerts`` counts each refusal by event name; ``last_alert`` is the latest; ``probes``
    counts the probes started."""

    def __init__(
        self, breaker: Breaker, probe_interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.breaker = breaker
        self.probe_interval = probe_interval
        self._clock = clock
        self.alerts: Counter[str] = Counter()
        self.last_alert: Alert | None = None
        self.probes = 0
        self._refusal: str | None = None  # readiness reason of the refusal that opened it
        self._last_answer = -float("inf")
        self._last_probe = -float("inf")
        self._probe_failed = False  # the latest probe failed and nothing answered since
        self._task: asyncio.Task[None] | None = None

    def admit(self) -> Pass | None:
        return self.breaker.admit()

    def abandon(self, ticket: Pass) -> None:
        self.breaker.abandon(ticket)

    def settle(self, ticket: Pass, kind: str | None, status: int | None = None) -> None:
        """Record a call's end: ``kind`` None for a success, else the client's error kind."""
        verdict = Verdict.ANSWERED if kind is None else VERDICTS.get(kind, Verdict.ANSWERED)
        before = self.breaker.state
        self.breaker.settle(ticket, verdict)
        if verdict is Verdict.ANSWERED:
            self._last_answer = self._clock()
            self._probe_failed = False
        rule = ALERTS.get(kind or "")
        if rule is not None:
            self._alert(rule, status)
        self._log_transition(before, verdict)

    def status(self, probe: Probe) -> VendorStatus:
        """The vendor's state now; starts a background probe when one is due."""
        if self._probe_due():
            self._start(probe)
        state = self.breaker.state
        if state is not State.CLOSED:
            refused = self.breaker.reason is Verdict.REFUSED
            return VendorStatus(False, state, self._refusal if refused else UNREACHABLE)
        if self._probe_failed:
            return VendorStatus(False, state, UNREACHABLE)
        return VendorStatus(True, state, None)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _probe_due(self) -> bool:
        if self._task is not None and not self._task.done():
            return False
        state = self.breaker.state
        if state is State.HALF_OPEN:
            return not self.breaker.probing
        if state is State.OPEN or self.probe_interval <= 0:
            return False
        now = self._clock()
        idle = now - self._last_answer >= self.probe_interval
        return idle and now - self._last_probe >= self.probe_interval

    def _start(self, probe: Probe) -> None:
        self._last_probe = self._clock()
        self.probes += 1
        self._task = asyncio.create_task(self._run(probe))

    async def _run(self, probe: Probe) -> None:
        kind = await probe()
        if kind is None or kind == CIRCUIT_OPEN:
            return  # answered (already recorded), or a real call holds the probe slot
        if VERDICTS.get(kind, Verdict.ANSWERED) is not Verdict.ANSWERED:
            self._probe_failed = True
            log.warning(
                "iDenfy readiness probe failed: %s",
                kind,
                extra={"event": "vendor.probe_failed", "kind": kind},
            )

    def _alert(self, rule: AlertRule, status: int | None) -> None:
        self._refusal = rule.reason
        self.alerts[rule.event] += 1
        VENDOR_ALERTS.labels(rule.event.removeprefix("vendor.")).inc()
        self.last_alert = Alert(rule.event, status, time.time())
        log.error(rule.message, extra={"event": rule.event, "status": status})

    def _log_transition(self, before: State, verdict: Verdict) -> None:
        after = self.breaker.state
        VENDOR_BREAKER_OPEN.set(0 if after is State.CLOSED else 1)
        if after is State.OPEN and (before is not State.OPEN or verdict is Verdict.REFUSED):
            log.warning(
                "iDenfy circuit breaker open for %gs: calls fail at once",
                self.breaker.open_seconds,
                extra={"event": "vendor.breaker_open", "verdict": verdict.value},
            )
        elif after is State.CLOSED and before is not State.CLOSED:
            log.warning("iDenfy circuit breaker closed", extra={"event": "vendor.breaker_closed"})
