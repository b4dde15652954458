"""CSV exports through the real server (SQLite and PostgreSQL): ExportInsights streams a
ListInsights answer, ExportInsightResult one insight's result in its kind's layout; both parsed back
with the csv module and compared with the messages field by field; chunks of at most 1 MiB; text
cells made inert for spreadsheets; scopes, isolation, a missing result."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import json_format

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_views_pb2 as vpb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import results_pb2 as rpb
from tests.integration.itkit import (
    Api,
    Server,
    Tenant,
    assert_invalid,
    error_info,
    expect_error,
    funnels_viz,
    lifecycle_viz,
    paths_viz,
    retention_viz,
    sql_viz,
    stickiness_viz,
    trends_query,
    viz,
)
from tests.integration.journeykit import BLOCKING, day_event, ingest

MIB = 1024 * 1024


async def chunks(call: Any) -> list[str]:
    """The data of every chunk of a server stream."""
    return [c.data async for c in call]


async def export_list(api: Api, **filters: Any) -> list[str]:
    request = ipb.ExportInsightsRequest(list=ipb.ListInsightsRequest(environment_id=api.environment_id, **filters))
    return await chunks(api.stub.ExportInsights(request, metadata=api.metadata, timeout=60))


async def export_result(api: Api, insight_id: int, refresh: int = 0) -> list[str]:
    request = vpb.ExportInsightResultRequest(environment_id=api.environment_id, id=insight_id, refresh=refresh)
    return await chunks(api.stub.ExportInsightResult(request, metadata=api.metadata, timeout=120))


def parse(pieces: list[str]) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(pieces), newline="")))


def inert(value: str) -> str:
    """A text as the export writes it (the same rule, restated: a formula start gets a quote)."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def num(cell: str) -> float | None:
    return None if cell == "" else float(cell)


async def test_export_insights_is_the_list_answer_with_its_filters(api: Api, tenant: Tenant) -> None:
    risky = await api.create(name="=HYPERLINK(\"http://evil\")", description="+1 call", tags=["keep"])
    plain = await api.create(name="plain, with \"quotes\"\nand a newline", tags=["keep"])
    untagged = await api.create(name="untagged")
    for_export = await export_list(api, tags=["keep"], order="name")
    listed = await api.list(tags=["keep"], order="name", format=cpb.RESPONSE_FORMAT_CSV)
    assert "".join(for_export) == listed.csv
    rows = parse(for_export)
    assert rows[0][:3] == ["id", "short_id", "name"]
    assert [int(r[0]) for r in rows[1:]] == [i.id for i in listed.results]
    by_id = {int(r[0]): r for r in rows[1:]}
    assert by_id[risky.id][2] == "'=HYPERLINK(\"http://evil\")" and by_id[risky.id][4] == "'+1 call"
    assert by_id[plain.id][2] == plain.name
    assert by_id[plain.id][5] == "keep"
    # the page and the search apply as in ListInsights
    assert [int(r[0]) for r in parse(await export_list(api, search="untagged"))[1:]] == [untagged.id]
    assert len(parse(await export_list(api, limit=1))) == 2

    err = await expect_error(export_list(api, format=cpb.RESPONSE_FORMAT_JSON), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "list.format")
    err = await expect_error(export_list(api, limit=-1), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "limit")


def check_trends(result: rpb.TrendsResult, rows: list[list[str]]) -> None:
    head = rows[0]
    assert head[:4] == ["series", "breakdown_value", "compare_label", "aggregated_value"]
    assert len(rows) == len(result.series) + 1
    for series, row in zip(result.series, rows[1:], strict=True):
        assert row[0] == inert(series.label)
        assert row[1] == inert(series.breakdown_value.string_value)
        for day, value in zip(series.days, series.data, strict=True):
            assert num(row[head.index(day)]) == value
        assert sum(num(c) or 0 for c in row[4:]) == series.count


def check_funnel(result: rpb.FunnelsResult, rows: list[list[str]]) -> None:
    assert rows[0][:5] == ["breakdown_value", "order", "name", "custom_name", "count"]
    steps = [s for b in result.steps.breakdowns for s in b.steps]
    assert len(rows) == len(steps) + 1
    for step, row in zip(steps, rows[1:], strict=True):
        assert (int(row[1]), row[2], int(row[4])) == (step.order, step.name, step.count)
        if step.HasField("average_conversion_time"):
            assert num(row[5]) == step.average_conversion_time
        else:
            assert row[5] == ""


def check_retention(result: rpb.RetentionResult, rows: list[list[str]]) -> None:
    assert rows[0][:3] == ["cohort", "label", "breakdown_value"]
    assert rows[0][3:] == [v.label for v in result.cohorts[0].values]
    for cohort, row in zip(result.cohorts, rows[1:], strict=True):
        assert (row[0], row[1]) == (cohort.date, cohort.label)
        assert [int(c) for c in row[3 : 3 + len(cohort.values)]] == [v.count for v in cohort.values]


def check_paths(result: rpb.PathsResult, rows: list[list[str]]) -> None:
    assert rows[0] == ["source", "target", "value", "average_conversion_time"]
    assert len(rows) == len(result.edges) + 1
    for edge, row in zip(result.edges, rows[1:], strict=True):
        assert (row[0], row[1], num(row[2]), num(row[3])) == (
            inert(edge.source),
            inert(edge.target),
            edge.value,
            edge.average_conversion_time,
        )


