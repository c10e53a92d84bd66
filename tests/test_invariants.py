"""The invariants of docs/architecture.md, each shown end to end over real HTTP, Redis and
the simulator; the sections below follow that document's, and each test's name says what it
shows.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from idenfy_stepup.cli.logs import JsonFormatter, TextFormatter
from idenfy_stepup.idenfy.webhook import sign

from .harness.redis import (
    SECRETS_KEY,
    RedisProcess,
    challenge_key,
    replace_stored_request,
)
from .harness.rp import Flow, authorize, authorize_params, challenge, pkce, query
from .harness.servers import TLS, Stack, StackPool, running_stack
from .harness.settings import CLIENT_SECRET, REDIRECT_URI, SIGNING_KEY
from .harness.vendor import post_webhook, resend_webhook, simulator_session, webhook_body

pytestmark = pytest.mark.asyncio(loop_scope="module")

FACE = "urn:idenfy:stepup:face"
LIVENESS = "urn:idenfy:stepup:liveness"
TWO_LEVELS = {
    "acr": {
        "levels": {FACE: {"method": "FACE_MATCHING"}, LIVENESS: {"method": "ACTIVE_LIVENESS"}},
        "default": FACE,
    }
}
COOKIE = "stepup_challenge"


async def state_of(redis: Redis, token: str) -> str | None:
    raw = await redis.hget(challenge_key(token), "state")
    return raw.decode() if raw is not None else None


def assert_no_code(response: httpx.Response) -> None:
    """The response hands out no authorization code, by redirect or in its page."""
    location = response.headers.get("location", "")
    assert "code" not in query(location), location
    assert "code=" not in response.text


async def assert_still_pending(attempt: Flow, redis: Redis) -> None:
    assert await state_of(redis, attempt.token) == "PENDING"
    response = await attempt.finish()
    assert response.status_code == 303, response.text
    assert response.headers["location"] == f"/challenge/{attempt.token}"


async def approve_and_finish(stack: Stack, attempt: Flow) -> str:
    """SUCCESS through the simulator, then finish: returns the code."""
    assert (await stack.outcome(attempt.token, "SUCCESS")).json()["delivered"] == 200
    result = await attempt.result()
    assert result["state"] == attempt.state
    assert result["iss"] == stack.issuer
    return result["code"]


# -- Code only after a verified webhook -----------------------------------------------------------


async def test_code_only_after_verified_matching_webhook(stack: Stack, redis: Redis) -> None:
    attempt = await challenge(stack)
    body = webhook_body(attempt.token, "SUCCESS")
    forged = [
        await post_webhook(stack, body, key=None),  # unsigned
        await post_webhook(stack, body, key="not-the-signing-key"),
        await post_webhook(stack, body, signature="0" * 64),
        await post_webhook(stack, body, signature="not hex at all"),
        # Signed, then altered: the signature covers the raw bytes.
        await post_webhook(
            stack,
            body.replace(b'"SUCCESS"', b'"SUCCESS" '),
            signature=sign(body, SIGNING_KEY),
        ),
    ]
    assert [r.status_code for r in forged] == [401] * len(forged)
    await assert_still_pending(attempt, redis)

    # The genuine, signed, matching webhook (the simulator's) completes it.
    code = await approve_and_finish(stack, attempt)
    claims = await attempt.id_token(code)
    assert claims["sub"] == "alice"


@pytest.mark.parametrize(
    "mismatch",
    [
        pytest.param({"scan_ref": "SCAN-BOB"}, id="other-scanRef"),
        pytest.param({"scan_ref": None}, id="no-scanRef"),
        pytest.param({"type_": "ENROLLMENT"}, id="other-type"),
        pytest.param({"method": "ACTIVE_LIVENESS"}, id="other-method"),
    ],
)
async def test_mismatching_webhook_does_not_complete(
    stack: Stack, redis: Redis, mismatch: dict[str, Any]
) -> None:
    attempt = await challenge(stack)
    response = await post_webhook(stack, webhook_body(attempt.token, "SUCCESS", **mismatch))
    assert response.status_code == 200  # accepted so the vendor stops, but without effect
    assert response.json()["result"] == "mismatch"
    await assert_still_pending(attempt, redis)
    # The challenge is not poisoned: the real outcome still lands.
    await approve_and_finish(stack, attempt)


async def test_type_and_method_are_checked_only_when_present(stack: Stack, redis: Redis) -> None:
    attempt = await challenge(stack)
    body = webhook_body(attempt.token, "SUCCESS", type_=None, method=None)
    assert (await post_webhook(stack, body)).json()["result"] == "applied"
    assert await state_of(redis, attempt.token) == "APPROVED"
    assert "code" in await attempt.result()


async def test_webhook_for_another_token_does_not_complete(stack: Stack, redis: Redis) -> None:
    mine, other = await challenge(stack), await challenge(stack)
    await stack.outcome(other.token, "SUCCESS")
    await assert_still_pending(mine, redis)


async def test_non_final_status_does_not_complete(stack: Stack, redis: Redis) -> None:
    attempt = await challenge(stack)
    response = await post_webhook(stack, webhook_body(attempt.token, "PENDING"))
    assert response.status_code == 200
    await assert_still_pending(attempt, redis)


async def test_finish_without_webhook_never_completes(stack: Stack, redis: Redis) -> None:
    """What the iframe's postMessage would claim changes nothing: only the webhook counts."""
    attempt = await challenge(stack)
    for _ in range(3):
        response = await attempt.finish()
        assert response.status_code == 303
        assert response.headers["location"] == f"/challenge/{attempt.token}"
        page = await attempt.browser.get(response.headers["location"])
        assert page.status_code == 200
        assert_no_code(page)
    assert await state_of(redis, attempt.token) == "PENDING"


