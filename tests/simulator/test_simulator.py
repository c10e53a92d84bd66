"""The iDenfy simulator, driven in-process; outgoing webhooks stop at a recording MockTransport."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import SecretStr

from idenfy_stepup.settings import SimulatorSettings
from idenfy_stepup.simulator import create_simulator_app
from idenfy_stepup.stepup.outcomes import FAIL_REASONS

KEY = "test-signing-key-0123456789abcdef"
WEBHOOK_URL = "http://provider.test/webhooks/idenfy"
SETTINGS = SimulatorSettings(
    public_url="http://sim.test",
    api_key="key",
    api_secret=SecretStr("secret"),
    client_id="client-42",
    scan_refs={"SCAN-ALICE": "AUTHENTICATION", "SCAN-BOB": "IDENTIFICATION"},
)
AUTH = ("key", "secret")
CHECK = "/identification/facial-auth/{}/check-status/"


@dataclass
class Provider:
    """The provider's webhook endpoint: records every request, answers from a script."""

    answers: list[int | None] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.arrived.set()
        answer = self.answers.pop(0) if self.answers else 200
        if answer is None:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(answer)

    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(r.content) for r in self.requests]


Running = tuple[httpx.AsyncClient, Provider]


@asynccontextmanager
async def simulator(
    signing_key: str | None = KEY,
    answers: list[int | None] | None = None,
    settings: SimulatorSettings = SETTINGS,
) -> AsyncIterator[Running]:
    provider = Provider(answers or [])
    app = create_simulator_app(
        settings,
        webhook_url=WEBHOOK_URL,
        signing_key=signing_key,
        transport=httpx.MockTransport(provider),
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client,
    ):
        yield client, provider


@pytest.fixture
async def sim() -> AsyncIterator[Running]:
    async with simulator() as running:
        yield running


async def new_token(client: httpx.AsyncClient, **extra: object) -> str:
    body = {"scanRef": "SCAN-ALICE", "type": "AUTHENTICATION", "method": "FACE_MATCHING", **extra}
    response = await client.post("/partner/authentication-info", json=body, auth=AUTH)
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def finish(client: httpx.AsyncClient, token: str, **body: object) -> httpx.Response:
    return await client.post(f"/_simulator/sessions/{token}/outcome", json=body)


# --- vendor API (docs/idenfy-api.md, section 1) -----------------------------------------------


@pytest.mark.parametrize("auth", [None, ("key", "wrong"), ("wrong", "secret"), ("key", "")])
async def test_vendor_api_requires_basic_auth(sim: Running, auth: tuple[str, str] | None) -> None:
    client, _ = sim
    response = await client.get(CHECK.format("SCAN-ALICE"), auth=auth)
    assert response.status_code == 401
    assert response.json() == {"message": "Invalid authorization credentials"}


async def test_garbled_authorization_header_is_401(sim: Running) -> None:
    client, _ = sim
    for header in ("Basic !!!", "Bearer abc", "Basic a2V5"):  # a2V5 = "key", no colon
        response = await client.get(
            "/api/v2/facial-authentication-sessions/", headers={"Authorization": header}
        )
        assert response.status_code == 401


@pytest.mark.parametrize(
    ("scan_ref", "expected"),
    [
        ("SCAN-ALICE", "AUTHENTICATION"),
        ("SCAN-BOB", "IDENTIFICATION"),
    ],
)
async def test_check_status_answers_the_configured_type(
    sim: Running, scan_ref: str, expected: str
) -> None:
    client, _ = sim
    for method in ("FACE_MATCHING", "ACTIVE_LIVENESS"):
        response = await client.get(CHECK.format(scan_ref), params={"method": method}, auth=AUTH)
        assert response.status_code == 200
        assert response.json() == {"type": expected}


async def test_check_status_unknown_scan_ref_and_bad_method(sim: Running) -> None:
    client, _ = sim
    unknown = await client.get(CHECK.format("SCAN-NOBODY"), auth=AUTH)
    assert unknown.status_code == 404
    assert unknown.json()["identifier"] == "NOT_FOUND"
    bad = await client.get(CHECK.format("SCAN-ALICE"), params={"method": "IRIS"}, auth=AUTH)
    assert bad.status_code == 400
    assert bad.json()["identifier"] == "BAD_VALUE"


async def test_authentication_info_returns_a_40_char_token(sim: Running) -> None:
    client, _ = sim
    body = {"scanRef": "SCAN-ALICE", "type": "AUTHENTICATION", "method": "ACTIVE_LIVENESS"}
    response = await client.post("/partner/authentication-info", json=body, auth=AUTH)
    assert response.status_code == 200
    answer = response.json()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", answer["token"])
    assert answer["scanRef"] == "SCAN-ALICE"
    assert answer["type"] == "AUTHENTICATION"
    assert answer["method"] == "ACTIVE_LIVENESS"
    assert answer["lifetime"] == 1800


