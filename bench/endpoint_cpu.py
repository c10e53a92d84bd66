"""Run ``idenfy-stepup serve`` with each request's CPU time counted by endpoint.

``bench/load.py --endpoint-cpu`` starts the provider through this file (one process). Every
HTTP request's ASGI coroutine is stepped through a wrapper that adds up ``thread_time`` while
that coroutine runs, so the figure is the CPU spent inside the app for that request (routing,
middleware, handler, Redis and vendor client code), not uvicorn's HTTP parsing or the event
loop. At exit it writes ``{endpoint: {"n": requests, "us": mean µs}}`` to the file named by
``STEPUP_ENDPOINT_CPU``.
"""

from __future__ import annotations

import atexit
import collections
import importlib
import json
import os
import sys
import time
from collections.abc import Coroutine, Generator
from typing import Any

from idenfy_stepup import app as app_module

spent: collections.Counter[str] = collections.Counter()
calls: collections.Counter[str] = collections.Counter()


class Timed:
    """Awaits ``coro`` and adds the CPU time of each of its steps to ``spent[key]``."""

    def __init__(self, coro: Coroutine[Any, Any, Any], key: str) -> None:
        self.coro, self.key = coro, key

    def __await__(self) -> Generator[Any, Any, Any]:
        value: Any = None
        error: BaseException | None = None
        while True:
            started = time.thread_time()
            try:
                step = self.coro.throw(error) if error is not None else self.coro.send(value)
            except StopIteration as stop:
                spent[self.key] += time.thread_time() - started
                return stop.value
            except BaseException:
                spent[self.key] += time.thread_time() - started
                raise
            spent[self.key] += time.thread_time() - started
            try:
                value, error = (yield step), None
            except BaseException as exc:  # handed back to the coroutine
                value, error = None, exc


def endpoint(path: str) -> str:
    if path.startswith("/challenge/"):
        parts = path.split("/")
        return "/challenge/T" + ("/" + parts[3] if len(parts) > 3 else "")
    return path


original = app_module.create_app


def create_app(*args: Any, **kwargs: Any) -> Any:
    inner = original(*args, **kwargs)

    async def timed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        key = endpoint(scope["path"])
        calls[key] += 1
        await Timed(inner(scope, receive, send), key)

    timed.state = inner.state  # type: ignore[attr-defined]
    return timed


def dump() -> None:
    target = os.environ.get("STEPUP_ENDPOINT_CPU")
    if target:
        report = {k: {"n": calls[k], "us": round(spent[k] / calls[k] * 1e6)} for k in calls}
        with open(target, "w") as out:
            json.dump(report, out, indent=2, sort_keys=True)


# The module whose ``create_app`` serve calls: ``idenfy_stepup.cli.commands``; a build from
# before the cli package (``--provider-src`` of an older commit) has it in ``idenfy_stepup.cli``.
try:
    commands = importlib.import_module("idenfy_stepup.cli.commands")
except ModuleNotFoundError:
    commands = importlib.import_module("idenfy_stepup.cli")
commands.create_app = create_app
atexit.register(dump)

if __name__ == "__main__":
    sys.argv = ["idenfy-stepup", *sys.argv[1:]]
    sys.exit(commands.main())