# -- Only the starting browser finishes -----------------------------------------------------------


def challenge_cookie(attempt: Flow) -> str:
    for cookie in attempt.browser.cookies.jar:
        if cookie.name == COOKIE and cookie.path == f"/challenge/{attempt.token}":
            assert cookie.value is not None
            return cookie.value
    raise AssertionError("no challenge cookie")


def tampered(value: str) -> str:
    """The cookie with the first character of its signature changed (it carries 6 full bits)."""
    payload, _, signature = value.rpartition(".")
    return f"{payload}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


async def intruder_headers(stack: Stack, owner: Flow, kind: str) -> dict[str, str]:
    if kind == "no-cookie":
        return {}
    if kind == "tampered-cookie":
        return {"Cookie": f"{COOKIE}={tampered(challenge_cookie(owner))}"}
    if kind == "unsigned-cookie":
        return {"Cookie": f"{COOKIE}=" + json.dumps({"t": owner.token, "s": "x"})}
    # A genuine cookie, for the intruder's own challenge.
    own = await challenge(stack)
    return {"Cookie": f"{COOKIE}={challenge_cookie(own)}"}


async def intrude(stack: Stack, owner: Flow, headers: dict[str, str]) -> list[int]:
    base = f"/challenge/{owner.token}"
    async with httpx.AsyncClient(
        base_url=stack.issuer, timeout=20, headers=headers, verify=TLS
    ) as other:
        return [
            (await other.get(base)).status_code,
            (await other.get(f"{base}/events")).status_code,
            (await other.get(f"{base}/finish")).status_code,
            (await other.post(f"{base}/cancel")).status_code,
            (await other.post(f"{base}/retry")).status_code,
            (await other.post(f"{base}/give-up")).status_code,
        ]


