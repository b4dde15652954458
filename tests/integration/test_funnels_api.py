"""Funnels through the service: computed from ingested events, invalid funnels refused naming the
field (and never saved), options not built yet UNIMPLEMENTED naming the field (but savable); steps and exclusions that are
stored actions."""

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
from server.queries.common.codec import to_reference_json
from tests.integration.actionkit import ActionsApi, step
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, error_info, expect_error

BLOCKING = cpb.REFRESH_MODE_BLOCKING
HOSTILE = "x'); DROP TABLE events; --"
_TODAY = dt.datetime.now(dt.UTC).date()


def _event(name: str, person: str, minute: int, **props: object) -> epb.Event:
    # Yesterday, so that "-7d" holds it whatever the time of day.
    at = dt.datetime.combine(_TODAY - dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    return epb.Event(event=name, distinct_id=person, timestamp=stamp, properties=json.dumps(props))


def _step(event: str, **fields: Any) -> qpb.SeriesNode:
    return qpb.SeriesNode(events_node=qpb.EventsNode(event=event, **fields))


def _funnel(*steps: qpb.SeriesNode, **fields: Any) -> qpb.FunnelsQuery:
    query = qpb.FunnelsQuery(series=list(steps) or [_step("$pageview"), _step("signup")], **fields)
    query.date_range.date_from = "-7d"
    return query


async def _run(server: Server, tenant: Tenant, query: qpb.FunnelsQuery) -> qs.RunQueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(
        environment_id=tenant.environment_id, query=qpb.QueryNode(funnels_query=query), refresh=BLOCKING
    )
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


async def test_an_ingested_funnel_comes_back_with_counts_times_and_the_callers_names(
    server: Server, tenant: Tenant
) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    events = [
        _event("$pageview", "a", 0, plan=HOSTILE),
        _event("signup", "a", 30),
        _event("$pageview", "b", 0),
        _event("signup", "b", 90),
        _event("$pageview", "c", 0),
    ]
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    query = _funnel(_step("$pageview", custom_name="Visited"), _step("signup"))
    computed = await _run(server, tenant, query)
    (steps,) = computed.result.funnels.steps.breakdowns
    assert [s.count for s in steps.steps] == [3, 2]
    assert [s.name for s in steps.steps] == ["$pageview", "signup"]
    assert steps.steps[0].custom_name == "Visited" and not steps.steps[1].HasField("custom_name")
    assert steps.steps[1].average_conversion_time == 3600 and steps.steps[1].median_conversion_time == 3600
    assert not steps.steps[0].HasField("average_conversion_time")
    # Another caller's name for the same funnel: the cached result, relabelled.
    renamed = _funnel(_step("$pageview", custom_name="Landed"), _step("signup"))
    cached = await _run(server, tenant, renamed)
    assert cached.is_cached and cached.result.funnels.steps.breakdowns[0].steps[0].custom_name == "Landed"
    # A hostile filter value is bound, never SQL text: it matches the one event that has it.
    hostile = _funnel(
        _step(
            "$pageview",
            properties=[qpb.PropertyFilter(key="plan", value=qpb.PropertyValue(string_value=HOSTILE))],
        ),
        _step("signup"),
    )
    found = await _run(server, tenant, hostile)
    assert [s.count for s in found.result.funnels.steps.breakdowns[0].steps] == [1, 1]
    assert HOSTILE not in found.hogql


async def test_time_to_convert_bins_the_conversion_times_and_renders_as_reference_json(
    server: Server, tenant: Tenant
) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    # Conversions of 10, 20 and 50 minutes; one person never converts.
    events = [_event("ttc_start", p, 0) for p in ("a", "b", "c", "d")]
    events += [_event("ttc_done", "a", 10), _event("ttc_done", "b", 20), _event("ttc_done", "c", 50)]
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    query = _funnel(
        _step("ttc_start"),
        _step("ttc_done"),
        funnels_filter=qpb.FunnelsFilter(funnel_viz_type=qpb.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT, bin_count=2),
    )
    computed = await _run(server, tenant, query)
    # From 600 s to 3000 s in 2 bins of 1200 s, plus the bin starting at the upper edge.
    assert to_reference_json(computed.result.funnels) == {
        "time_to_convert": {
            "bins": [
                {"bin_start_seconds": 600, "count": 2},
                {"bin_start_seconds": 1800, "count": 0},
                {"bin_start_seconds": 3000, "count": 1},
            ],
            "average_conversion_time": 1600.0,
        },
        "isUdf": True,
    }


async def test_first_time_steps_groups_and_sessions_compute_through_the_service(
    server: Server, tenant: Tenant
) -> None:
    keys = (("s-a", "acme"), ("s-b1", "acme"), ("s-b2", "acme"), ("s-d", "globex"))
    a, b1, b2, d = ({"$session_id": session, "$group_0": group} for session, group in keys)
    early = _event("ft_open", "a", 0, **a)
    early.timestamp.FromDatetime(early.timestamp.ToDatetime(dt.UTC) - dt.timedelta(days=10))  # before "-7d"
    events = [
        early,
        _event("ft_open", "a", 0, **a),
        _event("ft_buy", "a", 5, **a),
        _event("ft_open", "b", 0, **b1),
        _event("ft_buy", "b", 5, **b1),
        _event("ft_open", "b", 30, **b2),
        _event("ft_buy", "b", 35, **b2),
        _event("ft_open", "c", 0),  # no session, no group
        _event("ft_buy", "c", 1),
        _event("ft_open", "d", 0, **d),
    ]
    response = await egrpc.EventsServiceStub(server.channel).IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)

    async def counts(query: qpb.FunnelsQuery) -> list[int]:
        computed = await _run(server, tenant, query)
        (steps,) = computed.result.funnels.steps.breakdowns
        return [s.count for s in steps.steps]

    assert await counts(_funnel(_step("ft_open"), _step("ft_buy"))) == [4, 3]
    # a's first ft_open is before the range: a never enters.
    first = _step("ft_open", math=qpb.MATH_TYPE_FIRST_TIME_FOR_USER)
    assert await counts(_funnel(first, _step("ft_buy"))) == [3, 2]
    # Sessions s-a, s-b1, s-b2 convert, s-d enters; c's events have no session.
    by_session = qpb.FunnelsFilter(funnel_aggregate_by_hogql="properties.$session_id")
    assert await counts(_funnel(_step("ft_open"), _step("ft_buy"), funnels_filter=by_session)) == [4, 3]
    # Accounts acme (converts) and globex; c has none.
    assert await counts(_funnel(_step("ft_open"), _step("ft_buy"), aggregation_group_type_index=0)) == [2, 1]


