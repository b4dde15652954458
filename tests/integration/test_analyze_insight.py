"""AnalyzeInsight through the service: findings and Markdown of cached trends, funnel and retention
results (golden texts on fixed ingested data, values recomputed here), never computing, scopes and
isolation."""

from __future__ import annotations

import datetime as dt

import grpc

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.itkit import Api, Server, Tenant, error_info, expect_error, paths_viz
from tests.integration.journeykit import BLOCKING, day_event, ingest, viz


def _day(days_ago: int) -> str:
    # Today when asked, as the ingested events' days are (not when the module was collected: a
    # long session can cross midnight between the two).
    return (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days_ago)).isoformat()


def _events(name: str) -> qpb.SeriesNode:
    return qpb.SeriesNode(events_node=qpb.EventsNode(event=name))


async def _analyze(api: Api, insight_id: int) -> apb.AnalyzeInsightResponse:
    request = apb.AnalyzeInsightRequest(environment_id=api.environment_id, id=insight_id)
    return await api.stub.AnalyzeInsight(request, metadata=api.metadata, timeout=30)  # type: ignore[no-any-return]


async def _computed(api: Api, name: str, query: qpb.QueryNode) -> int:
    """A saved insight whose result is computed (and so cached) by a blocking read."""
    saved = await api.create(name=name, query=query)
    request = ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING)
    got = await api.stub.GetInsight(request, metadata=api.metadata, timeout=60)
    assert got.HasField("result")
    return saved.id


# 35 daily buckets: 2 pageviews a day, 12 ten days ago, 4 today.
_SPIKE, _DAYS = 10, 35


def _daily() -> list[int]:
    """The pageviews per day, oldest first (index i is _DAYS - 1 - i days ago)."""
    return [12 if _DAYS - 1 - i == _SPIKE else 4 if i == _DAYS - 1 else 2 for i in range(_DAYS)]


async def test_a_trends_insight_is_analyzed_from_its_cached_result(api: Api, server: Server, tenant: Tenant) -> None:
    counts = _daily()
    events = [
        day_event("$pageview", f"p{n}", _DAYS - 1 - i) for i, count in enumerate(counts) for n in range(count)
    ]
    await ingest(server, tenant, events)
    query = qpb.TrendsQuery(series=[_events("$pageview")], date_range=qpb.DateRange(date_from=f"-{_DAYS - 1}d"))
    insight_id = await _computed(api, "daily pageviews", viz(query))

    analysis = await _analyze(api, insight_id)
    assert analysis.WhichOneof("findings") == "trends"
    (series,) = analysis.trends.series
    # Independently: the rise into the spike and the fall out of it, the mean, the two outliers
    # (every detector scores a point off a constant week as fully anomalous).
    diffs = [(counts[i] - counts[i - 1], i) for i in range(1, _DAYS)]
    rise, fall = max(diffs), min(diffs)
    average = sum(counts) / _DAYS
    assert (series.first_value, series.last_value, series.change) == (2, 4, 2)
    assert series.change_percent == 100.0 and series.direction == apb.DIRECTION_UP
    assert (series.largest_rise.change, series.largest_rise.to_day) == (rise[0], _day(_DAYS - 1 - rise[1]))
    assert (series.largest_fall.change, series.largest_fall.to_day) == (fall[0], _day(_DAYS - 1 - fall[1]))
    assert abs(series.average - average) < 1e-9
    assert abs(series.last_vs_average_percent - (4 - average) * 100 / average) < 1e-9
    assert series.anomalies_checked
    assert [(p.day, p.value, list(p.detectors)) for p in series.anomalies] == [
        (_day(_SPIKE), 12, ["zscore", "mad", "iqr"]),
        (_day(0), 4, ["zscore", "mad", "iqr"]),
    ]
    assert not analysis.trends.top_movers and not analysis.trends.compare
    assert analysis.markdown == "\n".join(
        [
            "**$pageview**: up from 2 to 4 (+100.0%).",
            f"- Largest rise +10 ({_day(11)} → {_day(10)}); largest fall -10 ({_day(10)} → {_day(9)}).",
            "- Last value 4 is +70.7% against the average 2.34.",
            f"- Anomalies: {_day(10)} (12; zscore, mad, iqr), {_day(0)} (4; zscore, mad, iqr).",
        ]
    )


async def test_breakdown_movers_and_the_previous_period_are_found(api: Api, server: Server, tenant: Tenant) -> None:
    # Chrome: 1 -> 5 over the week, Safari 4 -> 1, Firefox flat 2; the week before: 3 events.
    plan = {"Chrome": (1, 5), "Safari": (4, 1), "Firefox": (2, 2)}
    events = [day_event("$pageview", "old", 10) for _ in range(3)]
    for browser, (first, last) in plan.items():
        events += [day_event("$pageview", f"{browser}{n}", 6, browser=browser) for n in range(first)]
        events += [day_event("$pageview", f"{browser}{n}", 0, browser=browser) for n in range(last)]
    await ingest(server, tenant, events)
    broken = qpb.TrendsQuery(
        series=[_events("$pageview")],
        date_range=qpb.DateRange(date_from="-6d"),
        breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="browser")),
    )
    analysis = await _analyze(api, await _computed(api, "by browser", viz(broken)))
    movers = [(m.breakdown_value, m.change) for m in analysis.trends.top_movers]
    assert movers == [("Chrome", 4), ("Safari", -3), ("Firefox", 0)]
    assert analysis.trends.top_movers[1].change_percent == -75.0
    assert "**Top movers**: Chrome +4 (+400.0%), Safari -3 (-75.0%), Firefox 0 (+0.0%)." in analysis.markdown
    assert all(not s.anomalies_checked for s in analysis.trends.series)  # 7 points: too few to check

    compared = qpb.TrendsQuery(
        series=[_events("$pageview")],
        date_range=qpb.DateRange(date_from="-6d"),
        compare_filter=qpb.CompareFilter(compare=True),
    )
    analysis = await _analyze(api, await _computed(api, "compared", viz(compared)))
    (finding,) = analysis.trends.compare
    current = sum(first + last for first, last in plan.values())
    assert (finding.current_total, finding.previous_total) == (current, 3)
    assert finding.change_percent == (current - 3) * 100 / 3
    assert len(analysis.trends.series) == 1  # the previous period is not a series of its own