@pytest.mark.parametrize(
    "kind", ["no-cookie", "tampered-cookie", "unsigned-cookie", "other-challenge-cookie"]
)
async def test_only_the_starting_browser_can_finish(stack: Stack, redis: Redis, kind: str) -> None:
    owner = await challenge(stack)
    headers = await intruder_headers(stack, owner, kind)

    # While pending: nothing to see, finish, cancel, retry or give up.
    assert await intrude(stack, owner, headers) == [403] * 6
    assert await state_of(redis, owner.token) == "PENDING"

    # Approved, waiting for its browser: still nothing, and the approval is not spent.
    await stack.outcome(owner.token, "SUCCESS")
    assert await intrude(stack, owner, headers) == [403] * 6
    assert await state_of(redis, owner.token) == "APPROVED"

    result = await owner.result()
    assert (await owner.id_token(result["code"]))["sub"] == "alice"


async def test_intruder_cannot_retry_a_retryable_failure(stack: Stack, redis: Redis) -> None:
    owner = await challenge(stack)
    await stack.outcome(owner.token, "FAILED", "FACE_TOO_SMALL")
    assert await intrude(stack, owner, {}) == [403] * 6
    assert await state_of(redis, owner.token) == "DENIED"
    page = await owner.finish()
    assert page.status_code == 200 and 'data-action="retry"' in page.text


async def test_challenge_cookie_is_signed_httponly_lax_and_path_scoped(
    stack: Stack,
) -> None:
    _, code_challenge = pkce()
    async with httpx.AsyncClient(base_url=stack.issuer, verify=TLS) as browser:
        response = await browser.get("/authorize", params=authorize_params(code_challenge))
    assert response.status_code == 303
    token = response.headers["location"].rsplit("/", 1)[1]
    cookie = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert cookie.startswith(f"{COOKIE}=")
    assert {"httponly", "max-age", "path", "samesite"} <= attributes
    assert f"Path=/challenge/{token}" in cookie
    assert "samesite=lax" in cookie.lower()


# -- One completion, one redemption ---------------------------------------------------------------


async def test_challenge_finishes_at_most_once(stack: Stack) -> None:
    """A repeated finish (a lost response, a reload) names the same single code; once it is
    redeemed, no finish answers with a code again."""
    attempt = await challenge(stack)
    code = await approve_and_finish(stack, attempt)
    assert (await attempt.result())["code"] == code
    assert (await attempt.redeem(code)).status_code == 200
    again = await attempt.finish()
    assert again.status_code == 410
    assert "location" not in again.headers
    assert_no_code(again)


async def test_concurrent_finishes_issue_one_code(stack: Stack) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "SUCCESS")
    responses = await asyncio.gather(*(attempt.finish() for _ in range(8)))
    codes = [
        query(r.headers["location"]).get("code")
        for r in responses
        if r.headers.get("location", "").startswith(REDIRECT_URI)
    ]
    # Every finish of the owning browser answers with the one code its approval issued.
    assert len(codes) == 8 and len(set(codes)) == 1, [r.status_code for r in responses]
    assert (await attempt.redeem(codes[0])).status_code == 200
    assert (await attempt.redeem(codes[0])).status_code == 400


async def userinfo(stack: Stack, access_token: str) -> httpx.Response:
    async with httpx.AsyncClient(verify=TLS) as c:
        return await c.get(
            f"{stack.issuer}/userinfo", headers={"Authorization": f"Bearer {access_token}"}
        )


async def test_code_redeemed_once_and_replay_revokes(stack: Stack) -> None:
    attempt = await challenge(stack)
    code = await approve_and_finish(stack, attempt)
    first = await attempt.redeem(code)
    assert first.status_code == 200, first.text
    access_token = first.json()["access_token"]
    assert (await userinfo(stack, access_token)).json()["sub"] == "alice"

    second = await attempt.redeem(code)
    assert second.status_code == 400
    assert second.headers["content-type"].startswith("application/json")
    assert second.json()["error"] == "invalid_grant"
    assert "id_token" not in second.json()

    revoked = await userinfo(stack, access_token)
    assert revoked.status_code == 401
    assert (await attempt.redeem(code)).json()["error"] == "invalid_grant"