async def test_an_expression_aggregation_computes_through_the_service_and_renders_as_protobuf_json(
    server: Server, tenant: Tenant
) -> None:
    # Accounts "Initech"/"initech" (one value once lowered) convert through two persons; "Hooli"
    # enters only; e has no account and is nobody's event. The hostile key and value stay values.
    events = [
        _event("ex_open", "a", 0, account="Initech"),
        _event("ex_buy", "b", 10, account="initech"),
        _event("ex_open", "c", 0, account="Hooli"),
        _event("ex_open", "e", 0),
        _event("ex_buy", "e", 5, account=""),
        _event("ex_open", "h", 0, **{HOSTILE: HOSTILE}),
        _event("ex_buy", "h", 20, **{HOSTILE: HOSTILE}),
    ]
    response = await egrpc.EventsServiceStub(server.channel).IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    by_account = _funnel(
        _step("ex_open"), _step("ex_buy"), funnels_filter=qpb.FunnelsFilter(funnel_aggregate_by_hogql="lower(properties.account)")
    )
    computed = await _run(server, tenant, by_account)
    rendered = json.loads(json_format.MessageToJson(computed))
    steps = rendered["result"]["funnels"]["steps"]["results"][0]["steps"]
    # Protobuf JSON (what grpcurl prints): 64-bit counts as strings.
    assert [(s["name"], s["count"]) for s in steps] == [("ex_open", "2"), ("ex_buy", "1")]
    assert steps[1]["average_conversion_time"] == 600
    # The same funnel by person counts a, c, e and h entering, e and h converting.
    by_person = await _run(server, tenant, _funnel(_step("ex_open"), _step("ex_buy")))
    assert [s.count for s in by_person.result.funnels.steps.breakdowns[0].steps] == [4, 2]
    quoted = HOSTILE.replace("'", "''")
    hostile = _funnel(
        _step("ex_open"),
        _step("ex_buy"),
        funnels_filter=qpb.FunnelsFilter(funnel_aggregate_by_hogql=f"concat(properties.`{HOSTILE}`, '{quoted}')"),
    )
    found = await _run(server, tenant, hostile)
    assert [s.count for s in found.result.funnels.steps.breakdowns[0].steps] == [1, 1]
    assert HOSTILE not in found.hogql
    # A hogql breakdown: the expression's text per group ('' for none), in reference JSON.
    by_plan = _funnel(
        _step("ex_open"),
        _step("ex_buy"),
        breakdown_filter=qpb.BreakdownFilter(
            breakdown=qpb.BreakdownKey(string_value="upper(properties.account)"), breakdown_type=qpb.BREAKDOWN_TYPE_HOGQL
        ),
    )
    split = to_reference_json((await _run(server, tenant, by_plan)).result.funnels)
    groups = [g["steps"] for g in split["steps"]["results"]]
    assert {tuple(g[0]["breakdown_value"]): [s["count"] for s in g] for g in groups} == {
        ("INITECH",): [1, 0],
        ("HOOLI",): [1, 0],
        ("",): [2, 2],
    }
    # What the engine cannot compute for the expression is the caller's error, naming the field.
    bad = _funnel(_step("ex_open"), _step("ex_buy"), funnels_filter=qpb.FunnelsFilter(funnel_aggregate_by_hogql="lower(1)"))
    err = await expect_error(_run(server, tenant, bad), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "query.funnelsFilter.funnelAggregateByHogQL")


