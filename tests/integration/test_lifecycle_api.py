"""Lifecycle through the service: computed from ingested events (ingestion sets each person's
created_at) by RunQuery and a saved insight, its protobuf JSON (what grpcurl prints) in the
reference's keys, invalid queries refused naming the field (and never saved), options not built yet
UNIMPLEMENTED naming the field (but savable)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from generated.insights.v1 import results_pb2 as rpb
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, error_info, expect_error

BLOCKING = cpb.REFRESH_MODE_BLOCKING
HOSTILE = "x'); DROP TABLE events; --"
_TODAY = dt.datetime.now(dt.UTC).date()


def _event(name: str, person: str, days_ago: int, **props: object) -> epb.Event:
    at = dt.datetime.combine(_TODAY - dt.timedelta(days=days_ago), dt.time(12), tzinfo=dt.UTC)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return epb.Event(event=name, distinct_id=person, timestamp=stamp, properties=json.dumps(props))


def _lifecycle(*filters: qpb.PropertyFilter, **fields: object) -> qpb.LifecycleQuery:
    node = qpb.EventsNode(event="$pageview", properties=list(filters))
    return qpb.LifecycleQuery(series=[qpb.SeriesNode(events_node=node)], **fields)  # type: ignore[arg-type]


def _viz(query: qpb.LifecycleQuery) -> qpb.QueryNode:
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(lifecycle_query=query)))


async def _run(server: Server, tenant: Tenant, query: qpb.LifecycleQuery) -> qs.RunQueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(
        environment_id=tenant.environment_id, query=qpb.QueryNode(lifecycle_query=query), refresh=BLOCKING
    )
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


def _data(result: rpb.LifecycleResult) -> dict[str, list[float]]:
    return {qpb.LifecycleToggle.Name(s.status): list(s.data) for s in result.series}


async def test_ingested_events_come_back_as_four_statuses_through_run_query_and_a_saved_insight(
    api: Api, server: Server, tenant: Tenant
) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    events = [
        _event("$pageview", "a", 3),
        _event("$pageview", "a", 2),
        _event("$pageview", "b", 3, plan=HOSTILE),
        _event("signup", "c", 5),  # c is created 5 days ago, first counted 1 day ago
        _event("$pageview", "c", 1),
    ]
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    # The default range: 7 days ago to today, 8 days; n days ago is index 7 - n.
    computed = await _run(server, tenant, _lifecycle())
    series = computed.result.lifecycle.series
    assert [s.label for s in series] == [
        f"$pageview - {s}" for s in ("new", "returning", "resurrecting", "dormant")
    ]
    assert series[0].days[-1] == _TODAY.isoformat() and len(series[0].days) == 8
    assert _data(computed.result.lifecycle) == {
        "LIFECYCLE_TOGGLE_NEW": [0, 0, 0, 0, 2, 0, 0, 0],
        "LIFECYCLE_TOGGLE_RETURNING": [0, 0, 0, 0, 0, 1, 0, 0],
        "LIFECYCLE_TOGGLE_RESURRECTING": [0, 0, 0, 0, 0, 0, 1, 0],
        "LIFECYCLE_TOGGLE_DORMANT": [0, 0, 0, 0, 0, -1, -1, -1],
    }
    # What grpcurl prints: protobuf JSON with the reference's keys ("results", "status", "action").
    rendered = json.loads(json_format.MessageToJson(computed.result.lifecycle))
    first = rendered["results"][0]
    assert first["status"] == "LIFECYCLE_TOGGLE_NEW" and first["count"] == 2
    assert first["action"] == {
        "id": "$pageview",
        "type": "events",
        "order": 0,
        "name": "$pageview",
        "math": "MATH_TYPE_TOTAL",
    }
    assert rendered["results"][3]["count"] == -3

    # A hostile filter value is bound, never SQL text: it matches the one event that has it.
    filtered = _lifecycle(qpb.PropertyFilter(key="plan", value=qpb.PropertyValue(string_value=HOSTILE)))
    found = await _run(server, tenant, filtered)
    assert _data(found.result.lifecycle)["LIFECYCLE_TOGGLE_NEW"] == [0, 0, 0, 0, 1, 0, 0, 0]
    assert HOSTILE not in found.hogql

    # A saved insight computes the same on a computing read.
    saved = await api.create(name="lifecycle", query=_viz(_lifecycle()))
    got = await api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=60,
    )
    assert _data(got.result.lifecycle) == _data(computed.result.lifecycle)


INVALID: list[tuple[str, Callable[[], qpb.LifecycleQuery]]] = [
    ("series", lambda: qpb.LifecycleQuery()),
    (
        "series[0].math",
        lambda: qpb.LifecycleQuery(
            series=[qpb.SeriesNode(events_node=qpb.EventsNode(math=qpb.MATH_TYPE_DAU))]
        ),
    ),
    ("samplingFactor", lambda: _lifecycle(sampling_factor=2)),
]


@pytest.mark.parametrize(("field", "build"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
async def test_an_invalid_lifecycle_query_is_refused_naming_the_field_and_not_saved(
    api: Api, field: str, build: Callable[[], qpb.LifecycleQuery]
) -> None:
    err = await expect_error(
        api.create(name="bad lifecycle", query=_viz(build())), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, f"insight.query.source.{field}")
    assert (await api.list()).count == 0


LATER: list[tuple[str, Callable[[], qpb.LifecycleQuery]]] = [
    ("aggregation_group_type_index", lambda: _lifecycle(aggregation_group_type_index=0)),
    ("samplingFactor", lambda: _lifecycle(sampling_factor=0.5)),
]


@pytest.mark.parametrize(("field", "build"), LATER, ids=[f for f, _ in LATER])
async def test_an_option_not_built_yet_is_unimplemented_naming_the_field_but_can_be_saved(
    api: Api, server: Server, tenant: Tenant, field: str, build: Callable[[], qpb.LifecycleQuery]
) -> None:
    err = await expect_error(_run(server, tenant, build()), grpc.StatusCode.UNIMPLEMENTED)
    info = error_info(err)
    assert info.reason == "LIFECYCLE_OPTION_NOT_IMPLEMENTED" and info.metadata["field"] == field
    assert (err.details() or "").startswith(field)
    saved = await api.create(name="later", query=_viz(build()))
    assert saved.id and not saved.HasField("result")
