"""Structured logs: plain text or JSON lines, one line per event, never a secret."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import unicodedata
from typing import Any

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str, separators=(",", ":"))


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


def configure(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs full request URLs at INFO; keep them out of operators' logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
