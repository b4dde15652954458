"""Trends filtered by hogql and element property filters through the service, responses rendered
as protobuf JSON; a String-valued hogql filter is INVALID_ARGUMENT naming its key."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from tests.integration.itkit import Server, Tenant, bearer, error_info, expect_error

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
_T = qpb.PropertyFilterType
CHAIN = 'a.btn:href="/go"nth-child="1"nth-of-type="1"text="Go";div:nth-child="1"nth-of-type="1"'


def _trend(*filters: qpb.PropertyFilter) -> qpb.QueryNode:
    return qpb.QueryNode(
        trends_query=qpb.TrendsQuery(
            series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))],
            interval=qpb.INTERVAL_TYPE_DAY,
            date_range=qpb.DateRange(date_from="-3d"),
            properties=qpb.Properties(list=qpb.PropertyFilterList(values=list(filters))),
        )
    )


async def _ingest(server: Server, tenant: Tenant) -> None:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    events = [
        epb.Event(event="$pageview", distinct_id="u1", timestamp=stamp, properties=json.dumps({"plan": "pro"}), elements_chain=CHAIN),
        epb.Event(event="$pageview", distinct_id="u2", timestamp=stamp, properties=json.dumps({"plan": "pro"})),
        epb.Event(event="$pageview", distinct_id="u3", timestamp=stamp, properties=json.dumps({"plan": "free"})),
        epb.Event(event="$pageview", distinct_id="u4", timestamp=stamp, properties="{}"),
    ]
    stub = egrpc.EventsServiceStub(server.channel)
    request = epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)
    response = await stub.IngestEvents(iter([request]), metadata=bearer(tenant.key("event:write")), timeout=30)
    assert response.accepted == len(events)


async def _run(server: Server, tenant: Tenant, query: qpb.QueryNode) -> qs.QueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(environment_id=tenant.environment_id, query=query, refresh=cpb.REFRESH_MODE_BLOCKING)
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


@sqlite_only
async def test_a_trend_filtered_by_hogql_and_element_filters(server: Server, tenant: Tenant) -> None:
    await _ingest(server, tenant)
    hogql = qpb.PropertyFilter(type=_T.PROPERTY_FILTER_TYPE_HOGQL, key="properties.plan = 'pro'")
    element = qpb.PropertyFilter(
        type=_T.PROPERTY_FILTER_TYPE_ELEMENT, key="tag_name", value=qpb.PropertyValue(string_value="a")
    )
    for filters, count in (((hogql,), 2), ((element,), 1), ((hogql, element), 1)):
        response = await _run(server, tenant, _trend(*filters))
        (line,) = response.result.trends.series
        assert line.count == count
        rendered = json.loads(json_format.MessageToJson(response))
        assert rendered["result"]["trends"]["series"][0]["count"] == count

    refused = _trend(qpb.PropertyFilter(type=_T.PROPERTY_FILTER_TYPE_HOGQL, key="properties.plan"))
    err = await expect_error(_run(server, tenant, refused), grpc.StatusCode.INVALID_ARGUMENT)
    assert error_info(err).metadata["field"] == "query.properties[0].key"
    assert "the engine cannot compute the expression" in (err.details() or "")