@pytest.mark.parametrize(
    ("body", "status", "identifier"),
    [
        (
            {"scanRef": "SCAN-BOB", "type": "IDENTIFICATION", "method": "FACE_MATCHING"},
            400,
            "BAD_VALUE",
        ),
        ({"scanRef": "SCAN-BOB"}, 400, "BAD_VALUE"),
        ({"scanRef": "SCAN-ALICE", "type": "ENROLLMENT"}, 400, "BAD_VALUE"),
        ({"scanRef": "SCAN-ALICE", "method": "IRIS"}, 400, "BAD_VALUE"),
        ({"scanRef": "SCAN-ALICE", "lifetime": 0}, 400, "BAD_VALUE"),
        ({"scanRef": "SCAN-ALICE", "lifetime": 2_592_001}, 400, "BAD_VALUE"),
        ({"scanRef": "SCAN-ALICE", "lifetime": "600"}, 400, "BAD_VALUE"),
        ({"type": "AUTHENTICATION"}, 400, "MISSING_VALUE"),
        ({"scanRef": "SCAN-NOBODY"}, 404, "NOT_FOUND"),
    ],
)
async def test_authentication_info_rejects(
    sim: Running, body: dict[str, object], status: int, identifier: str
) -> None:
    client, _ = sim
    response = await client.post("/partner/authentication-info", json=body, auth=AUTH)
    assert response.status_code == status
    assert response.json()["identifier"] == identifier


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
async def test_authentication_info_rejects_malformed_json(sim: Running, raw: bytes) -> None:
    client, _ = sim
    response = await client.post(
        "/partner/authentication-info",
        content=raw,
        auth=AUTH,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["identifier"] == "JSON_ERROR"


async def test_sessions_api_reflects_approved(sim: Running) -> None:
    client, _ = sim
    tokens = [await new_token(client) for _ in range(3)]
    await finish(client, tokens[0], status="SUCCESS")
    await finish(client, tokens[1], status="FAILED", failReason="FACE_MISMATCH")
    one = await client.get(f"/api/v2/facial-authentication-sessions/{tokens[0]}/", auth=AUTH)
    assert one.status_code == 200
    assert set(one.json()) == {
        "id",
        "tokenString",
        "approved",
        "givenScanRef",
        "type",
        "authenticationMethod",
        "facePhoto",
    }
    assert one.json()["givenScanRef"] == "SCAN-ALICE"
    listed = await client.get("/api/v2/facial-authentication-sessions/", auth=AUTH)
    approved = {s["tokenString"]: s["approved"] for s in listed.json()}
    assert approved == {tokens[0]: True, tokens[1]: False, tokens[2]: None}
    missing = await client.get("/api/v2/facial-authentication-sessions/nope/", auth=AUTH)
    assert missing.status_code == 404


# --- the iframe page (docs/idenfy-api.md, section 3) ------------------------------------------


async def test_iframe_page_has_every_outcome_button(sim: Running) -> None:
    client, _ = sim
    token = await new_token(client)
    response = await client.get("/", params={"token": token})
    assert response.status_code == 200
    html = response.text
    buttons = re.findall(r"<button[^>]*>", html)
    assert len(buttons) == 3 + len(FAIL_REASONS) == 19
    assert re.search(r'<button[^>]*data-outcome="SUCCESS"[^>]*>Approve</button>', html)
    for outcome in ("CANCELED", "EXPIRED"):
        assert f'data-outcome="{outcome}"' in html
    for reason in FAIL_REASONS:
        assert re.search(rf'data-outcome="FAILED" data-fail-reason="{reason}"', html)
    assert "<h1>" in html and "<legend>" in html


async def test_iframe_page_is_frameable_with_no_inline_script(sim: Running) -> None:
    client, _ = sim
    response = await client.get("/", params={"token": await new_token(client)})
    assert "x-frame-options" not in response.headers
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors" not in csp
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", response.text, re.S)
    assert scripts and all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+=", response.text)  # no inline event handlers either
    src = re.search(r'<script[^>]*src="([^"]+)"', response.text)
    assert src is not None
    js = await client.get(src.group(1))
    assert js.status_code == 200 and "postMessage" in js.text


async def test_iframe_page_for_a_finished_session_has_no_buttons(sim: Running) -> None:
    client, _ = sim
    token = await new_token(client)
    await finish(client, token, status="FAILED", failReason="EYES_CLOSED")
    response = await client.get("/", params={"token": token})
    assert response.status_code == 200
    assert "<button" not in response.text and "EYES_CLOSED" in response.text


@pytest.mark.parametrize("query", ["", "?token=", "?token=unknown"])
async def test_iframe_page_unknown_token_is_404(sim: Running, query: str) -> None:
    client, _ = sim
    response = await client.get("/" + query)
    assert response.status_code == 404
    assert "<button" not in response.text


# --- webhooks (docs/idenfy-api.md, section 2) -------------------------------------------------


async def test_outcome_sends_a_signed_webhook(sim: Running) -> None:
    client, provider = sim
    token = await new_token(client)
    response = await finish(client, token, status="SUCCESS")
    assert response.status_code == 200
    (request,) = provider.requests
    assert response.json() == {"delivered": 200, "attempts": 1, "id": provider.bodies()[0]["id"]}
    assert str(request.url) == WEBHOOK_URL and request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["idenfy-event-type"] == "FACIAL_AUTHENTICATION"
    expected = hmac.new(KEY.encode(), request.content, hashlib.sha256).hexdigest()
    assert request.headers["idenfy-signature"] == expected
    body = json.loads(request.content)
    assert re.fullmatch(r"[0-9a-f-]{36}", body.pop("id"))
    assert body == {
        "scanRef": "SCAN-ALICE",
        "clientId": "client-42",
        "status": "SUCCESS",
        "token": token,
        "type": "AUTHENTICATION",
        "method": "FACE_MATCHING",
        "facePhoto": f"http://sim.test/_simulator/photos/{token}.jpg",
        "ipAddress": None,
        "failReason": None,
        "riskTags": None,
    }


async def test_failed_webhook_carries_the_reason(sim: Running) -> None:
    client, provider = sim
    token = await new_token(client)
    await finish(client, token, status="FAILED", failReason="FAKE_FACE")
    await finish(client, await new_token(client), status="CANCELED")
    failed, canceled = provider.bodies()
    assert failed["status"] == "FAILED" and failed["failReason"] == "FAKE_FACE"
    assert canceled["failReason"] is None and canceled["facePhoto"] is None


async def test_webhook_is_unsigned_without_a_signing_key() -> None:
    async with simulator(signing_key=None) as (client, provider):
        await finish(client, await new_token(client), status="SUCCESS")
    (request,) = provider.requests
    assert "idenfy-signature" not in request.headers
    assert request.headers["idenfy-event-type"] == "FACIAL_AUTHENTICATION"


async def test_second_outcome_is_409_and_force_sends_a_new_webhook(sim: Running) -> None:
    client, provider = sim
    token = await new_token(client)
    first = await finish(client, token, status="SUCCESS")
    again = await finish(client, token, status="FAILED", failReason="FACE_MISMATCH")
    assert again.status_code == 409 and again.json()["error"] == "already_finished"
    forced = await finish(client, token, status="FAILED", failReason="FACE_MISMATCH", force=True)
    assert forced.status_code == 200 and forced.json()["id"] != first.json()["id"]
    assert [b["status"] for b in provider.bodies()] == ["SUCCESS", "FAILED"]
    state = (await client.get(f"/_simulator/sessions/{token}")).json()
    assert state["status"] == "SUCCESS" and state["approved"] is True  # first outcome kept
    assert len(state["webhooks"]) == 2


async def test_resend_repeats_the_same_bytes_and_id(sim: Running) -> None:
    client, provider = sim
    token = await new_token(client)
    nothing_yet = await client.post(f"/_simulator/webhooks/{token}/resend")
    assert nothing_yet.status_code == 409
    first = await finish(client, token, status="SUCCESS")
    resent = await client.post(f"/_simulator/webhooks/{token}/resend")
    assert resent.status_code == 200 and resent.json()["id"] == first.json()["id"]
    original, duplicate = provider.requests
    assert duplicate.content == original.content
    assert duplicate.headers["idenfy-signature"] == original.headers["idenfy-signature"]


async def test_failed_delivery_is_retried() -> None:
    async with simulator(answers=[500, None, 200]) as (client, provider):
        response = await finish(client, await new_token(client), status="SUCCESS")
    assert response.json()["delivered"] == 200 and response.json()["attempts"] == 3
    assert len({r.content for r in provider.requests}) == 1


async def test_retry_on_500_then_success() -> None:
    async with simulator(answers=[500]) as (client, provider):
        response = await finish(client, await new_token(client), status="SUCCESS")
    assert response.json()["attempts"] == 2 and response.json()["delivered"] == 200
    assert len(provider.requests) == 2


@pytest.mark.parametrize(
    "path",
    [
        "/_simulator/sessions/nope/outcome",
        "/_simulator/webhooks/nope/resend",
    ],
)
async def test_unknown_token_is_404(sim: Running, path: str) -> None:
    client, provider = sim
    response = await client.post(path, json={"status": "SUCCESS"})
    assert response.status_code == 404
    assert (await client.get("/_simulator/sessions/nope")).status_code == 404
    assert provider.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"status": "APPROVED"},
        {},
        {"status": "SUCCESS", "failReason": "FAKE_FACE"},
        {"status": "FAILED", "failReason": 7},
        {"status": "SUCCESS", "force": "yes"},
    ],
)
async def test_bad_outcome_is_400(sim: Running, body: dict[str, object]) -> None:
    client, provider = sim
    response = await finish(client, await new_token(client), **body)
    assert response.status_code == 400
    assert provider.requests == []


