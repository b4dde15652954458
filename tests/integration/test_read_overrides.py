"""GetInsight in a context: filters_override and from_dashboard change what is computed, never what is saved."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, error_info, expect_error

NOW = dt.datetime.now(dt.UTC)


def _event(person: str, days_ago: int, browser: str) -> epb.Event:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(NOW - dt.timedelta(days=days_ago, minutes=5))
    return epb.Event(
        event="$pageview", distinct_id=person, timestamp=stamp, properties=json.dumps({"$browser": browser})
    )


@pytest.fixture
async def saved(server: Server, tenant: Tenant, api: Api) -> ipb.Insight:
    """A "-3d" pageview trend over events 1 and 10 days ago, in two browsers."""
    events = [_event("a", 1, "Chrome"), _event("b", 1, "Firefox"), _event("c", 10, "Chrome")]
    request = epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)
    stub = egrpc.EventsServiceStub(server.channel)
    done = await stub.IngestEvents(iter([request]), metadata=bearer(tenant.key("event:write")), timeout=30)
    assert done.accepted == 3
    query = qpb.TrendsQuery(
        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))],
        date_range=qpb.DateRange(date_from="-3d"),
    )
    node = qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(trends_query=query)))
    return await api.create(name="pageviews", query=node)


async def _read(api: Api, insight_id: int, **context: object) -> ipb.Insight:
    request = ipb.GetInsightRequest(
        environment_id=api.environment_id,
        id=insight_id,
        refresh=cpb.REFRESH_MODE_BLOCKING,
        **context,  # type: ignore[arg-type]
    )
    return await api.stub.GetInsight(request, metadata=api.metadata, timeout=60)  # type: ignore[no-any-return]


def _total(insight: ipb.Insight) -> float:
    return sum(series.count for series in insight.result.trends.series)


async def test_a_date_override_widens_the_range_and_keeps_the_saved_result_apart(
    api: Api, saved: ipb.Insight
) -> None:
    plain = await _read(api, saved.id)
    wide = await _read(api, saved.id, filters_override=ipb.DashboardFilter(date_from="-14d"))
    assert _total(plain) == 2
    assert _total(wide) == 3
    assert len(wide.result.trends.series[0].data) == 15
    # The insight is shown as saved; only the computation saw the override.
    assert wide.query == saved.query
    # Each has its own cache entry: the saved query's cached answer is not the override's.
    again = await api.get(saved.id)
    assert _total(again) == 2 and again.is_cached
    wide_again = await _read(api, saved.id, filters_override=ipb.DashboardFilter(date_from="-14d"))
    assert _total(wide_again) == 3 and wide_again.is_cached


async def test_override_properties_and_breakdown_apply_over_the_saved_query(
    api: Api, saved: ipb.Insight
) -> None:
    chrome = qpb.PropertyFilter(
        key="$browser",
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        operator=qpb.PROPERTY_OPERATOR_EXACT,
        value=qpb.PropertyValue(string_value="Chrome"),
    )
    only_chrome = await _read(
        api, saved.id, filters_override=ipb.DashboardFilter(date_from="-14d", properties=[chrome])
    )
    assert _total(only_chrome) == 2
    by_browser = await _read(
        api,
        saved.id,
        filters_override=ipb.DashboardFilter(
            breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser"))
        ),
    )
    counts = {s.breakdown_value.string_value: s.count for s in by_browser.result.trends.series}
    assert counts == {"Chrome": 1, "Firefox": 1}


async def test_a_bad_override_is_refused_naming_its_field(api: Api, saved: ipb.Insight) -> None:
    err = await expect_error(
        _read(api, saved.id, filters_override=ipb.DashboardFilter(date_from="yesterday-ish")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "filters_override.date_from")
    bad_regex = qpb.PropertyFilter(
        key="$browser",
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        operator=qpb.PROPERTY_OPERATOR_REGEX,
        value=qpb.PropertyValue(string_value="("),
    )
    err = await expect_error(
        _read(api, saved.id, filters_override=ipb.DashboardFilter(properties=[bad_regex])),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "filters_override.properties[0].value")


async def test_a_breakdown_override_on_a_kind_without_breakdowns_is_refused(api: Api) -> None:
    stickiness = qpb.QueryNode(
        insight_viz_node=qpb.InsightVizNode(
            source=qpb.InsightSource(
                stickiness_query=qpb.StickinessQuery(
                    series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))]
                )
            )
        )
    )
    created = await api.create(name="sticky", query=stickiness)
    override = ipb.DashboardFilter(
        breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser"))
    )
    request = ipb.GetInsightRequest(environment_id=api.environment_id, id=created.id, filters_override=override)
    err = await expect_error(
        api.stub.GetInsight(request, metadata=api.metadata, timeout=30), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "filters_override.breakdown_filter")


async def test_variables_override_on_an_insight_that_is_not_sql_is_refused(api: Api, saved: ipb.Insight) -> None:
    variables = {"v1": qpb.HogQLVariable(code_name="limit", value=struct_pb2.Value(number_value=3))}
    err = await expect_error(_read(api, saved.id, variables_override=variables), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "variables_override")
    # A value that could never bind is refused before the insight is read.
    bad = {"v1": qpb.HogQLVariable(code_name="limit")}
    err = await expect_error(_read(api, saved.id, variables_override=bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "variables_override.v1.value")


async def test_from_dashboard_needs_a_live_dashboard_of_the_environment(
    tenant: Tenant, api: Api, saved: ipb.Insight, make_tenant: object
) -> None:
    board = tenant.add_dashboard("Board")
    on_board = await _read(api, saved.id, from_dashboard=board)
    assert _total(on_board) == 2
    for missing in (board + 10_000, tenant.add_dashboard("Elsewhere", environment_id=_other_env(tenant))):
        err = await expect_error(_read(api, saved.id, from_dashboard=missing), grpc.StatusCode.NOT_FOUND)
        assert error_info(err).reason == "DASHBOARD_NOT_FOUND"
        assert error_info(err).metadata["dashboard"] == str(missing)


def _other_env(tenant: Tenant) -> int:
    """Another environment of the same organization (a dashboard there is not this one's)."""
    from storage import models

    with tenant.db.session() as session:
        env = models.Environment(organization_id=tenant.organization_id, name="other")
        session.add(env)
        session.flush()
        return int(env.id)


async def test_a_sql_insights_filters_override_becomes_its_filters_placeholder(api: Api, saved: ipb.Insight) -> None:
    """As the reference merges dashboard filters into a HogQLQuery's `filters`: the date range
    replaces the node's, properties are ANDed, and `{filters}` in the SQL applies them; a
    breakdown has nowhere to go and is refused naming it. Events: 1 day ago Chrome and Firefox, 10
    days ago Chrome (the `saved` fixture ingested them)."""
    sql = "SELECT count() FROM events WHERE event = '$pageview' AND {filters}"
    node = qpb.QueryNode(
        data_visualization_node=qpb.DataVisualizationNode(
            source=qpb.HogQLQuery(query=sql, filters=qpb.HogQLFilters(date_range=qpb.DateRange(date_from="-30d")))
        )
    )
    created = await api.create(name="sql pageviews", query=node)

    def count(insight: ipb.Insight) -> float:
        return insight.result.hogql.rows[0].values[0].number_value

    assert count(await _read(api, created.id)) == 3
    assert count(await _read(api, created.id, filters_override=ipb.DashboardFilter(date_from="-3d"))) == 2
    chrome = qpb.PropertyFilter(
        key="$browser",
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        operator=qpb.PROPERTY_OPERATOR_EXACT,
        value=qpb.PropertyValue(string_value="Chrome"),
    )
    assert count(await _read(api, created.id, filters_override=ipb.DashboardFilter(properties=[chrome]))) == 2
    # The saved insight is unchanged (its own range, no property).
    assert count(await _read(api, created.id)) == 3
    override = ipb.DashboardFilter(
        breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser"))
    )
    err = await expect_error(_read(api, created.id, filters_override=override), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "filters_override.breakdown_filter")
