"""A real SSO gateway: Apache httpd + Debian's mod_auth_openidc in front of a protected page.

Three origins, as in production: the gateway, the provider and the iDenfy simulator each
listen on their own loopback port. The gateway runs `GATEWAY_SNIPPET`, the configuration
docs/gateways/apache-mod-auth-openidc.md gives operators.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from idenfy_stepup.stepup.outcomes import DEFAULTS

from ..harness.servers import Stack, free_socket
from ..harness.settings import DEMO_AUTHORIZATION_DETAILS, DEMO_DETAIL_TYPES
from .apache import (
    GUIDE,
    GUIDE_VALUES,
    HINT_FROM_HEADER,
    MODULES,
    PAGE_PATH,
    STEPUP_ACR,
    Apache,
    gateway_client,
    new_passphrase,
    render_snippet,
    require_apache,
    running_apache,
)
from .browser import chromium

CLIENT_ID = "apache-gateway"
CLIENT_SECRET = "apache-gateway-secret-0123456789-abcdef"


@contextlib.asynccontextmanager
async def gateway(
    stack_factory: Any,
    *,
    iss_on_error: bool,
    hint_from_header: bool = False,
    details: str | None = None,
) -> AsyncIterator[tuple[Stack, Apache]]:
    with contextlib.closing(free_socket()) as sock:
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = gateway_client(CLIENT_ID, CLIENT_SECRET, url, iss_on_error=iss_on_error)
    settings: dict[str, Any] = {"clients": [client]}
    if details is not None:
        client["authorization_details_types"] = DEMO_DETAIL_TYPES
        settings["authorization_details"] = DEMO_AUTHORIZATION_DETAILS
    stack: Stack = await stack_factory(settings=settings)
    snippet = render_snippet(
        issuer=stack.issuer,
        gateway=url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        passphrase=new_passphrase(),
    )
    if hint_from_header:
        snippet = snippet.replace(*HINT_FROM_HEADER)
    if details is not None:
        snippet = snippet.replace(HINT_FROM_HEADER[0], f"{HINT_FROM_HEADER[0]}&{details}")
        snippet += PASS_ID_TOKEN
    async with running_apache(port, snippet) as apache:
        yield stack, apache


async def open_protected_page(page: Page, stack: Stack, apache: Apache) -> None:
    """The user asks the gateway for the protected page and lands on our challenge page.

    Where the browser ended up instead, with what it shows and what httpd logged, is the
    failure's message: a gateway that stops on its own error page says why only there.
    """
    await page.goto(f"{apache.url}{PAGE_PATH}", wait_until="commit", timeout=30000)
    try:
        await page.wait_for_url(
            f"{stack.issuer}/challenge/*", wait_until="domcontentloaded", timeout=30000
        )
    except PlaywrightTimeoutError:
        shown = await page.locator("body").inner_text(timeout=2000)
        raise AssertionError(
            f"the browser is at {page.url}, not the challenge page:\n{shown[:2000]}\n{apache.log()}"
        ) from None


@pytest.mark.slow
async def test_gateway_shows_protected_content_after_face_check(stack_factory: Any) -> None:
    async with gateway(stack_factory, iss_on_error=False) as (stack, apache), chromium() as browser:
        page = await browser.new_page()
        await open_protected_page(page, stack, apache)
        await page.frame_locator("#idenfy-iframe").locator('button[data-outcome="SUCCESS"]').click()
        # No click on our page: the push channel sends the browser back through the gateway.
        await page.wait_for_url(f"{apache.url}{PAGE_PATH}", timeout=15000)
        main = page.locator("main[data-protected]")
        assert await main.count() == 1, f"{await page.content()}\n{apache.log()}"
        # What mod_auth_openidc took from the id_token and passed to the application:
        claims = {
            name: await page.locator(f'[data-claim="{name}"]').inner_text()
            for name in ("sub", "acr", "amr", "auth_time", "iss")
        }
        assert claims["sub"] == "alice"
        assert claims["acr"] == STEPUP_ACR
        assert claims["amr"] == "face"
        assert claims["auth_time"].isdigit()
        assert claims["iss"] == stack.issuer
        # The session holds: a second visit does not step up again.
        await page.goto(f"{apache.url}{PAGE_PATH}")
        assert page.url == f"{apache.url}{PAGE_PATH}"
        assert await page.locator('[data-claim="sub"]').inner_text() == "alice"


ADMIN = {"type": "admin_action", "action": "delete_user", "target": "bob"}
# The guide's addition for transaction-bound step-ups (docs/transactions.md): the id_token's
# payload as JSON beside the claims, since an array of objects is not passed as a claim.
PASS_ID_TOKEN = "OIDCPassIDTokenAs claims payload\n"


@pytest.mark.slow
async def test_gateway_passes_txn_and_authorization_details_on_as_claims(
    stack_factory: Any,
) -> None:
    """A gateway that only sees the id_token forwards what was approved: mod_auth_openidc
    passes txn as a claim (OIDC_CLAIM_txn) and the whole payload, authorization_details
    included, as OIDC_id_token_payload."""
    param = "authorization_details=" + quote(json.dumps([ADMIN], separators=(",", ":")))
    async with (
        gateway(stack_factory, iss_on_error=False, details=param) as (stack, apache),
        chromium() as browser,
    ):
        page = await browser.new_page()
        await open_protected_page(page, stack, apache)
        item = page.locator('#authorization-details li[data-type="admin_action"]')
        assert await item.inner_text() == "Delete user bob", apache.log()
        await page.frame_locator("#idenfy-iframe").locator('button[data-outcome="SUCCESS"]').click()
        await page.wait_for_url(f"{apache.url}{PAGE_PATH}", timeout=15000)
        txn = await page.locator('[data-claim="txn"]').inner_text()
        payload = json.loads(await page.locator("[data-id-token-payload]").inner_text())
        assert len(txn) >= 16 and payload["txn"] == txn
        # mod_auth_openidc 2.4 passes no array of objects as a claim (it logs "unhandled
        # in-array JSON object type"): the application reads them from the id_token's payload.
        assert payload["authorization_details"] == [ADMIN]


@pytest.mark.slow
async def test_gateway_takes_the_user_from_a_request_header(stack_factory: Any) -> None:
    """The guide's production variant: `login_hint` is an Apache expression (2.4.11.2+)."""
    async with (
        gateway(stack_factory, iss_on_error=False, hint_from_header=True) as (stack, apache),
        chromium() as browser,
    ):
        page = await browser.new_page(extra_http_headers={"X-Stepup-User": "mallory"})
        await page.goto(f"{apache.url}{PAGE_PATH}")
        # The provider's directory has no mallory: the hint reached the provider.
        text = await page.locator("body").inner_text()
        assert "stepup_error=not_enrolled" in page.url, f"{page.url}\n{text}\n{apache.log()}"
        assert "unmet_authentication_requirements" in text, text
        await page.set_extra_http_headers({"X-Stepup-User": "alice"})
        await open_protected_page(page, stack, apache)
        await page.frame_locator("#idenfy-iframe").locator('button[data-outcome="SUCCESS"]').click()
        await page.wait_for_url(f"{apache.url}{PAGE_PATH}", timeout=15000)
        assert await page.locator('[data-claim="sub"]').inner_text() == "alice"