async def test_failed_without_reason_and_unknown_reason_are_sent(sim: Running) -> None:
    client, provider = sim
    for reason in (None, "SOMETHING_NEW"):
        body = (
            {"status": "FAILED"} if reason is None else {"status": "FAILED", "failReason": reason}
        )
        assert (await finish(client, await new_token(client), **body)).status_code == 200
    assert [b["failReason"] for b in provider.bodies()] == [None, "SOMETHING_NEW"]


async def test_scan_refs_can_change_at_runtime(sim: Running) -> None:
    client, _ = sim
    put = await client.put("/_simulator/scan-refs/SCAN-CAROL", json={"type": "ENROLLMENT"})
    assert put.status_code == 200
    check = await client.get(CHECK.format("SCAN-CAROL"), auth=AUTH)
    assert check.json() == {"type": "ENROLLMENT"}
    bad = await client.put("/_simulator/scan-refs/SCAN-CAROL", json={"type": "KYC"})
    assert bad.status_code == 400
    assert (await client.delete("/_simulator/scan-refs/SCAN-CAROL")).status_code == 204
    assert (await client.get(CHECK.format("SCAN-CAROL"), auth=AUTH)).status_code == 404


async def test_idle_session_expires_with_a_webhook(sim: Running) -> None:
    client, provider = sim
    token = await new_token(client, lifetime=1)
    # The vendor expires idle tokens with a webhook (§2.2); the simulator checks once a second.
    await asyncio.wait_for(provider.arrived.wait(), timeout=3.0)
    (body,) = provider.bodies()
    assert body["token"] == token and body["status"] == "EXPIRED"
    assert body["failReason"] is None and body["facePhoto"] is None
    late = await finish(client, token, status="SUCCESS")
    assert late.status_code == 409


