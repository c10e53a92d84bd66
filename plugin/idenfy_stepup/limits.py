"""Abuse-limit counters shared by /authorize and the retry action (``challenge.limits``)."""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from .netpolicy import client_ip
from .runtime import Runtime


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


async def hit(rt: Runtime, name: str, identity: str, spent: list[str]) -> float:
    """Count one event against limit ``name``; seconds to wait when over it, else 0."""
    limit = getattr(rt.settings.challenge.limits, name)
    if limit is None:
        return 0.0
    key = rt.store.rate_key(name, identity)
    spent.append(key)
    return await rt.store.hit_rate(key, limit.count, limit.seconds)
