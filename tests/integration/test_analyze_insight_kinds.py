"""AnalyzeInsight on cached stickiness, lifecycle, funnel-trends and time-to-convert results (the
findings against figures this test derives from the events it ingests), and the optional text model
rewording the Markdown (a loopback endpoint started by the test)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import pytest

from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import results_pb2 as rpb
from tests.integration.itkit import Api, Server, Tenant, bearer, dedicated_server
from tests.integration.journeykit import BLOCKING, day_event, event_at, ingest, noon, viz
from tests.support.chatmodel import Endpoint, completion


def _day(days_ago: int) -> str:
    # Today when asked, as the ingested events' days are (not when the module was collected: a
    # long session can cross midnight between the two).
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days_ago)).isoformat()


def _events(name: str) -> qpb.SeriesNode:
    return qpb.SeriesNode(events_node=qpb.EventsNode(event=name))


async def _analyze(api: Api, insight_id: int) -> apb.AnalyzeInsightResponse:
    request = apb.AnalyzeInsightRequest(environment_id=api.environment_id, id=insight_id)
    return await api.stub.AnalyzeInsight(request, metadata=api.metadata, timeout=30)  # type: ignore[no-any-return]


async def _computed(api: Api, name: str, query: qpb.QueryNode) -> tuple[int, rpb.InsightResult]:
    """A saved insight whose result is computed (and so cached) by a blocking read, and that result."""
    saved = await api.create(name=name, query=query)
    request = ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING)
    got = await api.stub.GetInsight(request, metadata=api.metadata, timeout=60)
    assert got.HasField("result")
    return saved.id, got.result


# Days (ago) each person is active on, in a 7-day range: 5, 4, 2, 1 and 1 active days.
_ACTIVE = {"p1": [6, 5, 4, 3, 2], "p2": [6, 4, 2, 1], "p3": [5, 1], "p4": [3], "p5": [2]}


async def test_stickiness_is_analyzed_by_the_share_active_on_most_days(
    api: Api, server: Server, tenant: Tenant
) -> None:
    await ingest(server, tenant, [day_event("$pageview", p, d) for p, days in _ACTIVE.items() for d in days])
    counts = [len(days) for days in _ACTIVE.values()]
    most = [c for c in counts if c > 7 / 2]
    tally = Counter(counts)
    for computed in (qpb.STICKINESS_COMPUTATION_NON_CUMULATIVE, qpb.STICKINESS_COMPUTATION_CUMULATIVE):
        query = qpb.StickinessQuery(
            series=[_events("$pageview")],
            date_range=qpb.DateRange(date_from="-6d"),
            stickiness_filter=qpb.StickinessFilter(computed_as=computed),
        )
        insight_id, _ = await _computed(api, f"stickiness {computed}", viz(query))
        analysis = await _analyze(api, insight_id)
        (f,) = analysis.stickiness.series
        assert (f.actors, f.intervals, f.most_threshold, f.most_actors) == (len(counts), 7, 4, len(most))
        assert f.most_percent == len(most) * 100 / len(counts)
        assert abs(f.average_intervals - sum(counts) / len(counts)) < 1e-9
        assert f.typical_intervals == max(sorted(tally), key=lambda k: tally[k])
        assert analysis.markdown == "\n".join(
            [
                "**$pageview**: 5 actors; 2 (40.0%) were active on most days (at least 4 of 7).",
                "- Active on 2.60 days on average; the most common count is 1.",
            ]
        )


async def test_lifecycle_is_analyzed_by_gains_against_losses(
    api: Api, server: Server, tenant: Tenant
) -> None:
    await ingest(server, tenant, [day_event("$pageview", p, d) for p, days in _ACTIVE.items() for d in days])
    query = qpb.LifecycleQuery(series=[_events("$pageview")], date_range=qpb.DateRange(date_from="-6d"))
    insight_id, result = await _computed(api, "lifecycle", viz(query))
    analysis = await _analyze(api, insight_id)
    found = analysis.lifecycle
    # From the events: everyone is new on their first day in the range; an actor goes dormant the
    # day after each active day not followed by another one (up to today) and is resurrecting on
    # an active day after a gap.
    new = len(_ACTIVE)
    dormant = sum(1 for days in _ACTIVE.values() for d in days if d > 0 and d - 1 not in days)
    resurrecting = sum(1 for days in _ACTIVE.values() for d in days[1:] if d + 1 not in days)
    returning = sum(1 for days in _ACTIVE.values() for d in days[1:] if d + 1 in days)
    assert (found.new_total, found.returning_total, found.resurrecting_total, found.dormant_total) == (
        new,
        returning,
        resurrecting,
        dormant,
    )
    assert found.net_growth == new + resurrecting - dormant
    assert found.quick_ratio == (new + resurrecting) / dormant
    net = new + resurrecting - dormant
    assert found.balance == (
        apb.DIRECTION_UP if net > 0 else apb.DIRECTION_DOWN if net < 0 else apb.DIRECTION_FLAT
    )
    # Each status over time, as a trends series: its first and last value are the result's.
    assert [(s.label, s.first_value, s.last_value) for s in found.statuses] == [
        (s.label, s.data[0], s.data[-1]) for s in result.lifecycle.series
    ]
    assert analysis.markdown.startswith(
        f"**Lifecycle**: {new + resurrecting} gained ({new} new, {resurrecting} resurrecting) against {dormant} gone dormant"
    )


async def test_a_funnel_trend_is_analyzed_over_the_periods_somebody_entered(
    api: Api, server: Server, tenant: Tenant
) -> None:
    # Entered 6, 4 and 2 days ago: 4 (2 sign up), 2 (both) and 5 (1).
    plan = {6: (4, 2), 4: (2, 2), 2: (5, 1)}
    events = []
    for days_ago, (entered, converted) in plan.items():
        people = [f"d{days_ago}-{n}" for n in range(entered)]
        events += [day_event("$pageview", p, days_ago) for p in people]
        events += [event_at("signup", p, noon(days_ago) + dt.timedelta(hours=1)) for p in people[:converted]]
    await ingest(server, tenant, events)
    funnel = qpb.FunnelsQuery(
        series=[_events("$pageview"), _events("signup")],
        date_range=qpb.DateRange(date_from="-6d"),
        funnels_filter=qpb.FunnelsFilter(funnel_viz_type=qpb.FUNNEL_VIZ_TYPE_TRENDS),
    )
    insight_id, _ = await _computed(api, "conversion trend", viz(funnel))
    analysis = await _analyze(api, insight_id)
    (f,) = analysis.funnel_trends.series
    rates = {d: c * 100 / e for d, (e, c) in plan.items()}
    c = f.conversion
    assert (c.first_value, c.last_value, c.change) == (rates[6], rates[2], rates[2] - rates[6])
    assert c.direction == apb.DIRECTION_DOWN
    assert (c.largest_rise.from_day, c.largest_rise.to_day, c.largest_rise.change) == (_day(6), _day(4), 50.0)
    assert (c.largest_fall.from_day, c.largest_fall.to_day, c.largest_fall.change) == (
        _day(4),
        _day(2),
        -80.0,
    )
    assert abs(c.average - sum(rates.values()) / 3) < 1e-9
    entered, converted = sum(e for e, _ in plan.values()), sum(c for _, c in plan.values())
    assert (f.entered, f.converted) == (entered, converted)
    assert f.conversion_percent == converted * 100 / entered
    assert analysis.markdown.splitlines()[0] == (
        "**Conversion**: conversion down from 50.0% to 20.0% (-30.0 points) (45.5% of 11 over the range)."
    )


async def test_time_to_convert_is_analyzed_by_its_median_and_fullest_bins(
    api: Api, server: Server, tenant: Tenant
) -> None:
    minutes = [10, 20, 25, 30, 35, 90, 240]
    events = []
    for n, took in enumerate(minutes):
        events += [
            event_at("$pageview", f"t{n}", noon(3)),
            event_at("signup", f"t{n}", noon(3) + dt.timedelta(minutes=took)),
        ]
    await ingest(server, tenant, events)
    funnel = qpb.FunnelsQuery(
        series=[_events("$pageview"), _events("signup")],
        date_range=qpb.DateRange(date_from="-6d"),
        funnels_filter=qpb.FunnelsFilter(funnel_viz_type=qpb.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT, bin_count=4),
    )
    insight_id, result = await _computed(api, "time to convert", viz(funnel))
    analysis = await _analyze(api, insight_id)
    found = analysis.time_to_convert
    seconds = sorted(m * 60 for m in minutes)
    bins = result.funnels.time_to_convert.bins
    width = bins[1].bin_start_seconds - bins[0].bin_start_seconds
    median = seconds[(len(seconds) + 1) // 2 - 1]
    assert (found.converted, found.bin_width_seconds) == (len(seconds), width)
    assert found.median_bin_start_seconds <= median < found.median_bin_start_seconds + width
    assert found.average_seconds == round(sum(seconds) / len(seconds), 2)
    # The fullest bin holds as many of the times as any bin does, the earliest such.
    per_bin = Counter((s - seconds[0]) // width for s in seconds)
    fullest = max(per_bin.values())
    assert found.mode_bin_count == fullest
    assert (
        found.mode_bin_start_seconds
        == seconds[0] + min(i for i, n in per_bin.items() if n == fullest) * width
    )
    assert analysis.markdown.startswith(f"**Time to convert**: {len(seconds)} actors converted, ")


async def test_a_configured_text_model_rewords_the_markdown_never_the_findings(
    tmp_path_factory: pytest.TempPathFactory, events_dsn: str
) -> None:
    reworded = "Pageviews went from 2 to 4, up 100.0%."
    answers = [(200, completion(reworded)), (500, b"{}"), (200, completion("Pageviews went from 2 to 9."))]
    model = Endpoint(lambda body: answers.pop(0))
    try:
        async with dedicated_server(
            tmp_path_factory.mktemp("analysismodel"),
            events_dsn,
            scopes=("insight:read", "insight:write", "event:write"),
            text_model_url=model.url,
            text_model_allowed_networks="127.0.0.1/32",
        ) as dedicated:
            metadata = bearer(dedicated.key)
            events = [day_event("$pageview", f"p{n}", 1) for n in range(2)]
            events += [day_event("$pageview", f"q{n}", 0) for n in range(4)]
            ingested = await egrpc.EventsServiceStub(dedicated.channel).IngestEvents(
                iter([epb.IngestEventsRequest(environment_id=dedicated.environment_id, events=events)]),
                metadata=metadata,
                timeout=30,
            )
            assert ingested.accepted == len(events)
            stub: Any = igrpc.InsightsServiceStub(dedicated.channel)
            query = qpb.TrendsQuery(series=[_events("$pageview")], date_range=qpb.DateRange(date_from="-1d"))
            saved = await stub.CreateInsight(
                ipb.CreateInsightRequest(
                    environment_id=dedicated.environment_id,
                    insight=ipb.Insight(name="two days", query=viz(query)),
                ),
                metadata=metadata,
                timeout=30,
            )
            await stub.GetInsight(
                ipb.GetInsightRequest(environment_id=dedicated.environment_id, id=saved.id, refresh=BLOCKING),
                metadata=metadata,
                timeout=60,
            )
            request = apb.AnalyzeInsightRequest(environment_id=dedicated.environment_id, id=saved.id)
            by_model = await stub.AnalyzeInsight(request, metadata=metadata, timeout=30)
            derived = await stub.AnalyzeInsight(request, metadata=metadata, timeout=30)  # the model fails
            inventive = await stub.AnalyzeInsight(request, metadata=metadata, timeout=30)  # states a 9
    finally:
        model.close()
    assert by_model.markdown == reworded
    assert derived.markdown.startswith("**$pageview**: up from 2 to 4 (+100.0%).")
    assert inventive.markdown == derived.markdown
    # The findings are the analyzer's every time, whatever the model answered.
    assert by_model.trends == derived.trends == inventive.trends
    (series,) = derived.trends.series
    assert (series.first_value, series.last_value) == (2, 4)
    sent = json.loads(model.requests[0][1]["messages"][-1]["content"])
    assert sent["draft"] == derived.markdown
    assert sent["findings"]["trends"]["series"][0]["last_value"] == 4
