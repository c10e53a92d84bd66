"""The message catalogues: ``locales/<lang>/LC_MESSAGES/messages.po``, read once at start-up.

The ``.po`` text is the only form kept in the repository (no compiled ``.mo`` files, no build
step): babel reads it and compiles it in memory. Fuzzy and empty entries are left out, so an
unfinished translation falls back to the English source text instead of showing a guess.
"""

from __future__ import annotations

from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po
from babel.support import NullTranslations, Translations

from . import SHIPPED, SOURCE_LANGUAGE

LOCALES = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
TEMPLATE = LOCALES / f"{DOMAIN}.pot"


def po_path(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalogue(path: Path, language: str | None = None) -> Catalog:
    """The catalogue at ``path``. Raises OSError, or ValueError naming the file for text babel
    cannot read (by default it would skip such an entry and show English in its place)."""
    try:
        with path.open("rb") as source:
            return read_po(source, locale=language, domain=DOMAIN, abort_invalid=True)
    except PoFileError as exc:
        raise ValueError(f"{path}: {exc}") from None


@cache
def translations(language: str) -> NullTranslations:
    """The language's translations; the source language's are its msgids (a null catalogue).
    Raises OSError or ValueError for a missing or unreadable catalogue."""
    if language == SOURCE_LANGUAGE:
        return NullTranslations()
    if language not in SHIPPED:
        raise ValueError(f"no catalogue ships for {language!r}")
    compiled = BytesIO()
    write_mo(compiled, read_catalogue(po_path(language), language), use_fuzzy=False)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)
