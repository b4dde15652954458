"""Retention through the service: computed from ingested events (RunQuery and a saved insight), its
protobuf JSON (what grpcurl prints) in the reference's keys, invalid queries refused naming the
field (and never saved), options not built yet UNIMPLEMENTED naming the field (but savable)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

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


def _entity(event: str, *filters: qpb.PropertyFilter) -> qpb.RetentionEntity:
    return qpb.RetentionEntity(id=qpb.Scalar(string_value=event), type="events", properties=list(filters))


def _retention(**fields: Any) -> qpb.RetentionQuery:
    return qpb.RetentionQuery(retention_filter=qpb.RetentionFilter(**fields))


def _viz(query: qpb.RetentionQuery) -> qpb.QueryNode:
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(retention_query=query)))


async def _run(server: Server, tenant: Tenant, query: qpb.RetentionQuery) -> qs.RunQueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(
        environment_id=tenant.environment_id, query=qpb.QueryNode(retention_query=query), refresh=BLOCKING
    )
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


def _counts(result: rpb.RetentionResult) -> list[list[int]]:
    return [[v.count for v in cohort.values] for cohort in result.cohorts]


async def test_ingested_events_come_back_as_cohorts_through_run_query_and_a_saved_insight(
    api: Api, server: Server, tenant: Tenant
) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    events = [
        _event("$pageview", "a", 3),
        _event("$pageview", "a", 1),
        _event("$pageview", "b", 3),
        _event("$pageview", "c", 2, plan=HOSTILE),
        _event("signup", "c", 1),
    ]
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    # The default: 7 day cohorts, the last one today (index 6); 3 days ago is cohort 3. Persons a
    # and b start there and a returns 2 days later; c starts in cohort 4, a again in cohort 5.
    computed = await _run(server, tenant, _retention())
    cohorts = computed.result.retention.cohorts
    assert [c.label for c in cohorts] == [f"Day {i}" for i in range(7)]
    assert cohorts[6].date.startswith(_TODAY.isoformat())
    counts = _counts(computed.result.retention)
    assert counts[3:6] == [[2, 0, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]]
    assert all(len(c) == 7 for c in counts) and sum(c[0] for c in counts) == 4
    # What grpcurl prints: protobuf JSON with the reference's keys ("results", "values", a 0 count kept).
    rendered = json.loads(json_format.MessageToJson(computed.result.retention))
    assert rendered["results"][3]["values"][1] == {"count": "0", "label": "Day 1"}
    assert rendered["results"][3]["label"] == "Day 3" and rendered["results"][3]["date"] == cohorts[3].date

    # A hostile filter value is bound, never SQL text: it matches the one event that has it.
    filtered = _retention(
        target_entity=_entity(
            "$pageview", qpb.PropertyFilter(key="plan", value=qpb.PropertyValue(string_value=HOSTILE))
        ),
        returning_entity=_entity("signup"),
    )
    found = await _run(server, tenant, filtered)
    assert [c[:2] for c in _counts(found.result.retention)] == [[0, 0]] * 4 + [[1, 1]] + [[0, 0]] * 2
    assert HOSTILE not in found.hogql

    # A saved insight computes the same on a computing read.
    saved = await api.create(name="retention", query=_viz(_retention(total_intervals=3)))
    got = await api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=60,
    )
    assert [c.label for c in got.result.retention.cohorts] == ["Day 0", "Day 1", "Day 2"]
    assert _counts(got.result.retention) == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


INVALID: list[tuple[str, Callable[[], qpb.RetentionQuery]]] = [
    ("retentionFilter.totalIntervals", lambda: _retention(total_intervals=-1)),
    ("retentionFilter.minimumOccurrences", lambda: _retention(minimum_occurrences=-1)),
    ("retentionFilter.meanRetentionCalculation", lambda: _retention(mean_retention_calculation="median")),
    (
        "retentionFilter.targetEntity.id",
        lambda: _retention(
            target_entity=qpb.RetentionEntity(id=qpb.Scalar(string_value="x"), kind="ActionsNode")
        ),
    ),
    (
        "breakdownFilter.breakdowns",
        lambda: qpb.RetentionQuery(
            breakdown_filter=qpb.BreakdownFilter(
                breakdowns=[
                    qpb.Breakdown(property=qpb.BreakdownKey(string_value="a")),
                    qpb.Breakdown(property=qpb.BreakdownKey(string_value="b")),
                ]
            )
        ),
    ),
    ("samplingFactor", lambda: qpb.RetentionQuery(sampling_factor=2)),
]


@pytest.mark.parametrize(("field", "build"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
async def test_an_invalid_retention_query_is_refused_naming_the_field_and_not_saved(
    api: Api, field: str, build: Callable[[], qpb.RetentionQuery]
) -> None:
    err = await expect_error(
        api.create(name="bad retention", query=_viz(build())), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, f"insight.query.source.{field}")
    assert (await api.list()).count == 0


LATER: list[tuple[str, Callable[[], qpb.RetentionQuery]]] = [
    ("aggregation_group_type_index", lambda: qpb.RetentionQuery(aggregation_group_type_index=0)),
    ("retentionFilter.timeWindowMode", lambda: _retention(time_window_mode="24_hour_windows")),
    (
        "retentionFilter.aggregationType",
        lambda: _retention(aggregation_type="avg", aggregation_property="amount"),
    ),
]


@pytest.mark.parametrize(("field", "build"), LATER, ids=[f for f, _ in LATER])
async def test_an_option_not_built_yet_is_unimplemented_naming_the_field_but_can_be_saved(
    api: Api, server: Server, tenant: Tenant, field: str, build: Callable[[], qpb.RetentionQuery]
) -> None:
    err = await expect_error(_run(server, tenant, build()), grpc.StatusCode.UNIMPLEMENTED)
    info = error_info(err)
    assert info.reason == "RETENTION_OPTION_NOT_IMPLEMENTED" and info.metadata["field"] == field
    assert (err.details() or "").startswith(field)
    saved = await api.create(name="later", query=_viz(build()))
    assert saved.id and not saved.HasField("result")
