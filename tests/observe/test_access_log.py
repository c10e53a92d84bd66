"""The access log: one line per request with the route template, never a token; the request
id honoured, generated and echoed; traceparent read strictly."""

from __future__ import annotations

import json
import logging
import re

import pytest

from idenfy_stepup.cli.logs import JsonFormatter, TextFormatter

from ..harness.fake_vendor import FakeIdenfy
from ..harness.rp import challenge_token, pkce, request_params
from .conftest import Open

HEX32 = re.compile(r"[0-9a-f]{32}")
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "idenfy_stepup.access"]


async def test_one_access_line_per_request_with_template_status_and_ids(
    open_app: Open, vendor: FakeIdenfy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "idenfy_stepup.access")
    async with open_app() as (browser, _, _):
        sent = request_params(pkce()[1], login_hint="alice")
        token = challenge_token(await browser.get("/authorize", params=sent))
        caplog.clear()
        page = await browser.get(
            f"/challenge/{token}?x={token}",
            headers={"x-request-id": "req-42.a:b", "traceparent": PARENT},
        )
    assert page.headers["x-request-id"] == "req-42.a:b"
    [line] = access_lines(caplog)
    fields = {k: getattr(line, k) for k in ("method", "route", "status", "request_id", "client")}
    assert fields == {
        "method": "GET",
        "route": "/challenge/{token}",
        "status": 200,
        "request_id": "req-42.a:b",
        "client": "127.0.0.1",
    }
    assert line.trace_id == TRACE  # type: ignore[attr-defined]
    assert line.duration_ms >= 0  # type: ignore[attr-defined]
    for formatter in (TextFormatter(), JsonFormatter()):
        text = formatter.format(line)
        assert token not in text and "alice" not in text, text
    assert json.loads(JsonFormatter().format(line))["route"] == "/challenge/{token}"


@pytest.mark.parametrize(
    "bad_id",
    ["", "has space", "x" * 129, "<script>", "-leading-dash", 'quote"d', "semi;colon"],
)
async def test_malformed_request_id_is_replaced_not_echoed(
    open_app: Open, caplog: pytest.LogCaptureFixture, bad_id: str
) -> None:
    caplog.set_level(logging.INFO, "idenfy_stepup.access")
    async with open_app() as (browser, _, _):
        answer = await browser.get("/jwks", headers={"x-request-id": bad_id})
    echoed = answer.headers["x-request-id"]
    assert echoed != bad_id and HEX32.fullmatch(echoed)
    [line] = access_lines(caplog)
    assert line.request_id == echoed  # type: ignore[attr-defined]


async def test_request_id_generated_when_absent_and_differs_per_request(
    open_app: Open, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_app() as (browser, _, _):
        first = (await browser.get("/healthz")).headers["x-request-id"]
        second = (await browser.get("/healthz")).headers["x-request-id"]
    assert HEX32.fullmatch(first) and HEX32.fullmatch(second) and first != second


@pytest.mark.parametrize(
    "bad",
    [
        f"00-{TRACE.upper()}-00f067aa0ba902b7-01",  # upper-case hex
        f"00-{'0' * 32}-00f067aa0ba902b7-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"01-{TRACE}-00f067aa0ba902b7-01",  # a version we do not read
        f"00-{TRACE}-00f067aa0ba902b7-01-extra",
        f"00-{TRACE[:-1]}-00f067aa0ba902b7-01",
    ],
)
async def test_malformed_traceparent_starts_a_new_trace(
    open_app: Open, caplog: pytest.LogCaptureFixture, bad: str
) -> None:
    caplog.set_level(logging.INFO, "idenfy_stepup.access")
    async with open_app() as (browser, _, _):
        answer = await browser.get("/jwks", headers={"traceparent": bad})
    assert "traceparent" not in answer.headers
    [line] = access_lines(caplog)
    trace = line.trace_id  # type: ignore[attr-defined]
    assert HEX32.fullmatch(trace) and trace != TRACE.lower() and trace not in bad.lower()


async def test_access_log_can_be_switched_off(
    open_app: Open, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "idenfy_stepup.access")
    async with open_app({"server": {"access_log": False}}) as (browser, _, _):
        answer = await browser.get("/jwks", headers={"x-request-id": "kept-1"})
    assert answer.headers["x-request-id"] == "kept-1"
    assert access_lines(caplog) == []


@pytest.mark.parametrize(
    ("proxies", "client"), [(["127.0.0.1/32"], "198.51.100.7"), ([], "127.0.0.1")]
)
async def test_access_log_client_is_the_address_the_limits_count(
    open_app: Open, caplog: pytest.LogCaptureFixture, proxies: list[str], client: str
) -> None:
    caplog.set_level(logging.INFO, "idenfy_stepup.access")
    async with open_app({"server": {"trusted_proxies": proxies}}) as (browser, _, _):
        for _ in range(2):  # the second from the same pair of addresses, as in one flow
            await browser.get("/jwks", headers={"x-forwarded-for": "198.51.100.7"})
    assert [r.client for r in access_lines(caplog)] == [client, client]  # type: ignore[attr-defined]
