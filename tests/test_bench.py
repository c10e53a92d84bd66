"""bench/load.py and bench/chaos.py end to end, small: they must keep running on a fresh machine
(no figures checked: timings are for people to read, never assertions; chaos.py's counts of
lost, doubled and hung step-ups are checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