async def test_concurrent_redemptions_exactly_one_succeeds(stack: Stack) -> None:
    attempt = await challenge(stack)
    code = await approve_and_finish(stack, attempt)
    responses = await asyncio.gather(*(attempt.redeem(code) for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 5, statuses
    assert all(r.json()["error"] == "invalid_grant" for r in responses if r.status_code == 400)


# -- Idempotent webhooks --------------------------------------------------------------------------


async def test_duplicate_webhook_completes_once(stack: Stack, redis: Redis) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "SUCCESS")
    for _ in range(2):  # byte-for-byte resends with the same id
        resent = await resend_webhook(stack, attempt.token)
        assert resent.json()["delivered"] == 200
    assert await state_of(redis, attempt.token) == "APPROVED"
    result = await attempt.result()
    assert (await attempt.id_token(result["code"]))["sub"] == "alice"

    # A resend after the finish neither resurrects nor completes it again.
    assert (await resend_webhook(stack, attempt.token)).json()["delivered"] == 200
    assert await state_of(redis, attempt.token) == "CONSUMED"
    assert_no_code(await attempt.finish())


async def test_conflicting_webhook_after_success_is_ignored(stack: Stack, redis: Redis) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "SUCCESS")
    late = await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH", force=True)
    assert late.json()["delivered"] == 200
    assert await state_of(redis, attempt.token) == "APPROVED"
    result = await attempt.result()
    assert "code" in result
    # And after the finish too: a repeated finish still names the same code, not a cancel.
    await stack.outcome(attempt.token, "CANCELED", force=True)
    assert await state_of(redis, attempt.token) == "CONSUMED"
    assert (await attempt.result()) == result


async def test_conflicting_webhook_after_failure_is_ignored(stack: Stack, redis: Redis) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "FAILED", "FACE_MISMATCH")
    await stack.outcome(attempt.token, "SUCCESS", force=True)
    assert await state_of(redis, attempt.token) == "DENIED"
    result = await attempt.result()
    assert result["stepup_error"] == "face_mismatch"
    assert "code" not in result


async def test_concurrent_deliveries_reach_one_terminal_state(stack: Stack, redis: Redis) -> None:
    """Many challenges, each hit by concurrent SUCCESS and FAILED deliveries and duplicates."""
    attempts = [await challenge(stack) for _ in range(6)]
    for attempt in attempts:
        success = webhook_body(attempt.token, "SUCCESS", event_id=f"ok-{attempt.token}")
        failure = webhook_body(
            attempt.token, "FAILED", "FACE_MISMATCH", event_id=f"no-{attempt.token}"
        )
        bodies = [success, failure] * 3  # each id delivered three times
        responses = await asyncio.gather(*(post_webhook(stack, b) for b in bodies))
        assert {r.status_code for r in responses} == {200}
        results = [r.json()["result"] for r in responses]
        assert results.count("applied") == 1, results
        applied = bodies[results.index("applied")]
        state = await state_of(redis, attempt.token)
        assert state == ("APPROVED" if applied is success else "DENIED")

        outcome = await attempt.result()
        if state == "APPROVED":
            assert "code" in outcome and "error" not in outcome
        else:
            assert outcome["stepup_error"] == "face_mismatch" and "code" not in outcome
        assert await attempt.result() == outcome  # a repeated finish: the same one answer


