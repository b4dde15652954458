"""The actors of a path node or edge through the service: an InsightActorsQuery (reference JSON
converted by the codec) run by RunQuery over ingested events, its protobuf JSON (what grpcurl
prints), paging with has_more, refusals naming the field, and the query:read scope."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import grpc
from google.protobuf import json_format, timestamp_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from server.queries.common.codec import from_reference_json
from tests.integration.itkit import Server, Tenant, assert_invalid, bearer, error_info, expect_error

BLOCKING = cpb.REFRESH_MODE_BLOCKING
HOSTILE = "2_x'); DROP TABLE events; --"
_NOON = dt.datetime.combine(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2), dt.time(12), tzinfo=dt.UTC)


def _event(name: str, person: str, minutes: int, **props: object) -> epb.Event:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(_NOON + dt.timedelta(minutes=minutes))
    return epb.Event(event=name, distinct_id=person, timestamp=stamp, properties=json.dumps(props))


def _actors(keys: dict[str, str], **page: int) -> qpb.QueryNode:
    """The reference's drill-down JSON, as a client sends it."""
    source = {"kind": "PathsQuery", "pathsFilter": {"includeEventTypes": ["$pageview"], **keys}}
    return from_reference_json({"kind": "InsightActorsQuery", "source": source, **page}, qpb.QueryNode)


async def _run(server: Server, key: str, tenant: Tenant, query: qpb.QueryNode) -> qs.QueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(environment_id=tenant.environment_id, query=query, refresh=BLOCKING)
    return await stub.RunQuery(request, metadata=bearer(key), timeout=60)  # type: ignore[no-any-return]


async def _ingest(server: Server, tenant: Tenant) -> None:
    events = [
        _event("$pageview", "anna", 0, **{"$current_url": "/home", "$set": {"plan": "pro"}}),
        _event("$pageview", "anna", 1, **{"$current_url": "/pricing"}),
        _event("$pageview", "ben", 0, **{"$current_url": "/home"}),
        _event("$pageview", "ben", 2, **{"$current_url": "/pricing"}),
        _event("$pageview", "ben", 3, **{"$current_url": "/signup"}),
        _event("$pageview", "cleo", 0, **{"$current_url": "/home"}),
    ]
    stub = egrpc.EventsServiceStub(server.channel)
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)


def _people(response: qs.QueryResponse) -> list[list[str]]:
    return [list(a.distinct_ids) for a in response.result.actors.actors]


async def test_the_actors_of_an_edge_a_node_and_a_drop_off_come_back_through_run_query(
    server: Server, tenant: Tenant
) -> None:
    await _ingest(server, tenant)
    key = tenant.key("query:read")
    edge = await _run(server, key, tenant, _actors({"pathStartKey": "1_/home", "pathEndKey": "2_/pricing"}))
    assert sorted(_people(edge)) == [["anna"], ["ben"]]
    # What grpcurl prints: the reference's keys, persons with their distinct ids and properties.
    rendered: dict[str, Any] = json.loads(json_format.MessageToJson(edge.result.actors))
    assert rendered["limit"] == 100 and rendered["offset"] == 0
    anna = next(a for a in rendered["results"] if a["distinct_ids"] == ["anna"])
    assert json.loads(anna["properties"]) == {"plan": "pro"}
    assert set(anna) == {"id", "distinct_ids", "properties", "created_at"}
    ids = [a["id"] for a in rendered["results"]]
    assert ids == sorted(ids)
    assert not edge.has_more
    # Reached /signup at step 3; ended at /home (cleo alone); went on from 2_/pricing (ben).
    assert _people(await _run(server, key, tenant, _actors({"pathEndKey": "3_/signup"}))) == [["ben"]]
    assert _people(await _run(server, key, tenant, _actors({"pathDropoffKey": "1_/home"}))) == [["cleo"]]
    assert _people(await _run(server, key, tenant, _actors({"pathStartKey": "2_/pricing"}))) == [["ben"]]
    # Everyone, two per page, in id order.
    first = await _run(server, key, tenant, _actors({}, limit=2))
    rest = await _run(server, key, tenant, _actors({}, limit=2, offset=2))
    assert (len(first.result.actors.actors), first.has_more) == (2, True)
    assert (len(rest.result.actors.actors), rest.has_more) == (1, False)
    everyone = [a.id for a in [*first.result.actors.actors, *rest.result.actors.actors]]
    assert everyone == sorted(everyone) and len(set(everyone)) == 3
    # A hostile key is bound: nobody, and not in the SQL.
    hostile = await _run(server, key, tenant, _actors({"pathEndKey": HOSTILE}))
    assert _people(hostile) == [] and HOSTILE not in hostile.hogql


async def test_refusals_name_the_field(server: Server, tenant: Tenant) -> None:
    key = tenant.key("query:read")
    err = await expect_error(
        _run(server, key, tenant, _actors({"pathDropoffKey": "1_/home", "pathEndKey": "2_/pricing"})),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "query.source.pathsFilter.pathEndKey")
    err = await expect_error(_run(server, key, tenant, _actors({}, limit=0)), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "query.limit")
    trends = from_reference_json(
        {"kind": "InsightActorsQuery", "source": {"kind": "TrendsQuery", "series": [{"kind": "EventsNode"}]}},
        qpb.QueryNode,
    )
    err = await expect_error(_run(server, key, tenant, trends), grpc.StatusCode.UNIMPLEMENTED)
    info = error_info(err)
    assert info.reason == "ACTORS_SOURCE_NOT_IMPLEMENTED"
    assert (info.metadata["field"], info.metadata["kind"]) == ("source", "TrendsQuery")
    # The keys on a bare PathsQuery: UNIMPLEMENTED, pointing to the drill-down.
    bare = qpb.QueryNode(paths_query=qpb.PathsQuery(paths_filter=qpb.PathsFilter(path_end_key="2_/pricing")))
    err = await expect_error(_run(server, key, tenant, bare), grpc.StatusCode.UNIMPLEMENTED)
    assert error_info(err).metadata["field"] == "pathsFilter.pathEndKey"
    assert "InsightActorsQuery" in (err.details() or "")


async def test_listing_actors_needs_the_query_read_scope(server: Server, tenant: Tenant) -> None:
    err = await expect_error(
        _run(server, tenant.key("insight:write"), tenant, _actors({})), grpc.StatusCode.PERMISSION_DENIED
    )
    assert "query:read" in (err.details() or "")
