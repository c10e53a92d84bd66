"""Abuse limits, end to end over HTTP against a real redis-server.

Failures only, per address and per (verified) subject; the open-challenge cap that protects
vendor credits; the lock-out of a subject after a spoofing signal in its own check; a claimed
login_hint that can harm nobody; X-Forwarded-For only behind a trusted proxy; simulator mode;
the operator's overrides, and the config's validation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from idenfy_stepup.settings import ConfigError, LimitSettings, parse_settings

from .harness.redis import RedisProcess, lock_key
from .harness.rp import Flow, authorize, challenge, query, signed_subject
from .harness.servers import Stack, running_stack
from .harness.settings import LIMITS_OFF, REDIRECT_URI, UNSET
from .harness.vendor import resend_webhook, vendor_sessions

ROOT = Path(__file__).resolve().parents[1]
OFF = LIMITS_OFF
Factory = Callable[..., Any]


def limits(**on: Any) -> dict[str, Any]:
    """Settings with only the given limits on (the rest off)."""
    return {"challenge": {"limits": {**OFF, **on}}}


def per(count: int, seconds: int = 600) -> dict[str, int]:
    return {"count": count, "seconds": seconds}


def rp_redirect(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 303, (response.status_code, response.text)
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI), location
    return query(location)


def refusal(response: httpx.Response, attempt: Flow) -> tuple[str, str]:
    """``(error, stepup_error)`` of a refusal redirect that carries the request's ``state``."""
    result = rp_redirect(response)
    assert result["state"] == attempt.state
    return result["error"], result["stepup_error"]


async def approve(attempt: Flow) -> dict[str, str]:
    delivered = await attempt.stack.outcome(attempt.token, "SUCCESS")
    assert delivered.json()["delivered"] == 200, delivered.text
    return await attempt.result()


def behind_proxy(**on: Any) -> dict[str, Any]:
    return {**limits(**on), "server": {"trusted_proxies": ["127.0.0.1/32"]}}


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def begin_from(stack: Stack, address: str, **extra: str) -> tuple[Flow, httpx.Response]:
    params: dict[str, str | None] = {"login_hint": "alice", **extra}
    attempt = await authorize(stack, headers=from_address(address), **params)
    return attempt, attempt.response


async def fail(attempt: Flow, reason: str = "FACE_MISMATCH") -> dict[str, str]:
    delivered = await attempt.stack.outcome(attempt.token, "FAILED", reason)
    assert delivered.json()["delivered"] == 200, delivered.text
    return await attempt.result()


# -- per address: failures only ------------------------------------------------------------------


async def test_failures_per_ip_redirect_a_known_client_and_show_others_a_429_page(
    stack_factory: Factory,
) -> None:
    stack: Stack = await stack_factory(settings=limits(failures_per_ip=per(2, 60)))
    for _ in range(2):
        assert (await fail(await challenge(stack)))["stepup_error"] == "face_mismatch"

    attempt = await authorize(stack, login_hint="alice")
    response = attempt.response
    result = rp_redirect(response)
    assert result["error"] == "temporarily_unavailable"
    assert result["stepup_error"] == "rate_limited"
    assert result["state"] == attempt.state and result["iss"] == stack.issuer
    assert 1 <= int(response.headers["retry-after"]) <= 60

    # Before client_id and redirect_uri are known to be valid: a page, never a redirect.
    for bad in ({"client_id": "nobody"}, {"redirect_uri": "https://evil.example/cb"}):
        response = (await authorize(stack, **{"login_hint": "alice", **bad})).response
        assert response.status_code == 429 and "location" not in response.headers
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert "rate_limited" in response.text
    assert len(await vendor_sessions(stack)) == 2


async def test_successes_and_flows_in_progress_never_count_against_an_address(
    stack_factory: Factory,
) -> None:
    """A corporate NAT: many people, one address. Only failures use up its budget."""
    stack: Stack = await stack_factory(settings=limits(failures_per_ip=per(1, 600)))
    for _ in range(4):
        assert "code" in await approve(await challenge(stack))
    waiting = [await challenge(stack) for _ in range(4)]  # face checks still in progress
    assert "code" in await approve(waiting[0])
    assert "code" in await approve(await challenge(stack))
    assert len(await vendor_sessions(stack)) == 9


