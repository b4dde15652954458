"""Trends through the service: events in by IngestEvents, results out of GetInsight, bad nodes refused."""

from __future__ import annotations

import datetime as dt
import json

import grpc
from google.protobuf import timestamp_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, error_info, expect_error

NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()


def _event(name: str, person: str, day: int, hour: int, **props: object) -> epb.Event:
    at = dt.datetime.combine(TODAY + dt.timedelta(days=day), dt.time(hour), tzinfo=dt.UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return epb.Event(event=name, distinct_id=person, timestamp=stamp, properties=json.dumps(props))


async def _ingest(server: Server, tenant: Tenant, events: list[epb.Event]) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    request = epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)
    response = await stub.IngestEvents(
        iter([request]), metadata=bearer(tenant.key("event:write")), timeout=30
    )
    assert response.accepted == len(events) and response.rejected == 0


def _trend(math: qpb.MathType.ValueType = qpb.MATH_TYPE_TOTAL, **extra: object) -> qpb.QueryNode:
    query = qpb.TrendsQuery(
        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview", math=math))],
        interval=qpb.INTERVAL_TYPE_DAY,
        date_range=qpb.DateRange(date_from="-3d"),
        **extra,  # type: ignore[arg-type]
    )
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(trends_query=query)))


async def _computed(api: Api, insight_id: int) -> ipb.Insight:
    request = ipb.GetInsightRequest(
        environment_id=api.environment_id, id=insight_id, refresh=cpb.REFRESH_MODE_BLOCKING
    )
    return await api.stub.GetInsight(request, metadata=api.metadata, timeout=60)  # type: ignore[no-any-return]


async def test_an_ingested_trend_comes_back_with_a_breakdown_and_dau(
    server: Server, tenant: Tenant, api: Api
) -> None:
    await _ingest(
        server,
        tenant,
        [
            _event("$pageview", "a", -1, 9, **{"$browser": "Chrome"}),
            _event("$pageview", "a", -1, 10, **{"$browser": "Chrome"}),
            _event("$pageview", "b", -1, 11, **{"$browser": "Firefox"}),
            _event("$pageview", "c", -2, 8),  # no browser: the null bucket
            _event("signed_up", "a", -1, 12, **{"$browser": "Chrome"}),  # another event: not counted
        ],
    )
    breakdown = qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser"))
    created = await api.create(name="by browser", query=_trend(breakdown_filter=breakdown))
    insight = await _computed(api, created.id)
    # The grid comes from the server's clock: read it back rather than assume the test's day (a run
    # may cross midnight); -3d always covers the last four days, and the events lie on two of them.
    start = insight.resolved_date_range.date_from.ToDatetime().date()
    days = [(start + dt.timedelta(days=i)).isoformat() for i in range(4)]
    assert start in (TODAY - dt.timedelta(days=3), TODAY - dt.timedelta(days=2))

    def at(day: int, value: float) -> list[float]:
        data = [0.0] * 4
        data[days.index((TODAY + dt.timedelta(days=day)).isoformat())] = value
        return data

    series = insight.result.trends.series
    assert [s.label for s in series] == ["Chrome", "Firefox", "$$_posthog_breakdown_null_$$"]
    assert [list(s.data) for s in series] == [at(-1, 2), at(-1, 1), at(-2, 1)]
    assert [s.count for s in series] == [2, 1, 1]
    assert all(list(s.days) == days for s in series)
    assert insight.timezone == "UTC" and insight.HasField("last_refresh") and not insight.is_cached

    dau = await api.create(name="dau", query=_trend(qpb.MATH_TYPE_DAU))
    (line,) = (await _computed(api, dau.id)).result.trends.series
    expected = [a + b for a, b in zip(at(-2, 1), at(-1, 2), strict=True)]
    assert list(line.data) == expected and line.label == "$pageview"


async def test_invalid_nodes_are_refused_naming_the_field_and_nothing_is_saved(api: Api) -> None:
    err = await expect_error(
        api.create(name="no property", query=_trend(qpb.MATH_TYPE_SUM)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "insight.query.source.series[0].math_property")
    too_many = _trend()
    too_many.insight_viz_node.source.trends_query.interval = qpb.INTERVAL_TYPE_MINUTE
    too_many.insight_viz_node.source.trends_query.date_range.date_from = "-30d"
    err = await expect_error(api.create(name="minutes", query=too_many), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "insight.query.source.interval")
    bad_date = _trend()
    bad_date.insight_viz_node.source.trends_query.date_range.date_from = "yesterday-ish"
    err = await expect_error(api.create(name="bad date", query=bad_date), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "insight.query.source.dateRange.date_from")
    assert (await api.list()).count == 0


async def test_an_unknown_action_is_saved_but_refused_by_name_when_computed(api: Api) -> None:
    query = qpb.QueryNode(
        trends_query=qpb.TrendsQuery(series=[qpb.SeriesNode(actions_node=qpb.ActionsNode(id=4))])
    )
    created = await api.create(name="an action", query=query)
    err = await expect_error(_computed(api, created.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert "action 4 does not exist" in (err.details() or "")
    assert error_info(err).reason == "ACTION_UNAVAILABLE"
