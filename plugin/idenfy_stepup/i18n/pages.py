"""One template environment per offered language, each with its translations installed.

Rendering is synchronous, so a page picks its language's environment; no shared environment
is ever switched per request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from babel.support import NullTranslations
from jinja2 import BaseLoader, Environment

from . import SOURCE_LANGUAGE
from .catalogues import translations


class PageTemplates:
    """The provider's pages in each offered language, and the Python-side texts' translations."""

    def __init__(
        self,
        loader: BaseLoader,
        languages: Sequence[str],
        default: str,
        make: Callable[[BaseLoader, NullTranslations], Environment],
    ) -> None:
        self.languages = tuple(languages)
        self.default = default
        self._translations: Mapping[str, NullTranslations] = {
            language: translations(language) for language in self.languages
        }
        self._environments: Mapping[str, Environment] = {
            language: self._environment(loader, language, make) for language in self.languages
        }

    def _environment(
        self,
        loader: BaseLoader,
        language: str,
        make: Callable[[BaseLoader, NullTranslations], Environment],
    ) -> Environment:
        env = make(loader, self._translations[language])
        env.globals["lang"] = language  # <html lang>, and what the page tells its script
        return env

    def language(self, language: str | None) -> str:
        """An offered language: ``language`` if it is one, else the default (a stored record
        from before a language was dropped from ``ui.languages``)."""
        if language is not None and language in self._environments:
            return language
        return self.default

    def get(self, language: str | None) -> Environment:
        return self._environments[self.language(language)]

    def gettext(self, language: str | None, text: str) -> str:
        """``text`` in the language; a text the catalogue lacks (an operator's override, a
        refusal's own description) is returned as given."""
        return self._translations[self.language(language)].gettext(text)

    def translates(self, language: str | None, text: str) -> bool:
        """Whether a page in the language can show ``text`` in that language: always in the
        source language, elsewhere only when the catalogue has it."""
        chosen = self.language(language)
        if chosen == SOURCE_LANGUAGE:
            return True
        catalogue: Mapping[object, str] = getattr(self._translations[chosen], "_catalog", {})
        return bool(catalogue.get(text))
