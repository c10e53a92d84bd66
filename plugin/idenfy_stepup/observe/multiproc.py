"""Metrics across ``serve --workers N``: prometheus-client's multiprocess mode.

The supervisor creates one directory per run and names it in ``PROMETHEUS_MULTIPROC_DIR``
before it spawns anything, so every worker (spawned: a fresh interpreter reading the
environment when it first imports prometheus-client) writes its values into its own files
there. The worker that serves the management port sums every file at each scrape. A worker
that exits is marked dead (its live gauges, the open push streams, drop out; its counters stay,
so totals never go backwards), and the directory is removed when the supervisor ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from prometheus_client import CollectorRegistry, multiprocess

ENV = "PROMETHEUS_MULTIPROC_DIR"


def start_run() -> str:
    """A fresh directory for this run's workers, named in the environment they inherit."""
    path = tempfile.mkdtemp(prefix="idenfy-stepup-metrics-")
    os.environ[ENV] = path
    return path


def end_run(path: str) -> None:
    if os.environ.get(ENV) == path:
        del os.environ[ENV]
    shutil.rmtree(path, ignore_errors=True)


def worker_gone(pid: int | None) -> None:
    """A worker exited: its live gauges no longer count."""
    if pid is not None and os.environ.get(ENV):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def active() -> bool:
    return bool(os.environ.get(ENV))


def registry() -> CollectorRegistry | None:
    """What a scrape reads: every worker's files summed (None: this process' own registry)."""
    if not active():
        return None
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
    return merged
