"""Which language a request gets: ``ui_locales`` (OIDC Core §3.1.2.1) first, then
``Accept-Language`` (RFC 9110 §12.5.4), then the configured default.

Both are hostile input: only the first ``MAX_CHARS`` characters and ``MAX_TAGS`` tags are read,
anything that is not a BCP 47-shaped tag is skipped, and nothing here raises.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from babel import negotiate_locale

MAX_CHARS = 512  # of each header or parameter: the rest is never parsed
MAX_TAGS = 16  # of each: a long list says nothing the first tags did not
# A language tag as RFC 5646 §2.1 shapes it (letters, then subtags of letters and digits).
_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_QUALITY = re.compile(r"q=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)")


def ui_locales_tags(value: str | None) -> list[str]:
    """The tags of a ``ui_locales`` value, space-separated, in preference order."""
    if not value:
        return []
    tags = value[:MAX_CHARS].split()[:MAX_TAGS]
    return [tag for tag in tags if _TAG.fullmatch(tag)]


def accept_language_tags(header: str | None) -> list[str]:
    """The tags of an ``Accept-Language`` header, best quality first (ties keep their order);
    ``*`` and tags of quality 0 are left out."""
    if not header:
        return []
    weighted: list[tuple[float, int, str]] = []
    for index, item in enumerate(header[:MAX_CHARS].split(",")[:MAX_TAGS]):
        tag, _, params = item.strip().partition(";")
        tag = tag.strip()
        if not _TAG.fullmatch(tag):
            continue
        quality = 1.0
        for param in params.split(";"):
            param = param.strip().lower()
            if param.startswith("q="):
                found = _QUALITY.fullmatch(param)
                quality = float(found.group(1)) if found else 0.0
        if quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(preferred: Iterable[str], offered: Sequence[str], default: str) -> str:
    """The first preferred tag an offered language matches (``de-CH`` → ``de``), else
    ``default``. Babel's aliases are off (an empty map): ``no`` must not turn into a language
    nobody asked for."""
    chosen = negotiate_locale(list(preferred), list(offered), sep="-", aliases={})
    return chosen.lower() if chosen else default


def choose(
    ui_locales: str | None, accept_language: str | None, offered: Sequence[str], default: str
) -> str:
    """The page language: ``ui_locales`` in its order, then ``Accept-Language``, then default."""
    preferred = ui_locales_tags(ui_locales) + accept_language_tags(accept_language)
    return negotiate(preferred, offered, default)
