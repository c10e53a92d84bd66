"""Readiness: can this instance serve a step-up now? One function, for every port that asks.

Ready = Redis answers, this instance signs with the keys Redis holds, and iDenfy is reachable
(its breaker is closed and the latest readiness probe, if any, was answered). The vendor's part
never waits for the vendor: it is what real calls and at most one background probe per
interval have shown (idenfy/health.py). The body names what is down.
"""

from __future__ import annotations

from ..store import StoreUnavailable
from .runtime import Runtime


async def readiness(rt: Runtime) -> tuple[bool, dict[str, object]]:
    """``(ready, body)``; the body is ``{"status": "ready" | "unavailable", "redis": "up" |
    "down", "vendor": "up" | "down", …}`` with the reason of whatever is down."""
    vendor = rt.vendor.status()
    body: dict[str, object] = {"status": "ready", "redis": "up", "vendor": "up"}
    if not vendor.up:
        body.update(vendor="down", vendor_breaker=vendor.breaker.value)
        body["vendor_reason"] = vendor.reason
    if not await rt.store.ping():
        body["redis"] = "down"
    elif rt.shared is not None and rt.shared.held:
        try:
            split = await rt.shared.check()
        except StoreUnavailable:
            # PING answered but the comparison did not (a connection still reconnecting after
            # a Redis restart): Redis is up, and the next probe compares.
            split = rt.shared.split
        if split:
            # Another instance signs with other keys: a relying party would reject half the
            # id_tokens. Only a restart of this instance adopts what Redis holds.
            body["reason"] = "generated secrets differ from those in Redis: restart this instance"
            body["fields"] = split
    vendor_ok = vendor.up or not rt.settings.idenfy.breaker.in_readiness
    ready = body["redis"] == "up" and vendor_ok and "fields" not in body
    if not ready:
        body["status"] = "unavailable"
    return ready, body