# -- No redirect before the client is validated: an error page ------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"client_id": "no-such-client"}, id="unknown-client_id"),
        pytest.param({"client_id": ""}, id="missing-client_id"),
        pytest.param({"redirect_uri": "https://attacker.example/cb"}, id="unregistered-uri"),
        pytest.param({"redirect_uri": REDIRECT_URI + "?x=1"}, id="uri-with-extra-query"),
        pytest.param({"redirect_uri": REDIRECT_URI + "/"}, id="uri-with-trailing-slash"),
        pytest.param({"redirect_uri": REDIRECT_URI.upper()}, id="uri-in-other-case"),
        pytest.param({"redirect_uri": ""}, id="missing-redirect_uri"),
        pytest.param(
            {"client_id": "no-such-client", "response_type": "token"}, id="unknown-client-and-bad"
        ),
        pytest.param(
            {"redirect_uri": "https://attacker.example/cb", "scope": "email"},
            id="unregistered-uri-and-bad-scope",
        ),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_error_page_before_client_and_redirect_uri_are_valid(
    stack: Stack, change: dict[str, str], method: str
) -> None:
    _, code_challenge = pkce()
    params = {k: v for k, v in {**authorize_params(code_challenge), **change}.items() if v}
    async with httpx.AsyncClient(base_url=stack.issuer, verify=TLS) as browser:
        if method == "GET":
            response = await browser.get("/authorize", params=params)
        else:
            response = await browser.post("/authorize", data=params)
    assert response.status_code == 400, (response.status_code, response.headers)
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    # The page may quote the refused URI as text, but never links or refreshes to it.
    assert 'href="https://attacker.example' not in response.text
    assert "http-equiv" not in response.text.lower()


# -- Missing state means start again; Redis down fails closed -------------------------------------


async def test_deleted_challenge_means_start_again(stack: Stack, redis: Redis) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "SUCCESS")
    assert await redis.delete(challenge_key(attempt.token)) == 1
    for response in (
        await attempt.finish(),
        await attempt.browser.get(f"/challenge/{attempt.token}"),
    ):
        assert response.status_code == 410
        assert "location" not in response.headers
        assert_no_code(response)


async def test_webhook_for_deleted_challenge_has_no_effect(stack: Stack, redis: Redis) -> None:
    attempt = await challenge(stack)
    await redis.delete(challenge_key(attempt.token))
    response = await post_webhook(stack, webhook_body(attempt.token, "SUCCESS"))
    assert response.status_code == 200
    assert response.json()["result"] == "unknown"
    assert not await redis.exists(challenge_key(attempt.token))
    assert (await attempt.finish()).status_code == 410


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("request", "{not json", id="request-not-json"),
        pytest.param("request", '["a", "list"]', id="request-not-an-object"),
        pytest.param("request", '{"client_id": "shop"}', id="request-missing-fields"),
        pytest.param("request", '{"unexpected": 1}', id="request-unknown-fields"),
        pytest.param("request", "\xff\xfe", id="request-not-utf8"),
        pytest.param("state", "SOMETHING_ELSE", id="state-unknown"),
        pytest.param("state", "", id="state-empty"),
    ],
)
async def test_unreadable_state_means_start_again(
    stack: Stack, redis: Redis, field: str, value: str
) -> None:
    attempt = await challenge(stack)
    await stack.outcome(attempt.token, "SUCCESS")
    if field == "request":  # the request's parts in the challenge's hash
        await replace_stored_request(redis, attempt.token, value.encode("latin-1"))
    else:
        await redis.hset(challenge_key(attempt.token), field, value.encode("latin-1"))
    finish = await attempt.finish()
    assert finish.status_code == 410, (finish.status_code, finish.headers)
    assert_no_code(finish)
    page = await attempt.browser.get(f"/challenge/{attempt.token}")
    if field == "request":  # the page needs the request: gone
        assert page.status_code == 410, (page.status_code, page.headers)
        assert_no_code(page)
    else:  # an unknown state: sent to finish, which says the same
        assert page.status_code == 303, (page.status_code, page.headers)
        assert page.headers["location"] == f"/challenge/{attempt.token}/finish"


