"""Every field of a correctly signed webhook, fuzzed: 200 or 400, never a 5xx.

A webhook is signed, so it passes the HMAC check whatever it carries; what it carries must then
be checked field by field. Each example opens a real challenge, builds the well-formed
FACIAL_AUTHENTICATION event for it, replaces some fields (and adds unknown ones) with arbitrary
JSON values (strings with lone surrogates and control characters, numbers past what Python's
json reads, nested objects, lists, null), signs it and posts it to the provider. The answer is
400 exactly when the body breaks one of the webhook's rules (checked here by an oracle that
restates them), else 200; the challenge changes only for a well-formed event naming its token,
and the module's canary challenge never changes.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from idenfy_stepup.idenfy.webhook import sign

from ..harness.redis import challenge_key
from ..harness.rp import authorize_params, pkce
from ..harness.settings import SIGNING_KEY
from .test_fuzz_edges import FUZZ, LIMIT, Live, live  # noqa: F401  (a fixture)


@pytest.fixture(scope="module")
def provider(live: Live) -> Live:  # noqa: F811
    """test_fuzz_edges' stack (provider, simulator, Redis), with its canary challenge."""
    return live


# -- the webhook's rules, restated ---------------------------------------------------------------

TOKEN = re.compile(r"(?=.*[^.])[A-Za-z0-9._~-]{1,64}")  # the vendor's token format
OPTIONAL_STRINGS = ("scanRef", "clientId", "failReason", "type", "method", "ipAddress")
MAX_RISK_TAGS = 32
KNOWN = ("id", "token", "status", *OPTIONAL_STRINGS, "facePhoto", "riskTags")


@dataclass(frozen=True)
class Raw:
    """A JSON number written as is (json.dumps could not write it, json.loads may not read it)."""

    text: str

    @property
    def readable(self) -> bool:
        # CPython refuses integers of more than 4300 digits (int_max_str_digits).
        return len(self.text.lstrip("-")) <= 4300


def lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(lone_surrogate(k) or lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(lone_surrogate(v) for v in value)
    return False


def well_formed(fields: dict[str, Any]) -> bool:
    """What the provider must accept (a 200); anything else is a 400."""
    if any(isinstance(v, Raw) and not v.readable for v in fields.values()):
        return False
    if lone_surrogate(fields):
        return False
    ident, token, status = fields.get("id"), fields.get("token"), fields.get("status")
    if not isinstance(ident, str) or not 0 < len(ident) <= 255:
        return False
    if not isinstance(token, str) or TOKEN.fullmatch(token) is None:
        return False
    if not isinstance(status, str):
        return False
    tags = fields.get("riskTags")
    if tags is not None and not (
        isinstance(tags, list)
        and len(tags) <= MAX_RISK_TAGS
        and all(isinstance(tag, str) for tag in tags)
    ):
        return False  # null or an array of strings
    return all(
        fields.get(name) is None or isinstance(fields[name], str) for name in OPTIONAL_STRINGS
    )


def render(fields: dict[str, Any], ensure_ascii: bool) -> bytes:
    """The JSON body; a lone surrogate is sent as the escape \\udXXX (or, unescaped, as the
    invalid UTF-8 it would be)."""
    parts = []
    for key, value in fields.items():
        text = (
            value.text if isinstance(value, Raw) else json.dumps(value, ensure_ascii=ensure_ascii)
        )
        parts.append(f"{json.dumps(key, ensure_ascii=ensure_ascii)}:{text}")
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


# -- strategies ----------------------------------------------------------------------------------

# Every code point, lone surrogates included (hypothesis leaves them out by default).
every_char = st.characters(exclude_categories=())
odd_strings = st.one_of(
    st.text(every_char, max_size=30),
    st.sampled_from(
        [
            "\ud800",
            "a\udfffb",
            "\udbff\udbff",
            "\x00",
            "\r\n",
            "\u2028",
            "\ufeff",
            "",
            " ",
            "SUCCESS",
            "FAILED",
            "PENDING",
            "FACE_MISMATCH",
            "null",
        ]
    ),
    st.integers(256, 3000).map(lambda n: "x" * n),
)
huge_numbers = st.sampled_from(
    [
        Raw("1" * 5000),
        Raw("-" + "9" * 4301),
        Raw("9" * 4300),
        Raw("1e999"),
        Raw("-0.0"),
        Raw("123456789012345678901234567890"),
    ]
)
wild = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | odd_strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_strings, inner, max_size=4),
    max_leaves=10,
)
# Plain valid strings and null too, so that a good share of the events stay well formed.
field_values = st.one_of(
    wild, huge_numbers, st.none(), st.text(st.characters(codec="utf-8"), max_size=20)
)
extra_names = st.text(every_char, max_size=20).filter(lambda name: name not in KNOWN)


