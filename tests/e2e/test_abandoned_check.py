"""An abandoned face check in a real Chromium: no webhook ever comes, and the page still ends
at the relying party with ``challenge_expired``, ``state`` and ``iss``.

With JavaScript the push stream says "done" at the deadline (the vendor session's expiry plus
the skew) and the page leaves by itself; without it, the visible Continue link reaches the RP
once the deadline has passed. The deadline is moved close to now in Redis (the set-up:
``idenfy.token_lifetime`` is at least 60 s); nothing of ours is faked.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, Route
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route as StarletteRoute

from idenfy_stepup.store import EXPIRY_SKEW_SECONDS

from ..harness.redis import challenge_key
from ..harness.servers import Stack, StackPool, free_socket, serve_in_loop
from .browser import chromium

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

CHALLENGE_PAGE = re.compile(r"/challenge/([A-Za-z0-9._~-]+)$")
PUSH_STREAM = re.compile(r"/challenge/([A-Za-z0-9._~-]+)/events$")
LEAD = 3  # seconds from the push stream's first request to the deadline


class Site:
    def __init__(self, stack: Stack, rp: str, browser: Browser, redis: Redis) -> None:
        self.stack, self.rp, self.browser, self.redis = stack, rp, browser, redis

    def authorize_url(self, state: str) -> str:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        params = {
            "response_type": "code",
            "client_id": "abandoned-rp",
            "scope": "openid",
            "redirect_uri": f"{self.rp}/callback",
            "state": state,
            "nonce": secrets.token_urlsafe(12),
            "login_hint": "alice",
            "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode(),
            "code_challenge_method": "S256",
        }
        return f"{self.stack.issuer}/authorize?{urlencode(params)}"

    async def expire_in(self, token: str, seconds: float) -> None:
        expires_at = int(time.time() + seconds) - EXPIRY_SKEW_SECONDS
        await self.redis.hset(challenge_key(token), "expires_at", expires_at)

    async def at_rp(self, page: Page, timeout_ms: int) -> dict[str, str]:
        await page.wait_for_url(f"{self.rp}/callback*", timeout=timeout_ms)
        return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}

    def assert_expired(self, got: dict[str, str], state: str) -> None:
        assert got.get("error") == "access_denied", got
        assert got.get("stepup_error") == "challenge_expired", got
        assert got.get("state") == state
        assert got.get("iss") == self.stack.issuer
        assert "code" not in got


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(pool: StackPool, redis_proc: Any) -> AsyncIterator[Site]:
    async def callback(request: Request) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>RP</title><p>back at the RP</p>")

    sock = free_socket()
    rp = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server, task = await serve_in_loop(
        Starlette(routes=[StarletteRoute("/callback", callback)]), sock
    )
    client = {
        "client_id": "abandoned-rp",
        "client_secret": "abandoned-rp-secret-0123456789-ab",
        "redirect_uris": [f"{rp}/callback"],
        "subject_hints": ["login_hint"],
    }
    stack = await pool.get(settings={"clients": [client]})
    redis = Redis.from_url(redis_proc.url)
    try:
        async with chromium() as browser:
            yield Site(stack, rp, browser, redis)
    finally:
        await redis.aclose()
        server.should_exit = True
        await task


async def test_an_abandoned_page_lands_on_the_rp_with_challenge_expired(site: Site) -> None:
    context = await site.browser.new_context()
    try:
        page = await context.new_page()
        tokens: list[str] = []

        async def near_deadline(route: Route) -> None:
            # Move the challenge's deadline just before its push stream first reads it.
            match = PUSH_STREAM.search(urlsplit(route.request.url).path)
            if match and match.group(1) not in tokens:
                tokens.append(match.group(1))
                await site.expire_in(match.group(1), LEAD)
            await route.continue_()

        await page.route(PUSH_STREAM, near_deadline)
        state = secrets.token_urlsafe(12)
        await page.goto(site.authorize_url(state))
        await page.wait_for_url(f"{site.stack.issuer}/challenge/*")
        # Nothing is touched from here on: no webhook, no click. Well before the first
        # keep-alive (push_keepalive, 30 s): the stream says "done" at the deadline itself.
        got = await site.at_rp(page, timeout_ms=(LEAD + 10) * 1000)
        site.assert_expired(got, state)
        assert len(tokens) == 1  # one challenge, whose stream said "done" at its deadline
    finally:
        await context.close()


async def test_without_javascript_continue_reaches_the_rp_after_the_deadline(site: Site) -> None:
    context = await site.browser.new_context(java_script_enabled=False)
    try:
        page = await context.new_page()
        state = secrets.token_urlsafe(12)
        await page.goto(site.authorize_url(state))
        await page.wait_for_url(f"{site.stack.issuer}/challenge/*")
        match = CHALLENGE_PAGE.search(urlsplit(page.url).path)
        assert match, page.url
        token = match.group(1)
        continue_link = page.locator("#challenge-continue a")
        # Before the deadline, Continue brings the browser back to the page (still pending).
        await continue_link.click()
        await page.wait_for_url(f"{site.stack.issuer}/challenge/{token}")
        await site.expire_in(token, -1)
        await page.locator("#challenge-continue a").click()
        site.assert_expired(await site.at_rp(page, timeout_ms=10000), state)
    finally:
        await context.close()
