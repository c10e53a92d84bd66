"""What the vendor flags on a face check: riskTags, ENROLLMENT sessions and the webhook's
ipAddress. Nothing it flags may pass silently.

End to end: the RP's /authorize, the challenge page, the simulator's (or our own) signed
webhook, the browser's finish, the redirect to the RP and the id_token.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from .harness.redis import challenge_key
from .harness.rp import Flow, authorize, challenge, query
from .harness.servers import TLS, Stack, StackPool
from .harness.settings import REDIRECT_URI
from .harness.vendor import post_webhook, vendor_sessions, webhook_body

pytestmark = pytest.mark.asyncio(loop_scope="module")

ALLOW_UNTRUSTED = {"idenfy": {"risk_tags": {"UNTRUSTED_ENVIRONMENT": "allow"}}}
NO_ENROLLMENT = {"idenfy": {"allow_enrollment": False}}
IP_DENY = {"idenfy": {"webhook_ip_policy": "deny"}}
ELSEWHERE = "203.0.113.7"  # TEST-NET-3: never the test's own loopback address


async def approve(stack: Stack, attempt: Flow, **extra: Any) -> dict[str, str]:
    """The simulator sends a SUCCESS (with ``extra`` webhook fields); the RP's redirect."""
    delivered = await stack.outcome(attempt.token, "SUCCESS", **extra)
    assert delivered.json()["delivered"] == 200, delivered.text
    return await attempt.result()


def assert_denied(result: dict[str, str], attempt: Flow, stack: Stack, code: str) -> None:
    assert "code" not in result, result
    assert result["error"] == "access_denied"
    assert result["stepup_error"] == code
    assert result["state"] == attempt.state
    assert result["iss"] == stack.issuer


# -- riskTags --------------------------------------------------------------------------------


async def test_untrusted_environment_on_a_success_is_denied_by_default(stack: Stack) -> None:
    attempt = await challenge(stack)
    result = await approve(stack, attempt, riskTags=["UNTRUSTED_ENVIRONMENT"])
    assert_denied(result, attempt, stack, "risk_untrusted_environment")


async def test_an_unknown_risk_tag_is_denied_by_default_as_risk_flagged(stack: Stack) -> None:
    attempt = await challenge(stack)
    result = await approve(stack, attempt, riskTags=["SOMETHING_NEW"])
    assert_denied(result, attempt, stack, "risk_flagged")


async def test_an_allowed_risk_tag_reaches_the_id_token_as_stepup_risk(pool: StackPool) -> None:
    stack = await pool.get(settings=ALLOW_UNTRUSTED)
    attempt = await challenge(stack)
    result = await approve(stack, attempt, riskTags=["untrusted_environment"])
    claims = await attempt.id_token(result["code"])
    assert claims["stepup_risk"] == ["UNTRUSTED_ENVIRONMENT"]
    assert claims["amr"] == ["face"] and "stepup_enrollment" not in claims

    clean = await challenge(stack)
    claims = await clean.id_token((await approve(stack, clean))["code"])
    assert "stepup_risk" not in claims  # only when there are allowed tags


async def test_allowing_one_tag_still_denies_tags_the_policy_does_not_name(
    pool: StackPool,
) -> None:
    stack = await pool.get(settings=ALLOW_UNTRUSTED)
    attempt = await challenge(stack)
    result = await approve(stack, attempt, riskTags=["UNTRUSTED_ENVIRONMENT", "NEW_SIGNAL"])
    assert_denied(result, attempt, stack, "risk_flagged")


async def test_redeliveries_never_turn_a_risk_denial_into_an_approval(
    stack: Stack, redis: Redis
) -> None:
    attempt = await challenge(stack)
    flagged = webhook_body(attempt.token, "SUCCESS", risk_tags=["UNTRUSTED_ENVIRONMENT"])
    # The same delivery three times at once: one transition, and it denies.
    first = await asyncio.gather(*(post_webhook(stack, flagged) for _ in range(3)))
    assert sorted(r.json()["result"] for r in first) == ["applied", "duplicate", "duplicate"]
    # Then exact duplicates and clean SUCCESS webhooks with fresh ids, concurrently.
    clean = [webhook_body(attempt.token, "SUCCESS") for _ in range(3)]
    later = await asyncio.gather(*(post_webhook(stack, b) for b in [flagged, flagged, *clean]))
    assert [r.json()["result"] for r in later] == ["duplicate"] * 2 + ["ignored"] * 3
    record = await redis.hgetall(challenge_key(attempt.token))
    assert record[b"state"] == b"DENIED" and b"auth_time" not in record
    assert_denied(await attempt.result(), attempt, stack, "risk_untrusted_environment")


async def test_risk_rows_are_overridable_under_errors(pool: StackPool) -> None:
    stack = await pool.get(
        settings={"errors": {"RISK_FLAGGED": {"stepup_error": "vendor_flagged"}}}
    )
    attempt = await challenge(stack)
    result = await approve(stack, attempt, riskTags=["ANYTHING"])
    assert_denied(result, attempt, stack, "vendor_flagged")


async def test_an_ip_mismatch_made_retryable_under_errors_offers_a_new_attempt(
    pool: StackPool,
) -> None:
    stack = await pool.get(settings={**IP_DENY, "errors": {"IP_MISMATCH": {"retryable": True}}})
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "SUCCESS", ipAddress=ELSEWHERE)
    page = await attempt.finish()
    assert page.status_code == 200 and f"/challenge/{attempt.token}/retry" in page.text
    retried = await attempt.browser.post(f"/challenge/{attempt.token}/retry")
    assert retried.status_code == 303, retried.text
    attempt.token = retried.headers["location"].rsplit("/", 1)[1]
    assert "code" in await approve(stack, attempt, ipAddress="127.0.0.1")


