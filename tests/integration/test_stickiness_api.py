"""Stickiness through the service: computed from ingested events (RunQuery and a saved insight), an
action series loaded by the execution layer, its protobuf JSON (what grpcurl prints) in the
reference's keys, invalid queries refused naming the field (and never saved), options not built yet
UNIMPLEMENTED naming the field (but savable); compare interleaved."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import json_format

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.actionkit import ActionsApi, step
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


def _events(event: str = "$pageview", *filters: qpb.PropertyFilter, **fields: Any) -> qpb.SeriesNode:
    return qpb.SeriesNode(events_node=qpb.EventsNode(event=event, properties=list(filters), **fields))


def _sticky(*series: qpb.SeriesNode, **fields: Any) -> qpb.StickinessQuery:
    return qpb.StickinessQuery(series=list(series) or [_events()], **fields)


async def test_ingested_events_come_back_as_stickiness_through_run_query_and_a_saved_insight(
    api: Api, server: Server, tenant: Tenant
) -> None:
    events = [
        day_event("$pageview", "a", 3),
        day_event("$pageview", "a", 3),
        day_event("$pageview", "a", 1),
        day_event("$pageview", "b", 3),
        day_event("$pageview", "c", 2, plan=HOSTILE),
        day_event("signup", "c", 1),
    ]
    await ingest(server, tenant, events)
    # The default range, -7d to today, holds 8 days: a was active on 2 of them, b and c on 1.
    computed = await run(server, tenant, _sticky())
    (item,) = computed.result.stickiness.series
    assert list(item.data) == [2, 1, 0, 0, 0, 0, 0, 0] and item.count == 3
    assert list(item.days) == list(range(1, 9)) and item.labels[:2] == ["1 day", "2 days"]
    assert item.label == "$pageview" and item.action.id == "$pageview" and item.action.type == "events"
    # What grpcurl prints: protobuf JSON with the reference's keys ("results", "data", "days", "labels").
    rendered = json.loads(json_format.MessageToJson(computed.result.stickiness))
    first = rendered["results"][0]
    assert first["data"][:3] == [2.0, 1.0, 0.0] and first["labels"][1] == "2 days" and first["days"][0] == 1
    assert first["label"] == "$pageview" and first["action"]["type"] == "events"

    # Cumulative: "N days or more"; two series in order; criteria: 2 events in a day.
    both = await run(
        server,
        tenant,
        _sticky(
            _events(),
            _events("signup"),
            stickiness_filter=qpb.StickinessFilter(computed_as=qpb.STICKINESS_COMPUTATION_CUMULATIVE),
        ),
    )
    pageviews, signups = both.result.stickiness.series
    assert list(pageviews.data)[:3] == [3, 1, 0] and pageviews.labels[0] == "1 day or more"
    assert list(signups.data)[:2] == [1, 0] and signups.action.order == 1
    twice = await run(
        server,
        tenant,
        _sticky(
            stickiness_filter=qpb.StickinessFilter(
                stickiness_criteria=qpb.StickinessCriteria(operator="gte", value=2)
            )
        ),
    )
    assert list(twice.result.stickiness.series[0].data)[:2] == [1, 0]

    # Compare: the previous 8 days had no events; the items interleave current and previous.
    compared = await run(server, tenant, _sticky(compare_filter=qpb.CompareFilter(compare=True)))
    current, previous = compared.result.stickiness.series
    assert (current.compare_label, previous.compare_label) == ("current", "previous") and previous.compare
    assert list(current.data)[:2] == [2, 1] and sum(previous.data) == 0

    # A hostile filter value is bound, never SQL text: it matches the one event that has it.
    hostile = qpb.PropertyFilter(key="plan", value=qpb.PropertyValue(string_value=HOSTILE))
    found = await run(server, tenant, _sticky(_events("$pageview", hostile)))
    assert list(found.result.stickiness.series[0].data)[:2] == [1, 0]
    assert HOSTILE not in found.hogql

    # An action series: the execution layer loads the action the series names.
    actions = ActionsApi.of(server, tenant, "action:write")
    action = await actions.create(name="Any visit", steps=[step(event="$pageview"), step(event="signup")])
    by_action = await run(server, tenant, _sticky(qpb.SeriesNode(actions_node=qpb.ActionsNode(id=action.id))))
    (acted,) = by_action.result.stickiness.series
    assert list(acted.data)[:3] == [1, 2, 0] and acted.label == "Any visit" and acted.action.type == "actions"

    # A saved insight computes the same on a computing read, weekly labels.
    saved = await api.create(name="stickiness", query=viz(_sticky(interval=qpb.INTERVAL_TYPE_WEEK)))
    got = await api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=60,
    )
    weekly = got.result.stickiness.series[0]
    assert weekly.labels[0] == "1 week" and sum(weekly.data) == 3


INVALID: list[tuple[str, Callable[[], qpb.StickinessQuery]]] = [
    ("series", lambda: qpb.StickinessQuery()),
    ("intervalCount", lambda: _sticky(interval_count=0)),
    ("intervalCount", lambda: _sticky(interval=qpb.INTERVAL_TYPE_WEEK, interval_count=2)),
    (
        "stickinessFilter.stickinessCriteria.operator",
        lambda: _sticky(
            stickiness_filter=qpb.StickinessFilter(stickiness_criteria=qpb.StickinessCriteria(operator="gt"))
        ),
    ),
    (
        "stickinessFilter.stickinessCriteria.value",
        lambda: _sticky(
            stickiness_filter=qpb.StickinessFilter(stickiness_criteria=qpb.StickinessCriteria(value=0))
        ),
    ),
    ("series[0].id", lambda: _sticky(qpb.SeriesNode(actions_node=qpb.ActionsNode(id=0)))),
    ("samplingFactor", lambda: _sticky(sampling_factor=2)),
    ("interval", lambda: _sticky(interval=qpb.INTERVAL_TYPE_SECOND)),
]


@pytest.mark.parametrize(("field", "build"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
async def test_an_invalid_stickiness_query_is_refused_naming_the_field_and_not_saved(
    api: Api, field: str, build: Callable[[], qpb.StickinessQuery]
) -> None:
    await check_invalid_not_saved(api, build(), field)


LATER: list[tuple[str, Callable[[], qpb.StickinessQuery]]] = [
    ("interval", lambda: _sticky(interval=qpb.INTERVAL_TYPE_MINUTE)),
    ("series[0].math", lambda: _sticky(_events(math=qpb.MATH_TYPE_HOGQL))),
    ("series[0].math_multiplier", lambda: _sticky(_events(math_multiplier=2))),
    ("series[0]", lambda: _sticky(qpb.SeriesNode(group_node=qpb.GroupNode()))),
]


@pytest.mark.parametrize(("field", "build"), LATER, ids=[f for f, _ in LATER])
async def test_an_option_not_built_yet_is_unimplemented_naming_the_field_but_can_be_saved(
    api: Api, server: Server, tenant: Tenant, field: str, build: Callable[[], qpb.StickinessQuery]
) -> None:
    await check_later_but_savable(api, server, tenant, build(), field, "STICKINESS_OPTION_NOT_IMPLEMENTED")
