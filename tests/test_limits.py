"""Abuse limits (issue 4 item 8), end to end over HTTP against a real redis-server.

Per-IP and per-subject rate limits on /authorize and on challenge creation (each challenge
spends iDenfy credits), the lock-out of a subject after a spoofing signal, X-Forwarded-For only
behind a trusted proxy, the operator's overrides, and the config's validation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from idenfy_stepup.config import ConfigError, LimitSettings, parse_settings
from idenfy_stepup.store import tag

from .conftest import RedisProcess
from .stack import (
    REDIRECT_URI,
    Attempt,
    Stack,
    authorize_params,
    begin,
    challenge,
    pkce,
    query,
    resend_webhook,
    running_stack,
    vendor_sessions,
)

ROOT = Path(__file__).resolve().parents[1]
OFF: dict[str, Any] = {
    "authorize_per_ip": None,
    "authorize_per_subject": None,
    "challenges_per_subject": None,
    "challenges_per_ip": None,
    "spoof_lockout_seconds": 0,
}
Factory = Callable[..., Any]


def limits(**on: Any) -> dict[str, Any]:
    """Settings with only the given limits on (the rest off)."""
    return {"challenge": {"limits": {**OFF, **on}}}


def per(count: int, seconds: int = 600) -> dict[str, int]:
    return {"count": count, "seconds": seconds}


def lock_key(subject: str) -> str:
    return f"stepup:lock:{{{tag(subject)}}}"


def rp_redirect(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    return query(location)


def refusal(response: httpx.Response, attempt: Attempt) -> tuple[str, str]:
    """``(error, stepup_error)`` of a refusal redirect that carries the request's ``state``."""
    result = rp_redirect(response)
    assert result["state"] == attempt.state
    return result["error"], result["stepup_error"]


async def authorize_as(stack: Stack, headers: dict[str, str], **extra: str) -> httpx.Response:
    _, code_challenge = pkce()
    browser = stack.browser()
    return await browser.get(
        "/authorize", params=authorize_params(code_challenge, **extra), headers=headers
    )


async def approve(attempt: Attempt) -> dict[str, str]:
    delivered = await attempt.stack.outcome(attempt.token, "SUCCESS")
    assert delivered.json()["delivered"] == 200, delivered.text
    return await attempt.result()


# -- /authorize per IP ---------------------------------------------------------------------------


async def test_authorize_per_ip_redirects_a_known_client_and_shows_others_a_429_page(
    stack_factory: Factory,
) -> None:
    stack: Stack = await stack_factory(settings=limits(authorize_per_ip=per(2, 60)))
    for _ in range(2):
        attempt, response = await begin(stack)
        assert attempt.token, response.text

    attempt, response = await begin(stack)
    result = rp_redirect(response)
    assert result["error"] == "temporarily_unavailable"
    assert result["stepup_error"] == "rate_limited"
    assert result["state"] == attempt.state and result["iss"] == stack.issuer
    assert 1 <= int(response.headers["retry-after"]) <= 60

    # Before client_id and redirect_uri are known to be valid: a page, never a redirect.
    for bad in ({"client_id": "nobody"}, {"redirect_uri": "https://evil.example/cb"}):
        _, response = await begin(stack, **bad)
        assert response.status_code == 429 and "location" not in response.headers
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert "rate_limited" in response.text
    assert len(await vendor_sessions(stack)) == 2


