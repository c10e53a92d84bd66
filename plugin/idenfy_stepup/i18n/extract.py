"""Rebuild the catalogue template and bring every language's catalogue up to date.

    python -m idenfy_stepup.i18n.extract          # write locales/messages.pot, update each .po
    python -m idenfy_stepup.i18n.extract --check  # exit 1 if either is out of date

The texts come from three places: the provider's templates (``_()``/``ngettext()``), Python
texts marked with ``N_()`` (page titles), and the outcome table itself: each row's ``hint``
and ``description``, read from ``stepup.outcomes.DEFAULTS``, so a new row is a new,
untranslated entry. New entries arrive empty in each ``.po`` (shown in English until
translated), removed ones are dropped. See docs/translations.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import write_po

from ..stepup.outcomes import DEFAULTS
from . import SHIPPED, SOURCE_LANGUAGE
from .catalogues import DOMAIN, TEMPLATE, po_path, read_catalogue

PACKAGE = Path(__file__).resolve().parent.parent
PROJECT = "idenfy-stepup"
Message = tuple[str | tuple[str, ...], str, list[str]]  # msgid(s), location, comments


def template_messages(folder: Path) -> Iterator[Message]:
    for path in sorted(folder.glob("*.html")):
        found = extract_from_file(
            "jinja2.ext.babel_extract",
            path,
            keywords={"_": None, "gettext": None, "ngettext": (1, 2)},
            options={"extensions": "jinja2.ext.i18n"},
        )
        for _lineno, message, comments, _context in found:
            yield message, f"templates/{path.name}", list(comments)


def python_messages() -> Iterator[Message]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "N_(" not in path.read_text(encoding="utf-8"):
            continue
        found = extract_from_file("python", path, keywords={"N_": None})
        for _lineno, message, comments, _context in found:
            yield message, path.relative_to(PACKAGE).as_posix(), list(comments)


def outcome_messages() -> Iterator[Message]:
    """Each row's texts a page shows: the hint (the page's message) and the description (the
    retry page's sentence and a challenge page's title). Sent to an RP, they stay English."""
    for row in DEFAULTS.values():
        yield row.description, "stepup/outcomes.py", [f"outcome {row.name}: description"]
        yield row.hint, "stepup/outcomes.py", [f"outcome {row.name}: hint"]


def extracted(templates: Path) -> Catalog:
    catalog = Catalog(project=PROJECT, domain=DOMAIN, fuzzy=False)
    catalog.header_comment = (
        "# The provider's page texts. Rebuilt by python -m idenfy_stepup.i18n.extract."
    )
    sources = (template_messages(templates), python_messages(), outcome_messages())
    for source in sources:
        for message, location, comments in source:
            catalog.add(message, locations=[(location, 0)], auto_comments=comments)
    return catalog


def rendered(catalog: Catalog) -> bytes:
    """The .po/.pot text, without the dates babel stamps (the file changes only when a text
    does)."""
    out = BytesIO()
    write_po(out, catalog, width=100, include_lineno=False, ignore_obsolete=True)
    lines = out.getvalue().splitlines(keepends=True)
    dated = (b'"POT-Creation-Date:', b'"PO-Revision-Date:', b'"Generated-By:')
    return b"".join(line for line in lines if not line.startswith(dated))


def updated(template: Catalog, language: str) -> Catalog:
    path = po_path(language)
    if path.is_file():
        catalog = read_catalogue(path, language)
    else:
        catalog = Catalog(locale=language, project=PROJECT, domain=DOMAIN, fuzzy=False)
    # No fuzzy matching: a guessed translation of a changed text is worse than English.
    catalog.update(template, no_fuzzy_matching=True, update_header_comment=True)
    return catalog


def outputs(templates: Path) -> dict[Path, bytes]:
    template = extracted(templates)
    files = {TEMPLATE: rendered(template)}
    for language in SHIPPED:
        if language != SOURCE_LANGUAGE:
            files[po_path(language)] = rendered(updated(template, language))
    return files


def main(argv: list[str] | None = None) -> int:
    from ..boot.runtime import template_dir

    parser = argparse.ArgumentParser(prog="python -m idenfy_stepup.i18n.extract")
    parser.add_argument("--check", action="store_true", help="only report stale catalogues")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(template_dir()).items():
        if path.is_file() and path.read_bytes() == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text)
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path.relative_to(PACKAGE)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
