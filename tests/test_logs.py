"""Text logs cannot be forged: whatever a request carries, one event is one line."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from idenfy_stepup.cli.logs import TextFormatter

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