@pytest.mark.slow
async def test_gateway_error_page_shows_face_mismatch(stack_factory: Any) -> None:
    async with gateway(stack_factory, iss_on_error=False) as (stack, apache), chromium() as browser:
        page = await browser.new_page()
        await open_protected_page(page, stack, apache)
        frame = page.frame_locator("#idenfy-iframe")
        await frame.locator('button[data-fail-reason="FACE_MISMATCH"]').click()
        await page.wait_for_url(f"{apache.url}/protected/redirect_uri?*", timeout=15000)
        text = await page.locator("body").inner_text()
        assert "OpenID Connect Provider error: access_denied" in text, f"{text}\n{apache.log()}"
        assert DEFAULTS["FACE_MISMATCH"].description in text, text
        assert "target_link_uri" not in text
        assert await page.locator("main[data-protected]").count() == 0


@pytest.mark.slow
async def test_gateway_misreads_iss_on_error_responses(stack_factory: Any) -> None:
    """Why the guide sets `iss_on_error: false`: mod_auth_openidc 2.4.x takes a redirect with
    `iss` and no `code` for a discovery response and never shows the provider's error."""
    async with gateway(stack_factory, iss_on_error=True) as (stack, apache), chromium() as browser:
        page = await browser.new_page()
        await open_protected_page(page, stack, apache)
        frame = page.frame_locator("#idenfy-iframe")
        await frame.locator('button[data-fail-reason="FACE_MISMATCH"]').click()
        await page.wait_for_url(f"{apache.url}/protected/redirect_uri?*", timeout=15000)
        assert "iss=" in page.url
        text = await page.locator("body").inner_text()
        assert "access_denied" not in text, text
        assert "target_link_uri" in text, f"{text}\n{apache.log()}"


def test_guide_shows_the_tested_configuration() -> None:
    guide = GUIDE.read_text()
    assert render_snippet(**GUIDE_VALUES) in guide, "update the snippet in the guide"
    assert f'OIDCPathAuthRequestParams "acr_values={STEPUP_ACR}&{HINT_FROM_HEADER[1]}"' in guide
    blocks = re.findall(r"```yaml\n(.*?)```", guide, flags=re.S)
    assert blocks, "the guide shows the provider's client entry as YAML"
    entry = yaml.safe_load(blocks[0])["clients"][0]
    expected = gateway_client(
        GUIDE_VALUES["client_id"],
        GUIDE_VALUES["client_secret"],
        GUIDE_VALUES["gateway"],
        iss_on_error=False,
    )
    assert entry == expected


def test_the_tested_mod_auth_openidc_cannot_push_authorization_requests() -> None:
    """What the guide says about PAR, read from the module binary: its authentication request
    method is GET or POST, and it knows no pushed_authorization_request_endpoint."""
    require_apache()
    binary = (MODULES / "mod_auth_openidc.so").read_bytes()
    method = b"HTTP method used to send the authentication request to the provider (GET or POST)."
    assert method in binary
    assert b"pushed_authorization_request_endpoint" not in binary
    guide = GUIDE.read_text()
    assert "## 5. Pushed authorization requests: not with this version" in guide
    assert method.decode() in guide
