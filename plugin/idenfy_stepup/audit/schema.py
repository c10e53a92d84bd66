"""The audit events' JSON Schema and their tables in docs/audit-events.md, from ``events``.

``python -m idenfy_stepup.audit.schema`` rewrites both files; a test checks that the committed
ones are what the tables give.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .events import ENVELOPE, EVENTS, VERSION, EventType, Field

SCHEMA_ID = "urn:idenfy-stepup:audit-events:1"
# The part of docs/audit-events.md this module writes, between these two lines.
BEGIN = "<!-- generated from plugin/idenfy_stepup/audit/events.py: do not edit by hand -->"
END = "<!-- end of generated part -->"


def _property(f: Field) -> dict[str, Any]:
    kind: Any = [f.kind, "null"] if f.nullable else f.kind
    prop: dict[str, Any] = {"type": kind, "description": f.description}
    if f.kind == "array":
        prop["items"] = {"type": "string"}
    return prop


def _event_schema(event: EventType) -> dict[str, Any]:
    fields = ENVELOPE + event.fields
    properties = {f.name: _property(f) for f in fields}
    properties["event"] = {"const": event.name}
    properties["version"] = {"const": VERSION}
    return {
        "title": event.name,
        "description": event.when,
        "type": "object",
        "properties": properties,
        "required": [f.name for f in fields],
    }


def json_schema() -> dict[str, Any]:
    """One schema for a line of the stream: any one of the event types. Other members (the
    log formatter's ``level``, ``logger``, ``message``) are allowed."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "idenfy-stepup audit event",
        "oneOf": [_event_schema(e) for e in EVENTS],
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(f: Field) -> str:
    kind = "array of strings" if f.kind == "array" else f.kind
    return f"{kind} or null" if f.nullable else kind


def _table(fields: tuple[Field, ...]) -> list[str]:
    rows = ["| field | type | holds |", "|---|---|---|"]
    rows += [f"| `{f.name}` | {_type(f)} | {_cell(f.description)} |" for f in fields]
    return rows


def markdown() -> str:
    """The generated part of docs/audit-events.md: the envelope and one section per type."""
    lines = [BEGIN, "", "### The envelope (every event)", "", *_table(ENVELOPE), ""]
    lines += ["### Event types", "", "| event | emitted when |", "|---|---|"]
    lines += [f"| [`{e.name}`](#{e.name.replace('.', '')}) | {_cell(e.when)} |" for e in EVENTS]
    for event in EVENTS:
        sentence = event.when[0].upper() + event.when[1:]
        lines += ["", f"#### {event.name}", "", _cell(sentence) + ".", ""]
        lines += _table(event.fields)
    lines += ["", END]
    return "\n".join(lines) + "\n"


ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "audit-events.md"
SCHEMA = ROOT / "docs" / "audit-events.schema.json"


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def generated_part(doc: str) -> str:
    """The part of ``doc`` between BEGIN and END, the markers included ("" without them)."""
    start, end = doc.find(BEGIN), doc.find(END)
    if start < 0 or end < start:
        return ""
    return doc[start : end + len(END)] + "\n"


def main() -> int:
    doc = DOC.read_text()
    current = generated_part(doc)
    if not current:
        print(f"{DOC}: the markers are missing", file=sys.stderr)
        return 1
    DOC.write_text(doc.replace(current, markdown()))
    SCHEMA.write_text(schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
