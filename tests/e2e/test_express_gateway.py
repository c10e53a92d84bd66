"""A second tested gateway: an Express app with Auth0's ``express-openid-connect``.

``tests/interop/express_app.mjs`` signs its users in with the library's ``auth()`` middleware
and steps them up before a transfer: acr_values, the session's id_token as id_token_hint and
the transfer as ``authorization_details`` (RFC 9396); it executes the transfer only when the
returned id_token's sub, acr, amr, authorization_details, txn and auth_time say so. Chromium
(Debian's) clicks through the provider's challenge page and the simulator's frame; node runs
the app as a subprocess on its own loopback port: three origins, as in production.
docs/gateways/express-openid-connect.md prints the app's configuration, and
``test_guide_shows_the_tested_configuration`` keeps the two in sync.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import yaml
from playwright.async_api import ConsoleMessage, Page, Request, Route

from idenfy_stepup.stepup.outcomes import DEFAULTS

from ..harness.servers import Stack, free_socket
from ..harness.settings import DEMO_AUTHORIZATION_DETAILS
from .browser import CHROMIUM, chromium

ROOT = Path(__file__).resolve().parents[2]
INTEROP = ROOT / "tests" / "interop"
APP = INTEROP / "express_app.mjs"
LIBRARY = INTEROP / "node_modules" / "express-openid-connect" / "package.json"
GUIDE = ROOT / "docs" / "gateways" / "express-openid-connect.md"
STEPUP_ACR = "urn:idenfy:stepup:face"
CLIENT_ID = "express-bank"
CLIENT_SECRET = "express-bank-secret-0123456789-abcdef"
# The transfer the app's form sends, as the app puts it in authorization_details.
TRANSFER = {
    "type": "payment_initiation",
    "instructedAmount": {"amount": "250.00", "currency": "EUR"},
    "creditorName": "ACME Ltd",
    "creditorAccount": {"iban": "DE89370400440532013000"},
}


def app_client(base_url: str, **extra: Any) -> dict[str, Any]:
    """The provider's ``clients:`` entry for the app (the guide shows it as YAML)."""
    return {
        "client_id": CLIENT_ID,
        "name": "Express bank",
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [f"{base_url}/callback"],
        "token_endpoint_auth_method": "client_secret_basic",
        "subject_hints": ["login_hint", "id_token_hint"],
        "authorization_details_types": ["payment_initiation"],
        **extra,
    }


def require_node_and_chromium() -> str:
    """node, with the app's npm packages installed; a skip only when node or Chromium is absent."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH: the Express gateway tests need Node.js 20.19 or later")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing: run `make system-deps` (make test does)")
    if not LIBRARY.exists():
        pytest.fail(
            "express-openid-connect is not installed in tests/interop/node_modules: "
            "run make interop-deps (npm ci --prefix tests/interop)"
        )
    return node


@dataclass
class ExpressApp:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _spawn(node: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [node, str(APP)],
            cwd=INTEROP,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )


async def _wait_until_listening(app: ExpressApp) -> None:
    deadline = time.monotonic() + 20
    while "listening on" not in app.log():
        if app.proc.poll() is not None:
            raise RuntimeError(f"node exited with {app.proc.returncode}\n{app.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Express app did not listen\n{app.log()}")
        await asyncio.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # the app closes its server and exits
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def gateway(
    stack_factory: Any, *, pushed: bool = False, **client: Any
) -> AsyncIterator[tuple[Stack, ExpressApp]]:
    """The provider with the app's client, and the app on a free loopback port."""
    node = require_node_and_chromium()
    with contextlib.closing(free_socket()) as sock:
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    settings = {
        "clients": [app_client(base_url, **client)],
        "authorization_details": DEMO_AUTHORIZATION_DETAILS,
    }
    stack: Stack = await stack_factory(settings=settings)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PORT": str(port),
        "ISSUER_BASE_URL": stack.issuer,
        "BASE_URL": base_url,
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "SESSION_SECRET": secrets.token_urlsafe(32),
        "PUSHED_AUTHORIZATION_REQUESTS": "true" if pushed else "false",
    }
    folder = Path(tempfile.mkdtemp(prefix="stepup-express-"))
    log_path = folder / "node.log"
    app = ExpressApp(port, await asyncio.to_thread(_spawn, node, env, log_path), log_path)
    try:
        await _wait_until_listening(app)
        yield stack, app
    finally:
        await asyncio.to_thread(_stop, app.proc)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Console:
    """Console errors and warnings and uncaught exceptions on our pages: the provider's and
    the simulator's frame. The app's refusals are 4xx pages, which Chromium logs as errors."""

    origins: tuple[str, ...]
    problems: list[str] = field(default_factory=list)

    @classmethod
    def on(cls, page: Page, stack: Stack) -> Console:
        console = cls((f"{stack.issuer}/", f"{stack.simulator_url}/"))
        page.on("console", console._message)
        page.on("pageerror", lambda exc: console.problems.append(f"pageerror: {exc}"))
        return console

    def _message(self, message: ConsoleMessage) -> None:
        where = message.location.get("url") or ""
        if message.type in ("error", "warning") and where.startswith(self.origins):
            self.problems.append(f"{message.type}: {message.text} at {where}")


