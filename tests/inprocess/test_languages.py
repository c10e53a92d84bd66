"""The pages' language, end to end in process: ui_locales, then Accept-Language, chooses the
language of every page and the ``locale`` iDenfy gets; the challenge keeps it (a retry too);
discovery lists the offered ones. With neither, everything stays English.

Each page kind is rendered in each shipped language and checked for English left over: no
source text whose translation differs may appear on the page (docs/translations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from idenfy_stepup.app import create_app
from idenfy_stepup.i18n import SHIPPED
from idenfy_stepup.i18n.catalogues import TEMPLATE, read_catalogue, translations
from idenfy_stepup.idenfy.transport import VendorRequest, VendorResponse
from idenfy_stepup.settings import Settings, parse_settings
from idenfy_stepup.stepup.outcomes import DEFAULTS

from ..harness.fake_vendor import FakeIdenfy, live_mode
from ..harness.redis import RedisProcess, stored_request
from ..harness.rp import challenge_token, query, request_params
from ..harness.settings import CLIENT_SECRET, TEST_ENCRYPTION_KEY, base_settings, merge
from .conftest import PORT
from .test_endpoints import start, webhook

LANGUAGES = [lang for lang in SHIPPED if lang != "en"]
SOURCES = [m for m in read_catalogue(TEMPLATE) if m.id]
PLACEHOLDER = re.compile(r"%\(\w+\)s")


def english_left(page: str, language: str) -> list[str]:
    """The English source texts (their literal parts around placeholders) still on a page in
    ``language``: every one whose translation differs must be gone."""
    shown = html.unescape(page)
    gettext = translations(language)
    left = []
    for message in SOURCES:
        if isinstance(message.id, str):
            pairs = [(message.id, gettext.gettext(message.id))]
        else:
            singular, plural = message.id
            pairs = [
                (singular, gettext.ngettext(singular, plural, 1)),
                (plural, gettext.ngettext(singular, plural, 2)),
            ]
        for source, translated in pairs:
            if translated == source:
                continue
            for chunk in PLACEHOLDER.split(source):
                chunk = chunk.strip(" .")
                if len(chunk) >= 4 and re.search(rf"(?<!\w){re.escape(chunk)}(?!\w)", shown):
                    left.append(chunk)
    return left


def assert_page_in(page: httpx.Response, language: str, *texts: str) -> None:
    """The page says it is in ``language``, shows ``texts`` (English sources) translated, and
    has no English left."""
    assert page.headers["content-type"].startswith("text/html")
    assert f'<html lang="{language}">' in page.text
    gettext = translations(language)
    shown = html.unescape(page.text)
    for text in texts:
        assert gettext.gettext(text) != text, text
        assert gettext.gettext(text).rstrip(".") in shown, (language, text)
    assert english_left(page.text, language) == []


async def redeem(client: httpx.AsyncClient, code: str, verifier: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request_params(None)["redirect_uri"],
        "code_verifier": verifier,
    }
    return await client.post("/token", data=form, auth=("shop", CLIENT_SECRET))


# -- every page, in every language ---------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_challenge_page_is_in_the_ui_locales_language(
    client: httpx.AsyncClient, language: str
) -> None:
    response, _, _ = await start(client, ui_locales=language)
    page = await client.get(f"/challenge/{challenge_token(response)}")
    assert page.status_code == 200
    assert_page_in(page, language, "Confirm it's you", "Cancel", "Waiting for the face check…")
    # The script's status texts, for challenge.js (which falls back to English without them).
    gettext = translations(language).gettext
    for key, text in {
        "waiting": "Waiting for the face check…",
        "approved": "Checking your result…",
        "failed": "The check did not pass. Waiting for the result…",
        "done": "Done. Taking you back…",
    }.items():
        assert f'data-text-{key}="{html.escape(gettext(text))}"' in page.text


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_retry_page_and_its_hint_are_in_the_challenges_language(
    client: httpx.AsyncClient, vendor: FakeIdenfy, language: str
) -> None:
    response, _, _ = await start(client, ui_locales=language)
    token = challenge_token(response)
    await client.get(f"/challenge/{token}")
    await webhook(client, vendor, token, "FAILED", fail_reason="FACE_NOT_FOUND")
    page = await client.get(f"/challenge/{token}/finish")
    assert page.status_code == 200
    row = DEFAULTS["FACE_NOT_FOUND"]
    assert_page_in(page, language, "Try again", row.hint, row.description)
    left = translations(language).ngettext("%(num)s attempt left", "%(num)s attempts left", 2)
    assert left % {"num": 2} in page.text


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_challenges_own_error_pages_are_in_its_language(
    client: httpx.AsyncClient, vendor: FakeIdenfy, language: str
) -> None:
    header = {"Accept-Language": f"{language}-XX, en;q=0.5"}
    gone = await client.get("/challenge/NoSuchToken0123456789", headers=header)
    assert gone.status_code == 410
    assert_page_in(gone, language, DEFAULTS["CHALLENGE_GONE"].hint)

    response, _, verifier = await start(client, ui_locales=language)
    token = challenge_token(response)
    await client.get(f"/challenge/{token}")
    await webhook(client, vendor, token, "SUCCESS")
    code = query((await client.get(f"/challenge/{token}/finish")).headers["location"])["code"]
    assert (await redeem(client, code, verifier)).status_code == 200
    done = await client.get(f"/challenge/{token}/finish")  # no Accept-Language: stored one
    assert done.status_code == 410
    assert_page_in(done, language, DEFAULTS["CHALLENGE_CONSUMED"].hint)

    client.cookies.clear()  # another browser
    forbidden = await client.get(f"/challenge/{token}/finish", headers=header)
    assert forbidden.status_code == 403
    assert_page_in(forbidden, language, DEFAULTS["WRONG_BROWSER"].hint)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_pages_before_the_client_is_validated_use_the_query_or_the_browser(
    client: httpx.AsyncClient, language: str
) -> None:
    unknown, _, _ = await start(client, client_id="nobody", ui_locales=f"sv {language}")
    assert unknown.status_code == 400
    assert_page_in(unknown, language, "This request cannot be processed")

    repeated = await client.get(
        "/authorize", params=[("client_id", "a"), ("client_id", "b"), ("ui_locales", language)]
    )
    assert repeated.status_code == 400
    assert_page_in(repeated, language, "Bad request", DEFAULTS["INVALID_REQUEST"].description)

    header = {"Accept-Language": language}
    unreadable = await client.get("/authorize?client_id=%ff", headers=header)
    assert unreadable.status_code == 400
    assert_page_in(unreadable, language, "Bad request")

    missing = await client.get(f"/nowhere?ui_locales={language}")
    assert missing.status_code == 404
    assert_page_in(missing, language, "Not found")

    wrong_method = await client.post("/jwks", headers={**header, "Accept": "text/html"})
    assert wrong_method.status_code == 405
    assert_page_in(wrong_method, language, "Method not allowed")


def settings_with(redis_url: str, extra: dict[str, Any]) -> Settings:
    """The ``settings`` fixture's settings with ``extra`` laid over them."""
    live = {**live_mode(), "keys": {"encryption_key": TEST_ENCRYPTION_KEY}}
    return parse_settings(merge(merge(base_settings(PORT, PORT + 1, redis_url), live), extra))


