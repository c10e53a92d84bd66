"""The one way a Jinja environment is made: the provider's pages, the simulator's, the demo's."""

from __future__ import annotations

from gettext import NullTranslations

from jinja2 import BaseLoader, Environment, select_autoescape


def environment(loader: BaseLoader, translations: NullTranslations | None = None) -> Environment:
    """Every template autoescaped, whatever its name (they all render HTML with values from
    requests), synchronous, and never re-read from disk: ours ship with the package and an
    operator's (``ui.templates_dir``) are read again only when a reload builds a new app, so
    no page costs a stat(). With ``translations`` (the provider's pages, one environment per
    language) the i18n extension's newstyle gettext is installed: ``_()`` escapes and formats
    its ``%(name)s`` placeholders itself."""
    env = Environment(
        loader=loader,
        autoescape=select_autoescape(default=True, default_for_string=True),
        enable_async=False,
        auto_reload=False,
        extensions=["jinja2.ext.i18n"] if translations is not None else [],
    )
    if translations is not None:
        env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
    return env
