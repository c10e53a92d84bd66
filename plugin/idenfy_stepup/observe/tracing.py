"""OpenTelemetry spans (the optional ``otel`` extra), exported over OTLP/HTTP; off by default.

Nothing here imports OpenTelemetry unless ``tracing.enabled`` is set, so the provider runs
without the extra. One tracer per process: :func:`install` (called by ``create_app``) replaces
the previous one, so a reload applies new tracing settings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..settings.loading import ConfigError
from ..settings.models import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

MISSING_EXTRA = (
    "tracing is enabled, but the OpenTelemetry packages are not installed: "
    "pip install 'idenfy-stepup[otel]'"
)

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def install(settings: TracingSettings, exporter: SpanExporter | None = None) -> None:
    """Start tracing as ``settings`` say (``exporter``: instead of OTLP/HTTP, for tests).
    A missing extra is a ConfigError naming ``tracing.enabled``."""
    global _provider, _tracer
    old = _provider
    _provider = _tracer = None
    if old is not None:
        old.shutdown()
    if not settings.enabled:
        return
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError([("tracing.enabled", MISSING_EXTRA)]) from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sampling_ratio)),
    )
    if exporter is None:
        headers = {k: v.get_secret_value() for k, v in settings.headers.items()}
        otlp = OTLPSpanExporter(endpoint=settings.endpoint, headers=headers)
        provider.add_span_processor(BatchSpanProcessor(otlp))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _provider, _tracer = provider, provider.get_tracer("idenfy_stepup")


def enabled() -> bool:
    return _tracer is not None


def shutdown() -> None:
    """Flush and stop the exporter (the process is ending)."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


# What ``span`` gives while tracing is off: one shared context manager (nullcontext is
# reentrant), not a generator per call; a push stream would hold one for its whole wait.
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext(None)


def span(
    name: str,
    *,
    kind: str = "internal",
    attributes: Mapping[str, Any] | None = None,
    traceparent: str | None = None,
) -> AbstractContextManager[Span | None]:
    """A span named ``name`` (None when tracing is off), a child of the current one, or of
    ``traceparent`` (already checked by :func:`.requests.trace_parent`) for a server span."""
    tracer = _tracer
    if tracer is None:
        return _NO_SPAN
    return _span(tracer, name, kind, attributes, traceparent)


@contextlib.contextmanager
def _span(
    tracer: Tracer,
    name: str,
    kind: str,
    attributes: Mapping[str, Any] | None,
    traceparent: str | None,
) -> Iterator[Span | None]:
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    context = None
    if traceparent is not None:
        context = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    kinds = {
        "server": trace.SpanKind.SERVER,
        "client": trace.SpanKind.CLIENT,
        "internal": trace.SpanKind.INTERNAL,
    }
    with tracer.start_as_current_span(
        name, context=context, kind=kinds[kind], attributes=dict(attributes or {})
    ) as current:
        yield current


def trace_id(current: Span | None) -> str | None:
    """The span's trace id as 32 hex digits (None: no span)."""
    if current is None:
        return None
    ctx = current.get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.trace_id else None


def problems(settings: TracingSettings) -> list[str]:
    """Why tracing as configured cannot start (``check-config`` and start-up say it)."""
    if not settings.enabled:
        return []
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return [f"tracing.enabled: {MISSING_EXTRA}"]
    return []