async def face_check(page: Page, stack: Stack, outcome: str) -> None:
    """On our challenge page, the simulator's button: SUCCESS, or a failure reason."""
    await page.wait_for_url(f"{stack.issuer}/challenge/*", timeout=10000)
    frame = page.frame_locator("#idenfy-iframe")
    if outcome == "SUCCESS":
        await frame.locator('button[data-outcome="SUCCESS"]').click()
    else:
        await frame.locator(f'button[data-fail-reason="{outcome}"]').click()


async def sign_in(page: Page, stack: Stack, app: ExpressApp, user: str = "alice") -> None:
    """The app's own sign-in: a login_hint and a face check, back at the app's home page."""
    await page.goto(f"{app.url}/login?user={user}")
    await face_check(page, stack, "SUCCESS")
    await page.wait_for_url(f"{app.url}/", timeout=15000)
    shown = await page.locator("[data-user]").inner_text()
    assert shown == user, f"{await page.content()}\n{app.log()}"


async def start_transfer(page: Page, stack: Stack) -> None:
    """The transfer button: the app steps up with the transfer shown on our page."""
    await page.locator("button[data-transfer]").click()
    await page.wait_for_url(f"{stack.issuer}/challenge/*", timeout=10000)
    item = page.locator('#authorization-details li[data-type="payment_initiation"]')
    assert await item.inner_text() == "Pay 250.00 EUR to ACME Ltd (•••• 3000)"


async def executed_txns(page: Page, app: ExpressApp) -> list[str]:
    await page.goto(f"{app.url}/")
    items = page.locator("#transfers li")
    return [await items.nth(i).get_attribute("data-txn") or "" for i in range(await items.count())]


@pytest.mark.slow
async def test_step_up_executes_the_transfer_the_face_check_approved(stack_factory: Any) -> None:
    async with gateway(stack_factory) as (stack, app), chromium() as browser:
        page = await browser.new_page()
        console = Console.on(page, stack)
        await sign_in(page, stack, app)
        signed_in_at = int(time.time())
        await start_transfer(page, stack)
        await face_check(page, stack, "SUCCESS")
        # No click on our page: the push channel sends the browser back through the callback.
        await page.wait_for_url(f"{app.url}/transfer/complete", timeout=15000)
        main = page.locator("main[data-executed]")
        assert await main.count() == 1, f"{await page.content()}\n{app.log()}"
        claims = {
            name: await page.locator(f'[data-claim="{name}"]').inner_text()
            for name in ("sub", "acr", "amr", "auth_time", "txn", "iss")
        }
        assert claims["sub"] == "alice"
        assert claims["acr"] == STEPUP_ACR
        assert claims["amr"] == "face"
        assert int(claims["auth_time"]) >= signed_in_at - 1  # the step-up's, not the sign-in's
        assert claims["iss"] == stack.issuer
        details = json.loads(await page.locator("[data-authorization-details]").inner_text())
        assert details == [TRANSFER]
        assert await executed_txns(page, app) == [claims["txn"]]
        assert console.problems == []


@pytest.mark.slow
async def test_pushed_step_up_sends_the_browser_only_a_request_uri(stack_factory: Any) -> None:
    """With `pushedAuthorizationRequests: true` the library pushes the step-up (id_token_hint
    and authorization_details included) to /par: nothing of it passes through the browser."""
    async with gateway(stack_factory, pushed=True) as (stack, app), chromium() as browser:
        page = await browser.new_page()
        console = Console.on(page, stack)
        sent: list[dict[str, str]] = []

        def record(request: Request) -> None:
            if request.url.startswith(f"{stack.issuer}/authorize"):
                sent.append(dict(parse_qsl(urlsplit(request.url).query)))

        page.on("request", record)
        await sign_in(page, stack, app)
        await start_transfer(page, stack)
        await face_check(page, stack, "SUCCESS")
        await page.wait_for_url(f"{app.url}/transfer/complete", timeout=15000)
        assert await page.locator("main[data-executed]").count() == 1, app.log()
        details = json.loads(await page.locator("[data-authorization-details]").inner_text())
        assert details == [TRANSFER]
        assert len(sent) == 2  # the sign-in and the step-up
        assert all(set(query) == {"client_id", "request_uri"} for query in sent), sent
        assert console.problems == []


@pytest.mark.slow
async def test_failed_step_up_shows_the_oauth_error_and_executes_nothing(
    stack_factory: Any,
) -> None:
    async with gateway(stack_factory) as (stack, app), chromium() as browser:
        page = await browser.new_page()
        console = Console.on(page, stack)
        await sign_in(page, stack, app)
        await start_transfer(page, stack)
        await face_check(page, stack, "FAKE_FACE")
        await page.wait_for_url(f"{app.url}/callback?*", timeout=15000)
        # The library validated the error response (state, RFC 9207 iss) and raised it.
        assert "iss=" in page.url
        error = await page.locator("[data-error]").inner_text()
        assert error == "access_denied", f"{await page.content()}\n{app.log()}"
        assert await page.locator("[data-stepup-error]").inner_text() == "spoof_detected"
        description = await page.locator("[data-error-description]").inner_text()
        assert description == DEFAULTS["FAKE_FACE"].description
        assert await page.locator("main[data-executed]").count() == 0
        # Still signed in, nothing executed, and no transfer left to complete.
        assert await executed_txns(page, app) == []
        assert await page.locator("[data-user]").inner_text() == "alice"
        await page.goto(f"{app.url}/transfer/complete")
        refused = await page.locator("[data-refused]").inner_text()
        assert refused == "No transfer awaits a face check."
        assert console.problems == []