@contextlib.asynccontextmanager
async def browser_on(settings: Settings, vendor: FakeIdenfy) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, vendor_fetch=vendor.fetch)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=settings.issuer) as browser,
    ):
        yield browser


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_rate_limit_page_is_in_the_browsers_language(
    redis_url: str, vendor: FakeIdenfy, language: str
) -> None:
    limits = {"challenge": {"limits": {"failures_per_ip": {"count": 1, "seconds": 600}}}}
    limited = settings_with(redis_url, limits)
    async with browser_on(limited, vendor) as browser:
        await browser.get("/authorize?client_id=nobody")  # one failure: the budget
        page = await browser.get(
            "/authorize?client_id=nobody", headers={"Accept-Language": language}
        )
    assert page.status_code == 429
    assert_page_in(page, language, "Too many requests", DEFAULTS["RATE_LIMITED"].hint)


# -- what is stored, what the vendor gets, what discovery says ---------------------------------


async def test_ui_locales_wins_over_accept_language_and_is_kept_for_the_vendor_and_the_record(
    client: httpx.AsyncClient, vendor: FakeIdenfy, redis_url: str
) -> None:
    response, _, _ = await start(client, ui_locales="sv lt-LT de")
    token = challenge_token(response)
    assert vendor.sessions[token].locale == "lt"
    async with Redis.from_url(redis_url) as redis:
        stored = json.loads(await stored_request(redis, token))
    assert stored["l"] == "lt"
    page = await client.get(f"/challenge/{token}", headers={"Accept-Language": "de"})
    assert '<html lang="lt">' in page.text  # the challenge's language, not this request's


