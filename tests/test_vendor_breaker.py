"""iDenfy as a dependency (docs/architecture.md, "The vendor as a dependency"): the circuit
breaker around its API, the alert on a refused account, and readiness.

The provider talks to the simulator over real HTTP; the simulator's scripted outage
(``/_simulator/outage``) makes its partner API hang or answer an error, and counts every
request it receives, so "the vendor saw no request" is what the vendor itself reports.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from idenfy_stepup.idenfy.health import VendorHealth

from .harness.rp import Flow, authorize, challenge_token, query
from .harness.servers import Stack, StackPool
from .harness.vendor import outage, set_outage

pytestmark = pytest.mark.asyncio(loop_scope="module")

UNAVAILABLE = "temporarily_unavailable"
# How long a test waits for a state (an open period ending, a probe's answer) before failing.
PATIENCE = 30.0


class Waiting:
    """Rounds of a polling loop that fail the test, rather than hang it, after PATIENCE."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.deadline = asyncio.get_running_loop().time() + PATIENCE

    async def next(self) -> None:
        if asyncio.get_running_loop().time() > self.deadline:
            raise AssertionError(f"never happened: {self.what}")
        await asyncio.sleep(0.05)


def breaker(**values: Any) -> dict[str, Any]:
    return {"idenfy": {"breaker": {"probe_interval": 0, **values}}}


def health(stack: Stack) -> VendorHealth:
    health: VendorHealth = stack.servers[0][0].config.app.state.runtime.vendor.health
    return health


def assert_vendor_unavailable(flow: Flow, stack: Stack) -> None:
    """The RP gets vendor_unavailable with its state and our iss."""
    assert flow.response.status_code == 303, flow.response.text
    result = query(flow.response.headers["location"])
    assert result["error"] == UNAVAILABLE, result
    assert result["stepup_error"] == "vendor_unavailable", result
    assert result["state"] == flow.state and result["iss"] == stack.issuer, result


async def requests(stack: Stack) -> int:
    count: int = (await outage(stack))["requests"]
    return count


async def readyz(stack: Stack) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.issuer, timeout=20) as c:
        response = await c.get("/readyz")
    return response.status_code, response.json()


async def open_breaker(stack: Stack, failures: int) -> None:
    """``failures`` step-ups that fail on 500s: the breaker opens."""
    await set_outage(stack, "500")
    for _ in range(failures):
        assert_vendor_unavailable(await authorize(stack, login_hint="alice"), stack)


async def assert_fails_fast(stack: Stack) -> None:
    """A step-up now gets vendor_unavailable, and the vendor sees no request."""
    seen = await requests(stack)
    assert_vendor_unavailable(await authorize(stack, login_hint="alice"), stack)
    assert await requests(stack) == seen


async def through_to_vendor(stack: Stack) -> Flow:
    """Step-ups until one reaches the vendor (the half-open probe, once the open period is
    over); every one before it failed at once without a request."""
    seen = await requests(stack)
    waiting = Waiting("a step-up reached the vendor")
    while True:
        flow = await authorize(stack, login_hint="alice")
        if await requests(stack) != seen:
            return flow
        assert_vendor_unavailable(flow, stack)
        await waiting.next()


@pytest.mark.parametrize("mode", ["hang", "500", "503", "429"])
async def test_after_repeated_failures_authorize_fails_fast_without_calling_the_vendor(
    pool: StackPool, mode: str
) -> None:
    settings = breaker(failures=3, window=60, open_seconds=600)
    stack = await pool.fresh(
        settings={**settings, "idenfy": {**settings["idenfy"], "timeout": 0.5}}
    )
    await set_outage(stack, mode)
    for _ in range(3):
        assert_vendor_unavailable(await authorize(stack, login_hint="alice"), stack)
    assert await requests(stack) == 3  # each step-up's check-status, once: nothing retried

    await set_outage(stack, None)  # the vendor is back, but the breaker is open
    for _ in range(3):
        assert_vendor_unavailable(await authorize(stack, login_hint="alice"), stack)
    assert await requests(stack) == 3


async def test_the_half_open_probe_that_is_answered_closes_the_breaker(pool: StackPool) -> None:
    stack = await pool.fresh(settings=breaker(failures=2, open_seconds=2))
    await open_breaker(stack, 2)
    await set_outage(stack, None)
    await assert_fails_fast(stack)  # open, though the vendor is back

    probe = await through_to_vendor(stack)
    assert challenge_token(probe.response)  # the probe's step-up went on to its challenge
    before = await requests(stack)
    assert challenge_token((await authorize(stack, login_hint="alice")).response)
    assert await requests(stack) == before + 2  # closed: check-status and a new session


async def test_a_failed_half_open_probe_opens_the_breaker_again(pool: StackPool) -> None:
    stack = await pool.fresh(settings=breaker(failures=2, open_seconds=2))
    await open_breaker(stack, 2)

    probe = await through_to_vendor(stack)  # the vendor still answers 500
    assert_vendor_unavailable(probe, stack)
    await set_outage(stack, None)
    await assert_fails_fast(stack)  # open again


