"""Abuse limits (``challenge.limits``): what may count against an address or a person.

Only failures count: a failed, expired or canceled face check, or a refused request. A success,
or a flow still in progress, never does, so thousands of people behind one corporate NAT (or a
proxy without ``server.trusted_proxies``) do not throttle each other by succeeding. What a flow
in progress costs, a vendor session, is bounded separately: an address may hold at most
``open_challenges_per_ip`` of them open at once.

A subject is counted only for its *own* face checks: failed checks of challenges a signed hint
(request object, id_token_hint) named it for. A plain ``login_hint`` is only claimed, so
anyone could send it: it can be refused because of the subject's state (a lock-out, too many
failures), but can never add to that state.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from dataclasses import dataclass

from starlette.requests import Request

from ..boot.runtime import Runtime
from ..store import LimitHit, tag
from ..web.addresses import Network, client_of
from .records import StepUpRequest

log = logging.getLogger("idenfy_stepup")

# Each limit's counter: a field of its identity's hash (distinct for an address and a subject
# that happen to be the same string).
FIELDS = {
    "failures_per_ip": "fi",
    "failures_per_subject": "fs",
    "token_failures_per_client": "tc",
    "token_failures_per_ip": "ti",
}


def ip_identity(request: Request, rt: Runtime) -> str:
    """The caller's address for rate limits; an IPv6 host counts as its whole /64."""
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for", "") if rt.trusted_proxies else ""
    return identity_of(peer, forwarded, rt.trusted_proxies)


# An X-Forwarded-For longer than this is worked out every time rather than remembered: the
# cache's keys stay small whatever a client sends.
CACHED_FORWARDED_CHARS = 256


def identity_of(peer: str, forwarded: str, proxies: tuple[Network, ...]) -> str:
    """``ip_identity`` from the peer, its X-Forwarded-For and the trusted proxies. The
    requests of one step-up come from the same pair, four to seven times: remembered."""
    if len(forwarded) > CACHED_FORWARDED_CHARS:
        return address_identity(client_of(peer, forwarded, proxies))
    return _identity_of(peer, forwarded, proxies)


@functools.lru_cache(maxsize=4096)
def _identity_of(peer: str, forwarded: str, proxies: tuple[Network, ...]) -> str:
    return address_identity(client_of(peer, forwarded, proxies))


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


def _counters(rt: Runtime, name: str) -> list[tuple[str, int, int]]:
    limit = getattr(rt.settings.challenge.limits, name)
    return [] if limit is None else [(FIELDS[name], limit.count, limit.seconds)]


async def check(rt: Runtime, identity: str, name: str, *, lock: bool = False) -> LimitHit:
    """Whether ``identity`` is over the limit ``name`` (and, with ``lock``, locked out): a
    read that counts nothing. ``wait`` > 0: refused for that long."""
    counters = _counters(rt, name)
    check_lock = lock and bool(rt.settings.challenge.limits.spoof_lockout_seconds)
    if not counters and not check_lock:
        return LimitHit()
    return await rt.store.hit_limits(identity, counters, lock=check_lock, add=False)


async def count(rt: Runtime, identity_tag: str, name: str) -> None:
    """Count one failure of limit ``name`` against the identity whose tag is given."""
    counters = _counters(rt, name)
    if counters and identity_tag:
        await rt.store.hit_limits_of(identity_tag, counters)


async def count_address_failure(rt: Runtime, ip: str) -> None:
    """A refused request counts against its address."""
    await count(rt, tag(ip), "failures_per_ip")


async def open_wait(rt: Runtime, ip: str) -> bool:
    """True when ``ip`` already holds as many open challenges as it may."""
    most = rt.settings.challenge.limits.open_challenges_per_ip
    if not most:
        return False
    return await rt.store.open_challenges(tag(ip)) >= most


@dataclass(frozen=True, slots=True)
class AddressState:
    """What the limits say of one address: over its failures for ``wait`` seconds (0: not),
    and whether it holds as many open challenges as it may."""

    wait: float
    open_full: bool


async def address_state(rt: Runtime, ip: str) -> AddressState:
    """Both reads of an address at once: they share its slot, and sent together they leave in
    one write (one round trip on a single server)."""
    failures, full = await asyncio.gather(check(rt, ip, "failures_per_ip"), open_wait(rt, ip))
    return AddressState(failures.wait, full)


async def opened(rt: Runtime, ip: str, token: str, expires_at: int) -> None:
    if rt.settings.challenge.limits.open_challenges_per_ip:
        await rt.store.open_challenges(tag(ip), "add", token, expires_at)


async def ended(
    rt: Runtime,
    ip_tag: str,
    token: str,
    *,
    failure: bool,
    failed_check: StepUpRequest | None = None,
) -> None:
    """A challenge ended: it is no longer open, and a failure counts against its address.
    ``failed_check``: the request of a face check that failed; it counts against its subject
    only when a signed hint named that subject."""
    if ip_tag and rt.settings.challenge.limits.open_challenges_per_ip:
        await rt.store.open_challenges(ip_tag, "remove", token)
    if failure:
        await count(rt, ip_tag, "failures_per_ip")
    if failed_check is not None and failed_check.verified:
        await count(rt, tag(failed_check.subject), "failures_per_subject")
