"""Who is calling: the peer address, or X-Forwarded-For only behind a configured proxy.

``X-Forwarded-For`` is trivially forged, so it is read only when the direct peer is one of
``server.trusted_proxies``; then the right-most address that is not a trusted proxy is the
client. The webhook's optional allowlist (``idenfy.webhook_allowed_ips``) is applied on top of
the signature check, never instead of it (docs/idenfy-api.md §2.4).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(entries: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries)


def _within(address: str, nets: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in nets)


def client_ip(request: Request, proxies: tuple[Network, ...]) -> str:
    peer = request.client.host if request.client else ""
    if not proxies:
        return peer
    return client_of(peer, request.headers.get("x-forwarded-for", ""), proxies)


def client_of(peer: str, forwarded: str, proxies: tuple[Network, ...]) -> str:
    """:func:`client_ip` from the peer's address and the X-Forwarded-For it sent."""
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, proxies):
            return hop
    return peer


def allowed(request: Request, allowlist: tuple[Network, ...], proxies: tuple[Network, ...]) -> bool:
    """True when no allowlist is configured, or the caller's address is on it."""
    return not allowlist or _within(client_ip(request, proxies), allowlist)