def check_stickiness(result: rpb.StickinessResult, rows: list[list[str]]) -> None:
    head = rows[0]
    assert head[:2] == ["series", "compare_label"]
    for series, row in zip(result.series, rows[1:], strict=True):
        assert row[0] == inert(series.label)
        for label, value in zip(series.labels, series.data, strict=True):
            assert num(row[head.index(label)]) == value


def check_lifecycle(result: rpb.LifecycleResult, rows: list[list[str]]) -> None:
    head = rows[0]
    assert head[0] == "series" and len(rows) == len(result.series) + 1 == 5
    for series, row in zip(result.series, rows[1:], strict=True):
        assert row[0] == inert(series.label)
        for day, value in zip(series.days, series.data, strict=True):
            assert num(row[head.index(day)]) == value


def check_sql(result: rpb.HogQLResult, rows: list[list[str]]) -> None:
    assert rows[0] == list(result.columns)
    assert len(rows) == len(result.rows) + 1
    for values, row in zip(result.rows, rows[1:], strict=True):
        for value, cell in zip(json_format.MessageToDict(values), row, strict=True):
            if isinstance(value, str):
                assert cell == inert(value)
            else:
                assert num(cell) == value


async def test_each_kind_exports_its_result_in_its_layout(api: Api, server: Server, tenant: Tenant) -> None:
    events = []
    for person, browser, days in (("ann", "Chrome", 1), ("bob", "=cmd|' /C calc'!A0", 2), ("cid", "Firefox", 3)):
        for ago in range(days, days + 3):
            events.append(day_event("$pageview", person, ago, **{"$browser": browser, "$current_url": "/home"}))
            events.append(day_event("$pageview", person, ago, **{"$browser": browser, "$current_url": "-/pricing"}))
        events.append(day_event("signup", person, days))
    await ingest(server, tenant, events)

    breakdown = trends_query()
    breakdown.breakdown_filter.CopyFrom(qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser")))
    cases: list[tuple[qpb.QueryNode, str, Callable[[Any, list[list[str]]], None]]] = [
        (viz(qpb.InsightSource(trends_query=breakdown)), "trends", check_trends),
        (funnels_viz(), "funnels", check_funnel),
        (retention_viz(), "retention", check_retention),
        (paths_viz(), "paths", check_paths),
        (stickiness_viz(), "stickiness", check_stickiness),
        (lifecycle_viz(), "lifecycle", check_lifecycle),
        (
            sql_viz("SELECT properties.$browser AS browser, count() AS n, -1 AS minus FROM events GROUP BY browser ORDER BY browser"),
            "hogql",
            check_sql,
        ),
    ]
    for query, kind, check in cases:
        made = await api.create(name=kind, query=query)
        pieces = await export_result(api, made.id, BLOCKING)
        # the export cached the result it computed: GetInsight's cached answer is the one exported
        shown = await api.get(made.id)
        result = getattr(shown.result, kind)
        if kind == "funnels":
            assert result.steps.breakdowns[0].steps[0].count == 3
        rows = parse(pieces)
        check(result, rows)
        assert len(rows) > 1, kind
    # a breakdown value starting with "=" is written inert
    trends_rows = parse(await export_result(api, (await api.list(search="trends")).results[0].id))
    assert "'=cmd|' /C calc'!A0" in [r[1] for r in trends_rows[1:]]


async def test_a_large_result_streams_in_chunks_of_at_most_one_mib(api: Api, server: Server, tenant: Tenant) -> None:
    sql = "SELECT arrayJoin(range(3000)) AS n, repeat('é', 400) AS pad LIMIT 3000"
    made = await api.create(name="large", query=sql_viz(sql))
    pieces = await export_result(api, made.id, BLOCKING)
    sizes = [len(p.encode()) for p in pieces]
    assert len(pieces) >= 3 and all(s <= MIB for s in sizes), sizes
    assert all(p.endswith("\r\n") for p in pieces)  # cut at row ends
    rows = parse(pieces)
    result = (await api.get(made.id)).result.hogql
    assert len(result.rows) == 3000
    check_sql(result, rows)


async def test_missing_result_scopes_and_isolation(
    api: Api, tenant: Tenant, make_tenant: Callable[[], Tenant]
) -> None:
    made = await api.create(name="never computed", query=sql_viz("SELECT 1 AS one"))
    err = await expect_error(export_result(api, made.id), grpc.StatusCode.FAILED_PRECONDITION)
    assert error_info(err).reason == "NO_CACHED_RESULT"
    queryless = await api.create(name="no query")
    err = await expect_error(export_result(api, queryless.id, BLOCKING), grpc.StatusCode.FAILED_PRECONDITION)
    assert error_info(err).reason == "NO_QUERY"

    without = api.as_key(tenant.key("dashboard:read"))
    for call in (export_list(without), export_result(without, made.id, BLOCKING)):
        err = await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
        assert (error_info(err).reason, error_info(err).metadata["scope"]) == ("MISSING_SCOPE", "insight:read")
    reader = api.as_key(tenant.key("insight:read"))
    assert parse(await export_result(reader, made.id, BLOCKING)) == [["one"], ["1"]]

    stranger = make_tenant()
    foreign = api.as_key(stranger.key("insight:read"), stranger.environment_id)
    await expect_error(export_result(foreign, made.id, BLOCKING), grpc.StatusCode.NOT_FOUND)
    assert parse(await export_list(foreign)) == [parse(await export_list(api))[0]]
