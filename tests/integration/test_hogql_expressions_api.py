"""HogQL expressions in trends and retention through the real server: a hogql breakdown and a
`math: hogql` series computed from ingested events and rendered as reference JSON, and an
expression the engine cannot compute refused as INVALID_ARGUMENT naming its field."""

from __future__ import annotations

import grpc
import pytest

from generated.insights.v1 import query_pb2 as qpb
from server.queries.common.codec import to_reference_json
from tests.integration.itkit import Server, Tenant, assert_invalid, expect_error
from tests.integration.test_shaped_breakdowns import _ingest, _node, _run

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TABLE = {"trendsFilter": {"display": "ActionsTable"}}


@sqlite_only
async def test_trends_and_retention_compute_hogql_breakdowns_and_math(server: Server, tenant: Tenant) -> None:
    # Yesterday: a, b, c view a page with amounts 0, 4, 10 (tests/integration/test_shaped_breakdowns.py).
    await _ingest(server, tenant)
    bf = {"breakdown": "if(toFloat64OrNull(properties.amount) > 3, 'big', 'small')", "breakdown_type": "hogql"}
    series = [{"kind": "EventsNode", "event": "$pageview", "math": "hogql", "math_hogql": "sum(toFloat64OrNull(properties.amount)) + count()"}]
    trends = await _run(server, tenant, _node("TrendsQuery", qpb.TrendsQuery, series=series, breakdownFilter=bf, **TABLE))
    rendered = to_reference_json(trends.result.trends)
    # big: b and c, 4 + 10 + 2 events = 16; small: a, 0 + 1 = 1.
    assert [(s["breakdownValue"], s["aggregatedValue"]) for s in rendered["series"]] == [("big", 16), ("small", 1)]

    retention = await _run(
        server,
        tenant,
        _node("RetentionQuery", qpb.RetentionQuery, breakdownFilter={"breakdowns": [{"property": "upper(distinct_id)", "type": "hogql"}]}, retentionFilter={"totalIntervals": 2}),
    )
    sizes: dict[str, int] = {}
    rendered = to_reference_json(retention.result.retention)
    for cohort in rendered["results"]:
        sizes[cohort["breakdown_value"]] = sizes.get(cohort["breakdown_value"], 0) + cohort["values"][0]["count"]
    assert sizes == {"A": 1, "B": 1, "C": 1}


@sqlite_only
async def test_an_expression_the_engine_cannot_compute_is_invalid_argument_naming_it(server: Server, tenant: Tenant) -> None:
    await _ingest(server, tenant)
    series = [{"kind": "EventsNode", "event": "$pageview", "math": "hogql", "math_hogql": "properties.amount"}]
    err = await expect_error(
        _run(server, tenant, _node("TrendsQuery", qpb.TrendsQuery, series=series, **TABLE)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "query.series[0].math_hogql")
    bf = {"breakdown": "count()", "breakdown_type": "hogql"}
    err = await expect_error(
        _run(server, tenant, _node("TrendsQuery", qpb.TrendsQuery, series=[{"kind": "EventsNode", "event": "$pageview"}], breakdownFilter=bf, **TABLE)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "query.breakdownFilter.breakdown")
