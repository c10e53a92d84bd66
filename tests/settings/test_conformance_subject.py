"""``conformance_subject``: a fixed, claimed subject for a conformance run against the simulator.

The OpenID Foundation's Basic and Config OP plans send requests that name nobody; a client with
``conformance_subject`` steps up that person then (docs/conformance.md). It is refused at load
time outside ``idenfy.mode: simulator``, where it would let anyone start a face check of that
person, and it is only ever a claimed subject, like a plain login_hint.
"""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from idenfy_stepup.settings import ConfigError, parse_settings
from idenfy_stepup.settings.lint import unsafe_settings
from idenfy_stepup.stepup.records import StepUpRequest

from ..harness.redis import stored_request
from ..harness.rp import authorize, decode_id_token, redeem_code
from ..harness.servers import Stack
from ..harness.settings import client_entry

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS: dict[str, Any] = {
    "clients": [
        client_entry(
            "conformance",
            subject_hints=["login_hint", "id_token_hint", "request_object"],
            conformance_subject="alice",
        ),
        client_entry("shop", subject_hints=["login_hint"]),
    ]
}


def file_with(mode: str, **idenfy: Any) -> dict[str, Any]:
    return {
        "issuer": "https://stepup.example.com",
        "idenfy": {"mode": mode, **idenfy},
        "clients": [
            client_entry("gateway"),
            client_entry("conformance", conformance_subject="alice"),
        ],
    }


LIVE = {"api_key": "k", "api_secret": "s", "webhook_signing_key": "w" * 40}


async def test_conformance_subject_is_refused_outside_simulator_mode() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(file_with("live", **LIVE))
    assert "clients[1].conformance_subject" in str(info.value)
    assert "simulator" in str(info.value)


async def test_conformance_subject_loads_in_simulator_mode_with_a_warning() -> None:
    settings = parse_settings(file_with("simulator"))
    assert settings.clients[1].conformance_subject == "alice"
    warnings = "\n".join(unsafe_settings(settings))
    assert "clients[1] (conformance): conformance_subject steps up 'alice'" in warnings


async def test_a_request_naming_nobody_steps_up_the_conformance_subject(
    stack: Stack, redis: Redis
) -> None:
    flow = await authorize(stack, client_id="conformance")
    await flow.show_challenge()
    # Only claimed: it can never count against, or lock out, the person it names.
    raw = await stored_request(redis, flow.token)
    assert raw is not None
    stored = StepUpRequest.from_json(raw)
    assert (stored.subject, stored.verified) == ("alice", False)
    result = await flow.approve()
    assert result["state"] == flow.state
    tokens = await redeem_code(
        stack, result["code"], client_id="conformance", verifier=flow.verifier
    )
    assert tokens.status_code == 200, tokens.text
    _, claims = await decode_id_token(stack, tokens.json()["id_token"])
    assert (claims["sub"], claims["aud"]) == ("alice", "conformance")


async def test_a_hint_in_the_request_wins_over_the_conformance_subject(stack: Stack) -> None:
    flow = await authorize(stack, client_id="conformance", login_hint="bob")
    # bob is in the directory but the vendor cannot check his face: his refusal, not alice's.
    assert flow.redirect["stepup_error"] == "not_enrolled"


async def test_a_client_without_it_still_needs_a_hint(stack: Stack) -> None:
    flow = await authorize(stack, client_id="shop")
    assert flow.redirect["stepup_error"] == "subject_required"
