#!/usr/bin/env python3
"""A whole step-up against a running provider in simulator mode, with the standard library
only (it runs beside any image): discovery, /healthz, /authorize, the challenge page, the
simulator's approval, /finish, /token. Prints what it saw as JSON; exits 1 on the first
surprise, naming it.

    python3 deploy/smoke_stepup.py --issuer http://127.0.0.1:8000 \
        --simulator http://127.0.0.1:8001 --health http://127.0.0.1:9000/healthz \
        --client-id shop --client-secret SECRET --redirect-uri http://127.0.0.1:9/cb
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.cookiejar
import json
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from typing import Any


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """The provider's redirects are what is checked: never followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _browser() -> urllib.request.OpenerDirector:
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirects)


def _call(
    opener: urllib.request.OpenerDirector, request: urllib.request.Request | str
) -> tuple[int, Message, bytes]:
    """Status, headers (names in any case) and body."""
    try:
        with opener.open(request, timeout=20) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as answer:  # 3xx (not followed) and 4xx/5xx alike
        return answer.code, answer.headers, answer.read()


def _expect(condition: bool, what: str, seen: object) -> None:
    if not condition:
        print(f"smoke test failed: {what}: {seen!r}"[:2000], file=sys.stderr)
        sys.exit(1)


def _claims(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--issuer", required=True)
    p.add_argument("--simulator", required=True, help="the simulator's base URL")
    p.add_argument("--health", help="the /healthz URL to check (default: the issuer's)")
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    p.add_argument("--redirect-uri", required=True)
    p.add_argument("--subject", default="alice")
    args = p.parse_args()
    for url in (args.issuer, args.simulator, args.health or args.issuer):
        _expect(urllib.parse.urlsplit(url).scheme in ("http", "https"), "an http(s) URL", url)
    plain = urllib.request.build_opener(_NoRedirects)
    report: dict[str, Any] = {}

    status, _, body = _call(plain, f"{args.issuer}/.well-known/openid-configuration")
    _expect(status == 200, "discovery", (status, body))
    discovery = json.loads(body)
    _expect(discovery["issuer"] == args.issuer, "discovery's issuer", discovery["issuer"])
    report["discovery"] = {k: discovery[k] for k in ("issuer", "authorization_endpoint")}

    health = args.health or f"{args.issuer}/healthz"
    status, _, body = _call(plain, health)
    _expect(status == 200, "health", (status, body))
    report["healthz"] = {"url": health, "status": status, "body": json.loads(body)}

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state, nonce = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": args.client_id,
            "redirect_uri": args.redirect_uri,
            "scope": "openid",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge.rstrip(b"=").decode(),
            "code_challenge_method": "S256",
            "login_hint": args.subject,
        }
    )
    browser = _browser()
    status, headers, body = _call(browser, f"{args.issuer}/authorize?{query}")
    location = headers.get("Location", "")
    _expect(status == 303 and location.startswith("/challenge/"), "authorize", location)
    token = location.rsplit("/", 1)[1]
    status, _, body = _call(browser, f"{args.issuer}/challenge/{token}")
    _expect(status == 200, "the challenge page", (status, body[:300]))

    approve = urllib.request.Request(  # noqa: S310 (the schemes are checked above)
        f"{args.simulator}/_simulator/sessions/{token}/outcome",
        data=json.dumps({"status": "SUCCESS"}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    status, _, body = _call(plain, approve)
    _expect(status == 200 and json.loads(body).get("delivered") == 200, "the webhook", body)

    status, headers, body = _call(browser, f"{args.issuer}/challenge/{token}/finish")
    location = headers.get("Location", "")
    _expect(status == 303 and location.startswith(args.redirect_uri), "finish", (status, body))
    answer = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    _expect(answer.get("state") == state and answer.get("iss") == args.issuer, "redirect", answer)
    _expect("code" in answer, "a code", answer)

    basic = base64.b64encode(f"{args.client_id}:{args.client_secret}".encode()).decode()
    redeem = urllib.request.Request(  # noqa: S310 (the schemes are checked above)
        f"{args.issuer}/token",
        data=urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": args.redirect_uri,
                "code_verifier": verifier,
            }
        ).encode(),
        headers={"Authorization": f"Basic {basic}"},
        method="POST",
    )
    status, _, body = _call(plain, redeem)
    _expect(status == 200, "token", (status, body))
    claims = _claims(json.loads(body)["id_token"])
    _expect(claims["sub"] == args.subject and claims["nonce"] == nonce, "id_token", claims)
    _expect(claims.get("amr") == ["face"], "amr", claims)
    report["id_token"] = {k: claims.get(k) for k in ("iss", "sub", "acr", "amr", "auth_time")}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
