"""stepup/records.py: what is kept in Redis per challenge and per code, as compact JSON."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from idenfy_stepup.stepup.records import CodeGrant, StepUpRequest

REQUIRED = {
    "client_id": "shop",
    "redirect_uri": "https://shop.example/cb",
    "scope": "openid",
    "subject": "alice",
    "scan_ref": "SCAN-ALICE",
    "acr": "urn:idenfy:stepup:face",
    "method": "FACE_MATCHING",
}
FULL = StepUpRequest(
    **{**REQUIRED, "scope": "openid profile", "method": "ACTIVE_LIVENESS"},
    check_type="ENROLLMENT",
    state="st",
    nonce="n",
    code_challenge="cc",
    code_challenge_method="S256",
    max_age=60,
    claims={"id_token": {"acr": {"essential": True}}},
    verified=True,
    locale="lt",
)


def test_a_full_request_round_trips() -> None:
    assert StepUpRequest.from_json(FULL.to_json()) == FULL
    assert StepUpRequest.from_json(FULL.to_json().encode()) == FULL


def test_a_request_is_stored_under_short_names() -> None:
    stored = json.loads(FULL.to_json())
    names = {"c", "r", "sc", "u", "k", "a", "m", "t", "s", "n", "cc", "cm", "ma", "cl", "v", "l"}
    assert set(stored) == names
    assert (stored["c"], stored["u"], stored["k"], stored["v"], stored["l"]) == (
        "shop",
        "alice",
        "SCAN-ALICE",
        True,
        "lt",
    )


def test_defaults_are_left_out_and_come_back() -> None:
    minimal = StepUpRequest(**REQUIRED)
    stored = json.loads(minimal.to_json())
    # The scope openid and the method FACE_MATCHING, which nearly every request has, too.
    assert set(stored) == {"c", "r", "u", "k", "a"}
    back = StepUpRequest.from_json(minimal.to_json())
    assert back == minimal
    assert (back.scope, back.method, back.check_type, back.state, back.claims) == (
        "openid",
        "FACE_MATCHING",
        "AUTHENTICATION",
        None,
        {},
    )
    assert back.verified is False


def test_a_request_stored_with_its_scope_and_method_reads_them() -> None:
    # As the version before stored every request, and as any other value is stored.
    named = json.dumps({**json.loads(StepUpRequest(**REQUIRED).to_json()), "sc": "x", "m": "y"})
    back = StepUpRequest.from_json(named)
    assert (back.scope, back.method) == ("x", "y")


def test_a_value_equal_to_a_default_only_in_truth_is_kept() -> None:
    # max_age 0 is not "no max_age": the comparison is by value, and 0 != None.
    zero = StepUpRequest(**REQUIRED, max_age=0)
    assert json.loads(zero.to_json())["ma"] == 0
    assert StepUpRequest.from_json(zero.to_json()).max_age == 0


@pytest.mark.parametrize(
    "raw",
    [
        '{"c": "shop", "zz": 1}',  # an unknown short name
        '{"client_id": "shop", "unexpected": 1}',  # an unknown long name
        '{"c": "shop"}',  # required fields missing
        "[1, 2]",
        '"text"',
    ],
)
def test_anything_that_does_not_fit_the_fields_is_refused(raw: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        StepUpRequest.from_json(raw)


def test_not_json_is_refused() -> None:
    with pytest.raises(ValueError):
        StepUpRequest.from_json("{not json")


def test_a_code_grant_round_trips() -> None:
    grant = CodeGrant.from_request(FULL, auth_time=1_700_000_000, ip_differs=True)
    assert grant.enrollment and grant.ip_differs and grant.subject == "alice"
    back = CodeGrant.from_json(grant.to_json())
    # JSON has no tuples: the risk tags come back as a list, every other field as it was.
    assert replace(back, risk=tuple(back.risk)) == grant


def test_a_code_grant_keeps_its_risk_tags() -> None:
    grant = CodeGrant.from_request(FULL, auth_time=1, risk=("VIRTUAL_CAMERA",))
    back = CodeGrant.from_json(grant.to_json())
    assert tuple(back.risk) == ("VIRTUAL_CAMERA",)
    assert (back.client_id, back.nonce, back.claims) == (grant.client_id, "n", grant.claims)


@pytest.mark.parametrize(
    "raw", ['{"client_id": "shop", "unexpected": 1}', "[]", '{"client_id": "shop"}']
)
def test_a_code_grant_that_does_not_fit_is_refused(raw: str) -> None:
    with pytest.raises((ValueError, TypeError)):
        CodeGrant.from_json(raw)


def test_authorization_details_and_txn_are_stored_as_ad_and_x_and_reach_the_grant() -> None:
    details = [{"type": "payment_initiation", "creditorName": "ACME Ltd"}]
    request = StepUpRequest(**REQUIRED, authorization_details=details, txn="t" * 22)
    stored = json.loads(request.to_json())
    assert (stored["ad"], stored["x"]) == (details, "t" * 22)
    assert "authorization_details" not in stored and "txn" not in stored
    back = StepUpRequest.from_json(request.to_json())
    assert back == request
    grant = CodeGrant.from_request(back, auth_time=1)
    assert (grant.authorization_details, grant.txn) == (details, "t" * 22)


def test_no_authorization_details_are_left_out() -> None:
    stored = json.loads(StepUpRequest(**REQUIRED, txn="abc").to_json())
    assert "ad" not in stored and stored["x"] == "abc"
