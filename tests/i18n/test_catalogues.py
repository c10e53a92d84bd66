"""The message catalogues under plugin/idenfy_stepup/locales: complete in every shipped
language, consistent with their source texts, and up to date with the templates, the marked
page texts and the outcome table."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message

from idenfy_stepup.boot.runtime import template_dir, template_env
from idenfy_stepup.boot.startup import StartupError
from idenfy_stepup.i18n import SHIPPED, SOURCE_LANGUAGE, catalogues, extract
from idenfy_stepup.i18n.catalogues import LOCALES, TEMPLATE, po_path, read_catalogue, translations
from idenfy_stepup.settings import UiSettings
from idenfy_stepup.stepup.outcomes import DEFAULTS

TRANSLATED = [lang for lang in SHIPPED if lang != SOURCE_LANGUAGE]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def entries(catalog: Catalog) -> list[Message]:
    return [message for message in catalog if message.id]


def forms(value: str | tuple[str, ...] | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_has_a_non_fuzzy_translation_in_every_plural_form(language: str) -> None:
    catalog = read_catalogue(po_path(language), language)
    template = read_catalogue(TEMPLATE)
    assert {m.id for m in entries(catalog)} == {m.id for m in entries(template)}
    for message in entries(catalog):
        assert not message.fuzzy, (language, message.id)
        strings = forms(message.string)
        if message.pluralizable:
            assert len(strings) == catalog.num_plurals, (language, message.id)
        assert all(s.strip() for s in strings), (language, message.id)


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_keep_the_placeholders_of_their_source(language: str) -> None:
    for message in entries(read_catalogue(po_path(language), language)):
        wanted = {name for source in forms(message.id) for name in PLACEHOLDER.findall(source)}
        for string in forms(message.string):
            assert set(PLACEHOLDER.findall(string)) == wanted, (language, message.id, string)
            # newstyle gettext formats every text: a lone % would break the page.
            assert "%" not in PLACEHOLDER.sub("", string), (language, string)


@pytest.mark.parametrize("language", TRANSLATED)
def test_translations_carry_no_markup(language: str) -> None:
    """Jinja marks a translated text safe (only its placeholders are escaped): a catalogue may
    never put markup, an entity or an attribute quote on a page."""
    for message in entries(read_catalogue(po_path(language), language)):
        for string in forms(message.string):
            assert not set(string) & set('<>&"'), (language, string)


def test_the_catalogues_are_up_to_date_with_their_sources() -> None:
    """``python -m idenfy_stepup.i18n.extract`` would change nothing: every template text,
    ``N_`` text and outcome row is in the template, and each .po has exactly its entries."""
    for path, text in extract.outputs(template_dir()).items():
        assert path.read_bytes() == text, (
            f"{path} is stale: run python -m idenfy_stepup.i18n.extract"
        )


def test_every_outcome_rows_hint_and_description_is_a_catalogue_entry() -> None:
    ids = {m.id for m in entries(read_catalogue(TEMPLATE))}
    for row in DEFAULTS.values():
        assert {row.hint, row.description} <= ids, row.name


def test_a_new_outcome_row_arrives_as_an_untranslated_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = replace(DEFAULTS["CANCELED"], name="NEW_ROW", hint="A hint nobody translated yet.")
    monkeypatch.setattr(extract, "DEFAULTS", {**DEFAULTS, "NEW_ROW": row})
    outputs = extract.outputs(template_dir())
    assert b'msgid "A hint nobody translated yet."' in outputs[TEMPLATE]
    for language in TRANSLATED:
        text = outputs[po_path(language)].decode()
        assert 'msgid "A hint nobody translated yet."\nmsgstr ""\n' in text
        assert text != po_path(language).read_text()


def test_one_catalogue_per_shipped_language_and_no_compiled_files() -> None:
    found = {path.parent.parent.name for path in LOCALES.glob("*/LC_MESSAGES/messages.po")}
    assert found == set(TRANSLATED)
    assert list(LOCALES.rglob("*.mo")) == []


@pytest.mark.parametrize("language", TRANSLATED)
def test_a_catalogue_loads_and_translates(language: str) -> None:
    loaded = translations(language)
    assert loaded.gettext("Try again") != "Try again"
    assert loaded.gettext("An operator's own text.") == "An operator's own text."


def test_a_catalogue_that_does_not_load_stops_the_start_up_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "de" / "LC_MESSAGES" / "messages.po"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b'msgid "Try again"\nmsgstr "Erneut versuchen"\nnot a keyword\n')
    monkeypatch.setattr(catalogues, "LOCALES", tmp_path)
    translations.cache_clear()
    try:
        with pytest.raises(StartupError, match="catalogues do not load"):
            template_env(UiSettings(languages=("en", "de")))
        with pytest.raises(StartupError, match="fr"):
            template_env(UiSettings(languages=("en", "fr")))  # no file at all
    finally:
        translations.cache_clear()
