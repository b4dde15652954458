"""EventsService.IngestEvents through the real server: counts, rejections, environments, scopes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator

import grpc
import pytest

from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from server.domain.ingest import IncomingEvent, Rejected, person_id_for, validate
from tests.integration import itkit
from tests.integration.itkit import Server, Tenant, assert_invalid, bearer, error_info, expect_error


@pytest.fixture
async def tenant(server: Server, make_tenant: Callable[[], Tenant]) -> Tenant:
    """A fresh tenant whose environment id has no events yet."""
    return await itkit.eventless_tenant(server, make_tenant)


NOW = dt.datetime.now(dt.UTC).replace(microsecond=123456)


def event(name: str = "$pageview", distinct_id: str = "user-1", **fields: object) -> epb.Event:
    fields.setdefault("timestamp", itkit.timestamp(NOW - dt.timedelta(hours=1)))
    return epb.Event(event=name, distinct_id=distinct_id, **fields)  # type: ignore[arg-type]


def stream(environment_id: int, *batches: list[epb.Event]) -> Iterator[epb.IngestEventsRequest]:
    for batch in batches:
        yield epb.IngestEventsRequest(environment_id=environment_id, events=batch)


async def ingest(
    server: Server, key: str, requests: Iterator[epb.IngestEventsRequest]
) -> epb.IngestEventsResponse:
    stub = egrpc.EventsServiceStub(server.channel)
    return await stub.IngestEvents(requests, metadata=bearer(key), timeout=30)


async def rows(server: Server, sql: str, **params: object) -> list[tuple[object, ...]]:
    return await asyncio.to_thread(server.app.events.query, sql, params)


async def test_valid_events_are_stored_and_invalid_ones_reported_by_index(
    server: Server, tenant: Tenant
) -> None:
    env = tenant.environment_id
    key = tenant.key("event:write")
    given_uuid, given_person = uuid.uuid4(), uuid.uuid4()
    first = [
        event(properties='{"$browser": "Chrome", "$session_id": "s-1", "big": 12345678901234567890}'),
        event(name=""),  # 1
        event(properties='{"broken": '),  # 2
    ]
    second = [
        event(
            name="purchase",
            distinct_id="user-2",
            uuid=str(given_uuid),
            person_id=str(given_person),
            person_properties='{"email": "a@b.c"}',
        ),
        event(timestamp=itkit.timestamp(NOW + dt.timedelta(days=3))),  # 4
        event(uuid="not-a-uuid"),  # 5
        event(properties="[1, 2]"),  # 6
        epb.Event(event="$pageview", distinct_id="user-3"),  # 7: no timestamp
        event(distinct_id="d" * 201),  # 8
        event(timestamp=itkit.timestamp(dt.datetime(1999, 12, 31, tzinfo=dt.UTC))),  # 9
    ]
    response = await ingest(server, key, stream(env, first, second))
    assert (response.accepted, response.rejected) == (2, 8)
    reasons = {r.index: r.reason for r in response.rejections}
    assert sorted(reasons) == [1, 2, 4, 5, 6, 7, 8, 9]
    assert "event" in reasons[1]
    assert "properties" in reasons[2] and "JSON" in reasons[2]
    assert "future" in reasons[4]
    assert "uuid" in reasons[5]
    assert "JSON object" in reasons[6]
    assert "timestamp" in reasons[7]
    assert "distinct_id" in reasons[8] and "200" in reasons[8]
    assert "2000" in reasons[9]

    stored = await rows(
        server,
        "SELECT event, distinct_id, person_id, uuid, timestamp, properties, person_properties, `$session_id`"
        " FROM events WHERE team_id = {env:Int64} ORDER BY event",
        env=env,
    )
    assert len(stored) == 2
    pageview, purchase = stored
    assert pageview[0] == "$pageview"
    # The person is derived from environment and distinct_id; properties are kept verbatim.
    assert pageview[2] == person_id_for(env, "user-1")
    assert pageview[5] == '{"$browser": "Chrome", "$session_id": "s-1", "big": 12345678901234567890}'
    assert pageview[7] == "s-1"
    assert pageview[4] == (NOW - dt.timedelta(hours=1)).replace(tzinfo=None)
    assert purchase[2:4] == (given_person, given_uuid)
    assert json.loads(str(purchase[6])) == {"email": "a@b.c"}
    assert await asyncio.to_thread(server.app.events.count_events, env) == 2
    earliest = await asyncio.to_thread(server.app.events.earliest_timestamp, env)
    assert earliest == NOW - dt.timedelta(hours=1)


CHAIN = (
    'a.btn.primary:attr__href="/signup"href="/signup"nth-child="1"nth-of-type="1"text="Sign \\"up\\"";'
    'div.hero:nth-child="2"nth-of-type="1";form:attr_id="f"nth-child="1"nth-of-type="1"'
)


async def test_autocapture_chains_and_person_updates_arrive_through_ingest_events(
    server: Server, tenant: Tenant
) -> None:
    env = tenant.environment_id
    first_seen = NOW - dt.timedelta(hours=5)
    events = [
        event("$autocapture", "ann", elements_chain=CHAIN, properties='{"$set": {"plan": "pro"}}'),
        event("$autocapture", "ann", elements_chain="a:" + "x" * 65_535),  # 1: over the bound
        event(
            "$pageview",
            "ann",
            timestamp=itkit.timestamp(first_seen),
            properties='{"$set": {"plan": "free", "email": "ann@x.io"}, "$set_once": {"first": "/"}}',
        ),
    ]
    response = await ingest(server, tenant.key("event:write"), stream(env, events))
    assert (response.accepted, response.rejected) == (2, 1)
    assert response.rejections[0].index == 1
    assert response.rejections[0].reason == "elements_chain is 65537 bytes, more than the 65536 allowed"
    stored = await rows(
        server,
        "SELECT elements_chain, elements_chain_href, elements_chain_texts, elements_chain_ids,"
        " elements_chain_elements FROM events WHERE team_id = {env:Int64} AND event = '$autocapture'",
        env=env,
    )
    assert stored == [(CHAIN, "/signup", ['Sign "up"'], ["f"], ["a", "form"])]
    # The person appeared with the earliest event; the later $set won over the earlier one.
    persons = await asyncio.to_thread(server.app.events.current_persons, env)
    properties, created_at = persons[person_id_for(env, "ann")]
    assert json.loads(properties) == {"plan": "pro", "email": "ann@x.io", "first": "/"}
    assert created_at == first_seen


async def test_many_messages_are_counted_across_the_stream(server: Server, tenant: Tenant) -> None:
    env = tenant.environment_id
    batches = [[event(distinct_id=f"u{m}-{i}") for i in range(50)] for m in range(6)]
    batches[3][10] = event(name="")  # stream index 3*50+10
    response = await ingest(server, tenant.key("event:write"), stream(env, *batches))
    assert (response.accepted, response.rejected) == (299, 1)
    assert [r.index for r in response.rejections] == [160]
    assert await asyncio.to_thread(server.app.events.count_events, env) == 299


async def test_an_empty_stream_stores_nothing(server: Server, tenant: Tenant) -> None:
    response = await ingest(server, tenant.key("event:write"), iter(()))
    assert (response.accepted, response.rejected) == (0, 0)


async def test_a_stream_mixing_environments_is_refused(server: Server, tenant: Tenant) -> None:
    other = tenant.add_environment()
    key = tenant.key("event:write")
    before = await asyncio.to_thread(server.app.events.count_events, other)
    requests = iter(
        [
            epb.IngestEventsRequest(environment_id=tenant.environment_id, events=[event()]),
            epb.IngestEventsRequest(environment_id=other, events=[event()]),
        ]
    )
    err = await expect_error(ingest(server, key, requests), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "environment_id")
    assert await asyncio.to_thread(server.app.events.count_events, other) == before


async def test_the_event_write_scope_is_required(server: Server, tenant: Tenant) -> None:
    env = tenant.environment_id
    for scopes in (("insight:write",), ("event:read",)):
        key = tenant.key(*scopes)
        err = await expect_error(
            ingest(server, key, stream(env, [event()])), grpc.StatusCode.PERMISSION_DENIED
        )
        assert error_info(err).reason == "MISSING_SCOPE"
    assert await asyncio.to_thread(server.app.events.count_events, env) == 0
    response = await ingest(server, tenant.key("*"), stream(env, [event()]))
    assert response.accepted == 1


async def test_an_environment_out_of_reach_is_refused(
    server: Server, tenant: Tenant, make_tenant: Callable[[], Tenant]
) -> None:
    stranger = make_tenant()
    err = await expect_error(
        ingest(server, tenant.key("event:write"), stream(stranger.environment_id, [event()])),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_info(err).reason == "ENVIRONMENT_ACCESS_DENIED"
    scoped = tenant.key("event:write", environments=[tenant.environment_id])
    other = tenant.add_environment()
    await expect_error(ingest(server, scoped, stream(other, [event()])), grpc.StatusCode.PERMISSION_DENIED)


async def test_missing_key_is_unauthenticated(server: Server, tenant: Tenant) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    await expect_error(
        stub.IngestEvents(stream(tenant.environment_id, [event()]), timeout=10),
        grpc.StatusCode.UNAUTHENTICATED,
    )


# Validation rules, checked directly (the same function serves the RPC and the loader).


@pytest.mark.parametrize(
    ("incoming", "reason"),
    [
        (IncomingEvent("  ", "d", NOW), "event is required"),
        (IncomingEvent("e" * 201, "d", NOW), "event is longer than 200"),
        (IncomingEvent("e", "", NOW), "distinct_id is required"),
        (IncomingEvent("e", "d", None), "timestamp is required"),
        (IncomingEvent("e", "d", NOW, properties="NaN"), "properties is not valid JSON"),
        (IncomingEvent("e", "d", NOW, properties='{"x": NaN}'), "properties is not valid JSON"),
        (IncomingEvent("e", "d", NOW, person_properties='"text"'), "person_properties must be a JSON object"),
        (IncomingEvent("e", "d", NOW, person_id="nope"), "person_id is not a valid UUID"),
        (IncomingEvent("e\ud800", "d", NOW), "event is not valid UTF-8"),
        (
            IncomingEvent("e", "d", NOW, elements_chain="a:" + "x" * 65_535),
            "elements_chain is 65537 bytes, more than the 65536 allowed",
        ),
        # Bytes, not characters: 32,769 two-byte characters are over the bound.
        (IncomingEvent("e", "d", NOW, elements_chain="é" * 32_769), "elements_chain is 65538 bytes"),
        (IncomingEvent("e", "d", NOW, elements_chain='a:text="\udc80"'), "elements_chain is not valid UTF-8"),
    ],
)
def test_validation_reasons(incoming: IncomingEvent, reason: str) -> None:
    with pytest.raises(Rejected) as exc:
        validate(1, incoming, NOW)
    assert reason in exc.value.reason


def test_validation_accepts_edges_and_fills_ids() -> None:
    naive = dt.datetime(2000, 1, 1)
    row = validate(5, IncomingEvent("e" * 200, "d" * 200, naive), NOW)
    assert row.timestamp == naive.replace(tzinfo=dt.UTC)
    assert row.properties == "{}" and row.person_properties == "{}"
    assert row.person_id == person_id_for(5, "d" * 200) != person_id_for(6, "d" * 200)
    assert row.uuid.version == 4
    assert row.elements_chain == ""
    longest = "a:" + "x" * 65_534
    assert validate(5, IncomingEvent("e", "d", NOW, elements_chain=longest), NOW).elements_chain == longest
    ahead = validate(5, IncomingEvent("e", "d", NOW + dt.timedelta(hours=23)), NOW)
    assert ahead.timestamp == NOW + dt.timedelta(hours=23)