async def test_redis_down_fails_closed_and_loses_nothing(
    aof_redis: RedisProcess,
) -> None:
    async with running_stack(aof_redis.url) as stack:
        attempt = await challenge(stack)
        aof_redis.stop()

        # Fail closed everywhere, with no 500s.
        hook = await post_webhook(stack, webhook_body(attempt.token, "SUCCESS"))
        assert hook.status_code == 503  # so the vendor retries
        page = await attempt.browser.get(f"/challenge/{attempt.token}")
        assert page.status_code == 503 and "location" not in page.headers
        finish = await attempt.finish()
        assert finish.status_code == 503 and "location" not in finish.headers
        response = (await authorize(stack, login_hint="alice")).response
        assert query(response.headers["location"])["stepup_error"] == "store_unavailable"
        assert (await attempt.browser.get("/readyz")).status_code == 503

        # The vendor's real delivery keeps retrying while Redis is away...
        delivery = asyncio.create_task(stack.outcome(attempt.token, "SUCCESS"))
        await asyncio.sleep(0.3)
        assert not delivery.done()
        await asyncio.to_thread(aof_redis.start)
        # ...and lands once it is back: the pending challenge survived the restart.
        delivered = (await delivery).json()
        assert delivered["delivered"] == 200 and delivered["attempts"] > 1
        result = await attempt.result()
        assert (await attempt.id_token(result["code"]))["sub"] == "alice"
        # Recovered by itself, with no restart of the service.
        assert (await attempt.browser.get("/readyz")).status_code == 200
        fresh = await challenge(stack)
        await stack.outcome(fresh.token, "SUCCESS")
        assert "code" in await fresh.result()


# -- The id_token says what was checked -----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "acr", "method"),
    [
        pytest.param({}, FACE, "FACE_MATCHING", id="default-level"),
        pytest.param({"acr_values": LIVENESS}, LIVENESS, "ACTIVE_LIVENESS", id="acr_values"),
        pytest.param(
            {"acr_values": f"urn:example:unknown {LIVENESS}"},
            LIVENESS,
            "ACTIVE_LIVENESS",
            id="first-satisfiable",
        ),
        pytest.param(
            {
                "claims": json.dumps(
                    {"id_token": {"acr": {"essential": True, "values": [LIVENESS]}}}
                )
            },
            LIVENESS,
            "ACTIVE_LIVENESS",
            id="essential-claim",
        ),
        pytest.param({"login_hint": "carol"}, FACE, "FACE_MATCHING", id="other-subject"),
    ],
)
async def test_id_token_sub_and_acr_are_what_was_challenged(
    pool: StackPool, extra: dict[str, str], acr: str, method: str
) -> None:
    stack = await pool.get(settings=TWO_LEVELS)
    attempt = await challenge(stack, **extra)
    session = await simulator_session(stack, attempt.token)
    assert session["method"] == method  # the vendor was asked for that level's check
    subject = extra.get("login_hint", "alice")
    assert session["scanRef"] == {"alice": "SCAN-ALICE", "carol": "SCAN-CAROL"}[subject]
    code = await approve_and_finish(stack, attempt)
    claims = await attempt.id_token(code)
    assert claims["sub"] == subject
    assert claims["acr"] == acr
    # carol's check-status says ENROLLMENT: her id_token says so (tests/test_vendor_flags.py).
    assert claims["amr"] == (["face", "enroll"] if subject == "carol" else ["face"])


async def test_weaker_check_cannot_complete_a_stronger_level(pool: StackPool, redis: Redis) -> None:
    stack = await pool.get(settings=TWO_LEVELS)
    attempt = await challenge(stack, acr_values=LIVENESS)
    weaker = webhook_body(attempt.token, "SUCCESS", method="FACE_MATCHING")
    assert (await post_webhook(stack, weaker)).json()["result"] == "mismatch"
    await assert_still_pending(attempt, redis)


# -- No secrets in logs: no secret, face photo URL or raw webhook body ----------------------------

