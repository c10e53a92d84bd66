"""OpenTelemetry spans (the otel extra) through the SDK's in-memory exporter, and the one
line a missing extra gives."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from idenfy_stepup.observe import tracing
from idenfy_stepup.settings import ConfigError
from idenfy_stepup.settings.models import TracingSettings

from ..harness.fake_vendor import FakeIdenfy
from ..harness.rp import challenge_token, pkce, request_params
from .conftest import Open

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
ON = {"tracing": {"enabled": True}}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    yield spans
    tracing.shutdown()  # no tracer is left for the next test


async def test_spans_for_endpoint_vendor_calls_and_redis_scripts_under_the_callers_trace(
    open_app: Open, vendor: FakeIdenfy, exporter: InMemorySpanExporter
) -> None:
    async with open_app(ON, span_exporter=exporter) as (browser, _, _):
        sent = request_params(pkce()[1], login_hint="alice")
        parent = {"traceparent": f"00-{TRACE}-{PARENT_SPAN}-01"}
        token = challenge_token(await browser.get("/authorize", params=sent, headers=parent))
        assert token
    spans = exporter.get_finished_spans()
    by_name = {s.name: s for s in spans}
    server = by_name["GET /authorize"]
    assert server.kind == SpanKind.SERVER
    assert f"{server.context.trace_id:032x}" == TRACE
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT_SPAN
    assert server.attributes is not None and server.attributes["http.route"] == "/authorize"
    assert server.attributes["http.response.status_code"] == 303
    for name in ("idenfy check_status", "idenfy create_authentication"):
        call = by_name[name]
        assert call.kind == SpanKind.CLIENT
        assert call.parent is not None and call.parent.span_id == server.context.span_id
        assert call.attributes is not None and call.attributes["stepup.vendor_status"] == "200"
    scripts = [s for s in spans if s.name.startswith("redis ")]
    assert scripts and all(s.context.trace_id == server.context.trace_id for s in scripts)
    # No span name or attribute carries the challenge token or the subject.
    for span in spans:
        values = [span.name, *map(str, (span.attributes or {}).values())]
        assert not [v for v in values if token in v or "alice" in v], span.name


async def test_sampling_ratio_zero_records_no_new_trace(
    open_app: Open, exporter: InMemorySpanExporter
) -> None:
    off = {"tracing": {"enabled": True, "sampling_ratio": 0.0}}
    async with open_app(off, span_exporter=exporter) as (browser, _, _):
        assert (await browser.get("/jwks")).status_code == 200
    assert exporter.get_finished_spans() == ()


async def test_tracing_off_by_default_exports_nothing(
    open_app: Open, exporter: InMemorySpanExporter
) -> None:
    async with open_app(span_exporter=exporter) as (browser, _, _):
        assert (await browser.get("/jwks")).status_code == 200
    assert not tracing.enabled()
    assert exporter.get_finished_spans() == ()


def test_enabled_without_the_extra_is_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As if `pip install idenfy-stepup[otel]` had not been run: the SDK cannot be imported.
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    settings = TracingSettings(enabled=True)
    assert tracing.problems(settings) == [f"tracing.enabled: {tracing.MISSING_EXTRA}"]
    with pytest.raises(ConfigError) as raised:
        tracing.install(settings)
    assert "pip install 'idenfy-stepup[otel]'" in str(raised.value)
    assert tracing.problems(TracingSettings()) == []


async def test_spans_reach_an_otlp_http_collector_with_the_configured_headers(
    open_app: Open,
) -> None:
    """A tiny OTLP/HTTP collector on loopback receives the batch when tracing shuts down."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    received: list[tuple[str, dict[str, str], bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"
        config = {
            "tracing": {
                "enabled": True,
                "endpoint": endpoint,
                "headers": {"authorization": "Bearer collector-token"},
                "service_name": "stepup-test",
            }
        }
        async with open_app(config) as (browser, _, _):
            assert (await browser.get("/jwks")).status_code == 200
        await asyncio.to_thread(tracing.shutdown)  # flushes the batch
    finally:
        server.shutdown()
        server.server_close()
    assert received, "no export reached the collector"
    path, headers, body = received[0]
    assert path == "/v1/traces"
    assert headers["authorization"] == "Bearer collector-token"
    assert headers["content-type"] == "application/x-protobuf"
    export = ExportTraceServiceRequest.FromString(body)
    [resource] = export.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    names = {span.name for scope in resource.scope_spans for span in scope.spans}
    assert service == "stepup-test" and "GET /jwks" in names
