"""Lifecycle through the service: computed from ingested events (ingestion sets each person's
created_at) by RunQuery and a saved insight, its protobuf JSON (what grpcurl prints) in the
reference's keys, invalid queries refused naming the field (and never saved), options not built yet
UNIMPLEMENTED naming the field (but savable)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest
from google.protobuf import json_format

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import results_pb2 as rpb
from tests.integration.itkit import Api, Server, Tenant
from tests.integration.journeykit import (
    BLOCKING,
    HOSTILE,
    check_invalid_not_saved,
    check_later_but_savable,
    day_event,
    ingest,
    run,
    viz,
)

_TODAY = dt.datetime.now(dt.UTC).date()


def _lifecycle(*filters: qpb.PropertyFilter, **fields: object) -> qpb.LifecycleQuery:
    node = qpb.EventsNode(event="$pageview", properties=list(filters))
    return qpb.LifecycleQuery(series=[qpb.SeriesNode(events_node=node)], **fields)  # type: ignore[arg-type]


def _data(result: rpb.LifecycleResult) -> dict[str, list[float]]:
    return {qpb.LifecycleToggle.Name(s.status): list(s.data) for s in result.series}


async def test_ingested_events_come_back_as_four_statuses_through_run_query_and_a_saved_insight(
    api: Api, server: Server, tenant: Tenant
) -> None:
    events = [
        day_event("$pageview", "a", 3),
        day_event("$pageview", "a", 2),
        day_event("$pageview", "b", 3, plan=HOSTILE),
        day_event("signup", "c", 5),  # c is created 5 days ago, first counted 1 day ago
        day_event("$pageview", "c", 1),
    ]
    await ingest(server, tenant, events)
    # The default range: 7 days ago to today, 8 days; n days ago is index 7 - n.
    computed = await run(server, tenant, _lifecycle())
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
    found = await run(server, tenant, filtered)
    assert _data(found.result.lifecycle)["LIFECYCLE_TOGGLE_NEW"] == [0, 0, 0, 0, 1, 0, 0, 0]
    assert HOSTILE not in found.hogql

    # A saved insight computes the same on a computing read.
    saved = await api.create(name="lifecycle", query=viz(_lifecycle()))
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
    await check_invalid_not_saved(api, build(), field)


LATER: list[tuple[str, Callable[[], qpb.LifecycleQuery]]] = [
    ("interval", lambda: _lifecycle(interval=qpb.INTERVAL_TYPE_MINUTE)),
]


@pytest.mark.parametrize(("field", "build"), LATER, ids=[f for f, _ in LATER])
async def test_an_option_not_built_yet_is_unimplemented_naming_the_field_but_can_be_saved(
    api: Api, server: Server, tenant: Tenant, field: str, build: Callable[[], qpb.LifecycleQuery]
) -> None:
    await check_later_but_savable(api, server, tenant, build(), field, "LIFECYCLE_OPTION_NOT_IMPLEMENTED")
