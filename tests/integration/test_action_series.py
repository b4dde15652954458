"""Trends series of stored actions through the service: the action is read when the query runs,
its version is part of the cache key (an edit computes anew), and a deleted one is refused by name."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import pytest
from google.protobuf import timestamp_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from tests.integration.actionkit import ActionsApi, step
from tests.integration.itkit import Server, Tenant, bearer, error_info, expect_error

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _action_trend(action_id: int) -> qpb.QueryNode:
    return qpb.QueryNode(
        trends_query=qpb.TrendsQuery(
            series=[qpb.SeriesNode(actions_node=qpb.ActionsNode(id=action_id))],
            interval=qpb.INTERVAL_TYPE_DAY,
            date_range=qpb.DateRange(date_from="-3d"),
        )
    )


async def _run(server: Server, tenant: Tenant, query: qpb.QueryNode, refresh: int) -> qs.QueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(environment_id=tenant.environment_id, query=query, refresh=refresh)  # type: ignore[arg-type]
    metadata = bearer(tenant.key("query:read"))
    return await stub.RunQuery(request, metadata=metadata, timeout=60)  # type: ignore[no-any-return]


@sqlite_only
async def test_editing_an_actions_steps_changes_the_cache_key_and_deleting_it_is_refused_by_name(
    server: Server, tenant: Tenant
) -> None:
    actions = ActionsApi.of(server, tenant, "action:write")
    action = await actions.create(name="Signed up", steps=[step(event="signup")])
    query = _action_trend(action.id)
    before = (await _run(server, tenant, query, cpb.REFRESH_MODE_FORCE_CACHE)).cache_key
    assert before and (await _run(server, tenant, query, cpb.REFRESH_MODE_FORCE_CACHE)).cache_key == before

    await actions.update(action.id, ["steps"], steps=[step(event="purchase")])
    edited = (await _run(server, tenant, query, cpb.REFRESH_MODE_FORCE_CACHE)).cache_key
    assert edited and edited != before

    await actions.delete(action.id)
    err = await expect_error(_run(server, tenant, query, cpb.REFRESH_MODE_BLOCKING), grpc.StatusCode.FAILED_PRECONDITION)
    assert f"action {action.id}" in (err.details() or "")
    info = error_info(err)
    assert info.reason == "ACTION_UNAVAILABLE"
    assert info.metadata["field"] == "query.series[0].id" and info.metadata["action"] == str(action.id)


async def _ingest(server: Server, tenant: Tenant, names: list[str], **props: object) -> None:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    events = [
        epb.Event(event=name, distinct_id=f"u{i}", timestamp=stamp, properties=json.dumps(props))
        for i, name in enumerate(names)
    ]
    stub = egrpc.EventsServiceStub(server.channel)
    request = epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)
    response = await stub.IngestEvents(iter([request]), metadata=bearer(tenant.key("event:write")), timeout=30)
    assert response.accepted == len(events)


@sqlite_only
async def test_an_action_series_counts_its_steps_and_recomputes_when_they_are_edited(
    server: Server, tenant: Tenant
) -> None:
    await _ingest(server, tenant, ["signup", "signup", "purchase"], **{"$current_url": "https://x.com/a"})
    actions = ActionsApi.of(server, tenant, "action:write")
    action = await actions.create(name="Signed up", steps=[step(event="signup", url="x.com")])
    query = _action_trend(action.id)
    first = await _run(server, tenant, query, cpb.REFRESH_MODE_BLOCKING)
    (line,) = first.result.trends.series
    assert line.count == 2 and line.label == "Signed up"
    assert (line.action.id, line.action.type, line.action.name) == (str(action.id), "actions", "Signed up")
    cached = await _run(server, tenant, query, cpb.REFRESH_MODE_BLOCKING)
    assert cached.is_cached and cached.result.trends.series[0].count == 2

    # Another step (OR) and a new name: the same query computes anew, with the new definition.
    await actions.update(
        action.id, ["steps", "name"], name="Converted", steps=[step(event="signup"), step(event="purchase")]
    )
    edited = await _run(server, tenant, query, cpb.REFRESH_MODE_BLOCKING)
    (line,) = edited.result.trends.series
    assert not edited.is_cached and line.count == 3 and line.label == "Converted"
