"""The webhook's riskTags as parsed, and the settings of what the vendor flags."""

from __future__ import annotations

import json
from typing import Any

import pytest

from idenfy_stepup.idenfy.risk import decide, effective_policy
from idenfy_stepup.idenfy.webhook import MALFORMED_TAG, WebhookRejected, parse_event
from idenfy_stepup.settings import ConfigError, parse_settings


def _event(**fields: object) -> bytes:
    base = {"id": "evt-1", "token": "tok-1", "status": "SUCCESS", "scanRef": "S"}
    return json.dumps({**base, **fields}).encode()


@pytest.mark.parametrize("tags", ["UNTRUSTED_ENVIRONMENT", {"a": 1}, [1], [None], ["x"] * 33])
def test_mistyped_risk_tags_are_400(tags: object) -> None:
    with pytest.raises(WebhookRejected) as info:
        parse_event(_event(riskTags=tags))
    assert info.value.status_code == 400


def test_risk_tags_are_normalised_and_strange_ones_kept_as_a_placeholder() -> None:
    event = parse_event(
        _event(
            riskTags=[" untrusted_environment", "UNTRUSTED_ENVIRONMENT", "", "<script>", "x" * 500]
        )
    )
    assert event.risk_tags == ("UNTRUSTED_ENVIRONMENT", MALFORMED_TAG)
    assert parse_event(_event(riskTags=None)).risk_tags == ()


@pytest.mark.parametrize(
    "idenfy",
    [
        {"risk_tags": {"untrusted": "deny"}},
        {"risk_tags": {"X": "warn"}},
        {"webhook_ip_policy": "strict"},
    ],
)
def test_bad_flag_settings_name_their_key(idenfy: dict[str, Any]) -> None:
    raw = {"issuer": "http://127.0.0.1:8000", "idenfy": {"mode": "simulator", **idenfy}}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw)
    assert any(path.startswith("idenfy") for path, _ in info.value.problems), info.value


def test_the_operators_policy_is_laid_over_the_built_in_one() -> None:
    policy = effective_policy({"default": "allow"})
    decision = decide(("UNTRUSTED_ENVIRONMENT", "NEW_SIGNAL"), policy)
    assert decision.denied == ("UNTRUSTED_ENVIRONMENT",) and decision.allowed == ("NEW_SIGNAL",)
    assert decision.outcome == "RISK_UNTRUSTED_ENVIRONMENT"
    assert decide(("NEW_SIGNAL",), effective_policy({})).outcome == "RISK_FLAGGED"
    assert decide((), effective_policy({})).outcome == ""
