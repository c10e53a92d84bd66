"""Our challenge, retry and error pages in a real browser (issue 3, item 1).

Four origins on loopback ports, as in production: the provider, the iDenfy simulator (the
iframe), the demo bank (the relying party) and, for the framing and foreign-message checks, an
unrelated site. Every test watches the console and the network: no JavaScript error or warning
and no 4xx/5xx answer on the way (unless the test is about that answer).

One browser and one site per configuration serve the whole module (its tests share the module's
event loop); each test opens its own browser context, so cookies never carry over.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Frame, Page, Response
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from idenfy_stepup.demo.app import TRANSFER, create_demo_app
from idenfy_stepup.i18n.catalogues import translations
from idenfy_stepup.stepup.binding import COOKIE
from idenfy_stepup.stepup.outcomes import DEFAULTS

from ..harness.redis import challenge_key, stored_request
from ..harness.rp import pkce
from ..harness.servers import Stack, StackPool, free_socket, serve_in_loop
from ..harness.settings import DEMO_AUTHORIZATION_DETAILS, DEMO_DETAIL_TYPES, merge
from ..harness.vendor import simulator_session

# Each test closes the browser contexts it opened (tests/e2e/conftest.py).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.usefixtures("close_contexts"),
]

RP_SECRET = "northwind-secret-0123456789-0123456789-ab"
SHOTS = os.environ.get("STEPUP_SCREENSHOTS")  # a folder (docs/img for the README pictures)
WAITING = "Waiting for the face check…"  # challenge.js TEXT.waiting
CHECKING = "Checking your result…"  # TEXT.approved
NOT_PASSED = "The check did not pass. Waiting for the result…"  # TEXT.failed
CHALLENGE_PATH = re.compile(r"/challenge/([A-Za-z0-9._~-]+)$")


# -- the set-up ----------------------------------------------------------------------------------


@dataclass
class Site:
    """The provider + simulator, the demo bank on a third origin, one browser."""

    stack: Stack
    rp: str
    browser: Browser
    redis: Redis
    contexts: list[BrowserContext]

    @property
    def sim(self) -> str:
        return self.stack.simulator_url.rstrip("/")

    async def new_page(self, **kwargs: Any) -> tuple[Page, Watch]:
        context = await self.browser.new_context(**kwargs)
        self.contexts.append(context)
        page = await context.new_page()
        return page, Watch.on(page)

    async def to_challenge(self, page: Page) -> tuple[str, Response]:
        """The bank's "Confirm transfer" → our challenge page; its token and its response."""
        await page.goto(self.rp)

        def is_challenge(response: Response) -> bool:
            return bool(CHALLENGE_PATH.search(urlsplit(response.url).path))

        async with page.expect_response(is_challenge) as info:
            await page.click('[data-action="confirm-transfer"]')
        await page.wait_for_url(f"{self.stack.issuer}/challenge/*")
        await iframe_button(page, "SUCCESS").wait_for()
        match = CHALLENGE_PATH.search(urlsplit(page.url).path)
        assert match, page.url
        return match.group(1), await info.value

    async def state(self, token: str) -> str | None:
        value = await self.redis.hget(challenge_key(token), "state")
        return value.decode() if isinstance(value, bytes) else value

    async def at_rp(self, page: Page) -> dict[str, str]:
        """Wait (without touching our page) until the bank's callback page has loaded."""
        await page.wait_for_url(f"{self.rp}/callback*", timeout=15000)
        main = page.locator("main[data-result]")
        await main.wait_for()
        shown = {"result": await main.get_attribute("data-result") or ""}
        for name in ("error", "stepup-error"):
            value = await main.get_attribute(f"data-{name}")
            if value is not None:
                shown[name] = value
        return shown