async def test_funnel_trends_give_the_conversion_rate_per_entrance_day_and_render_as_reference_json(
    server: Server, tenant: Tenant
) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    # Yesterday: three enter, two convert (one by a breakdown value, one without it).
    events = [_event("ft_start", p, 0, plan="pro" if p != "c" else "free") for p in ("a", "b", "c")]
    events += [_event("ft_done", "a", 10, plan="pro"), _event("ft_done", "c", 20, plan="free")]
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    trends_filter = qpb.FunnelsFilter(funnel_viz_type=qpb.FUNNEL_VIZ_TYPE_TRENDS)
    query = _funnel(_step("ft_start"), _step("ft_done"), funnels_filter=trends_filter)
    computed = await _run(server, tenant, query)
    rendered = to_reference_json(computed.result.funnels)
    days = [(_TODAY - dt.timedelta(days=7 - i)).isoformat() for i in range(8)]
    labels = [f"{d.day}-{d.strftime('%b')}-{d.year}" for d in (_TODAY - dt.timedelta(days=7 - i) for i in range(8))]
    # "-7d": eight days, yesterday the seventh; every other day zero-filled.
    assert rendered == {
        "trends": {
            "results": [
                {
                    "count": 8,
                    "data": [0.0] * 6 + [66.67, 0.0],
                    "days": days,
                    "labels": labels,
                    "reached_from_step_count": [0] * 6 + [3, 0],
                    "reached_to_step_count": [0] * 6 + [2, 0],
                }
            ]
        },
        "isUdf": True,
    }
    query.breakdown_filter.breakdown.string_value = "plan"
    computed = await _run(server, tenant, query)
    series = to_reference_json(computed.result.funnels)["trends"]["results"]
    assert [(s["breakdown_value"], s["data"][6]) for s in series] == [(["pro"], 50.0), (["free"], 100.0)]


def _exclusion(event: str, start: int | None, end: int | None) -> qpb.FunnelExclusion:
    node = qpb.FunnelExclusionEventsNode(event=event)
    if start is not None:
        node.funnel_from_step = start
    if end is not None:
        node.funnel_to_step = end
    return qpb.FunnelExclusion(events_node=node)


