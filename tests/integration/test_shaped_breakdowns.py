"""Histogram and URL-normalising breakdowns through the real server: trends, funnels and retention
computed from ingested events, an alert on a histogram breakdown naming the bucket, and a bad bin
count refused as INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from server.queries.common.codec import from_reference_json
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, expect_error, viz
from tests.integration.test_alert_checks import check_now
from tests.integration.test_alerts import Alerts, bounds

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

_YESTERDAY_NOON = dt.datetime.combine(
    dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC
)


def _event(name: str, person: str, minute: int, **props: object) -> epb.Event:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(_YESTERDAY_NOON + dt.timedelta(minutes=minute))
    return epb.Event(event=name, distinct_id=person, timestamp=stamp, properties=json.dumps(props))


async def _ingest(server: Server, tenant: Tenant) -> None:
    """Yesterday: a, b, c view a page (amounts 0, 4, 10; URLs that are one page for a and b);
    a signs up. By hand, 2 bins over [0, 10]: [0,5) holds a and b, [5,10.01) holds c."""
    events = [
        _event("$pageview", "a", 0, amount=0, **{"$current_url": "https://x.com/a/"}),
        _event("signup", "a", 10),
        _event("$pageview", "b", 0, amount=4, **{"$current_url": "https://x.com/a?#"}),
        _event("$pageview", "c", 0, amount=10, **{"$current_url": "/"}),
    ]
    stub = egrpc.EventsServiceStub(server.channel)
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)


async def _run(server: Server, tenant: Tenant, query: qpb.QueryNode) -> qs.QueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(
        environment_id=tenant.environment_id,
        query=query,
        refresh=cpb.REFRESH_MODE_BLOCKING,  # type: ignore[arg-type]
    )
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


def _node(kind: str, message: Any, **fields: Any) -> qpb.QueryNode:
    query = from_reference_json({"kind": kind, "dateRange": {"date_from": "-7d"}, **fields}, message)
    field = {
        "TrendsQuery": "trends_query",
        "FunnelsQuery": "funnels_query",
        "RetentionQuery": "retention_query",
    }
    return qpb.QueryNode(**{field[kind]: query})


HISTOGRAM = {"breakdown": "amount", "breakdown_histogram_bin_count": 2}
TRENDS = {
    "series": [{"kind": "EventsNode", "event": "$pageview"}],
    "trendsFilter": {"display": "ActionsTable"},
}


@sqlite_only
async def test_trends_funnels_and_retention_break_down_by_bucket_and_normalised_url(
    server: Server, tenant: Tenant
) -> None:
    await _ingest(server, tenant)
    trends = await _run(
        server, tenant, _node("TrendsQuery", qpb.TrendsQuery, breakdownFilter=HISTOGRAM, **TRENDS)
    )
    assert [(s.breakdown_value.string_value, s.aggregated_value) for s in trends.result.trends.series] == [
        ("[0.0,5.0]", 2),
        ("[5.0,10.01]", 1),
    ]

    url = {"breakdown": "$current_url", "breakdown_normalize_url": True}
    steps = [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}]
    funnel = await _run(
        server, tenant, _node("FunnelsQuery", qpb.FunnelsQuery, series=steps, breakdownFilter=url)
    )
    groups = [
        ([v.string_value for v in g.steps[0].breakdown_value.list_value.values], [s.count for s in g.steps])
        for g in funnel.result.funnels.steps.breakdowns
    ]
    assert groups == [(["https://x.com/a"], [2, 1]), (["/"], [1, 0])]

    retention = await _run(
        server,
        tenant,
        _node(
            "RetentionQuery",
            qpb.RetentionQuery,
            breakdownFilter=HISTOGRAM,
            retentionFilter={"totalIntervals": 2},
        ),
    )
    sizes: dict[str, int] = {}
    for cohort in retention.result.retention.cohorts:
        value = cohort.breakdown_value.string_value
        sizes[value] = sizes.get(value, 0) + cohort.values[0].count
    assert sizes == {"[0.0,5.0]": 2, "[5.0,10.01]": 1}


@sqlite_only
async def test_a_bad_bin_count_is_invalid_argument_naming_the_field(server: Server, tenant: Tenant) -> None:
    bad = {"breakdown": "amount", "breakdown_histogram_bin_count": 0}
    err = await expect_error(
        _run(server, tenant, _node("TrendsQuery", qpb.TrendsQuery, breakdownFilter=bad, **TRENDS)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "query.breakdownFilter.breakdown_histogram_bin_count")


@sqlite_only
async def test_an_alert_on_a_histogram_breakdown_names_the_bucket(
    server: Server, api: Api, tenant: Tenant
) -> None:
    await _ingest(server, tenant)
    query = from_reference_json(
        {
            "kind": "TrendsQuery",
            "series": [{"kind": "EventsNode", "event": "$pageview"}],
            "dateRange": {"date_from": "-7d"},
            "breakdownFilter": HISTOGRAM,
        },
        qpb.TrendsQuery,
    )
    insight = await api.create(name="By amount", query=viz(qpb.InsightSource(trends_query=query)))
    alerts = Alerts(
        agrpc.AlertsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("alert:write"))
    )
    # Yesterday, the last complete day: [0,5) has 2 views, [5,10.01) 1; above 1 breaches once.
    alert = await alerts.create(insight.id, threshold=bounds(upper=1))
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_FIRING, check.error
    metadata = json_format.MessageToDict(check.triggered_metadata)
    assert metadata["triggered_breakdown_values"] == ["[0.0,5.0]"]
    assert check.calculated_value == 2