async def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(stack_factory: Factory) -> None:
    trusted: Stack = await stack_factory(
        settings={
            **limits(authorize_per_ip=per(1, 60)),
            "server": {"trusted_proxies": ["127.0.0.1/32"]},
        }
    )
    first = await authorize_as(trusted, {"X-Forwarded-For": "203.0.113.7"})
    assert first.headers["location"].startswith("/challenge/")
    again = await authorize_as(trusted, {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    assert rp_redirect(again)["stepup_error"] == "rate_limited"  # the right-most untrusted hop
    other = await authorize_as(trusted, {"X-Forwarded-For": "203.0.113.8"})
    assert other.headers["location"].startswith("/challenge/")

    # Without a trusted proxy the header is ignored: every request is the loopback peer's.
    direct: Stack = await stack_factory(settings=limits(authorize_per_ip=per(1, 60)))
    first = await authorize_as(direct, {"X-Forwarded-For": "203.0.113.9"})
    assert first.headers["location"].startswith("/challenge/")
    forged = await authorize_as(direct, {"X-Forwarded-For": "203.0.113.10"})
    assert rp_redirect(forged)["stepup_error"] == "rate_limited"


# -- per subject, and challenge creation (vendor credits) ----------------------------------------


async def test_authorize_per_subject_counts_each_subject_apart(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(settings=limits(authorize_per_subject=per(1, 60)))
    first, response = await begin(stack)
    assert first.token, response.text
    _, response = await begin(stack)
    assert rp_redirect(response)["stepup_error"] == "rate_limited"
    _, response = await begin(stack, login_hint="bob")  # bob has his own budget
    assert rp_redirect(response)["stepup_error"] == "not_enrolled"


async def test_challenges_per_subject_protect_vendor_credits(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(settings=limits(challenges_per_subject=per(2)))
    for _ in range(2):
        await challenge(stack)
    for _ in range(3):
        attempt, response = await begin(stack)
        assert refusal(response, attempt) == ("temporarily_unavailable", "rate_limited")
    assert len(await vendor_sessions(stack)) == 2  # refused before the vendor was called


async def test_a_retry_counts_as_a_new_challenge(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(settings=limits(challenges_per_subject=per(2)))
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_TOO_SMALL")
    assert (await attempt.finish()).status_code == 200  # the retry screen
    moved = await attempt.browser.post(f"/challenge/{attempt.token}/retry")
    second = moved.headers["location"].removeprefix("/challenge/")
    await stack.outcome(second, "FAILED", "FACE_TOO_SMALL")
    assert (await attempt.browser.get(f"/challenge/{second}/finish")).status_code == 200
    refused = await attempt.browser.post(f"/challenge/{second}/retry")
    result = rp_redirect(refused)
    assert (result["error"], result["stepup_error"]) == ("temporarily_unavailable", "rate_limited")
    assert result["state"] == attempt.state
    assert len(await vendor_sessions(stack)) == 2  # the third attempt never reached iDenfy


async def test_challenges_per_ip_protect_vendor_credits(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(
        settings={
            **limits(challenges_per_ip=per(1)),
            "directory": {"static": {"dave": "SCAN-ALICE"}},
        }
    )
    await challenge(stack)
    _, response = await begin(stack, login_hint="dave")  # another subject, the same address
    assert rp_redirect(response)["stepup_error"] == "rate_limited"
    assert len(await vendor_sessions(stack)) == 1


async def test_a_success_never_counts(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(
        settings=limits(
            authorize_per_ip=per(1, 60),
            authorize_per_subject=per(1, 60),
            challenges_per_subject=per(1),
            challenges_per_ip=per(1),
        )
    )
    for _ in range(3):  # every success gives back what its request spent
        result = await approve(await challenge(stack))
        assert "code" in result, result
    await challenge(stack)  # abandoned: this one counts
    _, response = await begin(stack)
    assert rp_redirect(response)["stepup_error"] == "rate_limited"
    assert len(await vendor_sessions(stack)) == 4


# -- lock-out after spoofing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("FAKE_FACE", "spoof_detected"),
        ("VIRTUAL_CAMERA", "virtual_camera"),
        ("FAKE_CAPTURE", "capture_tampered"),
    ],
)
async def test_spoofing_locks_the_subject_out(
    stack_factory: Factory, redis_proc: RedisProcess, reason: str, code: str
) -> None:
    stack: Stack = await stack_factory(settings=limits(spoof_lockout_seconds=900))
    attempt = await challenge(stack)
    assert (await stack.outcome(attempt.token, "FAILED", reason)).json()["delivered"] == 200
    assert (await attempt.result())["stepup_error"] == code

    with redis_proc.client() as r:
        assert 890 <= r.ttl(lock_key("alice")) <= 900
    again, response = await begin(stack)
    result = rp_redirect(response)
    assert (result["error"], result["stepup_error"]) == ("access_denied", "subject_locked")
    assert result["state"] == again.state and result["iss"] == stack.issuer
    assert len(await vendor_sessions(stack)) == 1  # no vendor call for a locked subject
    _, response = await begin(stack, login_hint="bob")  # others are not affected
    assert rp_redirect(response)["stepup_error"] == "not_enrolled"


async def test_a_face_mismatch_does_not_lock(
    stack_factory: Factory, redis_proc: RedisProcess
) -> None:
    stack: Stack = await stack_factory(settings=limits(spoof_lockout_seconds=900))
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH")
    assert (await attempt.result())["stepup_error"] == "face_mismatch"
    with redis_proc.client() as r:
        assert not r.exists(lock_key("alice"))
    await challenge(stack)


async def test_the_lock_out_expires(stack_factory: Factory, redis_proc: RedisProcess) -> None:
    stack: Stack = await stack_factory(settings=limits(spoof_lockout_seconds=900))
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FAKE_FACE")
    _, response = await begin(stack)
    assert rp_redirect(response)["stepup_error"] == "subject_locked"
    with redis_proc.client() as r:
        assert r.pexpire(lock_key("alice"), 1)
    await asyncio.sleep(0.05)
    await challenge(stack)  # the lock is gone: a new face check opens


async def test_a_redelivered_spoof_webhook_restores_a_missing_lock(
    stack_factory: Factory, redis_proc: RedisProcess
) -> None:
    """The lock is written after the transition; if that write was lost (Redis failed, the
    webhook got 503), the vendor's redelivery, a duplicate, writes it."""
    stack: Stack = await stack_factory(settings=limits(spoof_lockout_seconds=900))
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "VIRTUAL_CAMERA")
    with redis_proc.client() as r:
        assert r.delete(lock_key("alice")) == 1
    resent = await resend_webhook(stack, attempt.token)
    assert resent.status_code == 200, resent.text
    with redis_proc.client() as r:
        assert 890 <= r.ttl(lock_key("alice")) <= 900


async def test_a_disabled_lock_out_never_locks(
    stack_factory: Factory, redis_proc: RedisProcess
) -> None:
    stack: Stack = await stack_factory(settings=limits(spoof_lockout_seconds=0))
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FAKE_FACE")
    with redis_proc.client() as r:
        assert not r.exists(lock_key("alice"))
    await challenge(stack)


# -- the operator's overrides, and Redis down ----------------------------------------------------


async def test_errors_overrides_apply_to_both_rows(stack_factory: Factory) -> None:
    errors = {
        "RATE_LIMITED": {
            "error": "access_denied",
            "stepup_error": "slow_down",
            "description": "Slow down.",
        },
        "SUBJECT_LOCKED": {"stepup_error": "locked_out", "description": "Locked."},
    }
    stack: Stack = await stack_factory(
        settings={
            **limits(authorize_per_subject=per(2, 60), spoof_lockout_seconds=900),
            "errors": errors,
        }
    )
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FAKE_CAPTURE")
    _, response = await begin(stack)
    result = rp_redirect(response)
    assert (result["error"], result["stepup_error"], result["error_description"]) == (
        "access_denied",
        "locked_out",
        "Locked.",
    )

    _, response = await begin(stack, login_hint="bob")
    _, response = await begin(stack, login_hint="bob")
    _, response = await begin(stack, login_hint="bob")
    result = rp_redirect(response)
    assert (result["error"], result["stepup_error"], result["error_description"]) == (
        "access_denied",
        "slow_down",
        "Slow down.",
    )


async def test_redis_down_at_the_ip_limit_fails_closed() -> None:
    own = RedisProcess()
    own.start()
    try:
        async with running_stack(own.url, settings=limits(authorize_per_ip=per(5, 60))) as stack:
            own.stop()
            attempt, response = await begin(stack)
            assert refusal(response, attempt) == ("temporarily_unavailable", "store_unavailable")
            _, response = await begin(stack, client_id="nobody")
            assert response.status_code == 503 and "location" not in response.headers
    finally:
        own.stop()


# -- configuration -------------------------------------------------------------------------------

MINIMAL: dict[str, Any] = {"issuer": "http://127.0.0.1:8000", "idenfy": {"mode": "simulator"}}


def test_defaults_are_on_and_sane() -> None:
    got = parse_settings(MINIMAL).challenge.limits
    for name in (
        "authorize_per_ip",
        "authorize_per_subject",
        "challenges_per_subject",
        "challenges_per_ip",
    ):
        assert getattr(got, name) is not None, name
    assert got.challenges_per_subject is not None and got.challenges_per_subject.count <= 10
    assert got.spoof_lockout_seconds == 900


@pytest.mark.parametrize("off", [None, 0, {"count": 0, "seconds": 60}])
def test_zero_or_null_disables_a_limit(off: Any) -> None:
    data = {
        **MINIMAL,
        "challenge": {"limits": {"authorize_per_ip": off, "spoof_lockout_seconds": None}},
    }
    got = parse_settings(data).challenge.limits
    assert got.authorize_per_ip is None and not got.spoof_lockout_seconds
    assert got.challenges_per_subject is not None  # the others keep their defaults


@pytest.mark.parametrize(
    ("limits_", "expected"),
    [
        (
            {"authorize_per_ip": {"count": -1, "seconds": 60}},
            "challenge.limits.authorize_per_ip.count",
        ),
        (
            {"challenges_per_subject": {"count": 5}},
            "challenge.limits.challenges_per_subject.seconds: required key is missing",
        ),
        ({"challenges_per_ip": {"count": 5, "seconds": 0}}, "challenge.limits.challenges_per_ip"),
        ({"authorize_per_subject": "lots"}, "challenge.limits.authorize_per_subject"),
        ({"spoof_lockout_seconds": -1}, "challenge.limits.spoof_lockout_seconds"),
        ({"per_moon": {"count": 1, "seconds": 1}}, "challenge.limits.per_moon: unknown key"),
    ],
)
def test_bad_limits_name_the_key(limits_: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({**MINIMAL, "challenge": {"limits": limits_}})
    assert expected in str(info.value)


def test_limits_are_not_a_top_level_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({**MINIMAL, "limits": {}})
    assert "limits: unknown key" in str(info.value)


def test_example_documents_every_limit() -> None:
    example = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    assert set(example["challenge"]["limits"]) == set(LimitSettings.model_fields)
