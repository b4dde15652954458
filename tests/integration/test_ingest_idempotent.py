"""Events are stored once per (environment, uuid): re-sent, repeated in a batch or raced by two
streams, they are counted once by queries; IngestEventBatches acknowledges each batch."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest

from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from server.domain.ingest import MAX_BATCH_EVENTS
from storage.events import EventRow
from tests.integration import itkit
from tests.integration.itkit import Server, Tenant, assert_invalid, bearer, error_info, expect_error

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture
async def tenant(server: Server, make_tenant: Callable[[], Tenant]) -> Tenant:
    """A fresh tenant whose environment id has no events yet."""
    return await itkit.eventless_tenant(server, make_tenant)


def pageviews(count: int, *, start: int = 0, distinct_id: str = "visitor") -> list[epb.Event]:
    """`count` pageviews with their own uuids, spread over the last two days."""
    return [
        epb.Event(
            event="$pageview",
            distinct_id=f"{distinct_id}-{i % 7}",
            timestamp=itkit.timestamp(NOW - dt.timedelta(minutes=3 * i + 1)),
            uuid=str(uuid.uuid4()),
            properties=f'{{"n": {start + i}}}',
        )
        for i in range(count)
    ]


async def ingest(
    server: Server, key: str, environment_id: int, *batches: list[epb.Event]
) -> epb.IngestEventsResponse:
    stub = egrpc.EventsServiceStub(server.channel)
    requests = [epb.IngestEventsRequest(environment_id=environment_id, events=batch) for batch in batches]
    return await stub.IngestEvents(iter(requests), metadata=bearer(key), timeout=60)


async def ingest_batches(
    server: Server, key: str, requests: list[epb.IngestEventBatchesRequest]
) -> list[epb.IngestEventBatchesResponse]:
    stub = egrpc.EventsServiceStub(server.channel)
    call = stub.IngestEventBatches(iter(requests), metadata=bearer(key), timeout=60)
    return [ack async for ack in call]


async def stored(server: Server, environment_id: int) -> int:
    return int(await asyncio.to_thread(server.app.events.count_events, environment_id))


async def trend_total(server: Server, tenant: Tenant) -> float:
    """The environment's $pageview total over the last week, as RunQuery computes it."""
    return await itkit.week_pageviews(server.channel, tenant.environment_id, bearer(tenant.key("query:read")))


async def test_the_same_thousand_uuids_sent_twice_are_stored_and_counted_once(
    server: Server, tenant: Tenant
) -> None:
    env, key = tenant.environment_id, tenant.key("event:write")
    events = pageviews(1000)
    first = await ingest(server, key, env, events[:500], events[500:])
    assert (first.accepted, first.duplicates, first.rejected) == (1000, 0, 0)
    again = await ingest(server, key, env, events)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 1000, 0)
    assert await stored(server, env) == 1000
    assert await trend_total(server, tenant) == 1000

    # The same uuids again through the acknowledged stream: all duplicates.
    acks = await ingest_batches(
        server, key, [epb.IngestEventBatchesRequest(environment_id=env, sequence=1, events=events)]
    )
    assert [(a.sequence, a.accepted, a.duplicates, a.rejected) for a in acks] == [(1, 0, 1000, 0)]
    assert await stored(server, env) == 1000
    assert await trend_total(server, tenant) == 1000


async def test_copies_within_one_batch_are_stored_once_and_the_first_copy_wins(
    server: Server, tenant: Tenant
) -> None:
    env, key = tenant.environment_id, tenant.key("event:write")
    events = pageviews(10)
    later_copy = epb.Event()
    later_copy.CopyFrom(events[3])
    later_copy.properties = '{"n": "changed"}'
    batch = [*events, events[0], later_copy, events[9]]
    response = await ingest(server, key, env, batch)
    assert (response.accepted, response.duplicates) == (10, 3)
    acks = await ingest_batches(
        server, key, [epb.IngestEventBatchesRequest(environment_id=env, sequence=7, events=[later_copy] * 3)]
    )
    assert [(a.accepted, a.duplicates) for a in acks] == [(0, 3)]
    rows = await asyncio.to_thread(
        server.app.events.query,
        "SELECT properties FROM events WHERE team_id = {env:Int64} AND uuid = {u:UUID}",
        {"env": env, "u": events[3].uuid},
    )
    assert rows == [('{"n": 3}',)]
    assert await stored(server, env) == 10
    assert await trend_total(server, tenant) == 10


async def test_environments_holding_the_same_uuid_each_store_it(server: Server, tenant: Tenant) -> None:
    other = tenant.add_environment()
    key = tenant.key("event:write")
    before = await stored(server, other)
    events = pageviews(25)
    for env in (tenant.environment_id, other):
        response = await ingest(server, key, env, events)
        assert (response.accepted, response.duplicates) == (25, 0)
    assert await stored(server, tenant.environment_id) == 25
    assert await stored(server, other) == before + 25


