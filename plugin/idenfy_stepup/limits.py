"""Abuse-limit counters shared by /authorize and the retry action (``challenge.limits``)."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from .netpolicy import client_ip
from .runtime import Runtime
from .store import LimitHit, spent_entry


def ip_identity(request: Request, rt: Runtime) -> str:
    """The caller's address for rate limits; an IPv6 host counts as its whole /64."""
    return address_identity(client_ip(request, rt.trusted_proxies))


def address_identity(raw: str) -> str:
    """An address as limits count it: IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 as its /64."""
    try:
        ip = ipaddress.ip_address(raw)
    except ValueError:
        return raw or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


# Each limit's counter: a field of its identity's hash (distinct for an address and a subject
# that happen to be the same string).
FIELDS = {
    "authorize_per_ip": "ai",
    "challenges_per_ip": "ci",
    "authorize_per_subject": "as",
    "challenges_per_subject": "cs",
}


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
        limit = getattr(limits, name, None)  # being replaced: see config.LimitSettings
        if limit is not None:
            counters.append((FIELDS[name], limit.count, limit.seconds))
    check_lock = lock and bool(limits.spoof_lockout_seconds)
    if not counters and not check_lock:
        return LimitHit()
    found = await rt.store.hit_limits(identity, counters, lock=check_lock)
    hit_count = len(counters) if found.index < 0 else found.index + 1
    if counters and not found.locked:
        spent.append(spent_entry(identity, [name for name, _, _ in counters[:hit_count]]))
    return found
