"""Subjects as an operator writes them: the rules a subject and a scanRef must meet (``subjects
set``, ``subjects import``), a CSV file of ``subject,scan_ref`` rows read as a whole, and how
``subjects list`` masks a scanRef."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

MAX_SUBJECT = 255
# A scanRef goes into the vendor's URL path (/identification/facial-auth/{scanRef}/...).
SCAN_REF = re.compile(r"[A-Za-z0-9._~-]{1,255}")


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be mapped: at most 255 characters, as /authorize takes a subject
    hint, and printable text without surrounding spaces, which no hint of a real user has."""
    if not subject or len(subject) > MAX_SUBJECT:
        return f"the subject must be 1 to {MAX_SUBJECT} characters"
    if not subject.isprintable() or subject != subject.strip():
        return "the subject must be printable text without leading or trailing spaces"
    return None


def scan_ref_problem(scan_ref: str) -> str | None:
    if not SCAN_REF.fullmatch(scan_ref):
        return "the scanRef must be 1 to 255 letters, digits or . _ ~ -"
    return None


def mask(scan_ref: str) -> str:
    """A scanRef as ``subjects list`` shows it by default: enough to tell entries apart."""
    return "…" + scan_ref[-4:] if len(scan_ref) > 8 else "…"


@dataclass(frozen=True)
class ImportRows:
    pairs: list[tuple[str, str]]
    problems: list[str]


HEADER = ["subject", "scan_ref"]


def read_import(raw: bytes) -> ImportRows:
    """``subject,scan_ref`` rows; a first row ``subject,scan_ref`` is a header. Every problem
    names its line."""
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return ImportRows([], ["the file is not UTF-8 text"])
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue  # blank lines are skipped
            if line == 1 and [c.strip().lower() for c in row] == HEADER:
                continue
            if len(row) != 2:
                problems.append(f"line {line}: expected subject,scan_ref, got {len(row)} column(s)")
                continue
            subject, scan_ref = row[0], row[1].strip()
            problem = subject_problem(subject) or scan_ref_problem(scan_ref)
            if problem is None and subject in seen:
                problem = f"the subject is already on line {seen[subject]}"
            if problem is not None:
                problems.append(f"line {line}: {problem}")
                continue
            seen[subject] = line
            pairs.append((subject, scan_ref))
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: not valid CSV ({exc})")
    return ImportRows(pairs, problems)
