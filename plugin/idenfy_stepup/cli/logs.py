"""Structured logs: plain text or JSON lines, one line per event, never a secret.

A step-up writes a dozen lines (an access line per request, its audit events), so a line's cost
is part of every flow's: the formatters reuse one JSON encoder and one timestamp per second,
the caller's frame, thread and process are not looked up (no format uses them), and
``BatchedStreamHandler`` writes the lines of one event-loop iteration in one write.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import threading
import time
import unicodedata
from typing import Any, TextIO

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))


class _Seconds:
    """``time.strftime`` of the current second, computed once per second, not per line."""

    __slots__ = ("_convert", "_format", "_second", "_text")

    def __init__(self, fmt: str, convert: Any = time.gmtime) -> None:
        self._format, self._convert, self._second, self._text = fmt, convert, -1, ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._text = time.strftime(self._format, self._convert(second))
            self._second = second
        return self._text


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds("%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": f"{self._seconds(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return _ENCODER.encode(entry)


# What must never reach a text line raw: C0/C1 controls (CR, LF, NUL, ESC...), the Unicode line
# and paragraph separators, and format characters (bidi overrides) that make a line read
# differently from what it holds. A value or message carrying one is shown escaped instead.
_UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp"}
# A field value needs quotes when a ``key=value`` reader would split or misread it.
_NEEDS_QUOTES = re.compile(r'[\s="\\]')


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def clean(text: str) -> str:
    """``text`` with every character that could break or disguise a log line escaped."""
    if text.isprintable() and "\\" not in text:
        return text  # the common case: nothing to do
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif unicodedata.category(char) in _UNSAFE_CATEGORIES:
            out.append(_escape_char(char))
        else:
            out.append(char)
    return "".join(out)


def field_value(value: object) -> str:
    """One ``key=value`` value: escaped, and quoted when it holds a space, ``=`` or quote."""
    text = clean(str(value))
    if text == "" or _NEEDS_QUOTES.search(text):
        return '"' + text.replace('"', '\\"') + '"'
    return text


class TextFormatter(logging.Formatter):
    """``time LEVEL message key=value...``: one line per record, whatever its values hold.

    Attacker-supplied values (login_hint, state, client_id, a user agent, a vendor's error text
    passed as ``%s``) are escaped, so a CR or LF can never start a forged line, and quoted when
    needed, so a value can never add a field. A message that contains ``=`` or a quote is
    quoted as a whole for the same reason.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _Seconds("%Y-%m-%d %H:%M:%S", time.localtime)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # The local time, as logging's own default shows it, computed once per second.
        return f"{self._seconds(record.created)},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}
        fields = " ".join(f"{clean(k)}={field_value(v)}" for k, v in extras.items())
        message = clean(record.getMessage())
        if '"' in message or "=" in message:
            message = field_value(message)
        line = f"{self.formatTime(record)} {record.levelname:<7} {message}"
        if record.exc_info and record.exc_info[0] is not None:
            line += f" exception={record.exc_info[0].__name__}"
        return f"{line} {fields}".rstrip()


class BatchedStreamHandler(logging.StreamHandler[TextIO]):
    """Lines emitted within one event-loop iteration leave in one write, when it ends.

    A request's lines (its audit events, its access line) are written together instead of one
    syscall each. Outside a running loop (start-up, a thread, shutdown) a line is written at
    once, after any lines still held, so the order is always the order of emission.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._held: list[str] = []
        self._held_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging's own contract: report it, never raise
            self.handleError(record)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._held_lock:
            if loop is not None:
                if not self._held:
                    loop.call_soon(self.flush)
                self._held.append(line)
                return
        self.flush()
        self._write([line])

    def flush(self) -> None:
        with self._held_lock:
            lines, self._held = self._held, []
        if lines:
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        self.acquire()
        try:
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except Exception:  # a full disk or a closed pipe must not fail a request
            self.handleError(logging.makeLogRecord({"msg": "log write failed"}))
        finally:
            self.release()


def configure(fmt: str, level: str) -> None:
    # Record fields no format shows: looking them up costs every line (the logging HOWTO's
    # "Optimization" section lists these switches).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs full request URLs at INFO; keep them out of operators' logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
