"""The outcome table of docs/architecture.md ("Outcomes and errors"), row by row: every way
a step-up ends, as the relying party sees it.

Each case runs end to end: the RP's /authorize, the challenge page, the simulator's signed
webhook, the browser's finish, and the redirect back to the RP with ``error``,
``error_description``, ``stepup_error``, ``state`` and ``iss``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .harness.redis import RedisProcess, challenge_key
from .harness.rp import Flow, authorize, challenge, query
from .harness.servers import Stack, StackPool, running_stack
from .harness.settings import REDIRECT_URI
from .harness.vendor import serve_vendor, vendor_sessions

# The rows share one stack per configuration, in the module's event loop.
pytestmark = pytest.mark.asyncio(loop_scope="module")

DENIED = "access_denied"
UNMET = "unmet_authentication_requirements"
UNAVAILABLE = "temporarily_unavailable"

# The table of docs/architecture.md ("Outcomes and errors"), written out here so the product's
# own table is checked against it.
FINAL_REASONS = {
    "FACE_MISMATCH": "face_mismatch",
    "PROBABILITY_TOO_SMALL": "low_confidence",
    "FAKE_FACE": "spoof_detected",
    "VIRTUAL_CAMERA": "virtual_camera",
    "FAKE_CAPTURE": "capture_tampered",
    "DUPLICATE_IMAGE": "duplicate_image",
}
RETRYABLE_REASONS = {
    "FACE_NOT_FOUND": "face_not_found",
    "TOO_MANY_FACES": "multiple_faces",
    "FACE_ANGLE_TOO_LARGE": "face_angle",
    "FACE_TOO_SMALL": "face_too_small",
    "FACE_CLOSE_TO_BORDER": "face_near_border",
    "FACE_TOO_CLOSE": "face_too_close",
    "FACE_CROPPED": "face_cropped",
    "FACE_IS_OCCLUDED": "face_occluded",
    "EYES_CLOSED": "eyes_closed",
    "FAILED_TO_PREDICT_LANDMARKS": "landmarks_failed",
}
assert len(FINAL_REASONS) + len(RETRYABLE_REASONS) == 16


ONE_ATTEMPT = {"challenge": {"max_attempts": 1}}


def assert_error_redirect(
    result: dict[str, str], attempt: Flow, stack: Stack, error: str, stepup_error: str
) -> None:
    """The RP gets the standard code, our code, a human description, its state and our iss."""
    assert "code" not in result, result
    assert result["error"] == error, result
    assert result["stepup_error"] == stepup_error, result
    assert result["state"] == attempt.state, result
    assert result["iss"] == stack.issuer, result
    assert result.get("error_description", "").strip(), result


def rp_redirect(response: httpx.Response) -> dict[str, str]:
    """The query of a direct 303 to the RP (a refusal at /authorize)."""
    assert response.status_code == 303, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return query(location)


# -- outcomes reported by the vendor's webhook --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "stepup_error"),
    [
        ("CANCELED", None, "user_canceled"),
        ("EXPIRED", None, "challenge_expired"),
        *[("FAILED", reason, code) for reason, code in FINAL_REASONS.items()],
        ("FAILED", "SOMETHING_NEW_FROM_THE_VENDOR", "verification_failed"),
        ("FAILED", None, "verification_failed"),
    ],
)
async def test_final_outcome_row(
    stack: Stack, status: str, reason: str | None, stepup_error: str
) -> None:
    """Rows without a retry: even with attempts left (default 3), the RP gets the error."""
    attempt = await challenge(stack)
    delivered = await stack.outcome(attempt.token, status, reason)
    assert delivered.json()["delivered"] == 200
    assert_error_redirect(await attempt.result(), attempt, stack, DENIED, stepup_error)


@pytest.mark.parametrize(("reason", "stepup_error"), list(RETRYABLE_REASONS.items()))
async def test_retryable_row_after_last_attempt(
    pool: StackPool, reason: str, stepup_error: str
) -> None:
    stack = await pool.get(settings=ONE_ATTEMPT)
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", reason)
    assert_error_redirect(await attempt.result(), attempt, stack, DENIED, stepup_error)


async def test_expired_without_a_webhook_is_still_reported(stack: Stack) -> None:
    """The vendor never says EXPIRED: our own clock ends the challenge, and the RP still gets
    the error with its state (the request outlives the token: docs/architecture.md, "The flow")."""
    attempt = await challenge(stack)
    async with Redis.from_url(stack.settings.redis.url) as redis:
        await redis.hset(challenge_key(attempt.token), "expires_at", int(time.time()) - 60)
    assert_error_redirect(await attempt.result(), attempt, stack, DENIED, "challenge_expired")


@pytest.mark.parametrize("reason", list(RETRYABLE_REASONS))
async def test_retryable_row_offers_a_retry_while_attempts_remain(
    stack: Stack, reason: str
) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", reason)
    page = await attempt.finish()
    assert page.status_code == 200, page.headers
    assert 'data-action="retry"' in page.text
    assert 'data-action="give-up"' in page.text
    assert "code=" not in page.text


@pytest.mark.parametrize("reason", list(FINAL_REASONS))
async def test_final_reasons_never_offer_a_retry(stack: Stack, reason: str) -> None:
    attempt = await challenge(stack)
    before = len(await vendor_sessions(stack))
    await stack.outcome(attempt.token, "FAILED", reason)
    retried = await attempt.browser.post(f"/challenge/{attempt.token}/retry")
    # No new attempt: the browser is sent back to the same challenge, which then finishes
    # with the error; never to a new challenge.
    assert retried.status_code == 303, retried.text
    assert retried.headers["location"] == f"/challenge/{attempt.token}"
    result = await attempt.result()
    assert result["stepup_error"] == FINAL_REASONS[reason]
    assert len(await vendor_sessions(stack)) == before


# -- refusals before any face check -------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param("bob", id="identification-scanref"),
        pytest.param("ghost", id="scanref-unknown-to-vendor"),
        pytest.param("nobody", id="subject-not-in-directory"),
    ],
)
async def test_not_enrolled(stack: Stack, subject: str) -> None:
    before = len(await vendor_sessions(stack))
    attempt = await authorize(stack, login_hint=subject)
    response = attempt.response
    assert_error_redirect(rp_redirect(response), attempt, stack, UNMET, "not_enrolled")
    assert len(await vendor_sessions(stack)) == before


async def test_enrollment_scanref_is_enrolled(stack: Stack) -> None:
    """check-status ENROLLMENT (carol) is not in the not_enrolled row: the check goes ahead."""
    attempt = await challenge(stack, login_hint="carol")
    await stack.outcome(attempt.token, "SUCCESS")
    result = await attempt.result()
    assert (await attempt.id_token(result["code"]))["sub"] == "carol"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"acr_values": "urn:example:unknown"}, id="acr_values-unknown"),
        pytest.param(
            {"claims": json.dumps({"id_token": {"acr": {"essential": True, "value": "urn:x"}}})},
            id="essential-acr-value",
        ),
        pytest.param(
            {
                "claims": json.dumps(
                    {"id_token": {"acr": {"essential": True, "values": ["urn:x", "urn:y"]}}}
                )
            },
            id="essential-acr-values",
        ),
    ],
)
async def test_acr_unsupported(stack: Stack, extra: dict[str, str]) -> None:
    before = len(await vendor_sessions(stack))
    attempt = await authorize(stack, **{"login_hint": "alice", **extra})
    response = attempt.response
    assert_error_redirect(rp_redirect(response), attempt, stack, UNMET, "acr_unsupported")
    assert len(await vendor_sessions(stack)) == before


# -- the vendor is down or misbehaves --------------------------------------------------------------


async def test_vendor_unreachable(pool: StackPool) -> None:
    stack = await pool.get(simulator=False)  # nothing listens on the vendor port
    attempt = await authorize(stack, login_hint="alice")
    response = attempt.response
    assert_error_redirect(rp_redirect(response), attempt, stack, UNAVAILABLE, "vendor_unavailable")


class BrokenVendor:
    """A partner API on a real port whose ``failing`` endpoint misbehaves as each test says."""

    def __init__(self) -> None:
        self.failing = ""
        self.status = 500
        self.body: dict[str, Any] = {}
        self.delay = 0.0
        self.app = Starlette(
            routes=[
                Route("/identification/facial-auth/{ref}/check-status/", self.check_status),
                Route("/partner/authentication-info", self.create, methods=["POST"]),
            ]
        )

    async def _broken(self) -> Response:
        await asyncio.sleep(self.delay)
        return JSONResponse(self.body, status_code=self.status)

    async def check_status(self, request: Request) -> Response:
        if self.failing == "check-status":
            return await self._broken()
        return JSONResponse({"type": "AUTHENTICATION"})

    async def create(self, request: Request) -> Response:
        if self.failing == "authentication-info":
            return await self._broken()
        return JSONResponse({"token": "T0KEN-FROM-A-BROKEN-VENDOR"})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def broken_vendor(pool: StackPool) -> tuple[Stack, BrokenVendor]:
    vendor = BrokenVendor()
    # Each row shows one way the vendor fails: the breaker must not answer for it.
    stack = await pool.fresh(
        settings={"idenfy": {"timeout": 0.5, "breaker": {"failures": 0}}}, simulator=False
    )
    await serve_vendor(stack, vendor.app)
    return stack, vendor


@pytest.mark.parametrize("failing", ["check-status", "authentication-info"])
@pytest.mark.parametrize(
    ("status", "body", "delay"),
    [
        pytest.param(500, {"identifier": "INTERNAL", "message": "boom"}, 0.0, id="500"),
        pytest.param(503, {}, 0.0, id="503"),
        pytest.param(429, {"identifier": "TOO_MANY_REQUESTS"}, 0.0, id="429"),
        pytest.param(400, {"identifier": "TOO_MANY_REQUESTS"}, 0.0, id="400-rate-limited"),
        pytest.param(402, {"identifier": "NO_CREDITS"}, 0.0, id="402-no-credits"),
        pytest.param(401, {"message": "Invalid authorization credentials"}, 0.0, id="401"),
        pytest.param(200, ["not", "an", "object"], 0.0, id="garbage"),
        pytest.param(200, {"type": "AUTHENTICATION"}, 0.8, id="timeout"),
    ],
)
async def test_vendor_failure(
    broken_vendor: tuple[Stack, BrokenVendor],
    failing: str,
    status: int,
    body: Any,
    delay: float,
) -> None:
    stack, vendor = broken_vendor
    vendor.failing, vendor.status, vendor.body, vendor.delay = failing, status, body, delay
    attempt = await authorize(stack, login_hint="alice")
    response = attempt.response
    assert_error_redirect(rp_redirect(response), attempt, stack, UNAVAILABLE, "vendor_unavailable")


# -- Redis is down ------------------------------------------------------------------------------


async def test_store_unavailable(own_redis: RedisProcess) -> None:
    async with running_stack(own_redis.url) as stack:
        own_redis.stop()
        attempt = await authorize(stack, login_hint="alice")
        response = attempt.response
        result = rp_redirect(response)
        assert_error_redirect(result, attempt, stack, UNAVAILABLE, "store_unavailable")


# -- the operator's overrides ------------------------------------------------------------------


async def test_errors_override_takes_effect(pool: StackPool) -> None:
    errors = {
        "FACE_MISMATCH": {"stepup_error": "custom_mismatch", "description": "Not the same person."}
    }
    stack = await pool.get(settings={"errors": errors})
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH")
    result = await attempt.result()
    assert_error_redirect(result, attempt, stack, DENIED, "custom_mismatch")
    assert result["error_description"] == "Not the same person."

    # The other rows keep their defaults.
    other = await challenge(stack)
    await stack.outcome(other.token, "FAILED", "FAKE_FACE")
    assert_error_redirect(await other.result(), other, stack, DENIED, "spoof_detected")


async def test_errors_override_of_error_and_retryable(pool: StackPool) -> None:
    errors = {
        "FACE_TOO_SMALL": {"retryable": False, "error": "login_required"},
        "FACE_MISMATCH": {"retryable": True},
    }
    stack = await pool.get(settings={"errors": errors})
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_TOO_SMALL")
    result = await attempt.result()
    assert_error_redirect(result, attempt, stack, "login_required", "face_too_small")

    mismatch = await challenge(stack)
    await stack.outcome(mismatch.token, "FAILED", "FACE_MISMATCH")
    page = await mismatch.finish()
    assert page.status_code == 200
    assert 'data-action="retry"' in page.text


async def test_error_redirect_carries_error_description(stack: Stack) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH")
    response = await attempt.finish()
    location = response.headers["location"]
    assert "error_description=" in location
    description = query(location)["error_description"]
    assert len(description) > 10 and " " in description
    # No internals leak into the text sent to the RP.
    assert attempt.token not in description
    assert "SCAN-" not in description
