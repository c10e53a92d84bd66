"""docs/audit-events.md and docs/audit-events.schema.json are what the event tables give."""

from __future__ import annotations

import json
import logging
import re

import jsonschema

from idenfy_stepup.audit import schema
from idenfy_stepup.audit.events import ENVELOPE, EVENTS


def test_the_schema_file_is_generated_from_the_event_tables() -> None:
    assert json.loads(schema.SCHEMA.read_text()) == schema.json_schema()


def test_the_documented_tables_are_generated_from_the_event_tables() -> None:
    doc = schema.DOC.read_text()
    assert schema.generated_part(doc) == schema.markdown()
    for event in EVENTS:
        assert f"#### {event.name}\n" in doc


def test_no_field_is_a_log_record_attribute_or_repeated() -> None:
    # A field named like a LogRecord attribute would be refused by logging (or overwrite it).
    reserved = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
    for event in EVENTS:
        names = [f.name for f in ENVELOPE + event.fields]
        assert len(names) == len(set(names)), event.name
        assert reserved.isdisjoint(names), event.name


def test_the_documented_example_line_is_valid() -> None:
    example = re.search(r"## Example line\n\n```json\n(.+?)\n```", schema.DOC.read_text())
    assert example is not None
    jsonschema.Draft202012Validator(schema.json_schema()).validate(json.loads(example.group(1)))
