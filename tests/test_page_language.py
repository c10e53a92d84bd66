"""The pages' language over real HTTP, with the iDenfy simulator: the session iDenfy creates
gets the challenge's language as its ``locale`` (ui_locales first, then Accept-Language), the
retry's new session too, and the error the RP receives stays English (docs/translations.md)."""

from __future__ import annotations

import pytest

from idenfy_stepup.stepup.outcomes import DEFAULTS

from .harness.rp import authorize, challenge, query
from .harness.servers import Stack
from .harness.vendor import simulator_session
from .test_retry import failed, next_token, retry

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_the_simulator_session_gets_the_ui_locales_language_and_a_retry_keeps_it(
    stack: Stack,
) -> None:
    attempt = await challenge(stack, ui_locales="pt-BR de-CH fr")
    assert (await simulator_session(stack, attempt.token))["locale"] == "de"
    page = await failed(stack, attempt, "FACE_TOO_SMALL")
    assert '<html lang="de">' in page.text and "Halten Sie die Kamera etwas näher." in page.text
    second = next_token(await retry(attempt))
    assert (await simulator_session(stack, second))["locale"] == "de"


async def test_accept_language_picks_the_simulator_sessions_locale(stack: Stack) -> None:
    flow = await challenge(stack)  # no preference: English
    assert (await simulator_session(stack, flow.token))["locale"] == "en"
    browser = stack.browser()
    browser.headers["Accept-Language"] = "lt-LT, en;q=0.3"
    flow = await authorize(stack, browser=browser, login_hint="alice")
    await flow.show_challenge()
    assert (await simulator_session(stack, flow.token))["locale"] == "lt"


async def test_the_rp_error_stays_english_whatever_the_pages_language(stack: Stack) -> None:
    attempt = await challenge(stack, ui_locales="lt")
    assert (await simulator_session(stack, attempt.token))["locale"] == "lt"
    page = await attempt.browser.get(f"/challenge/{attempt.token}")
    assert '<html lang="lt">' in page.text
    await stack.outcome(attempt.token, "CANCELED")
    result = query(
        (await attempt.browser.get(f"/challenge/{attempt.token}/finish")).headers["location"]
    )
    assert result["error_description"] == DEFAULTS["CANCELED"].description
    assert result["error_description"].isascii()