async def test_a_funnel_is_analyzed_with_its_biggest_drop_off(api: Api, server: Server, tenant: Tenant) -> None:
    people = [f"u{n}" for n in range(10)]
    events = [day_event("$pageview", p, 3) for p in people]
    events += [day_event("signup", p, 2) for p in people[:4]]
    events += [day_event("purchase", p, 1) for p in people[:3]]
    await ingest(server, tenant, events)
    funnel = qpb.FunnelsQuery(series=[_events("$pageview"), _events("signup"), _events("purchase")])
    analysis = await _analyze(api, await _computed(api, "funnel", viz(funnel)))
    found = analysis.funnels
    assert [(s.name, s.count) for s in found.steps] == [("$pageview", 10), ("signup", 4), ("purchase", 3)]
    assert [s.conversion_from_previous_percent for s in found.steps] == [100.0, 40.0, 75.0]
    assert found.overall_conversion_percent == 30.0
    assert (found.biggest_drop_off_step, found.biggest_drop_off_lost) == (1, 6)
    assert analysis.markdown == "\n".join(
        [
            "**Funnel**: 10 entered, 3 completed (30.0% overall conversion).",
            "- Steps: $pageview 10 → signup 4 (40.0%) → purchase 3 (75.0%).",
            "- Biggest drop-off: $pageview → signup, 40.0% converted (6 lost).",
        ]
    )


async def test_retention_is_analyzed_by_its_day_1_retention_and_trend(
    api: Api, server: Server, tenant: Tenant
) -> None:
    # First-time cohorts: 6 days ago 4 people (2 back the next day), 5 days ago 2 (1 back), 4 days
    # ago 4 (1 back); later cohorts are empty and today's has no day 1 yet.
    plan = {6: (4, 2), 5: (2, 1), 4: (4, 1)}
    events = []
    for days_ago, (size, back) in plan.items():
        people = [f"c{days_ago}-{n}" for n in range(size)]
        events += [day_event("$pageview", p, days_ago) for p in people]
        events += [day_event("$pageview", p, days_ago - 1) for p in people[:back]]
    await ingest(server, tenant, events)
    query = qpb.RetentionQuery(
        retention_filter=qpb.RetentionFilter(retention_type=qpb.RETENTION_TYPE_FIRST_TIME)
    )
    analysis = await _analyze(api, await _computed(api, "retention", viz(query)))
    found = analysis.retention
    assert [(c.date[:10], c.size, c.period_1_count) for c in found.cohorts] == [
        (_day(d), *plan.get(d, (0, 0))) for d in range(6, 0, -1)
    ]
    retained = sum(back for _, back in plan.values())
    assert found.period_1_percent == retained * 100 / sum(size for size, _ in plan.values())
    assert (found.trend, found.trend_points) == (apb.DIRECTION_DOWN, 25.0 - 50.0)
    assert analysis.markdown == "\n".join(
        [
            "**Retention**: Day 1 retention is 40.0% over 3 non-empty cohorts (4 of 10 actors).",
            f"- Trend: down 25.0 points from the first cohort ({_day(6)}, 50.0%) to the last ({_day(4)}, 25.0%).",
            f"- Best cohort {_day(6)} (50.0%), worst {_day(4)} (25.0%).",
        ]
    )


async def test_without_a_cached_result_it_asks_to_compute_first_and_computes_nothing(api: Api) -> None:
    saved = await api.create(name="never computed", query=viz(qpb.TrendsQuery(series=[_events("$pageview")])))
    err = await expect_error(_analyze(api, saved.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert "compute it first" in (err.details() or "") and error_info(err).reason == "NO_CACHED_RESULT"
    # Still nothing cached: the analysis did not compute.
    again = await expect_error(_analyze(api, saved.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert error_info(again).reason == "NO_CACHED_RESULT"


async def test_a_kind_without_an_analyzer_gets_an_empty_analysis(api: Api) -> None:
    saved = await api.create(name="paths", query=paths_viz())
    analysis = await _analyze(api, saved.id)
    assert analysis == apb.AnalyzeInsightResponse()


async def test_scopes_and_isolation(api: Api, tenant: Tenant) -> None:
    saved = await api.create(name="mine", query=viz(qpb.TrendsQuery(series=[_events("$pageview")])))
    unscoped = api.as_key(tenant.key("query:read"))
    await expect_error(_analyze(unscoped, saved.id), grpc.StatusCode.PERMISSION_DENIED)
    # Another environment of the same organization does not see the insight.
    other = tenant.add_environment()
    elsewhere = api.as_key(tenant.key("insight:read", environments=None), environment_id=other)
    await expect_error(_analyze(elsewhere, saved.id), grpc.StatusCode.NOT_FOUND)
    # An insight:read key can analyze (a miss, not a refusal).
    reader = api.as_key(tenant.key("insight:read"))
    await expect_error(_analyze(reader, saved.id), grpc.StatusCode.FAILED_PRECONDITION)
