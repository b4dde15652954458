"""GetInsightSuggestions through the service: the follow-ups of each kind, each target query an
InsightVizNode that computes on ingested events, the context steering order and breakdown, refusals,
scopes and isolation."""

from __future__ import annotations

import grpc

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, expect_error, paths_viz
from tests.integration.journeykit import BLOCKING, day_event, ingest, viz


def _events(name: str, *filters: qpb.PropertyFilter) -> qpb.SeriesNode:
    return qpb.SeriesNode(events_node=qpb.EventsNode(event=name, properties=list(filters)))


async def _suggest(api: Api, insight_id: int, context: str | None = None) -> list[apb.InsightSuggestion]:
    request = apb.GetInsightSuggestionsRequest(environment_id=api.environment_id, id=insight_id, context=context)
    response = await api.stub.GetInsightSuggestions(request, metadata=api.metadata, timeout=30)
    return list(response.suggestions)


async def _computes(server: Server, tenant: Tenant, suggestion: apb.InsightSuggestion) -> qs.QueryResponse:
    """RunQuery (blocking) of a suggestion's target query: it must be an InsightVizNode that computes."""
    assert suggestion.target_query.WhichOneof("node") == "insight_viz_node"
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(environment_id=tenant.environment_id, query=suggestion.target_query, refresh=BLOCKING)
    response = await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)
    assert response.HasField("result"), suggestion.title
    return response  # type: ignore[no-any-return]


async def _ingested(server: Server, tenant: Tenant) -> None:
    """a and b view on Chrome, c on Safari; a and c sign up the next day; a views again two days on."""
    events = [
        day_event("$pageview", "a", 3, browser="Chrome", plan="pro"),
        day_event("$pageview", "b", 3, browser="Chrome", plan="free"),
        day_event("$pageview", "c", 3, browser="Safari", plan="free"),
        day_event("signup", "a", 2, browser="Chrome"),
        day_event("signup", "c", 2, browser="Safari"),
        day_event("$pageview", "a", 1, browser="Chrome", plan="pro"),
    ]
    await ingest(server, tenant, events)


async def test_each_kind_gets_its_follow_ups_and_every_one_computes(api: Api, server: Server, tenant: Tenant) -> None:
    await _ingested(server, tenant)
    trends = await api.create(
        name="t", query=viz(qpb.TrendsQuery(series=[_events("$pageview"), _events("signup")]))
    )
    funnel = await api.create(
        name="f", query=viz(qpb.FunnelsQuery(series=[_events("$pageview"), _events("signup")]))
    )
    entity = qpb.RetentionEntity(id=qpb.Scalar(string_value="$pageview"), type="events")
    retention = await api.create(
        name="r",
        query=viz(qpb.RetentionQuery(retention_filter=qpb.RetentionFilter(target_entity=entity, returning_entity=entity))),
    )
    sticky = await api.create(name="s", query=viz(qpb.StickinessQuery(series=[_events("$pageview")])))
    lifecycle = await api.create(name="l", query=viz(qpb.LifecycleQuery(series=[_events("signup")])))
    expected = {
        trends.id: [
            "Trends broken down by $browser",
            "Funnel $pageview → signup",
            "Retention of $pageview",
            "Stickiness of $pageview",
        ],
        funnel.id: [
            "Time to convert",
            "Conversion trend",
            "Funnel broken down by $browser",
            "Trends of the funnel's steps",
        ],
        retention.id: ["Stickiness of $pageview", "Lifecycle of $pageview"],
        sticky.id: ["Trends of $pageview", "Lifecycle of $pageview", "Retention of $pageview"],
        lifecycle.id: ["Trends of signup", "Stickiness of signup", "Retention of signup"],
    }
    for insight_id, titles in expected.items():
        found = await _suggest(api, insight_id)
        assert [s.title for s in found] == titles
        for suggestion in found:
            assert suggestion.description
            await _computes(server, tenant, suggestion)

    # What they compute is what they say: the funnel through the trends' series converts 2 of 3,
    # the conversion trend of the funnel is a rate per day, (recurring) retention has a, b, c starting
    # 3 days ago and a again 1 day ago.
    by_title = {s.title: s for s in await _suggest(api, trends.id)}
    steps = (await _computes(server, tenant, by_title["Funnel $pageview → signup"])).result.funnels.steps
    assert [step.count for step in steps.breakdowns[0].steps] == [3, 2]
    kept = (await _computes(server, tenant, by_title["Retention of $pageview"])).result.retention
    assert sum(c.values[0].count for c in kept.cohorts) == 4
    funnel_by = {s.title: s for s in await _suggest(api, funnel.id)}
    rates = (await _computes(server, tenant, funnel_by["Conversion trend"])).result.funnels.trends.series[0]
    assert max(rates.data) == round(2 * 100 / 3, 2)


async def test_the_context_moves_matching_suggestions_first_and_names_the_breakdown(
    api: Api, server: Server, tenant: Tenant
) -> None:
    await _ingested(server, tenant)
    trends = await api.create(name="t", query=viz(qpb.TrendsQuery(series=[_events("$pageview")])))
    titles = [s.title for s in await _suggest(api, trends.id, "how sticky? stickiness please")]
    assert titles[0] == "Stickiness of $pageview"
    assert (await _suggest(api, trends.id, "retention"))[0].title == "Retention of $pageview"

    # "by <property>" picks the breakdown; it computes one series per value.
    (first, *_) = await _suggest(api, trends.id, "break it down by browser")
    assert first.title == "Trends broken down by browser"
    series = (await _computes(server, tenant, first)).result.trends.series
    assert sorted((s.breakdown_value.string_value, sum(s.data)) for s in series) == [("Chrome", 3), ("Safari", 1)]

    # Without a context, a property the insight filters on is the breakdown it suggests.
    pro = qpb.PropertyFilter(key="plan", value=qpb.PropertyValue(string_value="pro"))
    filtered = await api.create(name="pro", query=viz(qpb.TrendsQuery(series=[_events("$pageview", pro)])))
    assert (await _suggest(api, filtered.id))[0].title == "Trends broken down by plan"

    # The insight's test-account switch and range go with it; what it leaves unset stays unset.
    kept = qpb.TrendsQuery(
        series=[_events("$pageview")], filter_test_accounts=True, date_range=qpb.DateRange(date_from="-30d")
    )
    carried = await api.create(name="kept", query=viz(kept))
    sticky = next(s for s in await _suggest(api, carried.id) if s.title.startswith("Stickiness"))
    source = sticky.target_query.insight_viz_node.source.stickiness_query
    assert source.filter_test_accounts and source.date_range.date_from == "-30d"
    assert not source.HasField("properties")


async def test_kinds_without_suggestions_bad_context_scopes_and_isolation(api: Api, tenant: Tenant) -> None:
    paths = await api.create(name="p", query=paths_viz())
    assert await _suggest(api, paths.id) == []
    trends = await api.create(name="t", query=viz(qpb.TrendsQuery(series=[_events("$pageview")])))
    err = await expect_error(_suggest(api, trends.id, "x" * 1001), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "context")
    unscoped = api.as_key(tenant.key("query:read"))
    await expect_error(_suggest(unscoped, trends.id), grpc.StatusCode.PERMISSION_DENIED)
    assert await _suggest(api.as_key(tenant.key("insight:read")), trends.id)
    elsewhere = api.as_key(tenant.key("insight:read"), environment_id=tenant.add_environment())
    await expect_error(_suggest(elsewhere, trends.id), grpc.StatusCode.NOT_FOUND)
