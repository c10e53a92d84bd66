"""The garbage collector, set for a server that allocates much per request and keeps little.

CPython runs a collection of its youngest generation each time the container objects
allocated and not yet freed pass 700; the requests a busy provider has in flight pass that
many times per step-up, and each collection walks every young object still alive, only to
find that nearly none of them are garbage (reference counting frees them when their request
ends). And what start-up built (modules, settings, templates, authlib's tables, the keys)
lives as long as the process, yet each full collection walks it again. So, once the servers
are up: everything alive then is frozen out of every later collection, and the youngest
generation is collected every ``YOUNG_THRESHOLD`` allocations instead. Cycles are still
collected; they wait a little longer, which costs a few MiB at most.
"""

from __future__ import annotations

import asyncio
import gc

import uvicorn

YOUNG_THRESHOLD = 20_000


def settle() -> None:
    """Freeze what is alive now and collect the youngest generation less often."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)


async def settle_when_started(servers: list[uvicorn.Server]) -> None:
    """``settle`` once every server has run its start-up (the app is built, sockets bound)."""
    while not all(server.started for server in servers):
        if any(server.should_exit for server in servers):
            return
        await asyncio.sleep(0.1)
    settle()
