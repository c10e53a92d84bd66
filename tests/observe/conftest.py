"""The observability tests' app: the in-process tier's, with settings of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from idenfy_stepup.app import create_app
from idenfy_stepup.settings import Settings, parse_settings

from ..harness.fake_vendor import FakeIdenfy, live_mode
from ..harness.settings import TEST_ENCRYPTION_KEY, base_settings, merge
from ..inprocess.conftest import PORT, redis_url  # noqa: F401  (the flushed session Redis)

Opened = tuple[httpx.AsyncClient, Starlette, Settings]
Open = Callable[..., AbstractAsyncContextManager[Opened]]


def settings_with(url: str, extra: dict[str, Any] | None = None) -> Settings:
    live = {**live_mode(), "keys": {"encryption_key": TEST_ENCRYPTION_KEY}}
    return parse_settings(merge(merge(base_settings(PORT, PORT + 1, url), live), extra or {}))


@pytest.fixture
def vendor() -> FakeIdenfy:
    return FakeIdenfy()


@pytest.fixture
def open_app(redis_url: str, vendor: FakeIdenfy) -> Open:  # noqa: F811
    """``async with open_app(settings_extra, **create_app_args) as (browser, app, settings)``."""

    @asynccontextmanager
    async def opened(extra: dict[str, Any] | None = None, **kwargs: Any) -> AsyncIterator[Opened]:
        settings = settings_with(redis_url, extra)
        app = create_app(settings, vendor_fetch=vendor.fetch, **kwargs)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url=settings.issuer) as browser,
        ):
            yield browser, app, settings

    return opened
