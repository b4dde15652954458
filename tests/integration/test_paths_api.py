"""Paths through the service: computed from ingested events by RunQuery and a saved insight, its
protobuf JSON (what grpcurl prints) in the reference's keys, invalid queries refused naming the
field (and never saved), options not built yet UNIMPLEMENTED naming the field (but savable)."""

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
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, error_info, expect_error

BLOCKING = cpb.REFRESH_MODE_BLOCKING
HOSTILE = "x'); DROP TABLE events; --"
_NOON = dt.datetime.combine(dt.datetime.now(dt.UTC).date() - dt.timedelta(days=2), dt.time(12), tzinfo=dt.UTC)


def _event(name: str, person: str, minutes: int, **props: object) -> epb.Event:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(_NOON + dt.timedelta(minutes=minutes))
    return epb.Event(event=name, distinct_id=person, timestamp=stamp, properties=json.dumps(props))


def _paths(**filters: object) -> qpb.PathsQuery:
    pf = qpb.PathsFilter(include_event_types=[qpb.PATH_TYPE_PAGEVIEW], **filters)  # type: ignore[arg-type]
    return qpb.PathsQuery(paths_filter=pf)


def _viz(query: qpb.PathsQuery) -> qpb.QueryNode:
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(paths_query=query)))


async def _run(server: Server, tenant: Tenant, query: qpb.PathsQuery) -> qs.RunQueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(
        environment_id=tenant.environment_id, query=qpb.QueryNode(paths_query=query), refresh=BLOCKING
    )
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


async def test_ingested_pageviews_come_back_as_edges_through_run_query_and_a_saved_insight(
    api: Api, server: Server, tenant: Tenant
) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    events = [
        _event("$pageview", "a", 0, **{"$current_url": "/home/"}),
        _event("$pageview", "a", 1, **{"$current_url": "/pricing"}),
        _event("$pageview", "b", 0, **{"$current_url": "/home"}),
        _event("$pageview", "b", 3, **{"$current_url": "/pricing"}),
        _event("$pageview", "b", 4, **{"$current_url": HOSTILE}),
        _event("signup", "b", 5),
    ]
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    computed = await _run(server, tenant, _paths())
    # What grpcurl prints: protobuf JSON with the reference's keys, times in milliseconds.
    rendered = json.loads(json_format.MessageToJson(computed.result.paths))
    assert rendered == {
        "results": [
            {"source": "1_/home", "target": "2_/pricing", "value": 2.0, "average_conversion_time": 120000.0},
            {"source": "2_/pricing", "target": f"3_{HOSTILE}", "value": 1.0, "average_conversion_time": 60000.0},
        ]
    }
    # A hostile start point is bound, never SQL text.
    found = await _run(server, tenant, _paths(start_point=HOSTILE))
    assert list(found.result.paths.edges) == []
    assert HOSTILE not in found.hogql
    # Groupings: "*ric*" takes "/pricing" wherever it occurs; the hostile grouping is literal text
    # (its parenthesis and semicolons no regex, its quote bound) and takes the hostile page.
    grouped = await _run(server, tenant, _paths(path_groupings=["*ric*", HOSTILE]))
    assert [(e.source, e.target, e.value) for e in grouped.result.paths.edges] == [
        ("1_/home", "2_*ric*", 2.0),
        ("2_*ric*", f"3_{HOSTILE}", 1.0),
    ]
    assert HOSTILE not in grouped.hogql
    # A saved insight computes the same on a computing read.
    saved = await api.create(name="paths", query=_viz(_paths()))
    got = await api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=60,
    )
    assert got.result.paths == computed.result.paths


def _funnel(**filters: object) -> qpb.FunnelsQuery:
    """signup → purchase within an hour."""
    steps = [qpb.SeriesNode(events_node=qpb.EventsNode(event=name)) for name in ("signup", "purchase")]
    ff = qpb.FunnelsFilter(
        funnel_window_interval=1, funnel_window_interval_unit=qpb.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_HOUR, **filters
    )  # type: ignore[arg-type]
    return qpb.FunnelsQuery(series=steps, funnels_filter=ff)


