"""What the API tests of the query kinds share: events at a time, ingestion, RunQuery of a kind's
node, and the two refusal checks (invalid: never saved; not built yet: UNIMPLEMENTED but savable)."""

from __future__ import annotations

import datetime as dt
import json
import re

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, error_info, expect_error

BLOCKING = cpb.REFRESH_MODE_BLOCKING
HOSTILE = "x'); DROP TABLE events; --"


def event_at(name: str, person: str, at: dt.datetime, **props: object) -> epb.Event:
    """An event to ingest: `name` by `person` at `at`, with `props` as its properties."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return epb.Event(event=name, distinct_id=person, timestamp=stamp, properties=json.dumps(props))


def noon(days_ago: int) -> dt.datetime:
    """Noon (UTC) `days_ago` days before today."""
    return dt.datetime.combine(
        dt.datetime.now(dt.UTC).date() - dt.timedelta(days=days_ago), dt.time(12), tzinfo=dt.UTC
    )


async def ingest(server: Server, tenant: Tenant, events: list[epb.Event]) -> None:
    """Ingests `events` into the tenant's environment; every one must be accepted."""
    stub = egrpc.EventsServiceStub(server.channel)
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)


def _member(query: Message) -> str:
    """The QueryNode / InsightSource oneof member of a kind's node: RetentionQuery -> retention_query."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", query.DESCRIPTOR.name).lower()


def viz(query: Message) -> qpb.QueryNode:
    """`query` as an insight saves it: the source of an InsightVizNode."""
    source = qpb.InsightSource(**{_member(query): query})
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=source))


async def run(server: Server, tenant: Tenant, query: Message) -> qs.RunQueryResponse:
    """RunQuery (blocking) of `query` as a bare node, with a query:read key."""
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(
        environment_id=tenant.environment_id, query=qpb.QueryNode(**{_member(query): query}), refresh=BLOCKING
    )
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


async def check_invalid_not_saved(api: Api, query: Message, field: str) -> None:
    """Saving `query` is INVALID_ARGUMENT naming `field` (under insight.query.source) and saves nothing."""
    err = await expect_error(api.create(name="invalid", query=viz(query)), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, f"insight.query.source.{field}")
    assert (await api.list()).count == 0


async def check_later_but_savable(
    api: Api, server: Server, tenant: Tenant, query: Message, field: str, reason: str
) -> None:
    """Computing `query` is UNIMPLEMENTED with `reason` and metadata naming `field` (the message
    starts with it); saving it without a result works."""
    err = await expect_error(run(server, tenant, query), grpc.StatusCode.UNIMPLEMENTED)
    info = error_info(err)
    assert info.reason == reason and info.metadata["field"] == field
    assert (err.details() or "").startswith(field)
    saved = await api.create(name="later", query=viz(query))
    assert saved.id and not saved.HasField("result")


def day_event(name: str, person: str, days_ago: int, **props: object) -> epb.Event:
    """An event at noon (UTC) `days_ago` days before today."""
    return event_at(name, person, noon(days_ago), **props)