# --- scripted outage (/_simulator/outage) -------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "status"), [("500", 500), ("503", 503), ("401", 401), ("402", 402)]
)
async def test_an_outage_answers_every_partner_endpoint_and_counts_the_requests(
    sim: Running, mode: str, status: int
) -> None:
    client, _ = sim
    token = await new_token(client)
    assert (await client.put("/_simulator/outage", json={"mode": mode})).json()["mode"] == mode
    calls = [
        client.get(CHECK.format("SCAN-ALICE"), auth=AUTH),
        client.post("/partner/authentication-info", json={"scanRef": "SCAN-ALICE"}, auth=AUTH),
        client.get(f"/api/v2/facial-authentication-sessions/{token}/", auth=AUTH),
    ]
    for call in calls:
        assert (await call).status_code == status
    # The simulator's own controls and its iframe are not part of the outage.
    assert (await client.get(f"/_simulator/sessions/{token}")).status_code == 200
    assert (await client.get(f"/?token={token}")).status_code == 200
    view = (await client.delete("/_simulator/outage")).json()
    assert view == {"mode": None, "requests": 4, "hanging": 0}  # new_token's call, then three
    assert (await client.get(CHECK.format("SCAN-ALICE"), auth=AUTH)).status_code == 200


async def test_a_hanging_request_is_answered_normally_once_the_outage_ends(sim: Running) -> None:
    client, _ = sim
    await client.put("/_simulator/outage", json={"mode": "hang"})
    body = {"scanRef": "SCAN-ALICE", "type": "AUTHENTICATION"}
    pending = asyncio.create_task(client.post("/partner/authentication-info", json=body, auth=AUTH))
    for _ in range(1000):  # until the request hangs (bounded: a broken hang fails the test)
        if (await client.get("/_simulator/outage")).json()["hanging"] == 1:
            break
        await asyncio.sleep(0.01)
    assert (await client.get("/_simulator/outage")).json()["hanging"] == 1
    assert not pending.done()
    await client.delete("/_simulator/outage")
    response = await pending  # its body, read while it hung, reaches the endpoint
    assert response.status_code == 200 and response.json()["scanRef"] == "SCAN-ALICE"


@pytest.mark.parametrize("body", [{"mode": "404"}, {"mode": None}, {}, {"mode": 500}])
async def test_an_unknown_outage_mode_is_400(sim: Running, body: dict[str, object]) -> None:
    client, _ = sim
    response = await client.put("/_simulator/outage", json=body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert (await client.get("/_simulator/outage")).json()["mode"] is None