def _funnel_paths(kind: str, step: int, source: qpb.FunnelsQuery | None = None) -> qpb.PathsQuery:
    query = _paths()
    query.funnel_paths_filter.CopyFrom(
        qpb.FunnelPathsFilter(funnel_source=source or _funnel(), funnel_path_type=kind, funnel_step=step)
    )
    return query


async def test_funnel_paths_follow_the_funnel_persons_around_their_step_times(
    api: Api, server: Server, tenant: Tenant
) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    events = [
        # a converts (signup at 1, purchase at 4); b signs up and drops off; c never signs up.
        _event("$pageview", "a", 0, **{"$current_url": "/home"}),
        _event("signup", "a", 1),
        _event("$pageview", "a", 2, **{"$current_url": "/pricing"}),
        _event("$pageview", "a", 3, **{"$current_url": "/cart"}),
        _event("purchase", "a", 4),
        _event("$pageview", "a", 5, **{"$current_url": "/thanks"}),
        _event("signup", "b", 0),
        _event("$pageview", "b", 1, **{"$current_url": "/pricing"}),
        _event("$pageview", "b", 2, **{"$current_url": HOSTILE}),
        _event("$pageview", "c", 0, **{"$current_url": "/home"}),
        _event("$pageview", "c", 1, **{"$current_url": "/pricing"}),
    ]
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)

    async def edges(query: qpb.PathsQuery) -> list[tuple[str, str, float]]:
        computed = await _run(server, tenant, query)
        return [(e.source, e.target, e.value) for e in computed.result.paths.edges]

    # After signing up: a and b, from their signup on (c's same pages are not followed).
    assert await edges(_funnel_paths("funnel_path_after_step", 1)) == [
        ("1_/pricing", "2_/cart", 1.0),
        ("1_/pricing", f"2_{HOSTILE}", 1.0),
        ("2_/cart", "3_/thanks", 1.0),
    ]
    # Between signing up and buying: a only.
    assert await edges(_funnel_paths("funnel_path_between_steps", 2)) == [("1_/pricing", "2_/cart", 1.0)]
    # Before the drop-off at the purchase (b's signup, no page before it): nothing.
    assert await edges(_funnel_paths("funnel_path_before_step", -2)) == []


INVALID: list[tuple[str, Callable[[], qpb.PathsQuery]]] = [
    ("pathsFilter.stepLimit", lambda: _paths(step_limit=0)),
    ("pathsFilter.edgeLimit", lambda: _paths(edge_limit=-1)),
    (
        "pathsFilter.localPathCleaningFilters[0].regex",
        lambda: _paths(local_path_cleaning_filters=[qpb.PathCleaningFilter(regex="(a", alias="b")]),
    ),
    ("pathsFilter.pathGroupings[0]", lambda: _paths(path_groupings=[""])),
    ("funnelPathsFilter.funnelSource", lambda: qpb.PathsQuery(funnel_paths_filter=qpb.FunnelPathsFilter(funnel_step=1))),
    ("funnelPathsFilter.funnelStep", lambda: _funnel_paths("funnel_path_after_step", -1)),
]


@pytest.mark.parametrize(("field", "build"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
async def test_an_invalid_paths_query_is_refused_naming_the_field_and_not_saved(
    api: Api, field: str, build: Callable[[], qpb.PathsQuery]
) -> None:
    err = await expect_error(api.create(name="bad paths", query=_viz(build())), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, f"insight.query.source.{field}")
    assert (await api.list()).count == 0


LATER: list[tuple[str, Callable[[], qpb.PathsQuery]]] = [
    ("pathsFilter.pathDropoffKey", lambda: _paths(path_dropoff_key="2_/pricing")),
]


@pytest.mark.parametrize(("field", "build"), LATER, ids=[f for f, _ in LATER])
async def test_an_option_not_built_yet_is_unimplemented_naming_the_field_but_can_be_saved(
    api: Api, server: Server, tenant: Tenant, field: str, build: Callable[[], qpb.PathsQuery]
) -> None:
    err = await expect_error(_run(server, tenant, build()), grpc.StatusCode.UNIMPLEMENTED)
    info = error_info(err)
    assert info.reason == "PATHS_OPTION_NOT_IMPLEMENTED" and info.metadata["field"] == field
    assert (err.details() or "").startswith(field)
    saved = await api.create(name="later", query=_viz(build()))
    assert saved.id and not saved.HasField("result")