@dataclass
class Watch:
    """Console errors and warnings, uncaught exceptions and 4xx/5xx answers of one page."""

    problems: list[str] = field(default_factory=list)
    allowed: list[Callable[[str], bool]] = field(default_factory=list)

    @classmethod
    def on(cls, page: Page) -> Watch:
        watch = cls()
        page.on("console", watch._console)
        page.on("pageerror", lambda exc: watch.problems.append(f"pageerror: {exc}"))
        page.on("response", watch._response)
        return watch

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self._add(f"{message.type}: {message.text} at {message.location.get('url')}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self._add(f"{response.request.method} {response.url} -> {response.status}")

    def _add(self, problem: str) -> None:
        if not any(allow(problem) for allow in self.allowed):
            self.problems.append(problem)


class Sites:
    """One site per configuration, shared by the module's tests (each test has its own context)."""

    def __init__(self, pool: StackPool, browser: Browser, redis: Redis) -> None:
        self.pool, self.browser, self.redis = pool, browser, redis
        self._sites: dict[str, Site] = {}
        self.contexts: list[BrowserContext] = []
        self._servers: list[tuple[Any, asyncio.Task[None]]] = []

    async def get(self, **settings: Any) -> Site:
        key = json.dumps(settings, sort_keys=True)
        if key not in self._sites:
            self._sites[key] = await self._start(settings)
        return self._sites[key]

    async def _start(self, settings: dict[str, Any]) -> Site:
        """``settings`` over the base; its ``client`` entry (if any) over the bank's client."""
        settings = dict(settings)
        sock = free_socket()
        rp = f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = {
            "client_id": "northwind-bank",
            "name": "Northwind Bank",
            "client_secret": RP_SECRET,
            "redirect_uris": [f"{rp}/callback"],
            "subject_hints": ["login_hint"],
            "authorization_details_types": DEMO_DETAIL_TYPES,
            **settings.pop("client", {}),
        }
        bank = {"clients": [client], "authorization_details": DEMO_AUTHORIZATION_DETAILS}
        stack = await self.pool.get(settings=merge(bank, settings))
        app = create_demo_app(
            issuer=stack.issuer,
            client_id="northwind-bank",
            client_secret=RP_SECRET,
            redirect_uri=f"{rp}/callback",
            session_secret=secrets.token_urlsafe(32),
        )
        self._servers.append(await serve_in_loop(app, sock))
        return Site(stack, rp, self.browser, self.redis, self.contexts)

    async def stop(self) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in self._servers))


@contextlib.asynccontextmanager
async def foreign_site(html: str) -> AsyncIterator[str]:
    """An unrelated site on a fourth origin serving one page; yields its URL."""

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    sock = free_socket()
    server, task = await serve_in_loop(Starlette(routes=[Route("/", page)]), sock)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        await task


def iframe_button(page: Page, outcome: str, reason: str | None = None) -> Any:
    selector = f'button[data-outcome="{outcome}"]'
    if reason is not None:
        selector += f'[data-fail-reason="{reason}"]'
    return page.frame_locator("#idenfy-iframe").locator(selector)


def vendor_frame(page: Page, sim: str) -> Frame:
    frame = page.frame(url=lambda url: url.startswith(sim))
    assert frame is not None, [f.url for f in page.frames]
    return frame


async def status_text(page: Page) -> str:
    return (await page.locator("#challenge-status").inner_text()).strip()


async def shot(page: Page, name: str, *, full_page: bool = True) -> None:
    if SHOTS:
        await asyncio.to_thread(Path(SHOTS).mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=full_page)


# -- 0. what is being approved: shown before the face check --------------------------------------


async def test_the_transfer_is_shown_above_the_face_check_and_html_in_it_stays_text(
    sites: Sites,
) -> None:
    s = await sites.get()
    page, watch = await s.new_page(viewport={"width": 900, "height": 900})
    await s.to_challenge(page)  # the bank's payment_initiation; the iframe's buttons are up
    listed = page.locator("#authorization-details")
    assert await listed.is_visible()
    assert await page.locator("#approving-heading").text_content() == "You are approving"
    item = listed.locator("li")
    assert await item.count() == 1
    assert await item.get_attribute("data-type") == "payment_initiation"
    text = await item.inner_text()
    assert text == 'Pay 500.00 EUR to ACME Ltd (•••• 3000), reference "Invoice 2026-0042"'
    shown, frame = await listed.bounding_box(), await page.locator("#idenfy-iframe").bounding_box()
    assert shown is not None and frame is not None
    assert shown["y"] + shown["height"] <= frame["y"]  # read before the frame, in the first view
    assert shown["y"] + shown["height"] <= 900
    await shot(page, "challenge-details", full_page=False)

    # The RP's text is data: HTML in a creditor name is shown as text, never as markup.
    creditor = '<img src=x onerror="document.title=1">ACME & Co <b>Ltd</b>'
    query = {
        "response_type": "code",
        "client_id": "northwind-bank",
        "redirect_uri": f"{s.rp}/callback",
        "scope": "openid",
        "state": secrets.token_urlsafe(8),
        "login_hint": "alice",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "authorization_details": json.dumps([{**TRANSFER, "creditorName": creditor}]),
    }
    await page.goto(f"{s.stack.issuer}/authorize?{urlencode(query)}")
    await page.wait_for_url(f"{s.stack.issuer}/challenge/*")
    await iframe_button(page, "SUCCESS").wait_for()
    assert f"Pay 500.00 EUR to {creditor} (" in await item.inner_text()
    assert await listed.locator("img, b").count() == 0
    assert await page.title() != "1"
    assert watch.problems == []