async def test_each_batch_is_acknowledged_in_order_with_its_counts_and_rejections(
    server: Server, tenant: Tenant
) -> None:
    env, key = tenant.environment_id, tenant.key("event:write")
    first, second = pageviews(5), pageviews(4, start=5)
    second[2] = epb.Event(event="", distinct_id="x", timestamp=itkit.timestamp(NOW))  # index 2 of its batch
    requests = [
        epb.IngestEventBatchesRequest(environment_id=env, sequence=41, events=first),
        epb.IngestEventBatchesRequest(environment_id=env, sequence=42, events=second),
        epb.IngestEventBatchesRequest(environment_id=env, sequence=43, events=[]),
        epb.IngestEventBatchesRequest(environment_id=env, sequence=44, events=[first[0], second[0]]),
    ]
    acks = await ingest_batches(server, key, requests)
    assert [(a.sequence, a.accepted, a.duplicates, a.rejected) for a in acks] == [
        (41, 5, 0, 0),
        (42, 3, 0, 1),
        (43, 0, 0, 0),
        (44, 0, 2, 0),
    ]
    assert [r.index for r in acks[1].rejections] == [2]
    assert "event is required" in acks[1].rejections[0].reason
    assert await stored(server, env) == 8


async def test_a_batch_stream_is_refused_past_its_limits_and_out_of_its_scope(
    server: Server, tenant: Tenant
) -> None:
    env, key = tenant.environment_id, tenant.key("event:write")
    stub = egrpc.EventsServiceStub(server.channel)
    ok = epb.IngestEventBatchesRequest(environment_id=env, sequence=1, events=pageviews(3))
    oversized = epb.IngestEventBatchesRequest(
        environment_id=env, sequence=2, events=pageviews(1)[:1] * (MAX_BATCH_EVENTS + 1)
    )
    call = stub.IngestEventBatches(iter([ok, oversized]), metadata=bearer(key), timeout=60)
    acks: list[epb.IngestEventBatchesResponse] = []

    async def read() -> None:
        async for ack in call:
            acks.append(ack)

    err = await expect_error(read(), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "events")
    # The batch acknowledged before the refusal is stored; the refused one is not.
    assert [a.sequence for a in acks] == [1]
    assert await stored(server, env) == 3

    other = tenant.add_environment()
    mixed = [ok, epb.IngestEventBatchesRequest(environment_id=other, sequence=2, events=pageviews(1))]
    err = await expect_error(ingest_batches(server, key, mixed), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "environment_id")

    weak = tenant.key("event:read")
    err = await expect_error(ingest_batches(server, weak, [ok]), grpc.StatusCode.PERMISSION_DENIED)
    assert error_info(err).reason == "MISSING_SCOPE"
    assert await stored(server, env) == 3


async def test_streams_racing_with_the_same_events_store_them_once(server: Server, tenant: Tenant) -> None:
    env, key = tenant.environment_id, tenant.key("event:write")
    events = pageviews(2000)
    batches = [events[i : i + 250] for i in range(0, 2000, 250)]

    def requests() -> Iterator[epb.IngestEventBatchesRequest]:
        for number, batch in enumerate(batches):
            yield epb.IngestEventBatchesRequest(environment_id=env, sequence=number, events=batch)

    stub = egrpc.EventsServiceStub(server.channel)

    async def one_stream() -> list[epb.IngestEventBatchesResponse]:
        call = stub.IngestEventBatches(requests(), metadata=bearer(key), timeout=120)
        return [ack async for ack in call]

    results = await asyncio.gather(*(one_stream() for _ in range(4)))
    assert sum(a.accepted for acks in results for a in acks) == 2000
    assert sum(a.duplicates for acks in results for a in acks) == 3 * 2000
    assert await stored(server, env) == 2000
    assert await trend_total(server, tenant) == 2000


async def test_direct_inserts_racing_in_threads_store_each_event_once(server: Server, tenant: Tenant) -> None:
    env = tenant.environment_id
    at = [NOW - dt.timedelta(seconds=i) for i in range(1000)]
    rows = [EventRow(env, uuid.uuid4(), "$pageview", "d", uuid.uuid4(), t, "{}", "{}") for t in at]
    start = threading.Barrier(4)
    outcomes = []

    def insert() -> None:
        start.wait()
        outcomes.append(server.app.events.insert_new_events(rows))

    await asyncio.gather(*(asyncio.to_thread(insert) for _ in range(4)))
    assert sorted((o.inserted, o.duplicates) for o in outcomes) == [(0, 1000)] * 3 + [(1000, 0)]
    assert await stored(server, env) == 1000
    # The column path follows the same rule.
    columns = [list(column) for column in zip(*rows, strict=True)]
    assert await asyncio.to_thread(server.app.events.insert_event_columns, columns) == 0
    assert await stored(server, env) == 1000

    # A large batch mixing stored events with new ones on a day the environment has no events yet.
    earlier = [r._replace(uuid=uuid.uuid4(), timestamp=NOW - dt.timedelta(days=3)) for r in rows]
    outcome = await asyncio.to_thread(server.app.events.insert_new_events, [*rows, *earlier, *rows[:500]])
    assert (outcome.inserted, outcome.duplicates) == (1000, 1500)
    assert await stored(server, env) == 2000
