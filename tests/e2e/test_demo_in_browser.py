"""The newcomer's path of `make run`, in a real browser: demo bank → face check → id_token.

Three origins, as in production: the provider, the iDenfy simulator (the iframe) and the demo
bank each listen on their own loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import ConsoleMessage, Page

from idenfy_stepup.demo.app import create_demo_app

from ..harness.servers import Stack, free_socket, serve_in_loop
from ..harness.settings import DEMO_AUTHORIZATION_DETAILS, DEMO_DETAIL_TYPES
from .browser import chromium

DEMO_SECRET = "demo-secret-0123456789-0123456789-abcdef"
SHOTS = os.environ.get("STEPUP_SCREENSHOTS")  # a folder: save pictures for the README


@contextlib.asynccontextmanager
async def demo_stack(stack_factory: Any) -> AsyncIterator[tuple[Stack, str]]:
    sock = free_socket()
    demo = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = {
        "client_id": "northwind-bank",
        "name": "Northwind Bank",
        "client_secret": DEMO_SECRET,
        "redirect_uris": [f"{demo}/callback"],
        "subject_hints": ["login_hint"],
        "authorization_details_types": DEMO_DETAIL_TYPES,
    }
    settings = {"clients": [client], "authorization_details": DEMO_AUTHORIZATION_DETAILS}
    stack: Stack = await stack_factory(settings=settings)
    app = create_demo_app(
        issuer=stack.issuer,
        client_id="northwind-bank",
        client_secret=DEMO_SECRET,
        redirect_uri=f"{demo}/callback",
        session_secret=secrets.token_urlsafe(32),
    )
    server, task = await serve_in_loop(app, sock)
    try:
        yield stack, demo
    finally:
        server.should_exit = True
        await task


async def shot(page: Page, name: str) -> None:
    if SHOTS:
        await asyncio.to_thread(Path(SHOTS).mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


@pytest.mark.slow
async def test_demo_transfer_approved_in_browser(stack_factory: Any) -> None:
    async with demo_stack(stack_factory) as (stack, demo), chromium() as browser:
        page = await browser.new_page(viewport={"width": 900, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: _console(m, problems))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("response", lambda r: _bad_response(r.request.method, r.url, r.status, problems))
        await page.goto(demo)
        await shot(page, "demo-bank")
        await page.click('[data-action="confirm-transfer"]')
        await page.wait_for_url(f"{stack.issuer}/challenge/*")
        frame = page.frame_locator("#idenfy-iframe")
        approve = frame.locator('button[data-outcome="SUCCESS"]')
        await approve.wait_for()
        # The transfer is on the page, in plain words, before the face check starts.
        shown = page.locator('#authorization-details li[data-type="payment_initiation"]')
        assert (await shown.inner_text()).startswith("Pay 500.00 EUR to ACME Ltd")
        await shot(page, "challenge-page")
        await approve.click()
        # No click on our page: the push channel sends the browser back to the bank.
        await page.wait_for_url(f"{demo}/callback*", timeout=15000)
        result = page.locator("main[data-result]")
        assert await result.get_attribute("data-result") == "success"
        assert await page.locator('[data-claim="sub"]').inner_text() == "alice"
        assert await page.locator('[data-claim="acr"]').inner_text() == "urn:idenfy:stepup:face"
        assert await page.locator('[data-claim="txn"]').inner_text()
        approved = await page.locator("#approved-transfer").inner_text()
        assert "Approved by face check: Pay 500.00 EUR to ACME Ltd" in approved
        assert "✓ matches the transfer" in approved
        await shot(page, "demo-confirmed")
        assert problems == []


@pytest.mark.slow
async def test_demo_face_mismatch_in_browser(stack_factory: Any) -> None:
    async with demo_stack(stack_factory) as (stack, demo), chromium() as browser:
        page = await browser.new_page()
        await page.goto(demo)
        await page.click('[data-action="confirm-transfer"]')
        await page.wait_for_url(f"{stack.issuer}/challenge/*")
        frame = page.frame_locator("#idenfy-iframe")
        await frame.locator('button[data-fail-reason="FACE_MISMATCH"]').click()
        await page.wait_for_url(f"{demo}/callback*", timeout=15000)
        main = page.locator("main[data-result]")
        assert await main.get_attribute("data-result") == "error"
        assert await main.get_attribute("data-stepup-error") == "face_mismatch"
        await shot(page, "demo-denied")


def _console(message: ConsoleMessage, problems: list[str]) -> None:
    if message.type in ("error", "warning"):
        problems.append(f"{message.type}: {message.text} at {message.location.get('url')}")


def _bad_response(method: str, url: str, status: int, problems: list[str]) -> None:
    if status >= 400:
        problems.append(f"{method} {url} -> {status}")
