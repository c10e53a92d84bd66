"""stepup/reuse.py and stepup/reuse_cookie.py on their own: the reuse rules and the cookie."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from idenfy_stepup.settings import ClientSettings, Settings, parse_settings
from idenfy_stepup.stepup.binding import COOKIE, Binder
from idenfy_stepup.stepup.reuse import Ask, ReuseRecord, prompts, record_refusal, request_refusal
from idenfy_stepup.stepup.reuse_cookie import ReuseCookies

FACE = "urn:idenfy:stepup:face"
LIVENESS = "urn:idenfy:stepup:liveness"
LEVELS = {FACE: "FACE_MATCHING", LIVENESS: "ACTIVE_LIVENESS"}
SECRET = "cookie-secret-0123456789abcdef0123456789"
NOW = 1_800_000_000


def settings(issuer: str) -> Settings:
    return parse_settings({"issuer": issuer, "idenfy": {"mode": "simulator"}})


def set_cookie(issuer: str) -> tuple[SimpleCookie, str]:
    response = Response()
    ReuseCookies(SECRET, settings(issuer)).attach(response, "shop", "s3cret", 240)
    header = response.headers["set-cookie"]
    return SimpleCookie(header), header


def test_reuse_cookie_is_httponly_lax_scoped_to_authorize_and_secure_under_https() -> None:
    cookie, header = set_cookie("https://stepup.example.com")
    morsel = cookie[ReuseCookies.name("shop")]
    assert morsel["httponly"] and morsel["secure"]
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/authorize"
    assert morsel["max-age"] == "240"
    assert "s3cret" not in header  # base64 inside the signed value, never in plain text


def test_reuse_cookie_is_not_secure_on_a_loopback_http_issuer() -> None:
    cookie, _ = set_cookie("http://127.0.0.1:8000")
    assert not cookie[ReuseCookies.name("shop")]["secure"]


def cookies_of(response: Response) -> dict[str, str]:
    jar = SimpleCookie(response.headers["set-cookie"])
    return {name: morsel.value for name, morsel in jar.items()}


def test_one_cookie_per_client_bound_to_its_client_id() -> None:
    reuse = ReuseCookies(SECRET, settings("https://stepup.example.com"))
    response = Response()
    reuse.attach(response, "shop", "s3cret", 240)
    value = cookies_of(response)[ReuseCookies.name("shop")]
    assert ReuseCookies.name("shop") != ReuseCookies.name("other")
    assert reuse.secret_of({ReuseCookies.name("shop"): value}, "shop", 240) == "s3cret"
    # Transplanted under another client's name, it proves nothing.
    assert reuse.secret_of({ReuseCookies.name("other"): value}, "other", 240) == ""


def test_reuse_cookie_and_challenge_cookie_do_not_verify_as_each_other() -> None:
    conf = settings("https://stepup.example.com")
    reuse, binder = ReuseCookies(SECRET, conf), Binder(SECRET, conf)
    challenge = Response()
    binder.attach(challenge, "tok", "s3cret")
    challenge_value = cookies_of(challenge)[COOKIE]
    assert reuse.secret_of({ReuseCookies.name("shop"): challenge_value}, "shop", 240) == ""
    response = Response()
    reuse.attach(response, "shop", "s3cret", 240)
    reuse_value = cookies_of(response)[ReuseCookies.name("shop")]
    # The same secret, another salt: a reuse cookie is no challenge cookie either.
    scope: dict[str, Any] = {
        "type": "http",
        "headers": [(b"cookie", f"{COOKIE}={reuse_value}".encode())],
    }
    assert binder.secret_of(Request(scope), "tok") == ""


def test_reuse_cookie_signed_with_another_secret_is_ignored() -> None:
    conf = settings("https://stepup.example.com")
    response = Response()
    ReuseCookies("another-secret-0123456789abcdef", conf).attach(response, "shop", "x", 240)
    value = cookies_of(response)[ReuseCookies.name("shop")]
    assert (
        ReuseCookies(SECRET, conf).secret_of({ReuseCookies.name("shop"): value}, "shop", 240) == ""
    )


def ask(**change: Any) -> Ask:
    base: dict[str, Any] = {
        "client_id": "shop",
        "subject": "alice",
        "method": "FACE_MATCHING",
        "prompt": frozenset(),
        "max_age": None,
        "authorization_details": False,
        "reuse_within": 300,
    }
    return Ask(**{**base, **change})


RECORD = ReuseRecord("shop", "alice", FACE, NOW - 100)


@pytest.mark.parametrize(
    ("change", "reused"),
    [
        ({}, True),
        ({"prompt": prompts("consent")}, True),
        ({"max_age": 100}, True),
        ({"reuse_within": 0}, False),
        ({"prompt": prompts("login")}, False),
        ({"max_age": 0}, False),
        ({"max_age": 99}, False),
        ({"authorization_details": True}, False),
        ({"client_id": "other"}, False),
        ({"subject": "bob"}, False),
        ({"method": "ACTIVE_LIVENESS"}, False),
        ({"reuse_within": 100}, False),
        ({"reuse_within": 101}, True),
    ],
)
def test_reuse_rules(change: dict[str, Any], reused: bool) -> None:
    asked = ask(**change)
    refused = request_refusal(asked) or record_refusal(RECORD, asked, NOW, LEVELS)
    assert (refused is None) is reused, refused


def test_a_liveness_check_serves_a_face_matching_request_not_the_reverse() -> None:
    liveness = ReuseRecord("shop", "alice", LIVENESS, NOW - 1)
    assert record_refusal(liveness, ask(method="FACE_MATCHING"), NOW, LEVELS) is None
    face = ReuseRecord("shop", "alice", FACE, NOW - 1)
    assert record_refusal(face, ask(method="ACTIVE_LIVENESS"), NOW, LEVELS) is not None


def test_a_record_at_a_level_no_longer_offered_is_not_reused() -> None:
    gone = ReuseRecord("shop", "alice", "urn:retired", NOW - 1)
    assert record_refusal(gone, ask(), NOW, LEVELS) is not None


def test_reuse_within_is_bounded_and_off_by_default() -> None:
    entry = {"client_id": "shop", "client_secret": "s" * 32, "redirect_uris": ["https://rp/cb"]}
    assert ClientSettings(**entry).reuse_within == 0
    assert ClientSettings(**entry, reuse_within=3600).reuse_within == 3600
    for bad in (-1, 3601):
        with pytest.raises(ValueError, match="reuse_within"):
            ClientSettings(**entry, reuse_within=bad)


@pytest.mark.parametrize(
    "raw",
    [
        '{"client_id": "shop", "subject": "alice", "acr": "urn:a", "auth_time": "1"}',
        '{"client_id": "shop", "subject": ["alice"], "acr": "urn:a", "auth_time": 1}',
        '{"client_id": "shop", "subject": "alice", "acr": "urn:a", "auth_time": true}',
        '{"client_id": "shop", "subject": "alice", "acr": "urn:a"}',
        '{"client_id": "shop", "subject": "alice", "acr": "urn:a", "auth_time": 1, "x": 1}',
    ],
)
def test_a_reuse_record_of_another_shape_is_unreadable(raw: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        ReuseRecord.from_json(raw)
