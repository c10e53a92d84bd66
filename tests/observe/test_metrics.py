"""Every metric after a flow, with bounded labels only; the management app's three paths."""

from __future__ import annotations

import httpx
import pytest

from idenfy_stepup.idenfy.transport import (
    FetchTimeout,
    VendorRequest,
    VendorResponse,
    VendorTimeout,
)
from idenfy_stepup.observe.management import ManagementApp
from idenfy_stepup.observe.vendor import MeteredFetch

from ..harness.fake_vendor import FakeIdenfy
from ..harness.redis import RedisProcess
from ..harness.rp import pkce, query, request_params
from .conftest import Open, settings_with
from .flows import approved_flow
from .scrape import label_values, labelsets, local, parse, total

# The readiness body when Redis and iDenfy both answer (boot/readiness.py).
READY = {"status": "ready", "redis": "up", "vendor": "up"}

ACR = "urn:idenfy:stepup:face"
METRICS = {
    "stepup_outcomes_total": {"client_id", "acr", "result"},
    "stepup_face_check_seconds_count": set(),
    "stepup_push_latency_seconds_count": set(),
    "stepup_push_streams_open": set(),
    "stepup_vendor_requests_total": {"call", "status"},
    "stepup_vendor_request_seconds_count": {"call"},
    "stepup_http_requests_total": {"route", "method", "status"},
    "stepup_http_request_seconds_count": {"route", "method"},
    "stepup_rate_limited_total": {"limit"},
    "stepup_redis_errors_total": {"operation"},
}


async def test_a_flow_moves_every_metric_with_configured_labels_only(
    open_app: Open, vendor: FakeIdenfy
) -> None:
    limits = {"challenge": {"limits": {"token_failures_per_ip": {"count": 1, "seconds": 60}}}}
    async with open_app(limits) as (browser, app, _):
        before = local()
        token = await approved_flow(browser, vendor, app)
        # A wrong secret counts; the next /token from this address is refused by the limit.
        form = {"grant_type": "authorization_code", "code": "x", "redirect_uri": "x"}
        assert (await browser.post("/token", data=form, auth=("shop", "wrong"))).status_code == 401
        assert (await browser.post("/token", data=form, auth=("shop", "wrong"))).status_code == 429
        assert (await browser.get(f"/nowhere/{token}")).status_code == 404
    after = local()

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("stepup_outcomes_total", client_id="shop", acr=ACR, result="approved") == 1
    assert delta("stepup_face_check_seconds_count") == 1
    assert delta("stepup_push_latency_seconds_count") == 1
    assert total(after, "stepup_push_streams_open") == total(before, "stepup_push_streams_open")
    assert delta("stepup_vendor_requests_total", call="check_status", status="200") == 1
    assert delta("stepup_vendor_requests_total", call="create_authentication", status="200") == 1
    assert delta("stepup_vendor_request_seconds_count", call="check_status") == 1
    http = "stepup_http_requests_total"
    assert delta(http, route="/authorize", method="GET", status="303") == 1
    assert delta(http, route="/challenge/{token}", method="GET", status="200") == 1
    assert delta(http, route="/challenge/{token}/events", method="GET", status="200") == 1
    assert delta(http, route="/webhooks/idenfy", method="POST", status="200") == 1
    assert delta(http, route="/token", method="POST", status="429") == 1
    assert delta(http, route="other", method="GET", status="404") == 1
    assert delta("stepup_http_request_seconds_count", route="/authorize", method="GET") == 1
    assert delta("stepup_rate_limited_total", limit="token_failures") == 1
    for name, labels in METRICS.items():
        found = labelsets(after, name)
        assert found or name == "stepup_redis_errors_total", name
        assert all({k for k, _ in ls} == labels for ls in found), (name, found)
    # No label value is a token, a subject, an address or a path as sent.
    values = label_values(after)
    assert not [v for v in values if token in v or v in ("alice", "127.0.0.1")], values
    assert not [v for v in values if v.startswith("/nowhere")]


async def test_unknown_paths_and_methods_add_no_time_series(open_app: Open) -> None:
    async with open_app() as (browser, _, _):
        assert (await browser.get("/first-unknown")).status_code == 404
        await browser.request("BREW", "/authorize")
        before = set(local())
        for i in range(5):
            assert (await browser.get(f"/unknown-{i}/deeper")).status_code == 404
            await browser.request(f"BREW{i}", "/authorize")
    after = local()
    assert set(after) == before
    assert not [v for v in label_values(after) if "unknown" in v or "BREW" in v]


async def test_vendor_refusal_and_timeout_are_counted_by_call_and_status(
    open_app: Open, vendor: FakeIdenfy
) -> None:
    vendor.fail_status = 402
    async with open_app() as (browser, _, _):
        before = local()
        sent = request_params(pkce()[1], login_hint="alice")
        refused = await browser.get("/authorize", params=sent)
        assert query(refused.headers["location"])["error"] == "temporarily_unavailable"
    after = local()
    name = "stepup_vendor_requests_total"
    assert (
        total(after, name, call="check_status", status="402")
        - total(before, name, call="check_status", status="402")
        == 1
    )

    async def slow(request: VendorRequest) -> VendorResponse:
        raise FetchTimeout("timeout")

    timeouts = total(local(), name, call="get_session", status="timeout")
    request = VendorRequest(
        "GET",
        "https://ivs.idenfy.com/api/v2/facial-authentication-sessions/TOKEN-1/",
        {},
        None,
        VendorTimeout(1, 1, 1),
    )
    with pytest.raises(FetchTimeout):  # counted, then passed on to the client as it was
        await MeteredFetch(slow)(request)
    assert total(local(), name, call="get_session", status="timeout") == timeouts + 1
    assert "TOKEN-1" not in label_values(local())


async def test_redis_failure_is_counted(
    open_app: Open, own_redis: RedisProcess, vendor: FakeIdenfy
) -> None:
    del open_app
    from idenfy_stepup.app import create_app

    settings = settings_with(own_redis.url)
    app = create_app(settings, vendor_fetch=vendor.fetch)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=settings.issuer) as browser,
    ):
        own_redis.stop()
        before = total(local(), "stepup_redis_errors_total")
        sent = request_params(pkce()[1], login_hint="alice")
        down = await browser.get("/authorize", params=sent)
        assert query(down.headers["location"])["error"] == "temporarily_unavailable"
        assert total(local(), "stepup_redis_errors_total") > before


async def test_management_app_serves_metrics_and_probes_and_public_port_does_not(
    open_app: Open,
) -> None:
    async with open_app() as (browser, app, _):
        assert (await browser.get("/jwks")).status_code == 200
        manage = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=ManagementApp(lambda: app)),
            base_url="http://127.0.0.1:9000",
        )
        async with manage:
            metrics = await manage.get("/metrics")
            assert metrics.status_code == 200
            assert metrics.headers["content-type"].startswith("text/plain")
            scraped = parse(metrics.text)
            assert total(scraped, "stepup_http_requests_total", route="/jwks") >= 1
            assert (await manage.get("/healthz")).json() == {"status": "ok"}
            assert (await manage.get("/readyz")).json() == READY
            assert (await manage.get("/authorize")).status_code == 404
            assert (await manage.post("/metrics")).status_code == 405
        assert (await browser.get("/metrics")).status_code == 404
        assert (await browser.get("/readyz")).json() == READY
