"""How many push streams are open, per challenge and per client address, in this process.

A push stream holds a connection and a waiter for as long as its challenge waits; a browser
needs one per challenge (two while EventSource reconnects, or with the page open in two tabs).
Capping them keeps one page, one script or one address from holding a worker's connections.

The two caps differ on purpose. Past ``per_address`` a new stream is refused. Past
``per_challenge`` the *oldest* stream of that challenge is ended instead: a stream lives for
minutes, and a browser that switched networks leaves one behind that the server cannot tell
from a live one (writes to a vanished peer succeed until TCP gives up), so refusing would lock
the browser that is actually there out of its own push channel.

The counts are in memory, per process: they cost nothing per flow (no Redis round trip) and
a stream's slot is given back in the same process that took it, even when Redis is down. With
``serve --workers N`` (or several instances) each process applies the caps on its own, so one
challenge can hold up to N times ``per_challenge`` streams in all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable


class Slot:
    """One open stream's place: ``end`` tells the stream to stop (it was superseded)."""

    __slots__ = ("address", "end", "held", "token")

    def __init__(self, token: str, address: str, end: Callable[[], None]) -> None:
        self.token, self.address, self.end = token, address, end
        self.held = True


class PushSlots:
    """Slots for open push streams: ``take`` before streaming, ``give_back`` once it ends."""

    __slots__ = ("_by_address", "_by_challenge", "per_address", "per_challenge")

    def __init__(self, per_challenge: int, per_address: int) -> None:
        self.per_challenge = per_challenge
        self.per_address = per_address
        self._by_challenge: dict[str, list[Slot]] = {}  # oldest first
        self._by_address: Counter[str] = Counter()

    def take(self, token: str, address: str, end: Callable[[], None]) -> Slot | None:
        """A slot, ending the challenge's oldest stream if it already has ``per_challenge``;
        None when the address has ``per_address`` streams open (refused)."""
        if self._by_address[address] >= self.per_address:
            return None
        while (streams := self._by_challenge.get(token)) and len(streams) >= self.per_challenge:
            oldest = streams[0]
            self._release(oldest)  # drops the list once empty: it is looked up again
            oldest.end()
        slot = Slot(token, address, end)
        self._by_challenge.setdefault(token, []).append(slot)
        self._by_address[address] += 1
        return slot

    def give_back(self, slot: Slot) -> None:
        """Release ``slot`` once its stream has ended (nothing when it was ended for a newer
        one; an empty count is dropped, so the maps stay small)."""
        if slot.held:
            self._release(slot)

    def _release(self, slot: Slot) -> None:
        slot.held = False
        streams = self._by_challenge[slot.token]
        streams.remove(slot)
        if not streams:
            del self._by_challenge[slot.token]
        self._by_address[slot.address] -= 1
        if self._by_address[slot.address] <= 0:
            del self._by_address[slot.address]

    def open_streams(self, token: str | None = None, address: str | None = None) -> int:
        """Streams open for ``token`` or ``address`` (all of them, given neither)."""
        if token is not None:
            return len(self._by_challenge.get(token, ()))
        if address is not None:
            return self._by_address[address]
        return sum(self._by_address.values())
