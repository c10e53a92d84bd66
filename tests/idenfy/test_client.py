"""IdenfyClient against a fake network edge (a recording fetch); docs/idenfy-api.md, section 1."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import pytest

from idenfy_stepup.idenfy.client import (
    IdenfyClient,
    VendorError,
    VendorNotEnrolled,
    VendorUnavailable,
    default_timeout,
)
from idenfy_stepup.idenfy.transport import (
    FetchError,
    FetchTimeout,
    VendorRequest,
    VendorResponse,
    VendorTimeout,
)

BASE = "https://ivs.example.test"
API_KEY = "partner-key-7Hq2"
API_SECRET = "partner-secret-Zx91-do-not-leak"
BASIC = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()


@dataclass(frozen=True)
class Sent:
    """One request as the client handed it to the network edge."""

    method: str
    url: str
    headers: dict[str, str]  # names lower-cased
    content: bytes
    timeouts: VendorTimeout

    @property
    def raw_path(self) -> bytes:
        parts = urlsplit(self.url)
        return (parts.path + (f"?{parts.query}" if parts.query else "")).encode()

    @property
    def params(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.url).query))


Handler = Callable[[Sent], VendorResponse]
Call = Callable[[IdenfyClient], Awaitable[object]]


def answer(status: int, body: object = None) -> VendorResponse:
    """A JSON reply (no body for None)."""
    return VendorResponse(status, b"" if body is None else json.dumps(body).encode())


class Vendor:
    """A fake fetch: records what the client sends and answers with ``respond``."""

    def __init__(self) -> None:
        self.requests: list[Sent] = []
        self.respond: Handler = lambda request: answer(200, {})
        self.client: IdenfyClient

    async def fetch(self, request: VendorRequest) -> VendorResponse:
        lowered = {k.lower(): v for k, v in request.headers.items()}
        sent = Sent(request.method, request.url, lowered, request.body or b"", request.timeouts)
        self.requests.append(sent)
        return self.respond(sent)

    def reply(self, status: int, body: object = None) -> None:
        self.respond = lambda request: answer(status, body)

    @property
    def last(self) -> Sent:
        assert len(self.requests) == 1
        return self.requests[0]


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    v = Vendor()
    v.client = IdenfyClient(v.fetch, BASE + "/", API_KEY, API_SECRET, default_timeout(5))
    yield v


def assert_authenticated(request: Sent) -> None:
    assert request.headers["authorization"] == BASIC
    assert request.headers["accept"] == "application/json"


CALLS: dict[str, Call] = {
    "check_status": lambda c: c.check_status("scan-1"),
    "create_authentication": lambda c: c.create_authentication(
        "scan-1", "AUTHENTICATION", "FACE_MATCHING", 600
    ),
    "get_session": lambda c: c.get_session("tok-1"),
}


# --- check-status (§1.1) ---------------------------------------------------------------------


async def test_check_status_sends_basic_auth_get(vendor: Vendor) -> None:
    vendor.reply(200, {"type": "AUTHENTICATION"})
    assert await vendor.client.check_status("scan-1") == "AUTHENTICATION"
    request = vendor.last
    assert request.method == "GET"
    assert request.url == (
        f"{BASE}/identification/facial-auth/scan-1/check-status/?method=FACE_MATCHING"
    )
    assert_authenticated(request)


async def test_check_status_quotes_the_scan_ref_and_passes_the_method(vendor: Vendor) -> None:
    vendor.reply(200, {"type": "enrollment"})
    result = await vendor.client.check_status("a/../b c?d", method="ACTIVE_LIVENESS")
    assert result == "ENROLLMENT"
    request = vendor.last
    assert request.raw_path == (
        b"/identification/facial-auth/a%2F..%2Fb%20c%3Fd/check-status/?method=ACTIVE_LIVENESS"
    )
    assert request.params == {"method": "ACTIVE_LIVENESS"}


async def test_check_status_404_is_not_enrolled(vendor: Vendor) -> None:
    vendor.reply(404, {"identifier": "NOT_FOUND", "message": "no such scanRef"})
    with pytest.raises(VendorNotEnrolled) as info:
        await vendor.client.check_status("deleted-scan")
    assert (info.value.kind, info.value.status, info.value.identifier) == (
        "not_found",
        404,
        "NOT_FOUND",
    )


@pytest.mark.parametrize("value", ["IDENTIFICATION", "identification"])
async def test_identification_is_not_enrolled(vendor: Vendor, value: str) -> None:
    vendor.reply(200, {"type": value})
    with pytest.raises(VendorNotEnrolled) as info:
        await vendor.client.check_status("scan-1")
    assert info.value.kind == "identification_required"


@pytest.mark.parametrize("scan_ref", ["", ".", ".."])
async def test_impossible_scan_ref_is_not_enrolled_without_a_call(
    vendor: Vendor, scan_ref: str
) -> None:
    with pytest.raises(VendorNotEnrolled) as info:
        await vendor.client.check_status(scan_ref)
    assert info.value.kind == "not_found"
    assert vendor.requests == []


@pytest.mark.parametrize("body", [{"type": "SOMETHING_NEW"}, {"type": 3}, {}, {"type": None}])
async def test_check_status_unknown_type_is_bad_response(vendor: Vendor, body: object) -> None:
    vendor.reply(200, body)
    with pytest.raises(VendorUnavailable) as info:
        await vendor.client.check_status("scan-1")
    assert info.value.kind == "bad_response"


# --- authentication-info (§1.2) --------------------------------------------------------------


async def test_create_authentication_posts_json(vendor: Vendor) -> None:
    vendor.reply(200, {"token": "Ab3.x_y~z-9", "digitString": "1234"})
    token = await vendor.client.create_authentication(
        "scan-1", "AUTHENTICATION", "FACE_MATCHING", 600
    )
    assert token == "Ab3.x_y~z-9"
    request = vendor.last
    assert request.method == "POST"
    assert request.url == f"{BASE}/partner/authentication-info"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "scanRef": "scan-1",
        "type": "AUTHENTICATION",
        "method": "FACE_MATCHING",
        "lifetime": 600,
    }
    assert_authenticated(request)


async def test_create_authentication_sends_locale_when_given(vendor: Vendor) -> None:
    vendor.reply(200, {"token": "tok"})
    await vendor.client.create_authentication("s", "ENROLLMENT", "ACTIVE_LIVENESS", 300, "lt")
    assert json.loads(vendor.last.content) == {
        "scanRef": "s",
        "type": "ENROLLMENT",
        "method": "ACTIVE_LIVENESS",
        "lifetime": 300,
        "locale": "lt",
    }


@pytest.mark.parametrize(
    "body", [{"authToken": "fallback-tok"}, {"token": None, "authToken": "fallback-tok"}]
)
async def test_auth_token_fallback(vendor: Vendor, body: object) -> None:
    vendor.reply(201, body)
    assert await CALLS["create_authentication"](vendor.client) == "fallback-tok"


async def test_token_wins_over_auth_token(vendor: Vendor) -> None:
    vendor.reply(200, {"token": "primary", "authToken": "secondary"})
    assert await CALLS["create_authentication"](vendor.client) == "primary"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token": ""},
        {"token": 12345},
        {"token": ["a"]},
        {"token": "a" * 65},
        {"token": "has space"},
        {"token": "../admin"},
        {"token": ".."},
        {"token": "."},
        {"token": "tök"},
        {"token": "tok\n"},
        {"authToken": None},
    ],
)
async def test_bad_token_is_bad_response(vendor: Vendor, body: object) -> None:
    vendor.reply(200, body)
    with pytest.raises(VendorUnavailable) as info:
        await CALLS["create_authentication"](vendor.client)
    assert info.value.kind == "bad_response"


@pytest.mark.parametrize("token", ["t" * 64, ".hidden", "a..b", "~", "A-Z_0.9~"])
async def test_url_safe_tokens_are_accepted(vendor: Vendor, token: str) -> None:
    vendor.reply(200, {"token": token})
    assert await CALLS["create_authentication"](vendor.client) == token


# --- sessions (§1.3) -------------------------------------------------------------------------


async def test_get_session_returns_the_object(vendor: Vendor) -> None:
    session = {"id": "u-1", "tokenString": "tok-1", "approved": True, "type": "AUTHENTICATION"}
    vendor.reply(200, session)
    assert await vendor.client.get_session("tok-1") == session
    request = vendor.last
    assert request.method == "GET"
    assert request.url == f"{BASE}/api/v2/facial-authentication-sessions/tok-1/"
    assert_authenticated(request)


async def test_get_session_404_is_unavailable_not_unenrolled(vendor: Vendor) -> None:
    vendor.reply(404)
    with pytest.raises(VendorUnavailable) as info:
        await vendor.client.get_session("tok-1")
    assert (info.value.kind, info.value.status) == ("not_found", 404)


@pytest.mark.parametrize("token", ["", "..", "a/b", "x" * 65])
async def test_get_session_refuses_impossible_tokens_without_a_call(
    vendor: Vendor, token: str
) -> None:
    with pytest.raises(VendorUnavailable) as info:
        await vendor.client.get_session(token)
    assert info.value.kind == "not_found"
    assert vendor.requests == []


# --- failures shared by every call (§1.5) ----------------------------------------------------

STATUS_FAILURES = [
    (
        400,
        {"identifier": "PERMISSIONS_ERROR", "message": "Partner reached token limit"},
        "bad_request",
        "PERMISSIONS_ERROR",
    ),
    (
        400,
        {"identifier": "TOO_MANY_REQUESTS", "message": "limit"},
        "rate_limited",
        "TOO_MANY_REQUESTS",
    ),
    (400, {"identifier": "bad value\nforged log line", "message": "x"}, "bad_request", None),
    (401, {"detail": "Invalid authorization credentials"}, "unauthorized", None),
    (402, {"identifier": "PARTNER_CONTRACT_ERROR"}, "payment_required", "PARTNER_CONTRACT_ERROR"),
    (403, {"message": "Partner inactive"}, "forbidden", None),
    (405, {"identifier": "METHOD_NOT_ALLOWED"}, "bad_request", "METHOD_NOT_ALLOWED"),
    (429, None, "rate_limited", None),
    (500, {"identifier": "INTERNAL_ERROR"}, "server_error", "INTERNAL_ERROR"),
    (503, None, "server_error", None),
    (302, None, "bad_response", None),
]


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(("status", "body", "kind", "identifier"), STATUS_FAILURES)
async def test_http_errors_are_unavailable(
    vendor: Vendor, call: Call, status: int, body: object, kind: str, identifier: str | None
) -> None:
    vendor.reply(status, body)
    with pytest.raises(VendorUnavailable) as info:
        await call(vendor.client)
    assert (info.value.kind, info.value.status, info.value.identifier) == (
        kind,
        status,
        identifier,
    )
    assert not isinstance(info.value, VendorNotEnrolled)


async def test_html_error_page_is_server_error(vendor: Vendor) -> None:
    vendor.respond = lambda request: VendorResponse(502, b"<html>Bad gateway</html>")
    with pytest.raises(VendorUnavailable) as info:
        await vendor.client.check_status("scan-1")
    assert (info.value.kind, info.value.identifier) == ("server_error", None)


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(
    ("exc", "kind"),
    [(FetchTimeout, "timeout"), (FetchError, "network")],
)
async def test_transport_failures_are_unavailable(
    vendor: Vendor, call: Call, exc: type[FetchError], kind: str
) -> None:
    def fail(request: Sent) -> VendorResponse:
        raise exc("boom")

    vendor.respond = fail
    with pytest.raises(VendorUnavailable) as info:
        await call(vendor.client)
    assert (info.value.kind, info.value.status) == (kind, None)


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"<html></html>", b'{"token": ', b"\xff\xfe\x00", b"[]", b'"tok"', b"null"],
)
async def test_non_object_bodies_are_bad_response(
    vendor: Vendor, call: Call, content: bytes
) -> None:
    vendor.respond = lambda request: VendorResponse(200, content)
    with pytest.raises(VendorUnavailable) as info:
        await call(vendor.client)
    assert (info.value.kind, info.value.status) == ("bad_response", 200)


# --- secrets, timeouts, ownership ------------------------------------------------------------


def assert_no_secret(text: str) -> None:
    assert API_SECRET.lower() not in text.lower()
    assert API_KEY.lower() not in text.lower()
    assert BASIC.split()[1] not in text


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
async def test_errors_never_show_credentials(vendor: Vendor, call: Call) -> None:
    # A vendor that echoes our credentials back must not get them into str()/repr().
    echo = {"identifier": "BAD_VALUE", "message": f"{API_KEY}:{API_SECRET}", "detail": BASIC}
    outcomes: list[VendorError] = []
    for respond in (
        lambda r: answer(400, echo),
        lambda r: VendorResponse(401, f"bad credentials {API_SECRET}".encode()),
        lambda r: answer(200, [API_SECRET]),
        lambda r: answer(500, {"identifier": API_SECRET.upper()}),
    ):
        vendor.respond = respond
        with pytest.raises(VendorError) as info:
            await call(vendor.client)
        outcomes.append(info.value)
    for error in outcomes:
        assert_no_secret(str(error))
        assert_no_secret(repr(error))
    assert_no_secret(repr(vendor.client))


@pytest.mark.parametrize("name", ["check_status", "create_authentication"])
async def test_echoed_credentials_in_fields_are_not_shown(vendor: Vendor, name: str) -> None:
    vendor.reply(200, {"token": f"{API_SECRET} x", "type": API_SECRET})
    with pytest.raises(VendorUnavailable) as info:
        await CALLS[name](vendor.client)
    assert info.value.kind == "bad_response"
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value))


async def test_timeout_error_text_has_no_credentials(vendor: Vendor) -> None:
    def fail(request: Sent) -> VendorResponse:
        raise FetchTimeout("timed out")

    vendor.respond = fail
    with pytest.raises(VendorUnavailable) as info:
        await vendor.client.get_session("tok-1")
    assert_no_secret(str(info.value))
    assert_no_secret(repr(info.value))
    assert_no_secret(str(info.value.__cause__))


def test_default_timeout_caps_connect_and_pool() -> None:
    assert default_timeout(5.0) == VendorTimeout(connect=2.0, read=5.0, pool=2.0)
    assert default_timeout(0.5) == VendorTimeout(connect=0.5, read=0.5, pool=0.5)


async def test_calls_use_the_callers_fetch_and_aclose_leaves_it_usable(
    vendor: Vendor,
) -> None:
    vendor.reply(200, {"type": "AUTHENTICATION", "token": "tok"})
    await vendor.client.check_status("scan-1")
    await CALLS["create_authentication"](vendor.client)
    await vendor.client.aclose()
    assert await vendor.client.check_status("scan-1") == "AUTHENTICATION"
    assert len(vendor.requests) == 3


async def test_requests_carry_the_timeouts(vendor: Vendor) -> None:
    vendor.reply(200, {"type": "AUTHENTICATION"})
    await vendor.client.check_status("scan-1")
    assert vendor.last.timeouts == VendorTimeout(connect=2.0, read=5.0, pool=2.0)