def _unordered(**fields: Any) -> qpb.FunnelsFilter:
    return qpb.FunnelsFilter(funnel_order_type=qpb.FUNNEL_ORDER_TYPE_UNORDERED, **fields)


THREE = (_step("a"), _step("b"), _step("c"))
INVALID: list[tuple[str, Callable[[], qpb.FunnelsQuery]]] = [
    ("series", lambda: _funnel(_step("a"))),
    ("series", lambda: _funnel(*[_step(f"e{i}") for i in range(21)])),
    ("series[0].optionalInFunnel", lambda: _funnel(_step("a", optional_in_funnel=True), _step("b"))),
    (
        "series[1].optionalInFunnel",
        lambda: _funnel(_step("a"), _step("b", optional_in_funnel=True), _step("c"), funnels_filter=_unordered()),
    ),
    (
        "series[1].optionalInFunnel",
        lambda: _funnel(_step("a"), _step("b", optional_in_funnel=True), _step("b")),
    ),
    ("series[1].math", lambda: _funnel(_step("a"), _step("b", math=qpb.MATH_TYPE_DAU))),
    (
        "series[1]",
        lambda: _funnel(_step("a"), qpb.SeriesNode(data_warehouse_node=qpb.DataWarehouseNode(id="t"))),
    ),
    (
        "funnelsFilter.exclusions[0].funnelToStep",
        lambda: _funnel(*THREE, funnels_filter=qpb.FunnelsFilter(exclusions=[_exclusion("x", 1, 1)])),
    ),
    (
        "funnelsFilter.exclusions[0].funnelToStep",
        lambda: _funnel(*THREE, funnels_filter=qpb.FunnelsFilter(exclusions=[_exclusion("x", 0, 3)])),
    ),
    (
        "funnelsFilter.exclusions[0]",
        lambda: _funnel(*THREE, funnels_filter=qpb.FunnelsFilter(exclusions=[_exclusion("x", None, 1)])),
    ),
    (
        "funnelsFilter.exclusions[0]",
        lambda: _funnel(*THREE, funnels_filter=qpb.FunnelsFilter(exclusions=[_exclusion("b", 0, 1)])),
    ),
    (
        "funnelsFilter.exclusions[0]",
        lambda: _funnel(*THREE, funnels_filter=_unordered(exclusions=[_exclusion("x", 0, 1)])),
    ),
    (
        "funnelsFilter.funnelWindowInterval",
        lambda: _funnel(funnels_filter=qpb.FunnelsFilter(funnel_window_interval=-1)),
    ),
    ("funnelsFilter.funnelFromStep", lambda: _funnel(funnels_filter=qpb.FunnelsFilter(funnel_from_step=1))),
    (
        "funnelsFilter.breakdownAttributionValue",
        lambda: _funnel(
            breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="plan")),
            funnels_filter=qpb.FunnelsFilter(breakdown_attribution_type=qpb.BREAKDOWN_ATTRIBUTION_TYPE_STEP),
        ),
    ),
    (
        "funnelsFilter.breakdownAttributionValue",
        lambda: _funnel(
            funnels_filter=qpb.FunnelsFilter(
                breakdown_attribution_type=qpb.BREAKDOWN_ATTRIBUTION_TYPE_STEP, breakdown_attribution_value=2
            )
        ),
    ),
    ("breakdownFilter.breakdown_limit", lambda: _funnel(breakdown_filter=qpb.BreakdownFilter(breakdown_limit=1001))),
    # time_to_convert draws one histogram over every actor (as the reference): a breakdown does not apply.
    (
        "breakdownFilter",
        lambda: _funnel(
            funnels_filter=qpb.FunnelsFilter(funnel_viz_type=qpb.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT),
            breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="plan")),
        ),
    ),
    (
        "breakdownFilter.breakdown[1]",
        lambda: _funnel(
            breakdown_filter=qpb.BreakdownFilter(
                breakdown=qpb.BreakdownKey(
                    list_value=qpb.ScalarList(values=[qpb.Scalar(int_value=3), qpb.Scalar(string_value="three")])
                ),
                breakdown_type=qpb.BREAKDOWN_TYPE_COHORT,
            )
        ),
    ),
    ("samplingFactor", lambda: _funnel(sampling_factor=0)),
    # An aggregate or a subquery is no value of one event.
    ("funnelsFilter.funnelAggregateByHogQL", lambda: _funnel(funnels_filter=qpb.FunnelsFilter(funnel_aggregate_by_hogql="count()"))),
    (
        "funnelsFilter.funnelAggregateByHogQL",
        lambda: _funnel(funnels_filter=qpb.FunnelsFilter(funnel_aggregate_by_hogql="(SELECT max(distinct_id) FROM events)")),
    ),
    ("aggregation_group_type_index", lambda: _funnel(aggregation_group_type_index=5)),
    ("aggregation_group_type_index", lambda: _funnel(aggregation_group_type_index=-1)),
    ("series[0].properties[0].value", lambda: _funnel(_step("a", properties=[qpb.PropertyFilter(key="k", operator=qpb.PROPERTY_OPERATOR_REGEX, value=qpb.PropertyValue(string_value="(?=x)"))]), _step("b"))),
]


