"""Where spans go: nowhere by default; an OTLP (or console) exporter when OTEL_TRACES_EXPORTER asks."""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.trace import NoOpTracerProvider, Tracer, TracerProvider

NAME = "insights"
# Statements are tagged with their text (placeholders only: values are bound, never in the text),
# cut here so that a span stays small.
MAX_STATEMENT_CHARS = 4096
# What OTEL_TRACES_EXPORTER may say. Unset or "none": no spans are made (the no-op tracer, no cost).
EXPORTERS = ("none", "otlp", "console")

_provider: TracerProvider = NoOpTracerProvider()
_tracer: Tracer = _provider.get_tracer(NAME)
_enabled = False


def enabled() -> bool:
    """Whether spans go anywhere: hot paths skip even the no-op tracer's work when they do not."""
    return _enabled


def tracer() -> Tracer:
    """The tracer every layer makes its spans with."""
    return _tracer


def use(provider: TracerProvider | None) -> None:
    """Sends spans to `provider` from now on (None: back to none). Not the global provider of the
    OpenTelemetry API: a test can install one and take it back."""
    global _provider, _tracer, _enabled
    _provider = provider or NoOpTracerProvider()
    _tracer = _provider.get_tracer(NAME)
    _enabled = provider is not None


def statement(sql: str) -> str:
    return sql if len(sql) <= MAX_STATEMENT_CHARS else sql[:MAX_STATEMENT_CHARS] + "…"


def configure(env: Mapping[str, str] | None = None) -> TracerProvider | None:
    """The SDK provider the standard variables describe (OTEL_TRACES_EXPORTER, OTEL_SERVICE_NAME,
    OTEL_EXPORTER_OTLP_ENDPOINT / _HEADERS / _TIMEOUT ..., read by the exporter itself), installed
    with `use`; None when tracing is off (the default). ValueError for an exporter we do not know."""
    env = os.environ if env is None else env
    chosen = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower() or "none"
    if chosen not in EXPORTERS:
        raise ValueError(f"OTEL_TRACES_EXPORTER must be one of {', '.join(EXPORTERS)} (got {chosen!r})")
    if chosen == "none":
        use(None)
        return None
    # Imported here: a process without tracing never loads the SDK or the exporter.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    exporter: SpanExporter
    if chosen == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    provider = SdkProvider(resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", NAME)}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use(provider)
    return provider


__all__ = ["configure", "enabled", "statement", "trace", "tracer", "use"]
