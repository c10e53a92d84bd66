"""The challenge cookie: itsdangerous' format, with its key derived once per process."""

from __future__ import annotations

from http.cookies import SimpleCookie
from typing import Any

from itsdangerous import URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from idenfy_stepup.settings import parse_settings
from idenfy_stepup.stepup.binding import COOKIE, Binder

SECRET = "cookie-secret-0123456789abcdef0123456789"
SALT = "idenfy-stepup.challenge"
SETTINGS = parse_settings(
    {
        "issuer": "https://stepup.example.com",
        "idenfy": {"mode": "simulator", "webhook_signing_key": "k" * 32},
        "directory": {"static": {"alice": "SCAN-ALICE"}},
        "clients": [
            {
                "client_id": "shop",
                "client_secret": "s" * 32,
                "redirect_uris": ["https://shop.example.com/cb"],
            }
        ],
    }
)


def request_with(value: str) -> Request:
    scope: dict[str, Any] = {"type": "http", "headers": [(b"cookie", f"{COOKIE}={value}".encode())]}
    return Request(scope)


def attached(binder: Binder, token: str, secret: str) -> str:
    response = Response()
    binder.attach(response, token, secret)
    cookies = SimpleCookie()
    cookies.load(response.headers["set-cookie"])
    return cookies[COOKIE].value


def test_a_cookie_of_plain_itsdangerous_is_read_and_ours_is_read_by_it() -> None:
    """Cookies in browsers at an upgrade still verify: the format did not change."""
    plain = URLSafeTimedSerializer(SECRET, salt=SALT)
    binder = Binder(SECRET, SETTINGS)
    theirs = plain.dumps({"t": "tok", "s": "s3cret"})
    assert binder.secret_of(request_with(theirs), "tok") == "s3cret"
    ours = attached(binder, "tok", "s3cret")
    assert plain.loads(ours) == {"t": "tok", "s": "s3cret"}


def test_every_check_after_the_first_still_refuses_what_it_must() -> None:
    binder = Binder(SECRET, SETTINGS)
    good = attached(binder, "tok", "s3cret")
    forged = good[:-1] + ("B" if good[-1] != "B" else "C")
    for _ in range(3):  # the cached key gives the same answers, call after call
        assert binder.secret_of(request_with(good), "tok") == "s3cret"
        assert binder.secret_of(request_with(good), "other") == ""
        assert binder.secret_of(request_with(forged), "tok") == ""
    other = attached(Binder("another-secret-0123456789abcdef01", SETTINGS), "tok", "s3cret")
    assert binder.secret_of(request_with(other), "tok") == ""
