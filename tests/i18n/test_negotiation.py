"""i18n/negotiation.py: which language ui_locales and Accept-Language choose, and that neither
can make the choice fail or cost more than a bounded amount of work."""

from __future__ import annotations

import pytest

from idenfy_stepup.i18n import SHIPPED
from idenfy_stepup.i18n.negotiation import (
    MAX_CHARS,
    MAX_TAGS,
    accept_language_tags,
    choose,
    ui_locales_tags,
)


def test_ui_locales_order_wins_over_accept_language() -> None:
    assert choose("fr de", "de, fr;q=0.9", SHIPPED, "en") == "fr"
    assert choose("de fr", "fr, de;q=0.9", SHIPPED, "en") == "de"


def test_accept_language_decides_when_ui_locales_names_nothing_offered() -> None:
    assert choose("sv ja", "lt, de;q=0.5", SHIPPED, "en") == "lt"
    assert choose(None, "lt, de;q=0.5", SHIPPED, "en") == "lt"
    assert choose("", "es", SHIPPED, "en") == "es"


def test_accept_language_is_ordered_by_quality_not_position() -> None:
    assert choose(None, "en;q=0.4, de;q=0.8, fr;q=0.6", SHIPPED, "en") == "de"
    assert accept_language_tags("a;q=0.5, b, c;q=0.5") == ["b", "a", "c"]  # ties keep order


@pytest.mark.parametrize(
    ("tag", "chosen"),
    [("de-CH", "de"), ("de-AT", "de"), ("fr-CA", "fr"), ("es-419", "es"), ("LT-lt", "lt")],
)
def test_a_region_tag_picks_its_language(tag: str, chosen: str) -> None:
    assert choose(tag, None, SHIPPED, "en") == chosen
    assert choose(None, tag, SHIPPED, "en") == chosen


@pytest.mark.parametrize("header", ["sv", "ja-JP, zh;q=0.9", "no", "*", "de;q=0"])
def test_unsupported_or_refused_languages_give_the_default(header: str) -> None:
    assert choose(None, header, SHIPPED, "en") == "en"
    assert choose(None, header, SHIPPED, "lt") == "lt"


def test_only_offered_languages_are_chosen() -> None:
    assert choose("de", "fr", ("en", "lt"), "en") == "en"
    assert choose("de", "fr, lt", ("en", "lt"), "en") == "lt"


@pytest.mark.parametrize(
    "header",
    [
        ";;;,,,",
        "de;q=abc",
        "de;q=2",
        "de;q=-1",
        "=de",
        "de-",
        "-de",
        "d\x00e",
        "de\u00e9",
        "de; q=0.5; q=",
        "<script>",
        "de-123456789",
        ",".join(["x"] * 10_000),
    ],
)
def test_malformed_headers_never_fail_and_never_pick_a_malformed_tag(header: str) -> None:
    chosen = choose(header, header, SHIPPED, "en")
    assert chosen in SHIPPED
    assert all(tag.isascii() and tag.replace("-", "").isalnum() for tag in ui_locales_tags(header))
    assert all(
        tag.isascii() and tag.replace("-", "").isalnum() for tag in accept_language_tags(header)
    )


def test_a_malformed_quality_refuses_that_tag_only() -> None:
    assert choose(None, "de;q=abc, fr", SHIPPED, "en") == "fr"


def test_very_long_values_are_read_only_up_to_their_bounds() -> None:
    filler = " ".join(["sv"] * 5000)
    assert len(ui_locales_tags(filler)) == MAX_TAGS
    assert len(accept_language_tags(filler.replace(" ", ","))) == MAX_TAGS
    # A supported tag past the bounds is never read: the default.
    assert choose(filler + " de", None, SHIPPED, "en") == "en"
    assert choose(None, "x" * MAX_CHARS + ",de", SHIPPED, "en") == "en"
    assert choose(None, ",".join(["sv"] * MAX_TAGS) + ",de", SHIPPED, "en") == "en"
