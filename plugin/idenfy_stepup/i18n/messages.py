"""Marks a page text written in Python for the catalogue, without translating it there.

``N_("Bad request")`` is the text itself; the extractor (``extract``) finds every call, and the
page translates the text when it renders it in the request's language.
"""

from __future__ import annotations


def N_(text: str) -> str:
    return text
