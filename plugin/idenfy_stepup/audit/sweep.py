"""``approval.unfinished``: approvals whose browser never came back, found by a periodic sweep.

A webhook's approval is only half of a step-up: the browser must come back to /finish for the
code. When it never does (the tab was closed, or someone else's face answered a relayed
challenge while the real user walked away), no request ever reports the ending. So each
approval is remembered (``store.unfinished``) until its finish; every ``audit.sweep_seconds``
each process takes the approvals whose challenge can no longer be finished and emits one event
for each. An approval counts as unfinished at ``approved_at + idenfy.token_lifetime +
challenge.grace_seconds``: no later than its challenge record's expiry, after which no finish
can succeed, so the event is never followed by a code.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..boot.runtime import Runtime
from ..stepup.records import StepUpRequest
from ..store import StoreUnavailable
from ..store.unfinished import Unfinished, UnfinishedApproval
from . import events

log = logging.getLogger("idenfy_stepup")


def deadline(rt: Runtime, approved_at: int) -> int:
    """When an approval no finish took counts as unfinished: the challenge record lives at most
    token_lifetime + grace_seconds from its creation, which was before the approval."""
    settings = rt.settings
    return approved_at + settings.idenfy.token_lifetime + settings.challenge.grace_seconds


async def approved(rt: Runtime, token: str, request: StepUpRequest) -> None:
    """A webhook approved ``token``'s challenge: remember it until its browser finishes."""
    if not events.enabled():
        return
    now = int(time.time())
    approval = UnfinishedApproval(
        token, request.client_id, request.subject, request.acr, request.txn, now
    )
    await Unfinished(rt.store).add(approval, deadline(rt, now), now)


async def finished(rt: Runtime, token: str) -> None:
    """The owning browser finished (a code) or canceled: best effort."""
    if not events.enabled():
        return
    try:
        await Unfinished(rt.store).finished(token)
    except StoreUnavailable:
        log.warning("audit: an approval's finish was not recorded: Redis unavailable")


async def sweep(rt: Runtime) -> int:
    """Emit ``approval.unfinished`` for each due approval this process took; how many."""
    due = await Unfinished(rt.store).due(int(time.time()))
    for approval in due:
        events.emit(
            events.APPROVAL_UNFINISHED,
            approval.txn,
            **events.who(approval),
            challenge_id=events.challenge_id(approval.token),
            approved_at=approval.approved_at,
        )
    return len(due)


async def sweep_forever(rt: Runtime) -> None:
    """The app's background task (its lifespan cancels it)."""
    while True:
        await asyncio.sleep(rt.settings.audit.sweep_seconds)
        if not events.enabled():
            continue
        try:
            await sweep(rt)
        except StoreUnavailable:
            log.warning("audit: unfinished approvals not swept: Redis unavailable")
