"""Spans: one SERVER span per call (the caller's traceparent honoured), engine and metadata statements
as its children, tagged with their SQL text and never with the values bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qgrpc
from server import tracing
from tests.integration.itkit import bearer, dedicated_server, expect_error

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
# A value only the request holds: it must not appear in any span.
EVENT = "traced_event_5d1c"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)
        provider.shutdown()


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    found = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        found.append(span)
    return found


async def test_a_call_is_a_server_span_in_the_callers_trace_with_its_statements_below(
    tmp_path: Path, events_dsn: str, spans: InMemorySpanExporter
) -> None:
    async with dedicated_server(tmp_path, events_dsn, scopes=("*",)) as served:
        node = qpb.QueryNode(
            trends_query=qpb.TrendsQuery(
                series=[qpb.SeriesNode(events_node=qpb.EventsNode(event=EVENT))],
                date_range=qpb.DateRange(date_from="-7d"),
            )
        )
        request = qs.RunQueryRequest(
            environment_id=served.environment_id, query=node, refresh=cpb.REFRESH_MODE_FORCE_BLOCKING
        )
        metadata = (*bearer(served.key), ("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"))
        await qgrpc.QueryServiceStub(served.channel).RunQuery(request, metadata=metadata, timeout=60)
        missing = ipb.GetInsightRequest(environment_id=served.environment_id, id=987_654)
        await expect_error(
            igrpc.InsightsServiceStub(served.channel).GetInsight(missing, metadata=bearer(served.key), timeout=10),
            grpc.StatusCode.NOT_FOUND,
        )

    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    run = next(s for s in finished if s.name == "insights.v1.QueryService/RunQuery")
    assert run.kind == SpanKind.SERVER
    assert f"{run.context.trace_id:032x}" == TRACE_ID and f"{run.parent.span_id:016x}" == PARENT_ID
    assert run.attributes["rpc.system"] == "grpc" and run.attributes["rpc.method"] == "RunQuery"
    assert run.attributes["rpc.grpc.status_code"] == 0 and len(str(run.attributes["insights.request_id"])) == 32

    below = [s for s in finished if run in _ancestors(s, by_id)]
    engine = [s for s in below if s.name == "engine.query"]
    metadata_spans = [s for s in below if s.name == "metadata.query"]
    assert engine and metadata_spans  # the trend's statement; the key's verification
    assert all(s.kind == SpanKind.CLIENT and s.context.trace_id == run.context.trace_id for s in engine)
    assert any("{" in str(s.attributes["db.statement"]) for s in engine)  # placeholders, bound apart
    assert {s.attributes["db.system"] for s in metadata_spans} == {"sqlite"}
    assert not any(EVENT in str(s.attributes) for s in finished)

    # A caller's error is not the server's: the code is there, the span is not failed. A call
    # without traceparent starts a trace of its own.
    get = next(s for s in finished if s.name == "insights.v1.InsightsService/GetInsight")
    assert get.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert get.status.status_code != StatusCode.ERROR
    assert get.parent is None and get.context.trace_id != run.context.trace_id


def test_the_exporter_is_chosen_by_the_standard_variable() -> None:
    assert tracing.configure({}) is None and not tracing.enabled()
    assert tracing.configure({"OTEL_TRACES_EXPORTER": "none"}) is None
    with pytest.raises(ValueError, match="OTEL_TRACES_EXPORTER"):
        tracing.configure({"OTEL_TRACES_EXPORTER": "zipkin"})
    provider = tracing.configure({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "insights-test"})
    try:
        assert isinstance(provider, TracerProvider) and tracing.enabled()
        assert provider.resource.attributes["service.name"] == "insights-test"
    finally:
        tracing.use(None)
        if provider is not None:
            provider.shutdown()