# -- 1. approve: the page leaves by itself ---------------------------------------------------------


async def test_approve_in_iframe_returns_to_rp_without_a_click(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page()
    token, _ = await s.to_challenge(page)
    assert await status_text(page) == WAITING
    await iframe_button(page, "SUCCESS").click()
    # Nothing on our page is touched from here on: the push stream sends the browser on.
    assert await s.at_rp(page) == {"result": "success"}
    assert await page.locator('[data-claim="acr"]').inner_text() == "urn:idenfy:stepup:face"
    assert await s.state(token) == "CONSUMED"
    assert watch.problems == []


async def test_a_recent_face_check_in_this_browser_is_reused_for_a_client_that_allows_it(
    sites: Sites,
) -> None:
    """Within reuse_within, Chromium's reuse cookie gets a request without authorization_details
    a code at once (no challenge page); the bank's next transfer, which carries its details, is
    approved by a face check of its own."""
    s = await sites.get(client={"reuse_within": 300})
    page, watch = await s.new_page()
    await s.to_challenge(page)
    await iframe_button(page, "SUCCESS").click()
    assert await s.at_rp(page) == {"result": "success"}
    challenges: list[str] = []
    page.on(
        "response",
        lambda r: challenges.append(r.url) if "/challenge/" in urlsplit(r.url).path else None,
    )
    # The same client asks again for a step-up of alice, with no transaction: only the
    # provider's redirect matters (the bank itself sent no such request).
    callback = f"{s.rp}/callback"
    _, code_challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": "northwind-bank",
        "redirect_uri": callback,
        "scope": "openid",
        "state": secrets.token_urlsafe(16),
        "login_hint": "alice",
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
    }
    await page.goto(f"{s.stack.issuer}/authorize?{urlencode(params)}")
    await page.wait_for_url(f"{callback}*")
    answer = dict(parse_qsl(urlsplit(page.url).query))
    assert answer["code"] and answer["state"] == params["state"] and challenges == []
    # A transfer: its details need a face check of their own, whatever the window says.
    await page.goto(s.rp)
    await page.click('[data-action="confirm-transfer"]')
    await page.wait_for_url(f"{s.stack.issuer}/challenge/*")
    await page.locator("#authorization-details").wait_for()
    # The bank refuses (400) the answer to a request it did not send: that, and nothing else.
    refused = [p for p in watch.problems if params["state"] in p]
    assert len(refused) == 2 and [p for p in watch.problems if p not in refused] == []


# -- 2. retryable failures -----------------------------------------------------------------------


