"""Assemble the simulator into one Starlette app on its own origin (docs/architecture.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from starlette.applications import Starlette

from ..settings import SimulatorSettings
from .core import Simulator
from .iframe import IframePages, templates
from .outage import OutageGate
from .scripting import ScriptingApi
from .vendor import VENDOR_PREFIXES, VendorApi

# The vendor expects the provider to answer within 10 s (docs/idenfy-api.md §2.4); so do we.
WEBHOOK_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
HEADERS = {"User-Agent": "idenfy-stepup-simulator"}


def create_simulator_app(
    settings: SimulatorSettings,
    *,
    webhook_url: str,
    signing_key: str | None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The iDenfy stand-in: partner API, iframe page and the ``/_simulator`` controls.

    Webhooks go to ``webhook_url``, signed with ``signing_key`` (unsigned when None, as the
    vendor does without a key). ``transport`` replaces the network edge of the webhook client
    in tests. State lives in memory for the life of the app; webhooks need the lifespan running.
    """
    sim = Simulator(settings, webhook_url=webhook_url, signing_key=signing_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = httpx.AsyncClient(transport=transport, timeout=WEBHOOK_TIMEOUT, headers=HEADERS)
        async with client, sim.running(client):
            yield

    routes = [
        *VendorApi(sim).routes(),
        *ScriptingApi(sim).routes(),
        *IframePages(sim, templates()).routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(OutageGate, outage=sim.outage, prefixes=VENDOR_PREFIXES)
    app.state.simulator = sim
    return app