async def test_expired_canceled_and_refused_count_against_the_address(
    stack_factory: Factory,
) -> None:
    stack: Stack = await stack_factory(settings=limits(failures_per_ip=per(3, 600)))
    canceled = await challenge(stack)
    response = await canceled.browser.post(f"/challenge/{canceled.token}/cancel")
    assert refusal(response, canceled)[1] == "user_canceled"
    refused = await authorize(stack, login_hint="alice", acr_values="urn:nowhere")
    assert refused.token == ""  # refused: counts
    expired = await challenge(stack)
    assert (await stack.outcome(expired.token, "EXPIRED")).json()["delivered"] == 200
    assert (await expired.result())["stepup_error"] == "challenge_expired"
    response = (await authorize(stack, login_hint="alice")).response
    assert rp_redirect(response)["stepup_error"] == "rate_limited"


async def test_repeated_finishes_count_one_failure(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(settings=limits(failures_per_ip=per(2, 600)))
    attempt = await challenge(stack)
    response = await attempt.browser.post(f"/challenge/{attempt.token}/cancel")
    for _ in range(3):  # the browser repeats the finish: the same answer, counted once
        assert refusal(await attempt.finish(), attempt)[1] == "user_canceled"
    assert refusal(response, attempt)[1] == "user_canceled"
    await challenge(stack)


async def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(stack_factory: Factory) -> None:
    trusted: Stack = await stack_factory(settings=behind_proxy(failures_per_ip=per(1, 60)))
    refused, _ = await begin_from(trusted, "203.0.113.7", acr_values="urn:nowhere")
    assert not refused.token
    _, again = await begin_from(trusted, "198.51.100.1, 203.0.113.7")
    assert rp_redirect(again)["stepup_error"] == "rate_limited"  # the right-most untrusted hop
    other, _ = await begin_from(trusted, "203.0.113.8")
    assert other.token

    # Without a trusted proxy the header is ignored: every request is the loopback peer's.
    direct: Stack = await stack_factory(settings=limits(failures_per_ip=per(1, 60)))
    refused, _ = await begin_from(direct, "203.0.113.9", acr_values="urn:nowhere")
    assert not refused.token
    _, forged = await begin_from(direct, "203.0.113.10")
    assert rp_redirect(forged)["stepup_error"] == "rate_limited"


async def test_open_challenges_per_ip_protect_vendor_credits(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(
        settings={
            **limits(open_challenges_per_ip=2),
            "directory": {"static": {"dave": "SCAN-ALICE"}},
        }
    )
    first = await challenge(stack)
    await challenge(stack)
    # another subject, the same address
    response = (await authorize(stack, login_hint="dave")).response
    assert rp_redirect(response)["stepup_error"] == "rate_limited"
    assert len(await vendor_sessions(stack)) == 2  # refused before the vendor was called
    assert "code" in await approve(first)  # an ended check no longer holds a place
    await challenge(stack, login_hint="dave")
    assert len(await vendor_sessions(stack)) == 3


async def test_a_retry_is_a_new_open_challenge(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(settings=limits(open_challenges_per_ip=1))
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_TOO_SMALL")
    assert (await attempt.finish()).status_code == 200  # the retry screen: the first has ended
    moved = await attempt.browser.post(f"/challenge/{attempt.token}/retry")
    assert moved.headers["location"].startswith("/challenge/")
    # the retry's attempt holds the only place
    response = (await authorize(stack, login_hint="alice")).response
    assert rp_redirect(response)["stepup_error"] == "rate_limited"
    assert len(await vendor_sessions(stack)) == 2


async def test_a_retry_refused_by_a_limit_is_repeated_as_that_refusal(
    stack_factory: Factory,
) -> None:
    stack: Stack = await stack_factory(settings=limits(failures_per_ip=per(1, 600)))
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_TOO_SMALL")  # the address's one failure
    assert (await attempt.finish()).status_code == 200  # the retry screen
    refused = await attempt.browser.post(f"/challenge/{attempt.token}/retry")
    assert refusal(refused, attempt) == ("temporarily_unavailable", "rate_limited")
    # A repeated finish says the same, not that the vendor was unavailable.
    assert refusal(await attempt.finish(), attempt) == ("temporarily_unavailable", "rate_limited")
    assert len(await vendor_sessions(stack)) == 1


# -- per subject: only the subject's own face checks ---------------------------------------------


async def test_anonymous_login_hints_never_rate_limit_the_person(stack_factory: Factory) -> None:
    """Anyone may send login_hint=alice: from any address, abandoned or failed, it costs alice
    nothing."""
    stack: Stack = await stack_factory(
        settings=behind_proxy(failures_per_subject=per(2), spoof_lockout_seconds=900)
    )
    for i in range(6):
        attempt, _ = await begin_from(stack, f"203.0.113.{i + 1}")
        assert attempt.token
        if i % 2:
            await fail(attempt, "FAKE_FACE" if i == 3 else "FACE_MISMATCH")
    mine = await challenge(stack, **signed_subject(stack))
    assert "code" in await approve(mine)


async def test_only_a_subjects_own_failed_checks_count_against_it(stack_factory: Factory) -> None:
    stack: Stack = await stack_factory(settings=limits(failures_per_subject=per(2)))
    for _ in range(2):
        await fail(await challenge(stack, **signed_subject(stack)))
    attempt = await authorize(stack, **signed_subject(stack))
    response = attempt.response
    assert refusal(response, attempt) == ("temporarily_unavailable", "rate_limited")
    # Reading alice's state harms nobody: a claimed hint is refused too, counting nothing.
    attempt = await authorize(stack, login_hint="alice")
    response = attempt.response
    assert refusal(response, attempt)[1] == "rate_limited"
    assert (await challenge(stack, **signed_subject(stack, "carol"))).token  # carol is apart
    assert len(await vendor_sessions(stack)) == 3


async def test_expired_and_canceled_checks_do_not_count_against_the_subject(
    stack_factory: Factory,
) -> None:
    stack: Stack = await stack_factory(settings=limits(failures_per_subject=per(1)))
    first = await challenge(stack, **signed_subject(stack))
    await stack.outcome(first.token, "EXPIRED")
    second = await challenge(stack, **signed_subject(stack))
    await second.browser.post(f"/challenge/{second.token}/cancel")
    assert (await challenge(stack, **signed_subject(stack))).token


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
    attempt = await challenge(stack, **signed_subject(stack))
    assert (await stack.outcome(attempt.token, "FAILED", reason)).json()["delivered"] == 200
    assert (await attempt.result())["stepup_error"] == code

    with redis_proc.client() as r:
        assert 890 <= r.ttl(lock_key("alice")) <= 900
    for hint in (signed_subject(stack), {}):  # whichever hint names alice
        again = await authorize(stack, **{"login_hint": "alice", **hint})
        response = again.response
        result = rp_redirect(response)
        assert (result["error"], result["stepup_error"]) == ("access_denied", "subject_locked")
        assert result["state"] == again.state and result["iss"] == stack.issuer
    assert len(await vendor_sessions(stack)) == 1  # no vendor call for a locked subject
    response = (await authorize(stack, login_hint="bob")).response  # others are not affected
    assert rp_redirect(response)["stepup_error"] == "not_enrolled"


async def test_a_claimed_subject_can_neither_trigger_nor_extend_a_lock_out(
    stack_factory: Factory, redis_proc: RedisProcess
) -> None:
    stack: Stack = await stack_factory(settings=limits(spoof_lockout_seconds=900))
    claimed = await challenge(stack)  # login_hint=alice: anyone could have sent it
    await fail(claimed, "FAKE_FACE")
    with redis_proc.client() as r:
        assert not r.exists(lock_key("alice"))
    own = await challenge(stack, **signed_subject(stack))
    claimed_again = await challenge(stack)
    await fail(own, "FAKE_FACE")
    with redis_proc.client() as r:
        assert r.expire(lock_key("alice"), 100)
    await fail(claimed_again, "VIRTUAL_CAMERA")  # opened before the lock, failed after it
    with redis_proc.client() as r:
        assert 0 < r.ttl(lock_key("alice")) <= 100  # not extended


async def test_a_face_mismatch_does_not_lock(
    stack_factory: Factory, redis_proc: RedisProcess
) -> None:
    stack: Stack = await stack_factory(settings=limits(spoof_lockout_seconds=900))
    attempt = await challenge(stack, **signed_subject(stack))
    await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH")
    assert (await attempt.result())["stepup_error"] == "face_mismatch"
    with redis_proc.client() as r:
        assert not r.exists(lock_key("alice"))
    await challenge(stack)


async def test_the_lock_out_expires(stack_factory: Factory, redis_proc: RedisProcess) -> None:
    stack: Stack = await stack_factory(settings=limits(spoof_lockout_seconds=900))
    attempt = await challenge(stack, **signed_subject(stack))
    await stack.outcome(attempt.token, "FAILED", "FAKE_FACE")
    response = (await authorize(stack, login_hint="alice")).response
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
    attempt = await challenge(stack, **signed_subject(stack))
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
    attempt = await challenge(stack, **signed_subject(stack))
    await stack.outcome(attempt.token, "FAILED", "FAKE_FACE")
    with redis_proc.client() as r:
        assert not r.exists(lock_key("alice"))
    await challenge(stack)


# -- simulator mode ------------------------------------------------------------------------------


async def test_simulator_mode_leaves_unset_limits_off(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Integrators script every failReason in a row against the simulator: the sixth failure is
    that failure, not rate_limited, when the file sets no limits; a line at start says so."""
    caplog.set_level("WARNING", logger="idenfy_stepup")
    async with running_stack(redis_url, settings={"challenge": {"limits": UNSET}}) as stack:
        said = [r.getMessage() for r in caplog.records if "abuse limits" in r.getMessage()]
        assert len(said) == 1 and "failures_per_ip" in said[0] and "simulator" in said[0]
        limits_ = stack.settings.challenge.limits
        assert all(getattr(limits_, name) in (None, 0) for name in LimitSettings.model_fields)
        for reason in ("FAKE_FACE", "FACE_MISMATCH") * 4:
            attempt = await challenge(stack, **signed_subject(stack))
            assert (await fail(attempt, reason))["stepup_error"] != "rate_limited"


def test_simulator_mode_keeps_the_limits_the_file_sets() -> None:
    data = {**MINIMAL, "challenge": {"limits": {"failures_per_ip": per(3, 60)}}}
    settings = parse_settings(data)
    assert settings.challenge.limits.failures_per_ip is not None
    assert settings.challenge.limits.spoof_lockout_seconds is None
    assert "failures_per_subject" in settings.limits_defaulted_off()
    live = parse_settings({**data, "idenfy": LIVE})
    assert live.challenge.limits.spoof_lockout_seconds == 900
    assert live.limits_defaulted_off() == ()


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
            **limits(failures_per_ip=per(3, 600), spoof_lockout_seconds=900),
            "errors": errors,
        }
    )
    attempt = await challenge(stack, **signed_subject(stack))
    await stack.outcome(attempt.token, "FAILED", "FAKE_CAPTURE")  # failure 1
    response = (await authorize(stack, login_hint="alice")).response  # failure 2
    result = rp_redirect(response)
    assert (result["error"], result["stepup_error"], result["error_description"]) == (
        "access_denied",
        "locked_out",
        "Locked.",
    )

    response = (await authorize(stack, login_hint="bob")).response  # not_enrolled: failure 3
    response = (await authorize(stack, login_hint="bob")).response
    result = rp_redirect(response)
    assert (result["error"], result["stepup_error"], result["error_description"]) == (
        "access_denied",
        "slow_down",
        "Slow down.",
    )


async def test_redis_down_at_the_ip_limit_fails_closed(own_redis: RedisProcess) -> None:
    async with running_stack(own_redis.url, settings=limits(failures_per_ip=per(5, 60))) as stack:
        own_redis.stop()
        attempt = await authorize(stack, login_hint="alice")
        response = attempt.response
        assert refusal(response, attempt) == ("temporarily_unavailable", "store_unavailable")
        response = (await authorize(stack, login_hint="alice", client_id="nobody")).response
        assert response.status_code == 503 and "location" not in response.headers


# -- configuration -------------------------------------------------------------------------------

MINIMAL: dict[str, Any] = {"issuer": "http://127.0.0.1:8000", "idenfy": {"mode": "simulator"}}


LIVE: dict[str, Any] = {
    "mode": "live",
    "api_key": "k",
    "api_secret": "s",
    "webhook_signing_key": "w" * 32,
}


def test_defaults_are_on_and_sane_in_live_mode() -> None:
    got = parse_settings({**MINIMAL, "idenfy": LIVE}).challenge.limits
    for name in LimitSettings.model_fields:
        assert getattr(got, name), name
    # Generous enough for a corporate NAT: only failures count.
    assert got.failures_per_ip is not None and got.failures_per_ip.count >= 100
    assert got.failures_per_subject is not None and got.failures_per_subject.count <= 10
    assert got.spoof_lockout_seconds == 900


@pytest.mark.parametrize("off", [None, 0, {"count": 0, "seconds": 60}])
def test_zero_or_null_disables_a_limit(off: Any) -> None:
    data = {
        **MINIMAL,
        "idenfy": LIVE,
        "challenge": {"limits": {"failures_per_ip": off, "spoof_lockout_seconds": None}},
    }
    got = parse_settings(data).challenge.limits
    assert got.failures_per_ip is None and not got.spoof_lockout_seconds
    assert got.failures_per_subject is not None  # the others keep their defaults


@pytest.mark.parametrize(
    ("limits_", "expected"),
    [
        (
            {"failures_per_ip": {"count": -1, "seconds": 60}},
            "challenge.limits.failures_per_ip.count",
        ),
        (
            {"failures_per_subject": {"count": 5}},
            "challenge.limits.failures_per_subject.seconds: required key is missing",
        ),
        ({"token_failures_per_ip": {"count": 5, "seconds": 0}}, "challenge.limits.token_failures"),
        ({"failures_per_subject": "lots"}, "challenge.limits.failures_per_subject"),
        ({"open_challenges_per_ip": -1}, "challenge.limits.open_challenges_per_ip"),
        ({"spoof_lockout_seconds": -1}, "challenge.limits.spoof_lockout_seconds"),
        ({"per_moon": {"count": 1, "seconds": 1}}, "challenge.limits.per_moon: unknown key"),
        (
            {"authorize_per_ip": {"count": 30, "seconds": 60}},
            "authorize_per_ip was replaced by failures_per_ip",
        ),
        ({"challenges_per_subject": None}, "challenges_per_subject was replaced"),
    ],
)
def test_bad_limits_name_the_key(limits_: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({**MINIMAL, "challenge": {"limits": limits_}})
    assert expected in str(info.value)


def test_push_timeout_is_refused_with_its_replacement() -> None:
    """Streams now last as long as their challenge: a file that still sets push_timeout would
    otherwise expect reconnects that no longer happen."""
    with pytest.raises(ConfigError) as info:
        parse_settings({**MINIMAL, "challenge": {"push_timeout": 25}})
    assert "push_timeout was replaced by push_keepalive" in str(info.value)


def test_limits_are_not_a_top_level_section() -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings({**MINIMAL, "limits": {}})
    assert "limits: unknown key" in str(info.value)


def test_example_documents_every_limit() -> None:
    example = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    assert set(example["challenge"]["limits"]) == set(LimitSettings.model_fields)
