"""A re-branded challenge page in Chromium: the example branding folder (examples/branding: the
operator's base.html, stylesheet and logo) over our pages still completes a step-up, under our
Content-Security-Policy, with no console error, warning or policy violation.

``STEPUP_SCREENSHOTS=docs/img`` saves the picture docs/branding.md shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from .test_challenge_page import (
    WAITING,
    Sites,
    Watch,
    check_accessible,
    iframe_button,
    our_headers,
    shot,
    status_text,
)

# Each test closes the browser contexts it opened (tests/e2e/conftest.py).
pytestmark = [
    pytest.mark.slow,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.usefixtures("close_contexts"),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "branding"
BRAND = {
    "templates_dir": str(EXAMPLE / "templates"),
    "static_dir": str(EXAMPLE / "static"),
    "site_name": "Northwind Bank",
    "logo": "northwind-logo.svg",
}
NORTHWIND_GREEN = "rgb(15, 92, 74)"  # --brand in examples/branding/static/northwind.css
# Every violation of the page's policy, as a console error the watch sees (Chromium logs most
# of them itself; this makes it explicit for all).
REPORT_CSP = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
});
"""


async def branded_page(sites: Sites, ui: dict[str, str]) -> tuple[Any, Page, Watch]:
    site = await sites.get(ui=ui)
    page, watch = await site.new_page(viewport={"width": 900, "height": 900})
    await page.add_init_script(REPORT_CSP)
    return site, page, watch


async def test_rebranded_challenge_page_still_completes_a_step_up(sites: Sites) -> None:
    s, page, watch = await branded_page(sites, BRAND)
    token, response = await s.to_challenge(page)
    await our_headers(response)  # the same policy over the operator's pages
    # The operator's layout, stylesheet and logo …
    assert await page.title() == "Confirm it's you · Northwind Bank"
    logo = page.locator("header img.site-logo")
    assert await logo.get_attribute("alt") == "Northwind Bank"
    assert await logo.evaluate("(img) => img.complete && img.naturalWidth > 0")
    header = page.locator("header.site-header")
    assert await header.evaluate("(el) => getComputedStyle(el).backgroundColor") == NORTHWIND_GREEN
    assert await page.locator("footer.northwind-footer").count() == 1
    # … around our page and its script, which found its hooks: it set the status text.
    assert await page.locator("#idenfy-iframe").count() == 1
    assert await status_text(page) == WAITING
    await check_accessible(page)  # the layout kept the language, one h1, named controls
    await shot(page, "branded-challenge")
    await iframe_button(page, "SUCCESS").click()
    assert await s.at_rp(page) == {"result": "success"}
    assert await s.state(token) == "CONSUMED"
    assert watch.problems == []


async def test_rebranded_retry_and_cancel_controls_still_work(sites: Sites) -> None:
    s, page, watch = await branded_page(sites, BRAND)
    await s.to_challenge(page)
    await iframe_button(page, "FAILED", "FACE_TOO_SMALL").click()
    retry = page.locator('[data-action="retry"]')
    await retry.wait_for(timeout=15000)
    assert await page.locator("footer.northwind-footer").count() == 1  # the brand's layout
    await retry.click()
    await page.wait_for_url(f"{s.stack.issuer}/challenge/*")
    await iframe_button(page, "SUCCESS").wait_for()
    await page.click('[data-action="cancel"]')
    assert await s.at_rp(page) == {
        "result": "error",
        "error": "access_denied",
        "stepup-error": "user_canceled",
    }
    assert watch.problems == []


async def test_an_inline_style_in_an_override_is_blocked_and_reported(
    sites: Sites, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What the watch above would see if the example broke the policy: it can fail."""
    folder = tmp_path_factory.mktemp("inline-style")
    layout = (EXAMPLE / "templates" / "base.html").read_text()
    (folder / "base.html").write_text(
        layout.replace('<body class="northwind">', '<body class="northwind" style="color: red">')
    )
    s, page, watch = await branded_page(sites, {**BRAND, "templates_dir": str(folder)})
    await s.to_challenge(page)
    assert await status_text(page) == WAITING
    assert any("style-src" in problem for problem in watch.problems), watch.problems
