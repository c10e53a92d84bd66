"""``idenfy-stepup serve`` (one process): the management port beside the provider, through a
SIGHUP reload; a taken management port is one line and an exit code."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from ..harness.redis import RedisProcess
from ..test_cli_workers import EXE, answers, free_port, live_config, live_stack, wait_for, write
from .scrape import parse, total

# The readiness body when Redis and iDenfy both answer (boot/readiness.py).
READY = {"status": "ready", "redis": "up", "vendor": "up"}

pytestmark = pytest.mark.slow


def test_management_port_serves_probes_and_metrics_through_a_reload(
    tmp_path: Path, own_redis: RedisProcess
) -> None:
    mport = free_port()
    manage = f"http://127.0.0.1:{mport}"
    management = {"host": "127.0.0.1", "port": mport}
    with live_stack(tmp_path, own_redis, management=management) as live:
        wait_for("the management port", lambda: answers(f"{manage}/readyz"), procs=(live.serve,))
        assert httpx.get(f"{manage}/healthz").json() == {"status": "ok"}
        assert httpx.get(f"{live.issuer}/metrics").status_code == 404
        assert httpx.get(f"{live.issuer}/jwks").status_code == 200
        scraped = parse(httpx.get(f"{manage}/metrics").text)
        assert total(scraped, "stepup_http_requests_total", route="/jwks", status="200") == 1
        # Probes on the management port are not traffic: only the public one that live_stack
        # waited for is counted.
        assert total(scraped, "stepup_http_requests_total", route="/readyz") == 1

        live.serve.popen.send_signal(signal.SIGHUP)
        wait_for("the reload", lambda: "settings reloaded" in live.serve.text(), timeout=30)
        assert httpx.get(f"{live.issuer}/jwks").status_code == 200
        assert httpx.get(f"{manage}/readyz").json() == READY
        after = parse(httpx.get(f"{manage}/metrics").text)
        assert total(after, "stepup_http_requests_total", route="/jwks", status="200") == 2


def test_a_taken_management_port_stops_the_start_with_one_line(
    tmp_path: Path, own_redis: RedisProcess
) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        mport = taken.getsockname()[1]
        management = {"host": "127.0.0.1", "port": mport}
        config = live_config(free_port(), free_port(), own_redis.url, management=management)
        path = write(tmp_path, config)
        done = subprocess.run(
            [str(EXE), "serve", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert done.returncode == 2, done.stderr
    assert f"server.management: cannot listen on 127.0.0.1:{mport}" in done.stderr
    assert "Traceback" not in done.stderr
