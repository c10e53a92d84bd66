"""``serve --workers 2``: the management port (worker 0) sums every worker's metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ..harness.redis import RedisProcess
from ..test_cli_workers import answers, free_port, live_stack, step_up, wait_for, wait_workers
from .scrape import parse, total

# The readiness body when Redis and iDenfy both answer (boot/readiness.py).
READY = {"status": "ready", "redis": "up", "vendor": "up"}

pytestmark = pytest.mark.slow

FLOWS = 4


def test_two_workers_scrape_sums_outcomes_and_requests_over_both(
    tmp_path: Path, own_redis: RedisProcess
) -> None:
    mport = free_port()
    management = {"host": "127.0.0.1", "port": mport}
    with live_stack(tmp_path, own_redis, "--workers", "2", management=management) as live:
        wait_workers(live, 2)
        metrics = f"http://127.0.0.1:{mport}/metrics"
        wait_for("the management port", lambda: answers(metrics), procs=(live.serve,))
        before = parse(httpx.get(metrics).text)
        for _ in range(FLOWS):
            step_up(live.issuer, live.simulator_url)
        after = parse(httpx.get(metrics).text)

        def delta(name: str, **labels: str) -> float:
            return total(after, name, **labels) - total(before, name, **labels)

        approved = {"client_id": "shop", "acr": "urn:idenfy:stepup:face", "result": "approved"}
        assert delta("stepup_outcomes_total", **approved) == FLOWS
        assert delta("stepup_outcomes_total") == FLOWS
        http = "stepup_http_requests_total"
        assert delta(http, route="/authorize", method="GET", status="303") == FLOWS
        assert delta(http, route="/challenge/{token}/finish", status="303") == FLOWS
        assert delta(http, route="/token", method="POST", status="200") == FLOWS
        assert delta(http, route="/webhooks/idenfy", status="200") == FLOWS
        assert delta("stepup_vendor_requests_total", call="check_status", status="200") == FLOWS
        # The management port is worker 0's; the public port has no /metrics.
        assert httpx.get(f"http://127.0.0.1:{mport}/readyz").json() == READY
        assert httpx.get(f"{live.issuer}/metrics").status_code == 404
