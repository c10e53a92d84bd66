"""Click-to-RP latency: from "Approve" in the iDenfy iframe to the RP's callback page loaded.

The set-up of the browser tests (tests/e2e): a real redis-server, the provider, the iDenfy
simulator and the demo bank on three loopback origins, Debian's Chromium driven by Playwright.
Each run uses a fresh browser context (no cookies), goes bank → challenge page, then times the
click on the simulator's approve button until the bank's callback page has fired ``load``.

    .venv/bin/python bench/click_to_rp.py --runs 20

Prints JSON: median/p90/max in milliseconds, plus the part spent before our page asked for
its finish URL (the webhook and the push channel) and after it (finish → code → the RP's
token exchange and its page). Not a test: no thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (ROOT, ROOT / "plugin"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from playwright.async_api import Browser, Request  # noqa: E402
from tests.e2e.browser import chromium  # noqa: E402
from tests.harness.redis import RedisProcess  # noqa: E402
from tests.harness.servers import Stack, free_socket, serve_in_loop, start_stack  # noqa: E402
from tests.harness.settings import DEMO_AUTHORIZATION_DETAILS, DEMO_DETAIL_TYPES  # noqa: E402

from idenfy_stepup.demo.app import create_demo_app  # noqa: E402

RP_SECRET = "bench-rp-secret-0123456789-0123456789-ab"


async def one_run(browser: Browser, stack: Stack, rp: str) -> tuple[float, float]:
    """(click → RP loaded, click → our page requests its finish URL), in milliseconds."""
    context = await browser.new_context()
    try:
        page = await context.new_page()
        left_at: list[float] = []

        def on_request(request: Request) -> None:
            if request.is_navigation_request() and request.url.endswith("/finish"):
                left_at.append(time.perf_counter())

        page.on("request", on_request)
        await page.goto(rp)
        await page.click('[data-action="confirm-transfer"]')
        await page.wait_for_url(f"{stack.issuer}/challenge/*")
        approve = page.frame_locator("#idenfy-iframe").locator('button[data-outcome="SUCCESS"]')
        await approve.wait_for()
        # The page's push stream must be open, as it is for a person who looks at the camera
        # for a few seconds: wait until challenge.js has marked "Continue" as the quiet fallback.
        await page.locator("#challenge-continue.is-quiet").wait_for()
        start = time.perf_counter()
        await approve.click()
        await page.wait_for_url(f"{rp}/callback*", wait_until="load", timeout=15000)
        end = time.perf_counter()
        result = await page.locator("main[data-result]").get_attribute("data-result")
        if result != "success":
            raise RuntimeError(f"run ended with {result!r} at {page.url}")
        left = left_at[0] if left_at else end
        return (end - start) * 1000, (left - start) * 1000
    finally:
        await context.close()


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p90 = ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(p90, 1),
        "max_ms": round(ordered[-1], 1),
        "min_ms": round(ordered[0], 1),
    }


async def bench(runs: int, warmup: int) -> dict[str, Any]:
    redis = RedisProcess()
    await asyncio.to_thread(redis.start)
    servers: list[Any] = []
    stack: Stack | None = None
    try:
        sock = free_socket()
        rp = f"http://127.0.0.1:{sock.getsockname()[1]}"
        client = {
            "client_id": "northwind-bank",
            "name": "Northwind Bank",
            "client_secret": RP_SECRET,
            "redirect_uris": [f"{rp}/callback"],
            "subject_hints": ["login_hint"],
            "authorization_details_types": DEMO_DETAIL_TYPES,
        }
        settings = {"clients": [client], "authorization_details": DEMO_AUTHORIZATION_DETAILS}
        stack = await start_stack(redis.url, settings=settings)
        app = create_demo_app(
            issuer=stack.issuer,
            client_id="northwind-bank",
            client_secret=RP_SECRET,
            redirect_uri=f"{rp}/callback",
            session_secret=secrets.token_urlsafe(32),
        )
        servers.append(await serve_in_loop(app, sock))
        total: list[float] = []
        to_finish: list[float] = []
        async with chromium() as browser:
            for _ in range(warmup):
                await one_run(browser, stack, rp)
            for _ in range(runs):
                whole, before_finish = await one_run(browser, stack, rp)
                total.append(whole)
                to_finish.append(before_finish)
        after_finish = [t - f for t, f in zip(total, to_finish, strict=True)]
        return {
            "runs": runs,
            "warmup_runs": warmup,
            "click_to_rp_loaded": summary(total),
            "click_to_finish_request": summary(to_finish),
            "finish_request_to_rp_loaded": summary(after_finish),
            "samples_ms": [round(t, 1) for t in total],
        }
    finally:
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*(task for _, task in servers), return_exceptions=True)
        if stack is not None:
            await stack.stop()
        await asyncio.to_thread(redis.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=1, help="runs not counted (first JWKS etc.)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(json.dumps(asyncio.run(bench(args.runs, args.warmup)), indent=2))


if __name__ == "__main__":
    main()
