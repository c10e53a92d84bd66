"""How many push streams are open, per challenge and per client address, in this process.

A push stream holds a connection and a waiter for up to ``push_timeout`` seconds; a browser
needs one per challenge (two while EventSource reconnects, or with the page open in two tabs).
Capping them keeps one page, one script or one address from holding a worker's connections.

The counts are in memory, per process: they cost nothing per flow (no Redis round trip) and
a stream's slot is given back in the same process that took it, even when Redis is down. With
``serve --workers N`` (or several instances) each process applies the caps on its own, so one
challenge can hold up to N times ``push_streams_per_challenge`` streams in all.
"""

from __future__ import annotations

from collections import Counter


class PushSlots:
    """Slots for open push streams: ``take`` before streaming, ``give_back`` once it ends."""

    __slots__ = ("_by_address", "_by_challenge", "per_address", "per_challenge")

    def __init__(self, per_challenge: int, per_address: int) -> None:
        self.per_challenge = per_challenge
        self.per_address = per_address
        self._by_challenge: Counter[str] = Counter()
        self._by_address: Counter[str] = Counter()

    def take(self, token: str, address: str) -> str | None:
        """Take a slot; or, when one cap is reached, take nothing and name it
        (``"challenge"`` or ``"address"``)."""
        if self._by_challenge[token] >= self.per_challenge:
            return "challenge"
        if self._by_address[address] >= self.per_address:
            return "address"
        self._by_challenge[token] += 1
        self._by_address[address] += 1
        return None

    def give_back(self, token: str, address: str) -> None:
        """Release a slot ``take`` gave (an empty count is dropped, so the maps stay small)."""
        for counts, key in ((self._by_challenge, token), (self._by_address, address)):
            counts[key] -= 1
            if counts[key] <= 0:
                del counts[key]

    def open_streams(self, token: str | None = None, address: str | None = None) -> int:
        """Streams open for ``token`` or ``address`` (all of them, given neither)."""
        if token is not None:
            return self._by_challenge[token]
        if address is not None:
            return self._by_address[address]
        return sum(self._by_challenge.values())
