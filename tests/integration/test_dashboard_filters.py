"""GetInsight and ExportInsightResult `from_dashboard`: the dashboard's stored filters change what is
computed, each context under its own cache key, with numbers checked against the pure-Python oracle
over the ingested events."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_views_pb2 as vpb
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.dashboardkit import DashboardsApi
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, error_info, expect_error
from tests.oracle import Event, compute_trends

NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()
# (person, days before today, browser): at noon, so that no event sits on a day boundary.
EVENTS = [
    ("a", 1, "Chrome"),
    ("b", 1, "Firefox"),
    ("f", 2, "Firefox"),
    ("a", 3, "Chrome"),
    ("c", 5, "Safari"),
    ("b", 9, "Chrome"),
    ("d", 12, "Firefox"),
    ("a", 13, "Chrome"),
    ("c", 20, "Chrome"),
    ("e", 25, "Safari"),
    ("d", 40, "Chrome"),
]
SAVED_JSON: dict[str, Any] = {
    "kind": "TrendsQuery",
    "series": [{"kind": "EventsNode", "event": "$pageview"}],
    "interval": "day",
    "dateRange": {"date_from": "-7d"},
}
CHROME_JSON = {"key": "$browser", "type": "event", "operator": "exact", "value": "Chrome"}


def _at(days_ago: int) -> dt.datetime:
    return dt.datetime.combine(TODAY - dt.timedelta(days=days_ago), dt.time(12), tzinfo=dt.UTC)


def _oracle_series(query: dict[str, Any]) -> dict[str | None, float]:
    """Count per breakdown value (None without a breakdown) over EVENTS, by the oracle."""
    events = [
        Event(
            uuid=f"00000000-0000-4000-8000-{i:012d}",
            event="$pageview",
            distinct_id=person,
            person_id=person,
            timestamp=_at(days),
            properties={"$browser": browser},
        )
        for i, (person, days, browser) in enumerate(EVENTS)
    ]
    output = compute_trends(events, query, timezone="UTC", week_start_day=0, now=NOW)
    return {item.get("breakdown_value"): item["count"] for item in output.results}


def _engine_series(insight: ipb.Insight) -> dict[str | None, float]:
    return {
        (s.breakdown_value.string_value if s.HasField("breakdown_value") else None): s.count
        for s in insight.result.trends.series
    }


def _chrome() -> qpb.PropertyFilter:
    return qpb.PropertyFilter(
        key="$browser",
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        operator=qpb.PROPERTY_OPERATOR_EXACT,
        value=qpb.PropertyValue(string_value="Chrome"),
    )


def _by_browser() -> qpb.BreakdownFilter:
    return qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser"))


@pytest.fixture
async def saved(server: Server, tenant: Tenant, api: Api) -> ipb.Insight:
    """A "-7d" daily pageview trend over EVENTS."""
    events = []
    for person, days, browser in EVENTS:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(_at(days))
        events.append(
            epb.Event(
                event="$pageview",
                distinct_id=person,
                timestamp=stamp,
                properties=json.dumps({"$browser": browser}),
            )
        )
    request = epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)
    stub = egrpc.EventsServiceStub(server.channel)
    done = await stub.IngestEvents(iter([request]), metadata=bearer(tenant.key("event:write")), timeout=30)
    assert done.accepted == len(EVENTS)
    query = qpb.TrendsQuery(
        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))],
        interval=qpb.INTERVAL_TYPE_DAY,
        date_range=qpb.DateRange(date_from="-7d"),
    )
    node = qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(trends_query=query)))
    return await api.create(name="pageviews", query=node)


@pytest.fixture
def boards(server: Server, tenant: Tenant) -> DashboardsApi:
    return DashboardsApi.of(server, tenant, "dashboard:write")


async def _read(
    api: Api, insight_id: int, refresh: int = cpb.REFRESH_MODE_BLOCKING, **context: Any
) -> ipb.Insight:
    request = ipb.GetInsightRequest(
        environment_id=api.environment_id, id=insight_id, refresh=refresh, **context
    )
    return await api.stub.GetInsight(request, metadata=api.metadata, timeout=60)  # type: ignore[no-any-return]


async def test_each_dashboards_filters_compute_their_own_numbers_under_their_own_cache_keys(
    api: Api, boards: DashboardsApi, saved: ipb.Insight
) -> None:
    chrome_fortnight = await boards.create(
        name="Chrome, two weeks", filters=ipb.DashboardFilter(date_from="-14d", properties=[_chrome()])
    )
    by_browser = await boards.create(
        name="Browsers, a month",
        filters=ipb.DashboardFilter(date_from="-30d", breakdown_filter=_by_browser()),
    )
    plain = await boards.create(name="No filters")
    expected_saved = _oracle_series(SAVED_JSON)
    expected_chrome = _oracle_series(
        {**SAVED_JSON, "dateRange": {"date_from": "-14d"}, "properties": [CHROME_JSON]}
    )
    expected_browsers = _oracle_series(
        {**SAVED_JSON, "dateRange": {"date_from": "-30d"}, "breakdownFilter": {"breakdown": "$browser"}}
    )
    # The contexts differ on this data (else the test could not tell them apart); counted by hand too.
    assert expected_saved == {None: 5.0}
    assert expected_chrome == {None: 4.0}
    assert expected_browsers == {"Chrome": 5.0, "Firefox": 3.0, "Safari": 2.0}

    chrome_read = await _read(api, saved.id, from_dashboard=chrome_fortnight.id)
    browsers_read = await _read(api, saved.id, from_dashboard=by_browser.id)
    plain_read = await _read(api, saved.id, from_dashboard=plain.id)
    assert _engine_series(chrome_read) == expected_chrome
    assert _engine_series(browsers_read) == expected_browsers
    assert _engine_series(plain_read) == expected_saved
    # The insight is shown as saved; only the computation saw the dashboard's filters.
    assert chrome_read.query == saved.query

    # Cache-only reads answer each context from its own entry, never another's.
    cached = cpb.REFRESH_MODE_FORCE_CACHE
    again_chrome = await _read(api, saved.id, cached, from_dashboard=chrome_fortnight.id)
    again_browsers = await _read(api, saved.id, cached, from_dashboard=by_browser.id)
    again_saved = await _read(api, saved.id, cached)
    assert (again_chrome.is_cached, _engine_series(again_chrome)) == (True, expected_chrome)
    assert (again_browsers.is_cached, _engine_series(again_browsers)) == (True, expected_browsers)
    assert (again_saved.is_cached, _engine_series(again_saved)) == (True, expected_saved)


async def test_changed_filters_are_a_new_context_and_an_override_wins_over_them(
    api: Api, boards: DashboardsApi, saved: ipb.Insight
) -> None:
    board = await boards.create(
        name="Chrome", filters=ipb.DashboardFilter(date_from="-14d", properties=[_chrome()])
    )
    first = await _read(api, saved.id, from_dashboard=board.id)
    assert _engine_series(first) == _oracle_series(
        {**SAVED_JSON, "dateRange": {"date_from": "-14d"}, "properties": [CHROME_JSON]}
    )

    await boards.update(board.id, ["filters"], filters=ipb.DashboardFilter(date_from="-30d"))
    # The old context's cached answer is not the new one's.
    stale = await _read(api, saved.id, cpb.REFRESH_MODE_FORCE_CACHE, from_dashboard=board.id)
    assert not stale.HasField("result") or not stale.is_cached
    wider = await _read(api, saved.id, from_dashboard=board.id)
    assert _engine_series(wider) == _oracle_series({**SAVED_JSON, "dateRange": {"date_from": "-30d"}})

    # Merge order: dashboard < override (the override's range wins, the dashboard's none is left).
    overridden = await _read(
        api, saved.id, from_dashboard=board.id, filters_override=ipb.DashboardFilter(date_from="-3d")
    )
    assert _engine_series(overridden) == _oracle_series({**SAVED_JSON, "dateRange": {"date_from": "-3d"}})
    both = await boards.update(board.id, ["filters"], filters=ipb.DashboardFilter(properties=[_chrome()]))
    layered = await _read(
        api, saved.id, from_dashboard=both.id, filters_override=ipb.DashboardFilter(date_from="-30d")
    )
    assert _engine_series(layered) == _oracle_series(
        {**SAVED_JSON, "dateRange": {"date_from": "-30d"}, "properties": [CHROME_JSON]}
    )


async def test_a_filter_the_insights_kind_cannot_take_is_refused_naming_it(
    api: Api, boards: DashboardsApi
) -> None:
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
    board = await boards.create(name="Browsers", filters=ipb.DashboardFilter(breakdown_filter=_by_browser()))
    err = await expect_error(
        _read(api, created.id, from_dashboard=board.id), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "from_dashboard.filters.breakdown_filter")


async def _export(api: Api, insight_id: int, refresh: int = 0, **context: Any) -> list[list[str]]:
    request = vpb.ExportInsightResultRequest(
        environment_id=api.environment_id, id=insight_id, refresh=refresh, **context
    )
    call = api.stub.ExportInsightResult(request, metadata=api.metadata, timeout=60)
    return list(csv.reader(io.StringIO("".join([c.data async for c in call]), newline="")))


def _exported_total(rows: list[list[str]]) -> float:
    """The one series' count from a trends CSV (a column per bucket after the first four)."""
    assert rows[0][:4] == ["series", "breakdown_value", "compare_label", "aggregated_value"]
    (row,) = rows[1:]
    return sum(float(c) for c in row[4:] if c)