@pytest.mark.parametrize(("field", "build"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
async def test_an_invalid_funnel_is_refused_naming_the_field_and_not_saved(
    api: Api, field: str, build: Callable[[], qpb.FunnelsQuery]
) -> None:
    query = qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(funnels_query=build())))
    err = await expect_error(api.create(name="bad funnel", query=query), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, f"insight.query.source.{field}")
    assert (await api.list()).count == 0


async def test_an_undefined_order_type_is_invalid(server: Server, tenant: Tenant) -> None:
    query = _funnel(funnels_filter=qpb.FunnelsFilter(funnel_order_type=9))  # type: ignore[arg-type]
    err = await expect_error(_run(server, tenant, query), grpc.StatusCode.INVALID_ARGUMENT)
    assert "funnelsFilter.funnelOrderType" in (err.details() or "")


LATER: list[tuple[str, Callable[[], qpb.FunnelsQuery]]] = [
    (
        "funnelsFilter.funnelAggregateByHogQL",
        lambda: _funnel(
            aggregation_group_type_index=0,
            funnels_filter=qpb.FunnelsFilter(funnel_aggregate_by_hogql="properties.$session_id"),
        ),
    ),
    (
        "breakdownFilter.breakdown_type",
        lambda: _funnel(
            breakdown_filter=qpb.BreakdownFilter(
                breakdown=qpb.BreakdownKey(string_value="industry"),
                breakdown_type=qpb.BREAKDOWN_TYPE_GROUP,
                breakdown_group_type_index=0,
            )
        ),
    ),
]


@pytest.mark.parametrize(("field", "build"), LATER, ids=[f"{i}-{f}" for i, (f, _) in enumerate(LATER)])
async def test_an_option_not_built_yet_is_unimplemented_naming_the_field_but_can_be_saved(
    api: Api, server: Server, tenant: Tenant, field: str, build: Callable[[], qpb.FunnelsQuery]
) -> None:
    err = await expect_error(_run(server, tenant, build()), grpc.StatusCode.UNIMPLEMENTED)
    info = error_info(err)
    assert info.reason == "FUNNEL_OPTION_NOT_IMPLEMENTED" and info.metadata["field"] == field
    assert (err.details() or "").startswith(field)
    query = qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(funnels_query=build())))
    saved = await api.create(name="later", query=query)
    assert saved.id and not saved.HasField("result")
    got = api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=30,
    )
    await expect_error(got, grpc.StatusCode.UNIMPLEMENTED)