@pytest.mark.slow
async def test_library_refuses_error_responses_without_iss(stack_factory: Any) -> None:
    """Why the guide keeps `iss_on_error` at its default: discovery says every response
    carries iss (RFC 9207), so the library refuses an error response without it and the
    provider's error never reaches the app."""
    async with gateway(stack_factory, iss_on_error=False) as (stack, app), chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, stack, app)
        await start_transfer(page, stack)
        await face_check(page, stack, "FAKE_FACE")
        await page.wait_for_url(f"{app.url}/callback?*", timeout=15000)
        assert "error=access_denied" in page.url and "iss=" not in page.url
        error = await page.locator("[data-error]").inner_text()
        assert error == "OAUTH_INVALID_RESPONSE", f"{await page.content()}\n{app.log()}"
        assert await page.locator("[data-stepup-error]").inner_text() == ""
        description = await page.locator("[data-error-description]").inner_text()
        assert description == "invalid response encountered"  # openid-client's wording
        assert await executed_txns(page, app) == []


@pytest.mark.slow
async def test_transfer_changed_on_the_way_to_the_provider_is_not_executed(
    stack_factory: Any,
) -> None:
    """Malware in the browser raises the amount in the authorization request: the person
    approves what they are shown, and the app, comparing the id_token's
    authorization_details with its own transfer, executes nothing."""
    async with gateway(stack_factory) as (stack, app), chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, stack, app)

        async def raise_amount(route: Route) -> None:
            # The app's redirect to /authorize, rewritten before the browser follows it.
            response = await route.fetch(max_redirects=0)
            parts = urlsplit(response.headers["location"])
            query = dict(parse_qsl(parts.query))
            details = json.loads(query["authorization_details"])
            details[0]["instructedAmount"]["amount"] = "9999.00"
            query["authorization_details"] = json.dumps(details)
            location = urlunsplit(parts._replace(query=urlencode(query)))
            await route.fulfill(
                response=response, headers={**response.headers, "location": location}
            )

        await page.route(f"{app.url}/transfer", raise_amount)
        await page.locator("button[data-transfer]").click()
        await page.wait_for_url(f"{stack.issuer}/challenge/*", timeout=10000)
        item = page.locator('#authorization-details li[data-type="payment_initiation"]')
        assert await item.inner_text() == "Pay 9999.00 EUR to ACME Ltd (•••• 3000)"
        await face_check(page, stack, "SUCCESS")
        await page.wait_for_url(f"{app.url}/transfer/complete", timeout=15000)
        refused = await page.locator("[data-refused]").inner_text()
        assert refused == "The face check approved something other than this transfer.", app.log()
        assert await executed_txns(page, app) == []


@pytest.mark.slow
async def test_transfer_is_refused_without_the_step_up_coming_back(stack_factory: Any) -> None:
    """The app's own check: the sign-in's id_token approved no transfer, so going straight to
    the completion page (the step-up abandoned on our page) executes nothing."""
    async with gateway(stack_factory) as (stack, app), chromium() as browser:
        page = await browser.new_page()
        await sign_in(page, stack, app)
        await start_transfer(page, stack)
        await page.goto(f"{app.url}/transfer/complete")
        refused = await page.locator("[data-refused]").inner_text()
        assert refused == "The face check approved something other than this transfer.", app.log()
        assert await executed_txns(page, app) == []


def _guide_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(), flags=re.S)


def _app_part(name: str) -> str:
    found = re.search(rf"// guide:{name} start\n(.*?)// guide:{name} end\n", APP.read_text(), re.S)
    assert found, f"express_app.mjs has no guide:{name} part"
    return found.group(1)


@pytest.mark.parametrize("part", ["config", "stepup", "errors"])
def test_guide_shows_the_tested_configuration(part: str) -> None:
    assert _app_part(part) in _guide_blocks("js"), f"update the guide's {part} block"


def test_guide_shows_the_provider_client_entry() -> None:
    blocks = _guide_blocks("yaml")
    assert blocks, "the guide shows the provider's client entry as YAML"
    entry = yaml.safe_load(blocks[0])["clients"][0]
    assert entry == app_client("https://app.example.com") | {
        "client_secret": "${APP_CLIENT_SECRET}"
    }


def test_guide_names_the_tested_library_versions() -> None:
    package = json.loads((INTEROP / "package.json").read_text())["dependencies"]
    guide = GUIDE.read_text()
    assert f"`express-openid-connect@{package['express-openid-connect']}`" in guide
    assert f"`express@{package['express']}`" in guide
