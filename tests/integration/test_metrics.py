"""The Prometheus endpoint of a real server: after real calls, its counters moved by what the calls did."""

from __future__ import annotations

import asyncio
import datetime as dt
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from storage.models import AlertConfiguration
from tests.integration.itkit import Dedicated, bearer, dedicated_server, expect_error, timestamp, trends_viz
from tests.integration.test_alert_checks import Receiver
from tests.integration.test_alerts import bounds

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
RUN_QUERY = "/insights.v1.QueryService/RunQuery"
SCOPES = ("query:read", "insight:write", "event:write", "alert:write")
VALID_EVENTS = 30


def scrape(port: int) -> Samples:
    """Every sample of the endpoint by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scraped(app: Any) -> Samples:
    return await asyncio.to_thread(scrape, app.metrics_endpoint.port)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def trends(date_from: str) -> qpb.QueryNode:
    query = qpb.TrendsQuery(
        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))],
        interval=qpb.INTERVAL_TYPE_DAY,
        date_range=qpb.DateRange(date_from=date_from),
    )
    return qpb.QueryNode(trends_query=query)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()
        found.thread.join(timeout=5)


@pytest.fixture
async def served(tmp_path: Path, events_dsn: str) -> Any:
    async with dedicated_server(
        tmp_path, events_dsn, scopes=SCOPES, metrics_listen="127.0.0.1:0"
    ) as dedicated:
        yield dedicated


async def run_query(dedicated: Dedicated, query: qpb.QueryNode) -> qs.RunQueryResponse:
    request = qs.RunQueryRequest(
        environment_id=dedicated.environment_id, query=query, refresh=cpb.REFRESH_MODE_BLOCKING
    )
    stub = qs_grpc.QueryServiceStub(dedicated.channel)
    response: qs.RunQueryResponse = await stub.RunQuery(request, metadata=bearer(dedicated.key), timeout=60)
    return response


async def test_counters_move_by_what_real_calls_did(served: Dedicated, receiver: Receiver) -> None:
    app, env, md = served.app, served.environment_id, bearer(served.key)
    start = await scraped(app)

    # Ingestion: thirty pageviews yesterday at noon (UTC) and one without a name.
    noon = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    events = [epb.Event(event="$pageview", distinct_id=f"u{i}", timestamp=timestamp(noon)) for i in range(30)]
    events.append(epb.Event(event="", distinct_id="u", timestamp=timestamp(noon)))
    ingested = await egrpc.EventsServiceStub(served.channel).IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=env, events=events)]), metadata=md, timeout=60
    )
    assert (ingested.accepted, ingested.rejected) == (VALID_EVENTS, 1)

    # A computing query: a cache miss, one engine computation that read at least the thirty rows.
    computed = await run_query(served, trends("-7d"))
    assert not computed.is_cached and sum(computed.result.trends.series[0].data) == VALID_EVENTS
    after_compute = await scraped(app)
    assert moved(start, after_compute, "insights_ingested_events_total", outcome="accepted") == VALID_EVENTS
    assert moved(start, after_compute, "insights_ingested_events_total", outcome="rejected") == 1
    assert moved(start, after_compute, "insights_result_cache_misses_total") == 1
    assert (
        moved(start, after_compute, "insights_engine_queries_total", kind="trends_query", outcome="ok") == 1
    )
    assert (
        moved(start, after_compute, "insights_engine_query_duration_seconds_count", kind="trends_query") == 1
    )
    # Rows the storage read, not the handful of rows the statement returned (one per day).
    assert moved(start, after_compute, "insights_engine_rows_read_total", kind="trends_query") >= VALID_EVENTS
    assert value(after_compute, "insights_result_cache_entries") >= 1
    assert value(after_compute, "insights_result_cache_bytes") > 0

    # The same query again: a cache hit, and the engine is not asked.
    cached = await run_query(served, trends("-7d"))
    assert cached.is_cached
    after_cached = await scraped(app)
    assert moved(after_compute, after_cached, "insights_result_cache_hits_total") == 1
    assert (
        moved(after_compute, after_cached, "insights_engine_queries_total", kind="trends_query", outcome="ok")
        == 0
    )

    # Two identical calls at once: each either started the shared run or joined it; one computation.
    both = await asyncio.gather(run_query(served, trends("-14d")), run_query(served, trends("-14d")))
    assert [sum(r.result.trends.series[0].data) for r in both] == [VALID_EVENTS, VALID_EVENTS]
    after_pair = await scraped(app)
    shared = sum(
        moved(after_cached, after_pair, f"insights_coalescing_{n}_total") for n in ("leaders", "followers")
    )
    assert shared == 2
    assert (
        moved(after_cached, after_pair, "insights_engine_queries_total", kind="trends_query", outcome="ok")
        == 1
    )

    # An error: the code the client saw, under the method's name.
    missing = ipb.GetInsightRequest(environment_id=env, id=987_654_321)
    await expect_error(
        igrpc.InsightsServiceStub(served.channel).GetInsight(missing, metadata=md, timeout=15),
        grpc.StatusCode.NOT_FOUND,
    )

    # An alert check that fires and delivers its webhook.
    insight = await igrpc.InsightsServiceStub(served.channel).CreateInsight(
        ipb.CreateInsightRequest(environment_id=env, insight=ipb.Insight(name="Views", query=trends_viz())),
        metadata=md,
        timeout=15,
    )
    alerts = agrpc.AlertsServiceStub(served.channel)
    alert = await alerts.CreateAlert(
        apb.CreateAlertRequest(
            environment_id=env,
            alert=apb.Alert(
                insight=insight.id, name="Many views", threshold=bounds(upper=10), webhook_url=receiver.url
            ),
        ),
        metadata=md,
        timeout=15,
    )
    check = await alerts.CheckAlertNow(
        apb.CheckAlertNowRequest(environment_id=env, alert_id=alert.id), metadata=md, timeout=60
    )
    assert check.state == apb.ALERT_STATE_FIRING and len(receiver.bodies) == 1
    # A scheduler pass that finds the alert 90 s overdue (same interval: recorded, not re-sent).
    now = dt.datetime.now(dt.UTC)
    with app.db.session() as session:
        session.get(AlertConfiguration, alert.id).next_check_at = now - dt.timedelta(seconds=90)
    assert (await app.scheduler.run_once(now)).checked == [alert.id]

    end = await scraped(app)
    assert moved(start, end, "insights_rpc_calls_total", method=RUN_QUERY, code="OK") == 4
    assert moved(start, end, "insights_rpc_duration_seconds_count", method=RUN_QUERY) == 4
    assert value(end, "insights_rpc_in_flight", method=RUN_QUERY) == 0
    get = "/insights.v1.InsightsService/GetInsight"
    assert moved(start, end, "insights_rpc_calls_total", method=get, code="NOT_FOUND") == 1
    assert moved(start, end, "insights_rpc_calls_total", method=get, code="OK") == 0
    ingest = "/insights.v1.EventsService/IngestEvents"
    assert moved(start, end, "insights_rpc_calls_total", method=ingest, code="OK") == 1
    assert moved(start, end, "insights_alert_checks_total", state="firing") == 2
    assert moved(start, end, "insights_webhook_deliveries_total", outcome="delivered") == 1
    assert value(end, "insights_alert_scheduler_lag_seconds") == 90
    assert moved(start, end, "insights_query_runs_shed_total") == 0
    assert value(end, "insights_query_runs_queued") == value(end, "insights_query_runs_running") == 0


async def test_a_shed_run_is_counted_with_the_code_its_caller_saw(tmp_path: Path, events_dsn: str) -> None:
    async with dedicated_server(
        tmp_path, events_dsn, max_queued_queries=0, metrics_listen="127.0.0.1:0"
    ) as served:
        start = await scraped(served.app)
        await expect_error(run_query(served, trends("-7d")), grpc.StatusCode.RESOURCE_EXHAUSTED)
        end = await scraped(served.app)
    assert moved(start, end, "insights_query_runs_shed_total") == 1
    assert moved(start, end, "insights_rpc_calls_total", method=RUN_QUERY, code="RESOURCE_EXHAUSTED") == 1
    assert moved(start, end, "insights_engine_queries_total", kind="trends_query", outcome="ok") == 0


async def test_the_endpoint_is_off_by_default(tmp_path: Path, events_dsn: str) -> None:
    async with dedicated_server(tmp_path, events_dsn) as served:
        assert served.app.metrics_endpoint is None