async def test_unordered_trends_exclusions_and_step_attribution_compute_through_the_service(
    server: Server, tenant: Tenant
) -> None:
    stub = egrpc.EventsServiceStub(server.channel)
    # Yesterday: a does b then a (its attempt's first event: b, plan pro; a is plan free); b does
    # a, an excluded event, then b; c and d do one step each.
    events = [_event("uo_b", "a", 0, plan="pro"), _event("uo_a", "a", 10, plan="free")]
    events += [_event("uo_a", "b", 0, plan="free"), _event("uo_x", "b", 5), _event("uo_b", "b", 10, plan="free")]
    events += [_event("uo_a", "c", 0, plan="pro"), _event("uo_b", "d", 0, plan="free")]
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    steps = (_step("uo_a"), _step("uo_b"))
    # Trends: all four enter yesterday, a and b convert.
    trends = await _run(server, tenant, _funnel(*steps, funnels_filter=_unordered(funnel_viz_type=qpb.FUNNEL_VIZ_TYPE_TRENDS)))
    (series,) = to_reference_json(trends.result.funnels)["trends"]["results"]
    assert series["reached_from_step_count"][6:] == [4, 0] and series["data"][6] == 50.0
    # A full-range exclusion removes b, whose attempt holds the excluded event.
    excluded = await _run(server, tenant, _funnel(*steps, funnels_filter=_unordered(exclusions=[_exclusion("uo_x", 0, 1)])))
    assert [s.count for s in excluded.result.funnels.steps.breakdowns[0].steps] == [3, 1]
    # Step attribution: the value at each attempt's first event (a converts as pro, b as free).
    attributed = await _run(
        server,
        tenant,
        _funnel(
            *steps,
            breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="plan")),
            funnels_filter=_unordered(
                breakdown_attribution_type=qpb.BREAKDOWN_ATTRIBUTION_TYPE_STEP, breakdown_attribution_value=0
            ),
        ),
    )
    got = [
        (list(g.steps[0].breakdown_value.list_value.values), [s.count for s in g.steps])
        for g in attributed.result.funnels.steps.breakdowns
    ]
    assert [([v.string_value for v in value], counts) for value, counts in got] == [(["free"], [3, 1]), (["pro"], [2, 1])]


async def test_action_steps_and_exclusions_compute_and_a_deleted_action_is_refused_by_name(
    api: Api, server: Server, tenant: Tenant
) -> None:
    actions = ActionsApi.of(server, tenant, "action:write")
    pricing = await actions.create(name="Saw pricing", steps=[step(event="$pageview", url="x.com/pricing")])
    cancelled = await actions.create(name="Cancelled", steps=[step(event="cancel")])
    events = [
        _event("$pageview", "a", 0, **{"$current_url": "https://x.com/pricing"}),
        _event("signup", "a", 30),
        _event("$pageview", "b", 0, **{"$current_url": "https://x.com/blog"}),
        _event("signup", "b", 30),
        _event("$pageview", "c", 0, **{"$current_url": "https://x.com/pricing?q=1"}),
        _event("cancel", "c", 10),
        _event("signup", "c", 30),
    ]
    response = await egrpc.EventsServiceStub(server.channel).IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)
    query = _funnel(qpb.SeriesNode(actions_node=qpb.ActionsNode(id=pricing.id)), _step("signup"))
    exclusion = query.funnels_filter.exclusions.add().actions_node
    exclusion.id, exclusion.funnel_from_step, exclusion.funnel_to_step = cancelled.id, 0, 1

    (steps,) = (await _run(server, tenant, query)).result.funnels.steps.breakdowns
    # b never saw pricing; c cancelled in between and is out of the funnel.
    assert [s.count for s in steps.steps] == [1, 1]
    first = steps.steps[0]
    assert (first.name, first.type, first.action_id.int_value) == ("Saw pricing", "actions", pricing.id)
    assert (steps.steps[1].name, steps.steps[1].type) == ("signup", "events")

    await actions.delete(cancelled.id)
    err = await expect_error(_run(server, tenant, query), grpc.StatusCode.FAILED_PRECONDITION)
    info = error_info(err)
    assert info.reason == "ACTION_UNAVAILABLE" and info.metadata["action"] == str(cancelled.id)
    assert info.metadata["field"] == "query.funnelsFilter.exclusions[0].id"
    # A funnel naming a missing action can still be saved (it may be restored).
    wrapped = qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(funnels_query=query)))
    assert (await api.create(name="with an action", query=wrapped)).id