async def test_export_takes_the_dashboards_context_and_its_own_cache_entry(
    api: Api, boards: DashboardsApi, saved: ipb.Insight
) -> None:
    board = await boards.create(
        name="Chrome, two weeks", filters=ipb.DashboardFilter(date_from="-14d", properties=[_chrome()])
    )
    expected_chrome = _oracle_series(
        {**SAVED_JSON, "dateRange": {"date_from": "-14d"}, "properties": [CHROME_JSON]}
    )
    # Nothing cached for the dashboard's context yet: a cache-only export says so.
    err = await expect_error(
        _export(api, saved.id, from_dashboard=board.id), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert error_info(err).reason == "NO_CACHED_RESULT"
    await _read(api, saved.id, from_dashboard=board.id)
    # The cache-only export reads the dashboard's entry, which the saved query's key does not reach.
    assert _exported_total(await _export(api, saved.id, from_dashboard=board.id)) == expected_chrome[None]
    err = await expect_error(_export(api, saved.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert error_info(err).reason == "NO_CACHED_RESULT"

    # A filters override in the reference's JSON form wins over the dashboard's date range.
    override = json.dumps({"date_from": "-30d"})
    layered = await _export(
        api, saved.id, cpb.REFRESH_MODE_BLOCKING, from_dashboard=board.id, filters_override=override
    )
    assert (
        _exported_total(layered)
        == _oracle_series({**SAVED_JSON, "dateRange": {"date_from": "-30d"}, "properties": [CHROME_JSON]})[
            None
        ]
    )
    alone = await _export(
        api,
        saved.id,
        cpb.REFRESH_MODE_BLOCKING,
        filters_override=json.dumps({"date_from": "-30d", "properties": [CHROME_JSON]}),
    )
    assert _exported_total(alone) == _exported_total(layered)


async def test_export_refuses_a_bad_override_or_dashboard_naming_it(
    api: Api, boards: DashboardsApi, saved: ipb.Insight
) -> None:
    for bad in ("{not json", "[1]", json.dumps({"date_fro": "-3d"}), json.dumps({"properties": "Chrome"})):
        err = await expect_error(
            _export(api, saved.id, filters_override=bad), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert_invalid(err, "filters_override", mentions="Invalid JSON passed in filters_override parameter")
    err = await expect_error(_export(api, saved.id, from_dashboard=987654321), grpc.StatusCode.NOT_FOUND)
    assert error_info(err).reason == "DASHBOARD_NOT_FOUND"
    sticky = await api.create(
        name="sticky",
        query=qpb.QueryNode(
            insight_viz_node=qpb.InsightVizNode(
                source=qpb.InsightSource(
                    stickiness_query=qpb.StickinessQuery(
                        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))]
                    )
                )
            )
        ),
    )
    board = await boards.create(name="Browsers", filters=ipb.DashboardFilter(breakdown_filter=_by_browser()))
    err = await expect_error(
        _export(api, sticky.id, cpb.REFRESH_MODE_BLOCKING, from_dashboard=board.id),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "from_dashboard.filters.breakdown_filter")


async def test_a_tiles_filters_apply_over_the_dashboards_and_the_read_shows_its_look(
    api: Api, boards: DashboardsApi, saved: ipb.Insight
) -> None:
    board = await boards.create(name="A month", filters=ipb.DashboardFilter(date_from="-30d"))
    board = await boards.add_tile(board.id, saved.id)
    layouts = {"sm": {"x": 0.0, "y": 0.0, "w": 6.0, "h": 5.0}}
    look = struct_pb2.Struct()
    look.update(layouts)
    tile_filters = ipb.DashboardFilter(properties=[_chrome()])
    await boards.update_tile(board.id, board.tiles[0].id, color="purple", layouts=look, filters=tile_filters)

    # Dashboard < tile: the dashboard's month, narrowed to Chrome by the tile.
    read = await _read(api, saved.id, from_dashboard=board.id)
    assert _engine_series(read) == _oracle_series(
        {**SAVED_JSON, "dateRange": {"date_from": "-30d"}, "properties": [CHROME_JSON]}
    )
    assert (read.color, json_format.MessageToDict(read.layouts)) == ("purple", layouts)
    # The tile's own range wins over the dashboard's; the read's override wins over both.
    await boards.update_tile(
        board.id,
        board.tiles[0].id,
        ["filters"],
        filters=ipb.DashboardFilter(date_from="-14d", properties=[_chrome()]),
    )
    assert _engine_series(await _read(api, saved.id, from_dashboard=board.id)) == _oracle_series(
        {**SAVED_JSON, "dateRange": {"date_from": "-14d"}, "properties": [CHROME_JSON]}
    )
    overridden = await _read(
        api, saved.id, from_dashboard=board.id, filters_override=ipb.DashboardFilter(date_from="-3d")
    )
    assert _engine_series(overridden) == _oracle_series(
        {**SAVED_JSON, "dateRange": {"date_from": "-3d"}, "properties": [CHROME_JSON]}
    )
    # The export in the same context computes the same numbers.
    exported = await _export(api, saved.id, cpb.REFRESH_MODE_BLOCKING, from_dashboard=board.id)
    assert (
        _exported_total(exported)
        == _oracle_series({**SAVED_JSON, "dateRange": {"date_from": "-14d"}, "properties": [CHROME_JSON]})[
            None
        ]
    )


async def test_the_tiles_look_shows_only_on_reads_from_its_dashboard(
    api: Api, boards: DashboardsApi, saved: ipb.Insight
) -> None:
    # No filters anywhere: the dashboard's read computes the saved query itself, under its key.
    board = await boards.add_tile((await boards.create(name="Plain")).id, saved.id)
    await boards.update_tile(board.id, board.tiles[0].id, color="green")
    on_board = await _read(api, saved.id, from_dashboard=board.id)
    assert on_board.color == "green" and not on_board.HasField("layouts")
    plain = await _read(api, saved.id, cpb.REFRESH_MODE_FORCE_CACHE)
    assert plain.is_cached and not plain.HasField("color")
    assert _engine_series(plain) == _engine_series(on_board) == _oracle_series(SAVED_JSON)
    # An insight not on the dashboard gets the dashboard's filters and no look.
    elsewhere = await boards.create(name="Chrome", filters=ipb.DashboardFilter(properties=[_chrome()]))
    off_board = await _read(api, saved.id, from_dashboard=elsewhere.id)
    assert not off_board.HasField("color")
    assert _engine_series(off_board) == _oracle_series({**SAVED_JSON, "properties": [CHROME_JSON]})


async def test_a_tile_filter_the_insights_kind_cannot_take_is_refused_naming_it(
    api: Api, boards: DashboardsApi
) -> None:
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
    board = await boards.add_tile((await boards.create(name="Board")).id, created.id)
    await boards.update_tile(
        board.id, board.tiles[0].id, filters=ipb.DashboardFilter(breakdown_filter=_by_browser())
    )
    err = await expect_error(
        _read(api, created.id, from_dashboard=board.id), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "from_dashboard.tile.filters.breakdown_filter")