STANDARD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def rendered(record: logging.LogRecord) -> list[str]:
    """Everything a log handler could write for ``record``: message, extras, both formats."""
    texts = [record.getMessage(), JsonFormatter().format(record), TextFormatter().format(record)]
    texts += [repr(v) for k, v in vars(record).items() if k not in STANDARD_FIELDS]
    return texts


async def whole_flow(stack: Stack, redis: Redis) -> dict[str, str]:
    """A signed-webhook flow with every log-worthy event; returns the secrets it involved."""
    photo = "https://photos.idenfy.example/selfies/4f7c-secret-face.jpg"
    attempt = await challenge(stack)
    body = webhook_body(attempt.token, "SUCCESS", face_photo=photo, event_id="evt-logged-once")
    signature = sign(body, SIGNING_KEY)

    # Rejected first (bad signature), then accepted, then replayed.
    assert (await post_webhook(stack, body, key="wrong-key")).status_code == 401
    assert (await post_webhook(stack, body)).json()["result"] == "applied"
    assert (await post_webhook(stack, body)).json()["result"] == "duplicate"
    result = await attempt.result()
    code = result["code"]
    tokens = (await attempt.redeem(code)).json()
    assert (await userinfo(stack, tokens["access_token"])).status_code == 200
    assert (await attempt.redeem(code)).status_code == 400  # replay: logged, then revoked
    # A failure, a mismatch and an unknown token, for their log lines too.
    failed = await challenge(stack)
    mismatch = webhook_body(failed.token, "SUCCESS", scan_ref="SCAN-BOB", face_photo=photo)
    assert (await post_webhook(stack, mismatch)).json()["result"] == "mismatch"
    await stack.outcome(failed.token, "FAILED", "FACE_MISMATCH")
    await failed.result()
    await post_webhook(stack, webhook_body("unknown-token-123", "SUCCESS", face_photo=photo))

    cookie_secret = (await redis.hget(SECRETS_KEY, "cookie") or b"").decode()
    secrets = {
        "webhook signing key": SIGNING_KEY,
        "client secret": CLIENT_SECRET,
        "vendor api secret": "simulator-api-secret",
        "face photo URL": photo,
        "raw webhook body": body.decode(),
        "webhook signature": signature,
        "authorization code": code,
        "access token": tokens["access_token"],
        "id token": tokens["id_token"],
        "PKCE verifier": attempt.verifier,
        "challenge cookie": challenge_cookie(failed),
        "cookie secret": cookie_secret,
    }
    assert all(secrets.values())
    return secrets


def leaks(records: list[logging.LogRecord], secrets: dict[str, str]) -> list[str]:
    return [
        f"{name} logged by {record.name} at {record.levelname}: {record.getMessage()[:120]}"
        for record in records
        for text in rendered(record)
        for name, value in secrets.items()
        if value in text
    ]


def service_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    # httpcore's DEBUG traces in this process belong mostly to the test's own clients (which
    # see the redirect with the code); everything else is the service, its libraries and the
    # simulator.
    return [r for r in caplog.records if not r.name.startswith("httpcore")]


async def test_no_secrets_in_logs(
    stack: Stack, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = await whole_flow(stack, redis)
    records = service_records(caplog)
    assert any(r.name.startswith("idenfy_stepup") for r in records), "nothing was logged"
    assert any("webhook" in r.getMessage() for r in records)
    assert leaks(records, secrets) == []


async def test_no_tokens_in_authlib_debug_logs(
    stack: Stack, redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    from idenfy_stepup.cli.logs import configure

    root, quiet = logging.getLogger(), logging.getLogger("httpx")
    vendor = logging.getLogger("authlib")
    saved = (root.level, list(root.handlers), quiet.level, vendor.level)
    try:
        configure("json", "debug")  # what `server: {log_level: debug}` does at start-up
        root.addHandler(caplog.handler)
        secrets = await whole_flow(stack, redis)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        quiet.setLevel(saved[2])
        vendor.setLevel(saved[3])
    assert leaks(service_records(caplog), secrets) == []