async def test_a_repeated_ui_locales_is_refused_as_invalid_request(
    client: httpx.AsyncClient, vendor: FakeIdenfy
) -> None:
    sent = list(request_params("x" * 43, login_hint="alice").items())
    response = await client.get(
        "/authorize", params=[*sent, ("ui_locales", "de"), ("ui_locales", "fr")]
    )
    assert response.status_code == 303
    result = query(response.headers["location"])
    assert (result["error"], result["stepup_error"]) == ("invalid_request", "invalid_request")
    assert result["state"] == dict(sent)["state"]
    assert vendor.sessions == {}


async def test_accept_language_chooses_when_there_is_no_ui_locales(
    client: httpx.AsyncClient, vendor: FakeIdenfy
) -> None:
    response = await client.get(
        "/authorize",
        params=request_params("x" * 43, login_hint="alice"),
        headers={"Accept-Language": "fr-CH, de;q=0.8"},
    )
    token = challenge_token(response)
    assert vendor.sessions[token].locale == "fr"
    assert '<html lang="fr">' in (await client.get(f"/challenge/{token}")).text


async def test_without_any_preference_the_pages_and_the_vendor_get_the_default(
    client: httpx.AsyncClient, vendor: FakeIdenfy
) -> None:
    response, _, _ = await start(client)
    token = challenge_token(response)
    assert vendor.sessions[token].locale == "en"
    page = await client.get(f"/challenge/{token}")
    assert '<html lang="en">' in page.text and "Confirm it's you" in page.text


async def test_a_retry_keeps_the_language_for_the_new_vendor_session(
    client: httpx.AsyncClient, vendor: FakeIdenfy, redis_url: str
) -> None:
    response, _, _ = await start(client, ui_locales="es")
    token = challenge_token(response)
    await client.get(f"/challenge/{token}")
    await webhook(client, vendor, token, "FAILED", fail_reason="EYES_CLOSED")
    await client.get(f"/challenge/{token}/finish")
    retried = await client.post(f"/challenge/{token}/retry", headers={"Accept-Language": "de"})
    assert retried.status_code == 303
    next_token = retried.headers["location"].rsplit("/", 1)[1]
    assert next_token != token
    assert vendor.sessions[next_token].locale == "es"
    async with Redis.from_url(redis_url) as redis:
        assert json.loads(await stored_request(redis, next_token))["l"] == "es"
    page = await client.get(f"/challenge/{next_token}")
    assert '<html lang="es">' in page.text


async def test_idenfy_locale_forces_the_vendors_language_only(
    redis_url: str, vendor: FakeIdenfy
) -> None:
    forced = settings_with(redis_url, {"idenfy": {"locale": "lt"}})
    async with browser_on(forced, vendor) as browser:
        response, _, _ = await start(browser, ui_locales="de")
        token = challenge_token(response)
        page = await browser.get(f"/challenge/{token}")
    assert vendor.sessions[token].locale == "lt"
    assert '<html lang="de">' in page.text


