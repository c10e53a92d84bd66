"""The operator's brand as a browser sees it: their templates and static files first, ours for
whatever they lack, their site name and logo in every page's header and title, and nothing
outside the two static folders ever served."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from starlette.types import ASGIApp, Message, Scope

from idenfy_stepup.app import create_app
from idenfy_stepup.boot.runtime import STATIC, template_dir
from idenfy_stepup.settings import Settings, UiSettings

from ..harness.fake_vendor import FakeIdenfy
from ..harness.rp import challenge_token, pkce, request_params

OURS = "You can close this page and return to the application you came from."  # error.html


@contextlib.asynccontextmanager
async def provider(
    settings: Settings, vendor: FakeIdenfy, **ui: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, ASGIApp]]:
    """The app with ``ui`` settings, inside its lifespan, as the ``client`` fixture builds it,
    and a browser on it."""
    branded = settings.model_copy(update={"ui": UiSettings.model_validate(ui)})
    app = create_app(branded, vendor_fetch=vendor.fetch)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=settings.issuer) as browser,
    ):
        yield browser, app


async def challenge_page(browser: httpx.AsyncClient) -> httpx.Response:
    _, code_challenge = pkce()
    answer = await browser.get(
        "/authorize", params=request_params(code_challenge, login_hint="alice")
    )
    token = challenge_token(answer)
    assert token, (answer.status_code, answer.text)
    page = await browser.get(f"/challenge/{token}")
    assert page.status_code == 200
    return page


async def error_page(browser: httpx.AsyncClient) -> httpx.Response:
    page = await browser.get("/challenge/no-such-challenge")
    assert page.status_code == 410
    return page


# -- templates -----------------------------------------------------------------------------------


async def test_an_operator_page_replaces_ours_and_the_other_pages_stay_ours(
    tmp_path: Path, settings: Settings, vendor: FakeIdenfy
) -> None:
    ours = (template_dir() / "challenge.html").read_text()
    marked = ours.replace(
        '<h1>{{ _("Confirm it\'s you") }}</h1>', "<h1>Northwind needs a face check</h1>"
    )
    assert marked != ours
    (tmp_path / "challenge.html").write_text(marked)
    async with provider(settings, vendor, templates_dir=str(tmp_path)) as (browser, _):
        page = (await challenge_page(browser)).text
        assert "<h1>Northwind needs a face check</h1>" in page
        assert "<h1>Confirm it's you</h1>" not in page
        assert '<link rel="stylesheet" href="/static/stepup.css">' in page  # our base.html
        gone = (await error_page(browser)).text
        assert OURS in gone and "Northwind" not in gone


async def test_an_operator_layout_frames_every_page_including_ours(
    tmp_path: Path, settings: Settings, vendor: FakeIdenfy
) -> None:
    layout = (template_dir() / "base.html").read_text()
    (tmp_path / "base.html").write_text(
        layout.replace("<body>", '<body class="northwind"><p class="banner">Northwind</p>')
    )
    async with provider(settings, vendor, templates_dir=str(tmp_path)) as (browser, _):
        for page in (await challenge_page(browser), await error_page(browser)):
            assert '<body class="northwind"><p class="banner">Northwind</p>' in page.text
        assert 'id="idenfy-iframe"' in (await challenge_page(browser)).text  # our page inside


async def test_without_settings_the_pages_are_ours(settings: Settings, vendor: FakeIdenfy) -> None:
    async with provider(settings, vendor) as (browser, _):
        page = (await challenge_page(browser)).text
        assert "<title>Confirm it's you · Identity check</title>" in page
        assert '<p class="site-name">Identity check</p>' in page
        assert "<img" not in page


# -- site name and logo --------------------------------------------------------------------------


async def test_site_name_is_in_the_header_and_every_title(
    settings: Settings, vendor: FakeIdenfy
) -> None:
    async with provider(settings, vendor, site_name="Northwind <Bank> & Co") as (browser, _):
        escaped = "Northwind &lt;Bank&gt; &amp; Co"
        page = (await challenge_page(browser)).text
        assert f"<title>Confirm it's you · {escaped}</title>" in page
        assert f'<p class="site-name">{escaped}</p>' in page
        gone = (await error_page(browser)).text
        assert f" · {escaped}</title>" in gone and f'<p class="site-name">{escaped}</p>' in gone


async def test_logo_from_the_operator_folder_is_shown_with_the_site_name_as_alt_text(
    tmp_path: Path, settings: Settings, vendor: FakeIdenfy
) -> None:
    (tmp_path / "brand").mkdir()
    (tmp_path / "brand" / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    async with provider(
        settings, vendor, static_dir=str(tmp_path), logo="brand/logo.svg", site_name="Northwind"
    ) as (browser, _):
        page = (await challenge_page(browser)).text
        assert '<img class="site-logo" src="/static/brand/logo.svg" alt="Northwind">' in page
        assert "<title>Confirm it's you · Northwind</title>" in page
        logo = await browser.get("/static/brand/logo.svg")
        assert logo.status_code == 200
        assert logo.headers["content-type"] == "image/svg+xml"
        assert logo.text == '<svg xmlns="http://www.w3.org/2000/svg"/>'


# -- static files --------------------------------------------------------------------------------


async def test_operator_static_files_come_first_and_ours_fill_in(
    tmp_path: Path, settings: Settings, vendor: FakeIdenfy
) -> None:
    (tmp_path / "stepup.css").write_text("body { color: green; }")
    (tmp_path / "northwind.css").write_text(".banner { color: gold; }")
    async with provider(settings, vendor, static_dir=str(tmp_path)) as (browser, _):
        replaced = await browser.get("/static/stepup.css")
        assert replaced.status_code == 200 and replaced.text == "body { color: green; }"
        added = await browser.get("/static/northwind.css")
        assert added.status_code == 200 and added.text == ".banner { color: gold; }"
        assert added.headers["content-type"].startswith("text/css")
        ours = await browser.get("/static/challenge.js")
        assert ours.status_code == 200 and ours.text == (STATIC / "challenge.js").read_text()
        assert ours.headers["content-type"].startswith(
            ("text/javascript", "application/javascript")
        )
        # Caching as for our own files: validators, and 304 for a copy the browser has.
        etag = added.headers["etag"]
        assert "last-modified" in added.headers
        again = await browser.get("/static/northwind.css", headers={"if-none-match": etag})
        assert again.status_code == 304
        assert (await browser.get("/static/nothing-here.css")).status_code == 404


async def raw_get(app: ASGIApp, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as given: an HTTP client would remove the dot segments itself."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[Message] = []

    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> Message:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client stays: a response may listen for it leaving
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/brand/../../secret.txt",
    "/static/escape/secret.txt",  # a symbolic link out of the operator's folder
    "/static/escape.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/brand",  # a folder: never listed
    "/static/",
]


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_nothing_outside_the_static_folders_is_served(
    tmp_path: Path, settings: Settings, vendor: FakeIdenfy, path: str
) -> None:
    (tmp_path / "secret.txt").write_text("operator's secret")
    folder = tmp_path / "static"
    (folder / "brand").mkdir(parents=True)
    (folder / "brand" / "logo.svg").write_text("<svg/>")
    os.symlink(tmp_path, folder / "escape")
    os.symlink(tmp_path / "secret.txt", folder / "escape.txt")
    async with provider(settings, vendor, static_dir=str(folder)) as (browser, app):
        status, body = await raw_get(app, path)
        assert status == 404, (path, status)
        assert b"operator's secret" not in body and b"root:" not in body
        assert (await browser.get("/static/brand/logo.svg")).text == "<svg/>"  # still served
