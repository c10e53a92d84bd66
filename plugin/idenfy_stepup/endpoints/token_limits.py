"""Failed client authentication at ``/token``, throttled per address and per client.

Checked (without counting) before the client is authenticated, counted only when the
authentication fails; a success never counts. Over a limit: 429, ``Retry-After``.

Per address (``token_failures_per_ip``): an address that keeps failing is refused.

Per client (``token_failures_per_client``): failures naming a registered client_id, from any
address. A client_id is no secret, so this counter alone would let anyone lock a client out of
``/token`` everywhere. Hence, once it is over its limit, it refuses only addresses that have
themselves failed within their window: a distributed guesser is down to one attempt per
address, while the client's own servers, which do not fail, are never refused by it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from dataclasses import dataclass
from urllib.parse import unquote

from starlette.requests import Request

from ..boot.runtime import Runtime

# Fields of each identity's counter hash (one hash per address is shared with other limits,
# hence names of their own); clients are namespaced so that no address or subject is one.
ADDRESS_FIELD = "ti"
CLIENT_FIELD = "tc"
MAX_ASSERTION_CHARS = 8192


def client_identity(client_id: str) -> str:
    return f"client:{client_id}"


def claimed_clients(rt: Runtime, request: Request, form: dict[str, list[str]]) -> tuple[str, ...]:
    """The registered client_ids a token request names, unverified: the Basic user name, the
    ``client_id`` parameter and the client assertion's ``sub`` (authlib may try each)."""
    names = [_basic_user(request), _single(form, "client_id"), _assertion_subject(form)]
    known = [n for n in names if n and rt.settings.client(n) is not None]
    return tuple(dict.fromkeys(known))


@dataclass(frozen=True, slots=True)
class TokenThrottle:
    rt: Runtime
    address: str
    clients: tuple[str, ...]

    async def wait(self) -> float:
        """Seconds this request must wait (0: it may try to authenticate). Counts nothing."""
        return (await self.refusal())[0]

    async def refusal(self) -> tuple[float, str]:
        """:meth:`wait`, and the name of the limit that refuses (``""`` when none does)."""
        limits = self.rt.settings.challenge.limits
        per_ip, per_client = limits.token_failures_per_ip, limits.token_failures_per_client
        window = self._address_window()
        if window is None:
            return 0.0, ""
        counters = [(ADDRESS_FIELD, per_ip.count, window)] if per_ip else []
        clients = self.clients if per_client else ()
        if clients:
            counters.append((ADDRESS_FIELD, 1, window))  # over it: this address has failed
        if not counters:
            return 0.0, ""
        store = self.rt.store
        checks = [store.hit_limits(self.address, counters, add=False)]
        if per_client:
            counter = [(CLIENT_FIELD, per_client.count, per_client.seconds)]
            checks += [store.hit_limits(client_identity(c), counter, add=False) for c in clients]
        address, *by_client = await asyncio.gather(*checks)
        if per_ip and address.index == 0:
            return address.wait, "token_failures_per_ip"
        if address.index < 0:
            return 0.0, ""  # no failure from here: a client under attack is still served
        # The client's counter resets, or this address's failures expire: whichever is first.
        over = [hit.wait for hit in by_client if hit.wait > 0]
        if not over:
            return 0.0, ""
        return min(min(over), address.wait), "token_failures_per_client"

    async def failed(self) -> None:
        """Count one failed client authentication for the address and each named client."""
        limits = self.rt.settings.challenge.limits
        per_ip, per_client = limits.token_failures_per_ip, limits.token_failures_per_client
        window = self._address_window()
        if window is None:
            return
        count = per_ip.count if per_ip else 1
        store = self.rt.store
        counts = [store.hit_limits(self.address, [(ADDRESS_FIELD, count, window)])]
        if per_client:
            counter = [(CLIENT_FIELD, per_client.count, per_client.seconds)]
            counts += [store.hit_limits(client_identity(c), counter) for c in self.clients]
        await asyncio.gather(*counts)

    def _address_window(self) -> int | None:
        """The window of the address's failure counter: it also serves the per-client limit,
        which needs to know whether an address has failed. None: both limits are off."""
        limits = self.rt.settings.challenge.limits
        per_ip, per_client = limits.token_failures_per_ip, limits.token_failures_per_client
        if per_ip is not None:
            return per_ip.seconds
        return per_client.seconds if per_client is not None else None


def _single(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name) or []
    return values[0] if len(values) == 1 and values[0] else None


def _basic_user(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip()).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return unquote(decoded.partition(":")[0]) or None


def _assertion_subject(form: dict[str, list[str]]) -> str | None:
    """The unverified ``sub`` of a client assertion (authlib verifies it, or refuses it)."""
    assertion = _single(form, "client_assertion")
    if assertion is None or len(assertion) > MAX_ASSERTION_CHARS or assertion.count(".") != 2:
        return None
    payload = assertion.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return sub if isinstance(sub, str) else None