async def test_risk_decision_is_logged_with_tag_names_only(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="idenfy_stepup")
    attempt = await challenge(stack)
    await approve(stack, attempt, riskTags=["UNTRUSTED_ENVIRONMENT"])
    lines = [r for r in caplog.records if getattr(r, "event", "") == "webhook.risk"]
    assert [(r.levelname, r.risk_tags, r.decision) for r in lines] == [  # type: ignore[attr-defined]
        ("WARNING", ["UNTRUSTED_ENVIRONMENT"], "deny")
    ]


# -- ENROLLMENT sessions ---------------------------------------------------------------------


async def test_an_enrollment_is_marked_in_the_id_token(stack: Stack) -> None:
    attempt = await challenge(stack, login_hint="carol")
    result = await approve(stack, attempt)
    claims = await attempt.id_token(result["code"])
    assert claims["sub"] == "carol"
    assert claims["stepup_enrollment"] is True
    assert claims["amr"] == ["face", "enroll"]

    authentication = await challenge(stack)  # alice: check-status AUTHENTICATION
    claims = await authentication.id_token((await approve(stack, authentication))["code"])
    assert claims["amr"] == ["face"] and "stepup_enrollment" not in claims


async def test_refused_enrollment_redirects_before_a_vendor_session(pool: StackPool) -> None:
    stack = await pool.get(settings=NO_ENROLLMENT)
    attempt = await authorize(stack, login_hint="carol")
    response = attempt.response
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    result = query(location)
    assert result["error"] == "unmet_authentication_requirements"
    assert result["stepup_error"] == "enrollment_required"
    assert result["state"] == attempt.state and result["iss"] == stack.issuer
    sessions = await vendor_sessions(stack)
    assert [s for s in sessions if s["givenScanRef"] == "SCAN-CAROL"] == []
    # An AUTHENTICATION subject still steps up.
    alice = await challenge(stack)
    assert "code" in await approve(stack, alice)


# -- the webhook's ipAddress -----------------------------------------------------------------


async def test_a_success_from_another_address_is_denied_under_deny(pool: StackPool) -> None:
    stack = await pool.get(settings=IP_DENY)
    attempt = await challenge(stack)
    result = await approve(stack, attempt, ipAddress=ELSEWHERE)
    assert_denied(result, attempt, stack, "ip_mismatch")


@pytest.mark.parametrize("address", ["127.0.0.1", "::ffff:127.0.0.1", None, "not an address"])
async def test_the_same_or_an_unknown_address_is_never_denied(
    pool: StackPool, address: str | None
) -> None:
    stack = await pool.get(settings=IP_DENY)
    attempt = await challenge(stack)  # opened from 127.0.0.1
    result = await approve(stack, attempt, **({"ipAddress": address} if address else {}))
    claims = await attempt.id_token(result["code"])
    assert "stepup_ip" not in claims


async def test_another_address_is_logged_without_it_and_approved_under_log(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    attempt = await challenge(stack)
    result = await approve(stack, attempt, ipAddress=ELSEWHERE)
    claims = await attempt.id_token(result["code"])
    assert claims["stepup_ip"] == "differs"  # the RP can decide too
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "webhook.ip"]
    assert [(r.levelname, r.ip) for r in warnings] == [("WARNING", "differs")]  # type: ignore[attr-defined]
    assert "differs" in warnings[0].getMessage()
    # The address is in the simulator's request body, never in what anyone logged.
    for record in caplog.records:
        texts = [record.getMessage(), *(repr(v) for v in vars(record).values())]
        assert not any(ELSEWHERE in text for text in texts), record.getMessage()


async def test_an_unknown_address_is_logged_at_info(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="idenfy_stepup")
    attempt = await challenge(stack)
    assert "code" in await approve(stack, attempt)  # the simulator sends ipAddress null
    lines = [r for r in caplog.records if getattr(r, "event", "") == "webhook.ip"]
    assert [(r.levelname, r.ip) for r in lines] == [("INFO", "unknown")]  # type: ignore[attr-defined]


# -- bad input -------------------------------------------------------------------------------


async def test_a_mistyped_ip_address_is_refused_and_changes_nothing(
    stack: Stack, redis: Redis
) -> None:
    attempt = await challenge(stack)
    body = json.loads(webhook_body(attempt.token, "SUCCESS"))
    body["ipAddress"] = ["203.0.113.7"]
    response = await post_webhook(stack, json.dumps(body).encode())
    assert response.status_code == 400
    assert await redis.hget(challenge_key(attempt.token), "state") == b"PENDING"


@pytest.mark.parametrize(
    "fields", [{"riskTags": "UNTRUSTED_ENVIRONMENT"}, {"riskTags": [""]}, {"ipAddress": 7}]
)
async def test_the_simulator_refuses_malformed_risk_tags_and_addresses(
    stack: Stack, fields: dict[str, Any]
) -> None:
    attempt = await challenge(stack)
    async with httpx.AsyncClient(verify=TLS) as c:
        response = await c.post(
            f"{stack.simulator_url}/_simulator/sessions/{attempt.token}/outcome",
            json={"status": "SUCCESS", **fields},
        )
    assert response.status_code == 400, response.text
