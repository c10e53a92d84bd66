"""Approvals whose browser has not finished them yet, for the audit stream's sweep.

An approving webhook adds its challenge: ``stepup:unfinished`` (a sorted set, token → the
moment the approval can no longer be finished) and ``stepup:{<token>}:unfinished`` (what the
audit event needs: client, subject, acr, txn, approval time; never the scanRef). The finish
that issues the code, or a cancel, replaces the second key with a short-lived ``finished``
mark that the webhook's record cannot overwrite (``SET NX``): the approving script wakes the
browser before the webhook handler writes the record, so a quick finish may come first. The
sweep takes each due token out of the set (ZREM: one process wins) and then its record
(GETDEL): a record still there is an approval nobody finished. Each step is safe on its own,
so the set and the records need not share a slot. A token lost between the two steps (a crash)
is a missed event, never a false one.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from .core import Store
from .scripts import text

# How long a finish's mark outlives it: longer than a webhook handler takes, after its script
# applied the approval, to write the record the mark must keep out.
FINISHED_MARK_SECONDS = 300
FINISHED = "finished"
# How many due approvals one sweep takes at most (the next sweep takes the rest).
BATCH = 100
# The record outlives its deadline by this much, for a sweep that comes late (every process
# down for a while).
RECORD_MARGIN_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class UnfinishedApproval:
    token: str
    client_id: str
    subject: str
    acr: str
    txn: str
    approved_at: int


class Unfinished:
    def __init__(self, store: Store) -> None:
        self.store = store

    @property
    def set_key(self) -> str:
        return f"{self.store.prefix}:unfinished"

    def record_key(self, token: str) -> str:
        return f"{self.store.prefix}:{{{token}}}:unfinished"

    async def add(self, approval: UnfinishedApproval, deadline: int, now: int) -> None:
        record = json.dumps(
            {
                "c": approval.client_id,
                "u": approval.subject,
                "a": approval.acr,
                "x": approval.txn,
                "t": approval.approved_at,
            },
            separators=(",", ":"),
        )
        ttl = max(deadline - now, 1) + RECORD_MARGIN_SECONDS
        store, token = self.store, approval.token
        # Sent together: one write on the wire backend.
        await store._call(
            lambda: asyncio.gather(
                store._cmd("SET", self.record_key(token), record, "EX", ttl, "NX"),
                store._cmd("ZADD", self.set_key, deadline, token),
            )
        )

    async def finished(self, token: str) -> None:
        """The owning browser came back (a code, a cancel): nothing to report, even if the
        webhook's record is written after this."""
        key, store = self.record_key(token), self.store
        await store._call(lambda: store._cmd("SET", key, FINISHED, "EX", FINISHED_MARK_SECONDS))

    async def due(self, now: int) -> list[UnfinishedApproval]:
        """The approvals past their deadline that nobody finished, each given to one caller."""
        store = self.store
        tokens = await store._call(
            lambda: store._cmd("ZRANGEBYSCORE", self.set_key, "-inf", now, "LIMIT", 0, BATCH)
        )
        found = []
        for raw in tokens or []:
            approval = await self._take(text(raw) or "")
            if approval is not None:
                found.append(approval)
        return found

    async def _take(self, token: str) -> UnfinishedApproval | None:
        store, key = self.store, self.record_key(token)
        claimed = await store._call(lambda: store._cmd("ZREM", self.set_key, token))
        if not claimed:
            return None  # another process took it
        record = await store._call(lambda: store._cmd("GETDEL", key))
        return _parsed(token, text(record))


def _parsed(token: str, raw: str | None) -> UnfinishedApproval | None:
    try:
        data = json.loads(raw or "null")
        return UnfinishedApproval(
            token=token,
            client_id=str(data["c"]),
            subject=str(data["u"]),
            acr=str(data["a"]),
            txn=str(data["x"]),
            approved_at=int(data["t"]),
        )
    except (ValueError, TypeError, KeyError):
        return None  # finished (its mark, or expired), or unreadable: nothing to report