async def test_retryable_failure_shows_hint_then_second_attempt_succeeds(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page()
    first, _ = await s.to_challenge(page)
    await iframe_button(page, "FAILED", "FACE_TOO_SMALL").click()
    # The page leaves by itself for the retry screen, which explains what to change.
    retry = page.locator('[data-action="retry"]')
    await retry.wait_for(timeout=15000)
    assert await page.locator(".hint").inner_text() == DEFAULTS["FACE_TOO_SMALL"].hint
    assert await page.locator(".attempts-left").inner_text() == "2 attempts left"
    await retry.click()
    await page.wait_for_url(f"{s.stack.issuer}/challenge/*")
    second = CHALLENGE_PATH.search(urlsplit(page.url).path)
    assert second and second.group(1) != first, page.url
    src = await page.locator("#idenfy-iframe").get_attribute("src") or ""
    assert src.startswith(s.sim) and src.endswith(f"token={second.group(1)}"), src
    assert (await page.locator(".attempt").inner_text()).startswith("Attempt 2 of 3")
    await iframe_button(page, "SUCCESS").click()
    assert await s.at_rp(page) == {"result": "success"}
    assert watch.problems == []


async def test_max_attempts_retryable_failures_end_in_error_redirect(sites: Sites) -> None:
    s = await sites.get(challenge={"max_attempts": 2})
    page, watch = await s.new_page()
    await s.to_challenge(page)
    await iframe_button(page, "FAILED", "FACE_TOO_SMALL").click()
    retry = page.locator('[data-action="retry"]')
    await retry.wait_for(timeout=15000)
    assert await page.locator(".attempts-left").inner_text() == "1 attempt left"
    await retry.click()
    await page.wait_for_url(f"{s.stack.issuer}/challenge/*")
    await iframe_button(page, "FAILED", "FACE_TOO_SMALL").click()
    assert await s.at_rp(page) == {
        "result": "error",
        "error": "access_denied",
        "stepup-error": "face_too_small",
    }
    assert watch.problems == []


# -- 3. cancel -----------------------------------------------------------------------------------


async def test_cancel_in_iframe_returns_user_canceled(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page()
    await s.to_challenge(page)
    await iframe_button(page, "CANCELED").click()
    shown = await s.at_rp(page)
    assert shown == {
        "result": "error",
        "error": "access_denied",
        "stepup-error": "user_canceled",
    }
    assert watch.problems == []


async def test_our_cancel_button_returns_user_canceled(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page()
    token, _ = await s.to_challenge(page)
    await page.click('[data-action="cancel"]')
    shown = await s.at_rp(page)
    assert shown == {
        "result": "error",
        "error": "access_denied",
        "stepup-error": "user_canceled",
    }
    assert await s.state(token) != "PENDING"
    assert watch.problems == []


# -- 4. messages are hints, never authority --------------------------------------------------------

HEAD = '<!doctype html><html lang="en"><head><link rel="icon" href="data:,">'
OPENER = HEAD + "<title>Elsewhere</title></head><body><h1>Another site</h1></body></html>"


async def test_messages_from_other_origins_change_nothing(sites: Sites) -> None:
    s = await sites.get()
    async with foreign_site(OPENER) as elsewhere:
        page, watch = await s.new_page()
        token, _ = await s.to_challenge(page)
        await page.evaluate(
            "window.__seen = []; window.addEventListener('message', "
            "(e) => window.__seen.push(e.origin))"
        )

        # From our own origin (a script on the page, not the iframe): ignored.
        await page.evaluate('window.postMessage({status: "APPROVED"}, "*")')
        await page.evaluate('window.postMessage("APPROVED", "*")')
        await page.wait_for_function("window.__seen.length === 2")
        assert await status_text(page) == WAITING

        # From a fourth origin that opened our challenge in this same browser: ignored.
        foreign = await page.context.new_page()
        foreign_watch = Watch.on(foreign)
        await foreign.goto(elsewhere)
        async with foreign.expect_popup() as popup_info:
            await foreign.evaluate("(url) => { window.child = window.open(url); }", page.url)
        popup = await popup_info.value
        popup_watch = Watch.on(popup)
        await popup.wait_for_function(
            "(t) => document.getElementById('challenge-status')?.textContent === t", arg=WAITING
        )
        await popup.evaluate(
            "window.__seen = []; window.addEventListener('message', "
            "(e) => window.__seen.push(e.origin))"
        )
        await foreign.evaluate('window.child.postMessage({status: "APPROVED"}, "*")')
        await foreign.evaluate('window.child.postMessage("FAILED", "*")')
        await popup.wait_for_function("window.__seen.length === 2")
        assert await popup.evaluate("window.__seen") == [elsewhere.rstrip("/")] * 2
        assert await status_text(popup) == WAITING
        assert foreign_watch.problems == popup_watch.problems == []

        assert await status_text(page) == WAITING
        assert await s.state(token) == "PENDING"
        assert watch.problems == []


async def test_iframe_saying_approved_without_webhook_never_completes(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page()
    token, _ = await s.to_challenge(page)
    challenge_url = page.url
    vendor = vendor_frame(page, s.sim)
    # The real iframe's origin, but no outcome recorded and so no webhook: only the text moves.
    await vendor.evaluate('window.parent.postMessage({status: "FAILED"}, "*")')
    await page.wait_for_function(
        "(t) => document.getElementById('challenge-status').textContent === t", arg=NOT_PASSED
    )
    await vendor.evaluate('window.parent.postMessage({status: "APPROVED"}, "*")')
    await page.wait_for_function(
        "(t) => document.getElementById('challenge-status').textContent === t", arg=CHECKING
    )
    await page.wait_for_timeout(3000)
    assert page.url == challenge_url
    assert await status_text(page) == CHECKING
    assert await s.state(token) == "PENDING"
    session = await simulator_session(s.stack, token)
    assert (session["status"], session["webhooks"]) == (None, [])  # no outcome, no webhook
    # Asking to finish only brings the browser back to the challenge.
    fetch_finish = "fetch(document.getElementById('challenge').dataset.finishUrl)"
    finished = await page.evaluate(fetch_finish + ".then((r) => [r.status, r.url])")
    assert finished == [200, challenge_url]
    assert await s.state(token) == "PENDING"
    assert watch.problems == []


FRAMER = (
    HEAD
    + """<title>Framer</title></head><body><h1>Framing the challenge</h1>
<iframe id="framed" title="framed" src="{url}"></iframe></body></html>"""
)


async def test_framing_our_challenge_page_is_blocked(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page()
    token, _ = await s.to_challenge(page)
    async with foreign_site(FRAMER.format(url=page.url)) as framer_url:
        # Same browser context, so the challenge cookie would even be sent along.
        framer = await page.context.new_page()
        refused = "violates the following Content Security Policy directive"
        async with framer.expect_console_message(lambda m: refused in m.text) as message:
            await framer.goto(framer_url)
        assert "frame-ancestors 'none'" in (await message.value).text
        framed = [f for f in framer.frames if f is not framer.main_frame]
        assert len(framed) == 1
        # Chromium shows its own error document in place of ours: nothing of the page runs.
        assert not framed[0].url.startswith(s.stack.issuer), framed[0].url
        assert await framed[0].locator("#challenge, #idenfy-iframe").count() == 0
    assert await s.state(token) == "PENDING"
    assert watch.problems == []


# -- 5. headers, cookie, camera ------------------------------------------------------------------


def directives(csp: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in csp.split(";"):
        name, *values = part.split()
        parsed[name.lower()] = values
    return parsed


async def our_headers(response: Response) -> dict[str, str]:
    """The checklist's headers, on every page of ours."""
    headers = await response.all_headers()
    csp = directives(headers["content-security-policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"
    assert "no-store" in headers["cache-control"]
    return headers


async def test_challenge_page_headers_and_cookie(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page()
    token, response = await s.to_challenge(page)
    assert response.status == 200
    headers = await our_headers(response)
    assert directives(headers["content-security-policy"])["frame-src"] == [s.sim]
    assert headers["x-frame-options"] == "DENY"

    cookies = [c for c in await page.context.cookies() if c["name"] == COOKIE]
    assert len(cookies) == 1, cookies
    cookie = cookies[0]
    assert cookie.get("httpOnly") is True
    assert cookie.get("sameSite") == "Lax"
    assert cookie.get("path") == f"/challenge/{token}"
    assert cookie.get("domain") == "127.0.0.1"
    assert cookie.get("secure") is False  # plain-http loopback only; Secure everywhere else
    lifetime = cookie.get("expires", -1) - time.time()
    assert 0 < lifetime <= s.stack.settings.cookies.max_age
    assert COOKIE not in await page.evaluate("document.cookie")
    assert watch.problems == []


RECORD_CAMERA = """
window.__cameraRequests = 0;
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (constraints) => {
    window.__cameraRequests += 1;
    return original(constraints);
  };
}
"""


async def test_camera_is_delegated_to_the_iframe_only(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page()
    await page.context.add_init_script(RECORD_CAMERA)
    _, response = await s.to_challenge(page)
    iframe = page.locator("#idenfy-iframe")
    allow = {item.strip() for item in (await iframe.get_attribute("allow") or "").split(";")}
    assert allow == {"camera", "fullscreen"}
    vendor = vendor_frame(page, s.sim)
    allows = "(f) => document.featurePolicy.allowsFeature(f)"
    # The iframe may ask for the camera (and fullscreen), nothing else.
    assert await vendor.evaluate(allows, "camera") is True
    assert await vendor.evaluate(allows, "fullscreen") is True
    for feature in ("microphone", "geolocation", "payment", "usb"):
        assert await vendor.evaluate(allows, feature) is False, feature
    # Our document delegates the camera to no other origin, and our script never asks for it.
    elsewhere = "(o) => document.featurePolicy.allowsFeature('camera', o)"
    assert await page.evaluate(elsewhere, "https://elsewhere.example") is False
    assert await page.evaluate("window.__cameraRequests") == 0
    # Where a Permissions-Policy is sent, it must keep the iframe's camera (checked above) and
    # name no origin but ours and the iframe's.
    policy = (await response.all_headers()).get("permissions-policy")
    if policy is not None:
        camera = re.search(r"camera=\(([^)]*)\)", policy)
        assert camera is not None, policy
        assert set(camera.group(1).split()) <= {"self", f'"{s.sim}"'}, policy
    assert watch.problems == []


# -- 6. accessibility ----------------------------------------------------------------------------

ACCESSIBLE_NAME = re.compile(r'^- (button|link) "[^"]*\w[^"]*"')


async def check_accessible(page: Page) -> None:
    """The basics: language, one h1, named controls and frames, a visible keyboard focus."""
    assert await page.locator("html").get_attribute("lang") == "en"
    assert await page.locator("h1").count() == 1
    assert (await page.title()).strip()
    controls = await page.locator("button, a[href]").all()
    for control in controls:
        snapshot = (await control.aria_snapshot()).splitlines()[0]
        assert ACCESSIBLE_NAME.match(snapshot), snapshot
    for frame in await page.locator("iframe").all():
        assert (await frame.get_attribute("title") or "").strip(), await frame.evaluate(
            "(f) => f.outerHTML"
        )
    await page.keyboard.press("Shift")  # keyboard modality: focus rings are drawn
    for control in controls:
        await control.focus()
        ring = await control.evaluate(
            "(el) => { const s = getComputedStyle(el); return [el.matches(':focus-visible'),"
            " s.outlineStyle, parseFloat(s.outlineWidth)]; }"
        )
        assert ring[0] is True and ring[1] != "none" and ring[2] >= 2, (
            await control.evaluate("(el) => el.outerHTML"),
            ring,
        )


async def test_pages_pass_basic_accessibility_checks(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page(viewport={"width": 900, "height": 900})
    await s.to_challenge(page)
    await check_accessible(page)

    await iframe_button(page, "FAILED", "FACE_TOO_SMALL").click()
    await page.locator('[data-action="retry"]').wait_for(timeout=15000)
    response = await page.reload()  # the retry screen is a page of its own: check its headers
    assert response is not None and response.status == 200
    await check_accessible(page)
    await our_headers(response)
    await page.locator('[data-action="retry"]').focus()
    await shot(page, "retry-page")

    # An error page: a challenge that does not exist (410 is the expected answer here).
    gone = f"{s.stack.issuer}/challenge/{secrets.token_urlsafe(16)}"
    watch.allowed.append(lambda problem: gone in problem)
    response = await page.goto(gone)
    assert response is not None and response.status == 410
    assert await page.locator("main#error").count() == 1
    await check_accessible(page)
    await our_headers(response)
    assert watch.problems == []


# -- the pages in the browser's language ---------------------------------------------------------


async def test_a_german_browser_gets_the_challenge_page_and_its_status_text_in_german(
    sites: Sites,
) -> None:
    s = await sites.get()
    page, watch = await s.new_page(locale="de-DE")  # Accept-Language: de-DE,de;q=0.9
    token, _ = await s.to_challenge(page)
    german = translations("de").gettext
    assert await page.locator("html").get_attribute("lang") == "de"
    assert await page.locator("h1").inner_text() == german("Confirm it's you")
    # challenge.js took its status text from the page, not its English fallback.
    assert await status_text(page) == german("Waiting for the face check…") != WAITING
    assert await page.locator('[data-action="cancel"]').inner_text() == german("Cancel")
    assert json.loads(await stored_request(s.redis, token) or "{}")["l"] == "de"
    await shot(page, "challenge-de")
    await iframe_button(page, "SUCCESS").click()
    assert await s.at_rp(page) == {"result": "success"}
    assert watch.problems == []


async def test_a_lithuanian_browser_gets_the_retry_page_in_lithuanian(sites: Sites) -> None:
    s = await sites.get()
    page, watch = await s.new_page(locale="lt-LT")
    await s.to_challenge(page)
    await iframe_button(page, "FAILED", "FACE_TOO_SMALL").click()
    retry = page.locator('[data-action="retry"]')
    await retry.wait_for(timeout=15000)
    lithuanian = translations("lt")
    assert await page.locator("html").get_attribute("lang") == "lt"
    hint = DEFAULTS["FACE_TOO_SMALL"].hint
    assert await page.locator(".hint").inner_text() == lithuanian.gettext(hint) != hint
    assert await page.locator(".attempts-left").inner_text() == "Liko 2 bandymai"
    assert await retry.inner_text() == lithuanian.gettext("Try again")
    await shot(page, "retry-lt")
    assert watch.problems == []
