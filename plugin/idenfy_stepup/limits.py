"""Abuse-limit counters shared by /authorize and the retry action (``challenge.limits``)."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from .netpolicy import client_ip
from .runtime import Runtime
from .store import LimitHit


def ip_identity(request: Request, rt: Runtime) -> str:
    """The caller's address for rate limits; an IPv6 host counts as its whole /64."""
    raw = client_ip(request, rt.trusted_proxies)
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return raw or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


async def hit(
    rt: Runtime, identity: str, names: tuple[str, ...], spent: list[str], *, lock: bool = False
) -> LimitHit:
    """Count one event against each limit in ``names`` for ``identity`` (one round trip); with
    ``lock``, ``identity`` is a subject and its spoof lock-out is checked first.

    The counters hit are added to ``spent`` (a success refunds them). ``wait`` > 0: refused.
    """
    limits = rt.settings.challenge.limits
    counters = []
    for name in names:
        limit = getattr(limits, name)
        if limit is not None:
            counters.append((rt.store.rate_key(name, identity), limit.count, limit.seconds))
    check_lock = lock and bool(limits.spoof_lockout_seconds)
    if not counters and not check_lock:
        return LimitHit()
    found = await rt.store.hit_limits(counters, rt.store.lock_key(identity) if check_lock else None)
    hit_count = len(counters) if found.index < 0 else found.index + 1
    spent.extend(key for key, _, _ in counters[:hit_count] if not found.locked)
    return found
