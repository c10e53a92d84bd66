"""A circuit breaker: after repeated failures, fail at once instead of waiting for a dead vendor.

States (docs/architecture.md, "The vendor as a dependency"):

- ``closed``: every call goes through. ``failures`` failures in a row within ``window`` seconds
  open it; an answer in between starts the count again, so sporadic timeouts under load never
  open it, while an outage does within a few calls.
- ``open``: for ``open_seconds`` every call is refused without being made.
- ``half_open``: the open period is over; the next call is let through as the one probe while
  every other caller is still refused. Its answer closes the breaker, its failure opens it
  again for another ``open_seconds``.

A refusal (the vendor rejects our account: keys, credit) opens it at once: each further call
would be refused the same way until an operator acts.

Only the verdict of a call matters here (:class:`Verdict`); which vendor answers are which
verdict is the caller's table. One breaker per process: nothing here is shared between
workers or instances. Single-threaded by design (one event loop), so no locks.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Verdict(Enum):
    ANSWERED = "answered"  # the vendor is up: a 2xx, a 404, any 4xx about this one request
    FAILED = "failed"  # no usable answer: timeout, connection error, 5xx, rate limit
    REFUSED = "refused"  # the vendor refuses our account: every call would fail the same way


@dataclass(slots=True)
class Pass:
    """One call the breaker let through; ``probe`` when it is the half-open probe."""

    probe: bool
    settled: bool = False


class Breaker:
    """``failures`` 0 turns it off: it then never opens (verdicts are still accepted)."""

    def __init__(
        self,
        failures: int,
        window: float,
        open_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window = window
        self.open_seconds = open_seconds
        self._clock = clock
        self._recent: deque[float] = deque(maxlen=max(failures, 1))
        self._opened_at: float | None = None
        self._probing = False
        self.reason: Verdict | None = None  # why it is open: FAILED or REFUSED
        self.opened = 0  # how many times it opened (for metrics)

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return State.CLOSED
        if self._clock() - self._opened_at < self.open_seconds:
            return State.OPEN
        return State.HALF_OPEN

    @property
    def probing(self) -> bool:
        """True while the half-open probe is in flight."""
        return self._probing

    def admit(self) -> Pass | None:
        """A pass for one call, or None: fail at once without calling."""
        state = self.state
        if state is State.CLOSED:
            return Pass(probe=False)
        if state is State.OPEN or self._probing:
            return None
        self._probing = True
        return Pass(probe=True)

    def settle(self, ticket: Pass, verdict: Verdict) -> None:
        """Record how the call of ``ticket`` ended (once; later calls are ignored)."""
        if ticket.settled:
            return
        ticket.settled = True
        if ticket.probe:
            self._probing = False
        if verdict is Verdict.REFUSED:
            self._open(verdict)
        elif verdict is Verdict.FAILED:
            if ticket.probe:
                self._open(verdict)
            elif self._opened_at is None:
                self._count_failure()
        elif ticket.probe or self._opened_at is None:
            # An answer: the probe closes the breaker; while closed it ends a run of failures.
            # A call let through before the breaker opened proves nothing about now.
            self._opened_at, self.reason = None, None
            self._recent.clear()

    def abandon(self, ticket: Pass) -> None:
        """The call was given up (cancelled) without a verdict: free the probe slot."""
        if not ticket.settled:
            ticket.settled = True
            if ticket.probe:
                self._probing = False

    def _count_failure(self) -> None:
        if self.failures == 0:
            return
        now = self._clock()
        self._recent.append(now)
        if len(self._recent) == self.failures and now - self._recent[0] <= self.window:
            self._open(Verdict.FAILED)

    def _open(self, reason: Verdict) -> None:
        if self.failures == 0:
            return
        self._opened_at, self.reason = self._clock(), reason
        self._recent.clear()
        self.opened += 1