async def test_callers_during_the_half_open_probe_fail_fast(pool: StackPool) -> None:
    # The probe hangs until the test ends the outage; the timeout only bounds a stuck test.
    settings = breaker(failures=2, open_seconds=1)
    stack = await pool.fresh(settings={**settings, "idenfy": {**settings["idenfy"], "timeout": 30}})
    await open_breaker(stack, 2)
    await set_outage(stack, "hang")
    seen = await requests(stack)

    waiting = Waiting("a step-up became the probe, hanging at the vendor")
    while True:
        probe = asyncio.create_task(authorize(stack, login_hint="alice"))
        answered = Waiting("the step-up was answered or hung at the vendor")
        while not probe.done() and (await outage(stack))["hanging"] == 0:
            await answered.next()
        if not probe.done():
            break
        assert_vendor_unavailable(probe.result(), stack)
        await waiting.next()
    assert await requests(stack) == seen + 1

    others = await asyncio.gather(*(authorize(stack, login_hint="alice") for _ in range(5)))
    for flow in others:
        assert_vendor_unavailable(flow, stack)
    view = await outage(stack)
    assert view["requests"] == seen + 1 and view["hanging"] == 1  # the probe is still in flight

    await set_outage(stack, None)  # the vendor answers the probe
    assert challenge_token((await probe).response)
    assert challenge_token((await authorize(stack, login_hint="alice")).response)


@pytest.mark.parametrize(
    ("mode", "event", "reason"),
    [
        ("401", "vendor.credentials_rejected", "credentials_rejected"),
        ("402", "vendor.credit_exhausted", "credit_exhausted"),
    ],
)
async def test_a_refused_account_is_not_retried_alerts_and_fails_the_step_up(
    pool: StackPool, caplog: pytest.LogCaptureFixture, mode: str, event: str, reason: str
) -> None:
    stack = await pool.fresh(settings=breaker(open_seconds=600))
    await set_outage(stack, mode)
    caplog.set_level(logging.ERROR, logger="idenfy_stepup")
    counted = {"event": reason}  # stepup_vendor_alerts_total: what an alert rule reads
    alerted = REGISTRY.get_sample_value("stepup_vendor_alerts_total", counted) or 0.0

    assert_vendor_unavailable(await authorize(stack, login_hint="alice"), stack)
    assert await requests(stack) == 1  # one check-status, not retried
    alerts = [r for r in caplog.records if getattr(r, "event", "") == event]
    assert len(alerts) == 1 and alerts[0].levelno == logging.ERROR
    assert REGISTRY.get_sample_value("stepup_vendor_alerts_total", counted) == alerted + 1
    assert REGISTRY.get_sample_value("stepup_vendor_breaker_open") == 1
    assert health(stack).alerts[event] == 1
    assert health(stack).last_alert is not None and health(stack).last_alert.event == event

    # Every further call would be refused the same way: none is made until the open period ends.
    assert_vendor_unavailable(await authorize(stack, login_hint="alice"), stack)
    assert await requests(stack) == 1
    status, body = await readyz(stack)
    assert status == 503
    assert body["vendor"] == "down" and body["vendor_reason"] == reason, body


async def test_readiness_flips_on_a_vendor_outage_and_back(pool: StackPool) -> None:
    stack = await pool.fresh(settings=breaker(failures=2, open_seconds=2))
    assert await readyz(stack) == (200, {"status": "ready", "redis": "up", "vendor": "up"})

    await open_breaker(stack, 2)
    assert REGISTRY.get_sample_value("stepup_vendor_breaker_open") == 1
    status, body = await readyz(stack)
    assert status == 503
    assert body == {
        "status": "unavailable",
        "redis": "up",
        "vendor": "down",
        "vendor_breaker": "open",
        "vendor_reason": "unreachable",
    }

    # No step-up comes (a load balancer sends none to an unready instance): readiness itself
    # makes the half-open probe once the open period is over, and it closes the breaker.
    await set_outage(stack, None)
    waiting = Waiting("/readyz answered 200 again")
    while (await readyz(stack))[0] != 200:
        await waiting.next()
    assert await readyz(stack) == (200, {"status": "ready", "redis": "up", "vendor": "up"})
    assert REGISTRY.get_sample_value("stepup_vendor_breaker_open") == 0


async def test_an_idle_vendor_that_stops_answering_makes_readiness_fail(pool: StackPool) -> None:
    stack = await pool.fresh(settings=breaker(probe_interval=0.2, open_seconds=1))
    assert (await readyz(stack))[0] == 200
    await set_outage(stack, "503")
    waiting = Waiting("/readyz answered 503")
    while (status := await readyz(stack))[0] != 503:
        await waiting.next()
    assert status[1]["vendor"] == "down" and status[1]["vendor_reason"] == "unreachable"

    await set_outage(stack, None)
    waiting = Waiting("/readyz answered 200 again")
    while (await readyz(stack))[0] != 200:
        await waiting.next()
    # Each probe was one check-status of a scanRef that cannot exist: no session was made.
    async with httpx.AsyncClient(
        timeout=20, auth=("simulator-api-key", "simulator-api-secret")
    ) as c:
        sessions = await c.get(f"{stack.simulator_url}/api/v2/facial-authentication-sessions/")
    assert sessions.json() == []


async def test_not_enrolled_answers_do_not_trip_the_breaker(pool: StackPool) -> None:
    stack = await pool.fresh(settings=breaker(failures=2, open_seconds=600))
    for _ in range(4):  # ghost's scanRef is unknown to the vendor: 404 on check-status
        flow = await authorize(stack, login_hint="ghost")
        assert query(flow.response.headers["location"])["stepup_error"] == "not_enrolled"
    assert await readyz(stack) == (200, {"status": "ready", "redis": "up", "vendor": "up"})
    before = await requests(stack)
    assert challenge_token((await authorize(stack, login_hint="alice")).response)
    assert await requests(stack) == before + 2


async def test_a_vendor_kept_out_of_readiness_is_named_but_does_not_fail_it(
    pool: StackPool,
) -> None:
    stack = await pool.fresh(settings=breaker(failures=1, open_seconds=600, in_readiness=False))
    await open_breaker(stack, 1)
    status, body = await readyz(stack)
    assert status == 200
    assert body["status"] == "ready" and body["vendor"] == "down", body
