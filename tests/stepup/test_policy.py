"""stepup/policy.py on its own: the level chosen, the claims parameter, and who is stepped up."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from joserfc.jwk import ECKey

from idenfy_stepup.oidc.keys import KeyRing
from idenfy_stepup.settings import ClientSettings, Settings, parse_settings
from idenfy_stepup.stepup.outcomes import OutcomeTable
from idenfy_stepup.stepup.policy import (
    MAX_CLAIMS_DEPTH,
    Level,
    Refusal,
    Subject,
    choose_level,
    parse_claims,
    resolve_subject,
)

ISSUER = "https://stepup.example.com"
FACE = "urn:idenfy:stepup:face"
LIVENESS = "urn:idenfy:stepup:liveness"
ALL_HINTS = ["request_object", "id_token_hint", "login_hint"]


def settings_with(**client: Any) -> Settings:
    return parse_settings(
        {
            "issuer": ISSUER,
            "idenfy": {"mode": "simulator"},
            "acr": {
                "levels": {
                    FACE: {"method": "FACE_MATCHING"},
                    LIVENESS: {"method": "ACTIVE_LIVENESS"},
                },
                "default": FACE,
            },
            "clients": [
                {
                    "client_id": "shop",
                    "client_secret": "shop-secret-0123456789-0123456789-abcdef",
                    "redirect_uris": ["https://shop.example/cb"],
                    **client,
                }
            ],
        }
    )


SETTINGS = settings_with(subject_hints=ALL_HINTS)
CLIENT: ClientSettings = SETTINGS.clients[0]
KEY = ECKey.generate_key("P-256", parameters={"kid": "k1", "alg": "ES256"})
KEYS = KeyRing({"ES256": KEY}, (KEY,))
OUTCOMES = OutcomeTable()


def refusal(call: Any, *args: Any) -> tuple[str, str]:
    """``(error, stepup_error)`` the RP gets for the refusal: its row of the default table."""
    with pytest.raises(Refusal) as info:
        call(*args)
    row = OUTCOMES[info.value.outcome]
    return row.error, row.stepup_error


def id_token_hint(subject: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "shop", "sub": subject, "iat": now, "exp": now + 300, **claims}
    return KEYS.sign(body, "ES256")


# -- choose_level -----------------------------------------------------------------------------


def test_no_request_gets_the_default_level() -> None:
    assert choose_level(SETTINGS, CLIENT, None, {}) == Level(FACE, "FACE_MATCHING")


def test_the_first_known_acr_value_wins() -> None:
    level = choose_level(SETTINGS, CLIENT, f"urn:unknown {LIVENESS} {FACE}", {})
    assert level == Level(LIVENESS, "ACTIVE_LIVENESS")


def test_only_unknown_acr_values_are_refused_for_a_strict_client() -> None:
    assert refusal(choose_level, SETTINGS, CLIENT, "urn:unknown", {}) == (
        "unmet_authentication_requirements",
        "acr_unsupported",
    )


def test_only_unknown_acr_values_get_the_default_for_a_lenient_client() -> None:
    lenient = settings_with(strict_acr_values=False)
    level = choose_level(lenient, lenient.clients[0], "urn:unknown", {})
    assert level == Level(FACE, "FACE_MATCHING")


def test_an_essential_acr_claim_comes_before_acr_values() -> None:
    claims = {"id_token": {"acr": {"essential": True, "values": ["urn:unknown", LIVENESS]}}}
    assert choose_level(SETTINGS, CLIENT, FACE, claims) == Level(LIVENESS, "ACTIVE_LIVENESS")
    single = {"id_token": {"acr": {"essential": True, "value": LIVENESS}}}
    assert choose_level(SETTINGS, CLIENT, None, single).acr == LIVENESS


def test_an_essential_acr_we_cannot_meet_is_refused_even_for_a_lenient_client() -> None:
    lenient = settings_with(strict_acr_values=False)
    claims = {"id_token": {"acr": {"essential": True, "values": ["urn:unknown"]}}}
    assert refusal(choose_level, lenient, lenient.clients[0], FACE, claims)[1] == "acr_unsupported"


def test_a_voluntary_or_unconstrained_acr_claim_does_not_constrain() -> None:
    voluntary = {"id_token": {"acr": {"values": ["urn:unknown"]}}}
    assert choose_level(SETTINGS, CLIENT, None, voluntary).acr == FACE
    unconstrained = {"id_token": {"acr": {"essential": True}}}
    assert choose_level(SETTINGS, CLIENT, LIVENESS, unconstrained).acr == LIVENESS


# -- parse_claims -------------------------------------------------------------------------------


def nested(depth: int) -> str:
    """A claims object whose containers nest ``depth`` deep."""
    value: Any = "x"
    for _ in range(depth - 1):
        value = {"a": value}
    return json.dumps({"id_token": value} if depth > 1 else {"id_token": "x"})


def test_claims_absent_or_empty_are_nothing() -> None:
    assert parse_claims(None) == {} and parse_claims("") == {}


def test_claims_at_the_depth_limit_are_read_and_one_deeper_refused() -> None:
    assert parse_claims(nested(MAX_CLAIMS_DEPTH))["id_token"]
    assert refusal(parse_claims, nested(MAX_CLAIMS_DEPTH + 1)) == (
        "invalid_request",
        "invalid_request",
    )


def test_claims_nested_far_too_deeply_are_refused_not_a_recursion_error() -> None:
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    assert refusal(parse_claims, deep)[0] == "invalid_request"


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', "3", '{"a": "\\ud800"}'])
def test_claims_that_are_not_a_json_object_of_text_are_refused(raw: str) -> None:
    assert refusal(parse_claims, raw) == ("invalid_request", "invalid_request")


def test_claims_depth_counts_lists_too() -> None:
    deep_list = json.dumps({"id_token": [[[[[[[["x"]]]]]]]]})  # 9 containers
    assert refusal(parse_claims, deep_list)[0] == "invalid_request"


# -- resolve_subject ----------------------------------------------------------------------------


def test_a_login_hint_is_only_claimed() -> None:
    subject = resolve_subject(SETTINGS, CLIENT, {"login_hint": "alice"}, KEYS)
    assert subject == Subject("alice", verified=False)


def test_a_signed_request_object_verifies_its_subject() -> None:
    subject = resolve_subject(SETTINGS, CLIENT, {}, KEYS, request_object={"login_hint": "alice"})
    assert subject == Subject("alice", verified=True)


def test_a_request_objects_sub_claim_comes_before_its_login_hint() -> None:
    obj = {"login_hint": "bob", "claims": {"id_token": {"sub": {"value": "alice"}}}}
    assert resolve_subject(SETTINGS, CLIENT, {}, KEYS, request_object=obj).name == "alice"


def test_a_login_hint_beside_a_request_object_is_not_read() -> None:
    # params merge the query with the object's claims: the query cannot name another subject.
    subject = resolve_subject(
        SETTINGS, CLIENT, {"login_hint": "mallory"}, KEYS, request_object={"login_hint": "alice"}
    )
    assert subject == Subject("alice", verified=True)


def test_our_own_id_token_hint_verifies_its_subject() -> None:
    params = {"id_token_hint": id_token_hint("alice")}
    assert resolve_subject(SETTINGS, CLIENT, params, KEYS) == Subject("alice", verified=True)


def test_a_login_hint_agreeing_with_a_signed_hint_is_verified() -> None:
    params = {"id_token_hint": id_token_hint("alice"), "login_hint": "alice"}
    assert resolve_subject(SETTINGS, CLIENT, params, KEYS) == Subject("alice", verified=True)


def test_hints_naming_different_subjects_conflict() -> None:
    params = {"id_token_hint": id_token_hint("alice"), "login_hint": "bob"}
    assert refusal(resolve_subject, SETTINGS, CLIENT, params, KEYS) == (
        "invalid_request",
        "subject_conflict",
    )
    obj = {"login_hint": "bob"}
    conflict = (SETTINGS, CLIENT, {"id_token_hint": id_token_hint("alice")}, KEYS, obj)
    assert refusal(resolve_subject, *conflict)[1] == "subject_conflict"


def test_an_id_token_hint_for_another_client_is_refused() -> None:
    params = {"id_token_hint": id_token_hint("alice", aud="another-client")}
    assert refusal(resolve_subject, SETTINGS, CLIENT, params, KEYS)[1] == "invalid_id_token_hint"


def test_only_the_hints_a_client_may_use_count() -> None:
    strict = settings_with()  # request_object and id_token_hint only
    client = strict.clients[0]
    assert refusal(resolve_subject, strict, client, {"login_hint": "alice"}, KEYS) == (
        "invalid_request",
        "subject_required",
    )


@pytest.mark.parametrize("name", ["", "x" * 256, "a\ud800"])
def test_an_empty_overlong_or_broken_subject_is_refused(name: str) -> None:
    obj = {"claims": {"id_token": {"sub": {"value": name}}}}
    assert refusal(resolve_subject, SETTINGS, CLIENT, {}, KEYS, obj)[1] == "subject_required"
