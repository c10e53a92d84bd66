"""Two serving stacks side by side: uvicorn (httptools, uvloop, the edge protocol) and granian.

Both serve the same app, built from the same settings file, against the same redis-server,
simulator and drivers as ``bench/load.py`` (whose ``Stack`` and measurement this reuses):

* ``uvicorn``: ``idenfy-stepup serve``, exactly as operators run it (web/edge.py in front);
* ``granian``: ``granian --interface asgi --loop uvloop --factory serving_stacks:app``, where
  ``app()`` below builds the provider app the way ``serve`` does, from the settings file named
  by ``STEPUP_SETTINGS``. Granian parses HTTP in Rust (hyper) and hands the app ASGI events.

Rounds alternate (uvicorn, granian, uvicorn, …) so that the load of other processes on the
machine falls on both alike. Each round is one ``load.py`` scenario (1 worker, 32 users by
default) plus, with ``--endpoint-cpu``, a second run per stack whose app is wrapped to count
the CPU spent inside it per request (bench/endpoint_cpu.py's ``Timed``). With ``--profile
DIR`` one more run of each stack (not in the medians) is sampled by py-spy (``--format raw``,
collapsed stacks) and the samples are summed by layer: the server (uvicorn, httptools,
granian's Python side, the event loop), Starlette, and our app's parts (logging, audit,
metrics, Jinja, JWT, the Redis client, the vendor client). ``--defences`` instead runs
tests/test_http_edge.py's checks on each stack (bench/stack_defences.py) and says which held.

    PYTHONPATH=plugin .venv/bin/python bench/serving_stacks.py --rounds 3
    PYTHONPATH=plugin .venv/bin/python bench/serving_stacks.py --rounds 3 --endpoint-cpu \\
        --profile /tmp/stacks
    PYTHONPATH=plugin .venv/bin/python bench/serving_stacks.py --defences

Needs ``granian`` (and ``py-spy`` for ``--profile``) in the same Python; neither is a
dependency of the project. The factory expects a Redis URL in the settings (load.py's are a
Unix socket), not ``embedded``, which ``serve`` starts itself. Prints one JSON document. Not a
test: no thresholds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STACKS = ("uvicorn", "granian")


# -- the granian side: the provider app from a settings file -----------------------------------


def app() -> Any:
    """The provider app as ``idenfy-stepup serve`` builds it (granian's ``--factory`` target).

    Reads the settings file named by ``STEPUP_SETTINGS``; with ``STEPUP_ENDPOINT_CPU`` set, the
    app is wrapped as bench/endpoint_cpu.py wraps it, and the figures are written when the
    lifespan ends (granian's worker may not run ``atexit``).
    """
    from idenfy_stepup.app import create_app
    from idenfy_stepup.cli import logs
    from idenfy_stepup.cli.reloading import with_simulator_key
    from idenfy_stepup.settings import load_settings

    settings = with_simulator_key(load_settings(os.environ["STEPUP_SETTINGS"]))
    logs.configure(settings.server.log_format, settings.server.log_level)
    inner = create_app(settings, redis_url=settings.redis.url)
    if not os.environ.get("STEPUP_ENDPOINT_CPU"):
        return inner
    import endpoint_cpu  # bench/ is granian's working directory

    async def timed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":

            async def sending(message: Any) -> None:
                if message["type"] == "lifespan.shutdown.complete" and endpoint_cpu.calls:
                    endpoint_cpu.dump()
                await send(message)

            await inner(scope, receive, sending)
            return
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        key = endpoint_cpu.endpoint(scope["path"])
        endpoint_cpu.calls[key] += 1
        await endpoint_cpu.Timed(inner(scope, receive, send), key)

    return timed


# -- the driver side ------------------------------------------------------------------------------


def _load() -> Any:
    sys.path.insert(0, str(HERE))
    import load

    return load


def granian_command(python: str, stack: Any, extra: list[str]) -> list[str]:
    """granian with the edge settings it has an equivalent for (see docs/performance.md)."""
    return [
        *(python, "-m", "granian", "--interface", "asgi", "--http", "1", "--no-ws"),
        *("--loop", "uvloop", "--factory", "--working-dir", str(HERE)),
        *("--host", "127.0.0.1", "--port", str(stack.port)),
        *("--workers", str(stack.workers), "--runtime-threads", "1"),
        # server.header_timeout's default (15 s); granian has no body or keep-alive deadline.
        *("--http1-header-read-timeout", "15000", "--workers-kill-timeout", "5"),
        *("--log-level", "warning", "--no-access-log"),
        *extra,
        "serving_stacks:app",
    ]


def make_stack(
    kind: str,
    load: Any,
    opts: argparse.Namespace,
    cpu_file: Path | None,
    edge: dict[str, Any] | None = None,
    granian_edge: list[str] | None = None,
) -> Any:
    """A ``load.Stack`` whose provider is ``kind``; both run this worktree's plugin/ folder."""

    class GranianStack(load.Stack):  # type: ignore[misc, name-defined]
        def provider_command(self, exe: str, config: Path) -> list[str]:
            extra = [*opts.granian_args.split(), *(granian_edge or [])]
            return granian_command(self.provider_python, self, extra)

        def _spawn(self, args: list[str]) -> None:
            # load.Stack puts provider_src on PYTHONPATH for ``serve`` only: granian too.
            saved = dict(os.environ)
            if "granian" in args:
                os.environ["STEPUP_SETTINGS"] = str(self.directory / "stepup.yaml")
                path = [str(self.provider_src), os.environ.get("PYTHONPATH", "")]
                os.environ["PYTHONPATH"] = os.pathsep.join(path)
            try:
                super()._spawn(args)
            finally:
                os.environ.clear()
                os.environ.update(saved)

    # The management listener on a port of its own (its default, 9000, may be taken here).
    overlay = {"server": {"management": {"port": load.free_port()}, **(edge or {})}}
    cls = GranianStack if kind == "granian" else load.Stack
    return cls(
        workers=opts.workers,
        subjects=opts.users,
        provider_src=ROOT / "plugin",
        endpoint_cpu=cpu_file,
        overlay=overlay,
    )


def threads_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds by thread name (``comm``) over these processes, from /proc/<pid>/task."""
    spent: collections.Counter[str] = collections.Counter()
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    comm = (task / "comm").read_text().strip()
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    spent[comm] += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return dict(spent)


def run_one(
    kind: str, opts: argparse.Namespace, *, endpoint_cpu: bool, profile: Path | None
) -> Any:
    load = _load()
    cpu_file = None
    if endpoint_cpu:
        cpu_file = Path(tempfile.mkstemp(prefix=f"stepup-{kind}-cpu-", suffix=".json")[1])
    stack = make_stack(kind, load, opts, cpu_file)
    stack.start()
    spies: list[subprocess.Popen[bytes]] = []
    try:
        pids = stack.provider_pids()
        before = threads_cpu(pids)
        if profile is not None:
            spies = record(pids, profile / kind, opts.warmup + 1.0, opts.duration)
        scenario = argparse.Namespace(
            warmup=opts.warmup,
            duration=opts.duration,
            rounds=opts.cuts,
            drivers=opts.drivers,
            profile=None,
        )
        result: dict[str, Any] = load._measure(stack, opts.workers, opts.users, scenario)
        after = threads_cpu(pids)
        for spy in spies:
            spy.wait(60)
    finally:
        stack.stop()
    spent = {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}
    result["provider_threads_cpu_s"] = {k: v for k, v in sorted(spent.items()) if v > 0}
    if cpu_file is not None:
        with contextlib.suppress(ValueError):
            result["endpoint_cpu_us"] = json.loads(cpu_file.read_text())
        cpu_file.unlink()
    return result


# -- the edge's defences -----------------------------------------------------------------------


def defences(kind: str, opts: argparse.Namespace) -> dict[str, Any]:
    """bench/stack_defences.py's probes against ``kind`` with the edge tests' limits, then the
    management listener, then SIGTERM with a push stream open."""
    load = _load()
    import stack_defences as probes

    stack = make_stack(kind, load, opts, None, probes.EDGE, probes.GRANIAN_EDGE)
    stack.start()
    try:
        found: dict[str, Any] = probes.probe_all(stack.port)
        manage = stack.overlay["server"]["management"]["port"]
        try:
            answered = httpx.get(f"http://127.0.0.1:{manage}/metrics", timeout=5).status_code
            seen = f"GET :{manage}/metrics: {answered}"
        except httpx.HTTPError as exc:
            answered, seen = 0, f"GET :{manage}/metrics: {type(exc).__name__}"
        found["management listener (/metrics, /healthz, /readyz on their own port)"] = {
            "held": answered == 200,
            "seen": seen,
        }
        stop = probes.graceful_stop(stack.procs[2], stack.issuer)
        found["graceful stop: push streams end at once, exit within 5 s"] = {
            "held": stop["exit_seconds"] <= 6 and stop["stream"].startswith("stream ended"),
            "seen": f"{stop['stream']}; exit {stop['exit']} after {stop['exit_seconds']} s",
        }
    finally:
        stack.stop()
    return found


# -- py-spy: where the CPU goes -----------------------------------------------------------------


def record(
    pids: list[int], folder: Path, delay: float, seconds: float
) -> list[subprocess.Popen[bytes]]:
    """py-spy on every provider process over the measured time, as collapsed stacks."""
    spy = _load().py_spy()
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = (
        f'sleep {delay:.1f}; exec {spy} record --pid "$0" --duration {int(seconds)} --rate 250'
        ' --nonblocking --format raw --output "$1"'
    )
    return [
        subprocess.Popen(
            ["sh", "-c", wrapper, str(pid), str(folder / f"{pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


@dataclass(frozen=True)
class Layer:
    name: str
    pattern: re.Pattern[str]


def _layer(name: str, *parts: str) -> Layer:
    return Layer(name, re.compile("|".join(parts)))


# Matched against each frame ("function (file:line)"); a sample counts once in every layer one
# of its frames matches (inclusive), so our app's layers overlap where one calls another.
APP_LAYERS = (
    _layer("logging: every record (stdlib logging, our formatter)", r"\(logging/", r"cli/logs\.py"),
    _layer("access log (Observed._log, inclusive)", r"^Observed\._log "),
    _layer("audit events (audit/, inclusive)", r"idenfy_stepup/audit/"),
    _layer("metrics (prometheus_client)", r"prometheus_client"),
    _layer("Jinja (page templates)", r"jinja2", r"web/templating\.py"),
    _layer("id_token signing (KeyRing.sign: joserfc, cryptography)", r"^KeyRing\.sign "),
    _layer("authlib (request validation)", r"authlib/"),
    _layer("signed cookie (itsdangerous)", r"itsdangerous"),
    _layer("Redis client (store/wire.py, hiredis)", r"store/wire\.py", r"hiredis"),
    _layer("our store layer (store/, inclusive of the client)", r"idenfy_stepup/store/"),
    _layer("vendor client (aiohttp, idenfy/transport.py)", r"aiohttp/", r"idenfy/transport\.py"),
    _layer("security headers middleware (web/headers.py)", r"web/headers\.py"),
    _layer("Observed middleware (observe/http.py, inclusive)", r"observe/http\.py"),
    _layer("pydantic", r"pydantic"),
    _layer("tracing (OpenTelemetry)", r"opentelemetry", r"observe/tracing"),
)
SERVER_LAYERS = (
    _layer("uvicorn (HTTP/1 protocol, ASGI cycle)", r"uvicorn/"),
    _layer("edge protocol (web/edge.py)", r"web/edge\.py"),
    _layer("granian (Python side of its ASGI bridge)", r"granian/"),
    _layer("Starlette (routing, middleware, responses)", r"starlette/"),
    _layer("our app (plugin/idenfy_stepup, inclusive)", r"idenfy_stepup/"),
)


def summarise(folder: Path) -> dict[str, Any]:
    """Sample counts by layer, as percentages of every sample of the provider's threads."""
    total = 0
    per: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    ours: collections.Counter[str] = collections.Counter()
    own_self: collections.Counter[str] = collections.Counter()
    for path in folder.glob("*.txt"):
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            total += n
            if not stack.strip():
                # A running thread with no Python frame: uvloop's C code, granian's Rust side.
                per["no Python frame (native: the event loop, granian's bridge)"] += n
                continue
            frames = stack.split(";")
            for layer in (*SERVER_LAYERS, *APP_LAYERS):
                if any(layer.pattern.search(f) for f in frames):
                    per[layer.name] += n
            if not any(SERVER_LAYERS[-1].pattern.search(f) for f in frames) and not any(
                SERVER_LAYERS[-2].pattern.search(f) for f in frames
            ):
                per["Python frames outside the app (server layer, loop callbacks)"] += n
            leaf[_where(frames[-1])] += n
            own_self[_package(frames[-1])] += n
            # The innermost frame of our own code: which of our functions the time is under.
            own = [f for f in frames if "idenfy_stepup/" in f]
            if own:
                ours[_where(own[-1])] += n
    pct = {k: round(100 * v / total, 1) for k, v in per.most_common()} if total else {}
    top_leaf = {k: round(100 * v / total, 1) for k, v in leaf.most_common(15)} if total else {}
    top_ours = {k: round(100 * v / total, 1) for k, v in ours.most_common(15)} if total else {}
    by_package = (
        {k: round(100 * v / total, 1) for k, v in own_self.most_common(25)} if total else {}
    )
    return {
        "samples": total,
        # Self time: each sample counted once, under the package of its innermost frame.
        "self_by_package_pct": by_package,
        # Inclusive: a sample counts in every layer one of its frames matches.
        "layers_pct": pct,
        "top_leaf_functions_pct": top_leaf,
        "top_own_functions_pct": top_ours,
    }


SEPARATE = frozenset({"idenfy_stepup/web/edge.py", "idenfy_stepup/cli/logs.py"})


def _package(frame: str) -> str:
    """The package a frame's code is in (``idenfy_stepup/<module folder>`` for ours)."""
    place = frame.rpartition(" (")[2].split(":", 1)[0]
    parts = Path(place).parts
    if not parts:
        return "?"
    if parts[0] == "idenfy_stepup" and len(parts) > 2:
        # The edge protocol is server layer, the log formatter is logging: named apart.
        whole = "/".join(parts)
        return whole if whole in SEPARATE else "/".join(parts[:2])
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    return parts[0].removesuffix(".py") if parts else "?"


def _where(frame: str) -> str:
    """``function (path:line)`` → ``function (file)``: lines of one function count together."""
    name, _, place = frame.partition(" (")
    file = place.split(":", 1)[0]
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if parts else file
    return f"{name} ({short})"


# -- the comparison ----------------------------------------------------------------------------


def headline(result: dict[str, Any]) -> dict[str, Any]:
    cpu = result.get("endpoint_cpu_us")
    return {
        "flows_per_s": result["flows_per_s"],
        "errors": result["error_count"],
        "provider_cpu_ms_per_flow": result["provider_cpu_ms_per_flow"]["median_of_rounds"],
        "cores_busy": result["provider_cpu_ms_per_flow"]["cores_busy"],
        "flow_p50_ms": result["latency_ms"]["flow"].get("p50"),
        "flow_p99_ms": result["latency_ms"]["flow"].get("p99"),
        "push_p99_ms": result["webhook_to_push_ms"].get("p99"),
        "driver_cores_busy": result["driver_cpu"]["cores_busy"],
        **({"endpoint_cpu_us": {k: v["us"] for k, v in sorted(cpu.items())}} if cpu else {}),
    }


def _median(values: list[Any]) -> Any:
    present = [v for v in values if isinstance(v, int | float)]
    return round(statistics.median(present), 3) if present else None


def compare(rounds: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    medians: dict[str, Any] = {}
    for kind, results in rounds.items():
        heads = [headline(r) for r in results]
        keys = [k for k in heads[0] if k != "endpoint_cpu_us"] if heads else []
        medians[kind] = {k: _median([h[k] for h in heads]) for k in keys}
        medians[kind]["rounds_cpu_ms_per_flow"] = [h["provider_cpu_ms_per_flow"] for h in heads]
    return medians


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per stack")
    p.add_argument("--users", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--cuts", type=int, default=3, help="each run's measured time, cut in rounds")
    p.add_argument("--drivers", type=int, default=2)
    p.add_argument("--stacks", default=",".join(STACKS), help="uvicorn,granian")
    p.add_argument(
        "--endpoint-cpu", action="store_true", help="also one run per stack and round, by endpoint"
    )
    p.add_argument(
        "--granian-args",
        default="",
        help="more granian options, e.g. '--task-impl rust' (one string, split on spaces)",
    )
    p.add_argument(
        "--profile", type=Path, help="one more run per stack under py-spy, its stacks here"
    )
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument(
        "--defences",
        action="store_true",
        help="only probe the edge's defences on each stack (no load)",
    )
    opts = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = [k for k in opts.stacks.split(",") if k]
    if opts.defences:
        found = {kind: defences(kind, opts) for kind in kinds}
        print(json.dumps({"defences": found}, indent=2))
        return 0
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    cpu_runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    started = time.time()
    # The stacks' folders (Redis' socket among them) in a folder of this run's own, where a
    # clean-up of /tmp/stepup-bench-* by another run cannot reach them.
    tempfile.tempdir = tempfile.mkdtemp(prefix="serving-stacks-")
    try:
        return _rounds(opts, kinds, runs, cpu_runs, started)
    finally:
        shutil.rmtree(tempfile.tempdir, ignore_errors=True)
        tempfile.tempdir = None


def _rounds(
    opts: argparse.Namespace,
    kinds: list[str],
    runs: dict[str, list[dict[str, Any]]],
    cpu_runs: dict[str, list[dict[str, Any]]],
    started: float,
) -> int:
    for n in range(opts.rounds):
        # Alternate which stack goes first, so neither always runs on a warmer machine.
        for kind in kinds if n % 2 == 0 else kinds[::-1]:
            print(f"round {n + 1}: {kind}", file=sys.stderr)
            runs[kind].append(run_one(kind, opts, endpoint_cpu=False, profile=None))
            if opts.endpoint_cpu:
                print(f"round {n + 1}: {kind}, CPU by endpoint", file=sys.stderr)
                cpu_runs[kind].append(run_one(kind, opts, endpoint_cpu=True, profile=None))
            if opts.out:  # so far, in case a later round fails
                partial = {k: [headline(r) for r in v] for k, v in runs.items()}
                opts.out.write_text(json.dumps({"partial_rounds": partial}, indent=2) + "\n")
    # Profiled runs of their own: py-spy's sampling competes for the same two cores.
    profiled = {}
    for kind in kinds if opts.profile else ():
        print(f"profile: {kind}", file=sys.stderr)
        profiled[kind] = headline(run_one(kind, opts, endpoint_cpu=False, profile=opts.profile))
    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "scenario": {
            "workers": opts.workers,
            "users": opts.users,
            "duration_s": opts.duration,
            "rounds": opts.rounds,
        },
        "seconds": round(time.time() - started),
        "medians": compare(runs),
        "rounds": {k: [headline(r) for r in v] for k, v in runs.items()},
    }
    if opts.endpoint_cpu:
        report["endpoint_cpu_us_median"] = {
            kind: {
                key: _median(
                    [
                        r["endpoint_cpu_us"][key]["us"]
                        for r in results
                        if key in r.get("endpoint_cpu_us", {})
                    ]
                )
                for key in sorted({k for r in results for k in r.get("endpoint_cpu_us", {})})
            }
            for kind, results in cpu_runs.items()
        }
    report["threads_cpu_s_first_round"] = {
        k: v[0]["provider_threads_cpu_s"] for k, v in runs.items() if v
    }
    if opts.profile:
        report["profile"] = {k: {"run": profiled[k], **summarise(opts.profile / k)} for k in kinds}
    _load().write_report(report, opts.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
