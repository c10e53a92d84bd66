"""Text logs cannot be forged: whatever a request carries, one event is one line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from idenfy_stepup.cli.logs import BatchedStreamHandler, JsonFormatter, TextFormatter

from .harness.rp import authorize
from .harness.servers import Stack

FORGED = "2026-01-01 00:00:00,000 INFO    step-up approved subject=admin result=approved"
# A line's tokens as a ``key=value`` reader splits them: a quoted string (escapes inside), a
# key="quoted value", or a run of non-spaces.
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z_]+="(?:[^"\\]|\\.)*"|\S+')
KEY = re.compile(r"^([A-Za-z_]+)=(.*)$", re.S)


def fields(line: str) -> list[tuple[str, str]]:
    """The ``key=value`` fields a log reader finds in ``line``."""
    found = (KEY.match(token) for token in TOKEN.findall(line))
    return [(m.group(1), m.group(2)) for m in found if m]


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"msg": msg, "args": args, "levelname": "INFO", "levelno": 20})
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


@pytest.mark.parametrize("bad", ["\r", "\n", "\x00", "\u2028", "\u2029", "\x1b[2J", "\x85"])
def test_text_formatter_escapes_control_characters(bad: str) -> None:
    value = f"alice{bad}{FORGED}"
    line = TextFormatter().format(
        record("iDenfy unavailable: %s", value, subject=value, state=value)
    )
    assert len(line.splitlines()) == 1 and bad not in line
    assert [key for key, _ in fields(line)] == ["subject", "state"]  # no forged subject=/result=


def test_text_formatter_quotes_values_with_spaces_equals_and_quotes() -> None:
    line = TextFormatter().format(
        record("step-up %s", "refused", subject='bob result=approved "x"', client_id="shop")
    )
    assert dict(fields(line)) == {
        "subject": '"bob result=approved \\"x\\""',
        "client_id": "shop",
    }


def test_text_formatter_quotes_a_message_that_could_add_a_field() -> None:
    line = TextFormatter().format(record("webhook rejected: %s", "bad subject=admin"))
    assert line.endswith('"webhook rejected: bad subject=admin"')
    assert fields(line.replace('"webhook rejected: bad subject=admin"', "")) == []


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    """Everything the service logs, through the text formatter, as an operator's file gets it."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(TextFormatter())
    # The test's own HTTP client logs the URL it requests: not the service's log.
    handler.addFilter(lambda r: not r.name.startswith(("httpx", "httpcore")))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield out
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.mark.asyncio(loop_scope="module")
async def test_login_hint_with_a_newline_cannot_forge_an_approval_line(
    stack: Stack, text_log: io.StringIO
) -> None:
    hint = f"mallory\n{FORGED}"
    flow = await authorize(stack, login_hint=hint)
    assert flow.redirect["stepup_error"] == "not_enrolled"
    lines = text_log.getvalue().splitlines()
    # The audit stream's line of the same ending (docs/audit-events.md), checked below.
    audit = [line for line in lines if " audit stepup.ended " in line]
    service = [line for line in lines if line not in audit]
    event = [line for line in service if "mallory" in line]
    assert len(event) == 1, lines
    assert "step-up not_enrolled" in event[0]
    assert not any(line.startswith(FORGED[:23]) for line in lines)
    assert [line for line in service if "step-up approved" in line] == event
    subjects = [v for k, v in fields(event[0]) if k == "subject"]
    assert subjects == [f'"mallory\\x0a{FORGED}"']
    assert len(audit) == 1 and [v for k, v in fields(audit[0]) if k == "subject"] == subjects


# -- one write per loop iteration -------------------------------------------------------------


class CountingStream(io.StringIO):
    """stderr as the handler sees it, counting the writes (each one a syscall on a real fd)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def batched(stream: CountingStream) -> logging.Logger:
    handler = BatchedStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"batched-{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


async def test_lines_of_one_loop_iteration_leave_in_one_write_in_order() -> None:
    stream = CountingStream()
    logger = batched(stream)
    for n in range(5):
        logger.info("line %d", n, extra={"event": "test.line", "n": n})
    assert stream.writes == 0  # held until the iteration ends
    await asyncio.sleep(0)
    assert stream.writes == 1
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [0, 1, 2, 3, 4]


def test_outside_a_loop_a_line_is_written_at_once() -> None:
    stream = CountingStream()
    batched(stream).info("starting", extra={"event": "test.start"})
    assert stream.writes == 1
    assert json.loads(stream.getvalue())["message"] == "starting"


async def test_held_lines_go_before_a_line_written_from_a_thread() -> None:
    stream = CountingStream()
    logger = batched(stream)
    logger.info("first")
    await asyncio.to_thread(logger.info, "from a thread")
    await asyncio.sleep(0)
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == [
        "first",
        "from a thread",
    ]


def test_json_time_is_utc_with_milliseconds() -> None:
    rec = record("x")
    rec.created, rec.msecs = 1764633600.25, 250.0  # 2025-12-02 00:00:00.250 UTC
    assert json.loads(JsonFormatter().format(rec))["time"] == "2025-12-02T00:00:00.250Z"
