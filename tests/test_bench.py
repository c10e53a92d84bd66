"""bench/load.py and bench/chaos.py end to end, small: they must keep running on a fresh machine
(no figures checked: timings are for people to read, never assertions; chaos.py's counts of
lost, doubled and hung step-ups are checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"flow", "authorize", "page", "events_open", "webhook", "push", "finish", "token"}


@pytest.mark.slow
def test_load_benchmark_runs_whole_flows_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = [
        *(sys.executable, str(ROOT / "bench" / "load.py")),
        *("--users", "4", "--duration", "3", "--warmup", "1", "--rounds", "2"),
        *("--pending", "100", "--endpoint-cpu", "--out", str(out)),
    ]
    run = subprocess.run(args, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert json.loads(out.read_text()) == report
    (scenario,) = report["scenarios"]
    assert scenario["scenario"]["workers"] == 1 and scenario["scenario"]["users"] == 4
    assert scenario["error_count"] == 0, scenario["errors"]
    assert scenario["flows"] > 0
    assert set(scenario["latency_ms"]) == STEPS
    assert all(v["p50"] > 0 for v in scenario["latency_ms"].values())
    assert scenario["provider_cpu_ms_per_flow"]["median_of_rounds"] > 0
    redis = scenario["redis"]
    # Every flow ran the webhook script once and published once.
    assert redis["calls_per_flow"]["publish"] == pytest.approx(1.0, abs=0.35)
    assert redis["commands_per_flow"] > 5
    cpu = scenario["endpoint_cpu_us"]
    assert {"/authorize", "/token", "/webhooks/idenfy", "/challenge/T"} <= set(cpu)
    memory = report["memory"]
    assert memory["pending_challenges"] == 100
    assert memory["bytes_per_pending"] > 0
    assert memory["keys_per_pending"] >= 2  # the challenge and its request, at least


WAITING_FIGURES = {
    "browsers",
    "workers",
    "instances",
    "drivers",
    "provider_processes",
    "streams_opened",
    "memory_kib_per_waiting_browser",
    "memory_kib_per_waiting_browser_at_open",
    "provider_rss_mib",
    "provider_open_fds",
    "provider_cpu_cores_idle",
    "redis_used_memory_bytes",
    "redis_cpu_cores_idle",
    "webhook_to_done_ms",
    "webhook_rate_achieved_per_s",
    "reconnects_during_idle",
    "reconnects",
    "comments_received",
    "errors",
    "error_count",
    "codes_redeemed",
    "wall_s",
    "cpu_cores",
    "load_average",
    "settings",
}


@pytest.mark.slow
def test_waiting_benchmark_wakes_every_browser_and_reports(tmp_path: Path) -> None:
    # Idle for longer than the shortest push interval the build allows (5 s): its streams end
    # and reconnect (push_timeout), or send keep-alive comments (push_keepalive), while the
    # browsers wait, as they do at full scale. The child runs this checkout's provider.
    from idenfy_stepup.settings.models import ChallengeSettings

    known = ChallengeSettings.model_fields
    key = "push_timeout" if "push_timeout" in known else "push_keepalive"
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(f"challenge:\n  {key}: 5\n")
    args = [
        *(sys.executable, str(ROOT / "bench" / "load.py"), "--scenario", "waiting"),
        *("--browsers", "20", "--idle", "6", "--instances", "1,2"),
        *("--settings-overlay", str(overlay)),
    ]
    path = os.pathsep.join([str(ROOT / "plugin"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    run = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert report["scenarios"] == [] and "memory" not in report  # flows not asked for
    one, two = report["waiting"]
    assert (one["instances"], two["instances"]) == (1, 2)
    # Two instances: each webhook went to the one not holding its browser's stream.
    assert two["provider_processes"] == 2
    for run_ in (one, two):
        assert set(run_) == WAITING_FIGURES
        assert run_["browsers"] == 20 and run_["streams_opened"] == 20
        assert run_["error_count"] == 0, run_["errors"]
        assert run_["codes_redeemed"] == 20
        assert set(run_["webhook_to_done_ms"]) == {"p50", "p90", "p99", "max"}
        assert run_["provider_open_fds"]["waiting"] > max(run_["provider_open_fds"]["before"], 20)
        assert (
            run_["redis_used_memory_bytes"]["waiting"] > run_["redis_used_memory_bytes"]["before"]
        )
        # Each stream either reconnected or heard a keep-alive while the browsers waited.
        waited = run_["reconnects_during_idle"] + run_["comments_received"]
        assert waited >= 20
        assert set(run_["cpu_cores"]) == {"open", "idle", "webhooks"}
        assert run_["settings"]["push_overlay"] == {key: 5}
        assert run_["settings"]["challenge_lifetime_s"] >= 600


def _waiting_module() -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import waiting
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return waiting


def test_bench_event_stream_parses_retry_comments_and_done_across_chunks() -> None:
    waiting = _waiting_module()
    stream = waiting.EventStream()
    body = (
        b'\xef\xbb\xbfretry: 1000\n\n: keep-alive\r\n\r\nid: 7\rdata: {"finish":\r\n'
        b'data:  "/challenge/T/finish"}\nevent: done\n\n'
    )
    events = []
    for i in range(0, len(body), 5):  # split anywhere, CRLF included
        events += stream.feed(body[i : i + 5])
    assert stream.retry_ms == 1000 and stream.comments == 1 and stream.last_id == "7"
    assert [(e.type, e.data) for e in events] == [("done", '{"finish":\n "/challenge/T/finish"}')]


def test_bench_event_stream_drops_a_half_event_when_the_connection_ends() -> None:
    waiting = _waiting_module()
    stream = waiting.EventStream()
    assert stream.feed(b"retry: 250\nretry: x\nevent: done\ndata: {}\n") == []
    stream.reconnected()  # the stream ended before the blank line: nothing is dispatched
    assert stream.feed(b"\n") == []
    assert stream.retry_ms == 250  # a malformed retry is ignored; a good one outlives it
    assert [e.type for e in stream.feed(b"data: x\n\n")] == ["message"]


@pytest.mark.slow
def test_chaos_benchmark_loses_and_doubles_nothing_through_a_redis_restart_and_a_killed_worker(
    tmp_path: Path,
) -> None:
    out = tmp_path / "chaos.json"
    args = [
        *(sys.executable, str(ROOT / "bench" / "chaos.py")),
        *("--flows", "200", "--concurrency", "20", "--out", str(out)),
    ]
    run = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout)
    assert json.loads(out.read_text()) == report
    assert report["by_kind"] == {"plain": 170, "duplicated": 10, "reordered": 10, "delayed": 10}
    assert report["problems"] == []
    assert report["lost"] == report["doubled"] == report["hangs"] == 0
    assert report["ended"] == report["flows"] == 200
    # Every step-up whose first webhook approved it got exactly one redeemed code.
    assert report["codes_redeemed"] == report["approved_first"]
    assert report["server_errors_seen"].keys() <= {
        f"{step}:503" for step in ("authorize", "page", "events", "finish", "webhook", "token")
    }
    restart, kill = report["faults"]
    assert restart["kind"] == "redis_restart" and restart["answered_again"]
    kept, sampled = restart["challenges_kept"].split("/")
    assert kept == sampled != "0"  # the AOF brought the challenges back
    assert kill["kind"] == "worker_kill" and kill["replaced"] and kill["workers_after"] == 2
    assert sum(report["retries"].values()) > 0  # the faults were felt, and outlived
    assert report["provider_log"]["tracebacks"] == 0