async def test_only_the_offered_languages_are_chosen_and_advertised(
    redis_url: str, vendor: FakeIdenfy
) -> None:
    ui: dict[str, Any] = {"ui": {"languages": ["lt", "en"], "default_language": "lt"}}
    offered = settings_with(redis_url, ui)
    async with browser_on(offered, vendor) as browser:
        document = (await browser.get("/.well-known/openid-configuration")).json()
        response, _, _ = await start(browser, ui_locales="de fr")
        token = challenge_token(response)
        page = await browser.get(f"/challenge/{token}")
    assert document["ui_locales_supported"] == ["lt", "en"]
    assert vendor.sessions[token].locale == "lt"  # neither de nor fr: the default
    assert '<html lang="lt">' in page.text


async def test_discovery_lists_every_shipped_language_by_default(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["ui_locales_supported"] == ["en", "de", "fr", "es", "lt"]


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        (";;;,,,q=", "en"),
        ("de;q=nope", "en"),
        ("\u00e9\u00e8", "en"),
        ("x" * 20_000, "en"),
        (",".join(["de-CH"] * 3000), "de"),
    ],
)
async def test_malformed_or_huge_language_headers_never_fail_a_request(
    client: httpx.AsyncClient, vendor: FakeIdenfy, header: str, chosen: str
) -> None:
    raw = {"Accept-Language": header.encode("utf-8")}  # bytes: non-ASCII goes out as sent
    params = request_params("x" * 43, login_hint="alice", ui_locales=header)
    response = await client.get("/authorize", params=params, headers=raw)
    assert response.status_code == 303
    assert vendor.sessions[challenge_token(response)].locale == chosen
    page = await client.get("/challenge/NoSuchToken0123456789", headers=raw)
    assert page.status_code == 410 and f'<html lang="{chosen}">' in page.text


async def test_an_operators_hint_is_shown_as_given_in_every_language(
    redis_url: str, vendor: FakeIdenfy
) -> None:
    text = "Bitte wenden Sie sich an den Helpdesk."
    override = {"errors": {"CHALLENGE_GONE": {"hint": text}}}
    custom = settings_with(redis_url, override)
    async with browser_on(custom, vendor) as browser:
        page = await browser.get(
            "/challenge/NoSuchToken0123456789", headers={"Accept-Language": "fr"}
        )
    assert page.status_code == 410
    assert '<html lang="fr">' in page.text and text in page.text


async def test_the_store_down_page_is_in_the_browsers_language(
    own_redis: RedisProcess, vendor: FakeIdenfy
) -> None:
    async with browser_on(settings_with(own_redis.url, {}), vendor) as browser:
        own_redis.stop()
        for language in LANGUAGES:
            header = {"Accept-Language": language}
            page = await browser.get("/challenge/NoSuchToken0123456789", headers=header)
            assert page.status_code == 503
            hint = DEFAULTS["STORE_UNAVAILABLE"].hint
            assert_page_in(page, language, "Temporarily unavailable", hint)


class HeldVendor(FakeIdenfy):
    """The fake vendor, holding each session creation until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def fetch(self, request: VendorRequest) -> VendorResponse:
        if request.method == "POST" and self.sessions:  # the retry's session, not the first
            self.holding.set()
            await self.release.wait()
        return self.handle(request)


@pytest.mark.parametrize("language", LANGUAGES)
async def test_the_page_shown_while_a_retry_starts_is_in_the_challenges_language(
    redis_url: str, language: str
) -> None:
    vendor = HeldVendor()
    async with browser_on(settings_with(redis_url, {}), vendor) as browser:
        response, _, _ = await start(browser, ui_locales=language)
        token = challenge_token(response)
        await browser.get(f"/challenge/{token}")
        await webhook(browser, vendor, token, "FAILED", fail_reason="FACE_TOO_CLOSE")
        await browser.get(f"/challenge/{token}/finish")
        retrying = asyncio.create_task(browser.post(f"/challenge/{token}/retry"))
        await vendor.holding.wait()
        page = await browser.get(f"/challenge/{token}")
        vendor.release.set()
        assert (await retrying).status_code == 303
    assert page.status_code == 202
    assert_page_in(page, language, "Starting a new attempt", "This page reloads by itself.")