@st.composite
def mutations(draw: st.DrawFn) -> tuple[dict[str, Any], set[str], dict[str, Any]]:
    """(fields replaced, fields dropped, unknown fields added): at least one change."""
    replaced = draw(st.dictionaries(st.sampled_from(KNOWN), field_values, max_size=4))
    dropped = draw(st.sets(st.sampled_from(KNOWN), max_size=2)) - set(replaced)
    extra = draw(st.dictionaries(extra_names, field_values, max_size=3))
    if not (replaced or dropped or extra):
        replaced = {draw(st.sampled_from(KNOWN)): draw(field_values)}
    return replaced, dropped, extra


def open_challenge(provider: Live) -> str:
    _, code_challenge = pkce()
    opened = provider.request("GET", "/authorize", params=authorize_params(code_challenge))
    assert opened.status_code == 303, opened.text
    location = opened.headers["location"]
    assert location.startswith("/challenge/"), location
    return location.removeprefix("/challenge/")


def event_for(token: str, status: str) -> dict[str, Any]:
    """The well-formed event a vendor would send for ``token``."""
    return {
        "id": secrets.token_hex(16),
        "token": token,
        "scanRef": "SCAN-ALICE",
        "clientId": "idenfy-stepup-simulator",
        "status": status,
        "failReason": None if status == "SUCCESS" else "FACE_MISMATCH",
        "type": "AUTHENTICATION",
        "method": "FACE_MATCHING",
        "facePhoto": None,
        "ipAddress": None,
        "riskTags": None,
    }


def post_signed(provider: Live, body: bytes) -> Any:
    headers = {
        "Content-Type": "application/json",
        "Idenfy-Event-Type": "FACIAL_AUTHENTICATION",
        "Idenfy-Signature": sign(body, SIGNING_KEY),
    }
    return provider.request("POST", "/webhooks/idenfy", content=body, headers=headers)


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", [*KNOWN, "unknownExtra", "\ud800"])
def test_signed_webhook_with_a_lone_surrogate_is_refused(provider: Live, field: str) -> None:
    token = open_challenge(provider)
    before = provider.redis.hgetall(challenge_key(token))
    fields = event_for(token, "FAILED")
    if field == "\ud800":  # in a key
        fields[field] = "x"
    else:
        fields[field] = "a\ud800b"
    response = post_signed(provider, render(fields, ensure_ascii=True))
    assert response.status_code == 400, (response.status_code, response.text)
    assert set(response.json()) == {"error"}
    assert provider.redis.hgetall(challenge_key(token)) == before
    provider.assert_nothing_changed()


@FUZZ
@given(
    change=mutations(),
    status=st.sampled_from(["SUCCESS", "FAILED", "EXPIRED", "PENDING"]),
    ensure_ascii=st.booleans(),
)
def test_every_webhook_field_fuzzed_answers_200_or_400(
    provider: Live,
    change: tuple[dict[str, Any], set[str], dict[str, Any]],
    status: str,
    ensure_ascii: bool,
) -> None:
    replaced, dropped, extra = change
    token = open_challenge(provider)
    before = provider.redis.hgetall(challenge_key(token))
    fields = {k: v for k, v in event_for(token, status).items() if k not in dropped}
    fields.update(replaced)
    fields.update(extra)
    body = render(fields, ensure_ascii)
    response = post_signed(provider, body)

    expected = 413 if len(body) > LIMIT else 200 if well_formed(fields) else 400
    event(f"webhook -> {response.status_code}")
    assert response.status_code == expected, (response.status_code, response.text, body[:300])
    assert response.headers["content-type"].startswith("application/json")
    if provider.redis.hgetall(challenge_key(token)) != before:
        # Only a well-formed event for this very challenge may move it.
        assert expected == 200 and fields["token"] == token, body[:300]
        event("the challenge moved")
    provider.assert_nothing_changed()
