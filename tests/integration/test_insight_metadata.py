"""GenerateInsightMetadata over gRPC: derived text, action names from the environment, errors and scope."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest

from generated.insights.v1 import insight_metadata_pb2 as mpb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.actionkit import ActionsApi, step
from tests.integration.itkit import Server, Tenant, assert_invalid, bearer, dedicated_server, expect_error
from tests.support.chatmodel import Endpoint, completion

TIMEOUT = 30.0


def _trends_by_browser() -> qpb.QueryNode:
    return qpb.QueryNode(
        insight_viz_node=qpb.InsightVizNode(
            source=qpb.InsightSource(
                trends_query=qpb.TrendsQuery(
                    series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))],
                    breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser")),
                )
            )
        )
    )


def _funnel_through_action(action_id: int) -> qpb.QueryNode:
    return qpb.QueryNode(
        funnels_query=qpb.FunnelsQuery(
            series=[
                qpb.SeriesNode(events_node=qpb.EventsNode(event="signup")),
                qpb.SeriesNode(actions_node=qpb.ActionsNode(id=action_id)),
            ]
        )
    )


async def _generate(
    server: Server, key: str, environment_id: int, query: qpb.QueryNode | None
) -> mpb.GenerateInsightMetadataResponse:
    stub = igrpc.InsightsServiceStub(server.channel)
    request = mpb.GenerateInsightMetadataRequest(environment_id=environment_id)
    if query is not None:
        request.query.CopyFrom(query)
    response: mpb.GenerateInsightMetadataResponse = await stub.GenerateInsightMetadata(
        request, metadata=bearer(key), timeout=TIMEOUT
    )
    return response


async def test_a_trends_query_gets_the_reference_style_name(server: Server, tenant: Tenant) -> None:
    answer = await _generate(server, tenant.key("insight:write"), tenant.environment_id, _trends_by_browser())
    assert answer.name == "Pageview count by browser, last 7 days"
    assert answer.description == "Pageview count per day, broken down by browser, over the last 7 days."


async def test_an_action_is_named_by_its_stored_name_in_the_environment_only(server: Server, tenant: Tenant) -> None:
    actions = ActionsApi.of(server, tenant, "action:write")
    action = await actions.create(name="Checkout completed", steps=[step(event="checkout")])
    key = tenant.key("insight:write")

    named = await _generate(server, key, tenant.environment_id, _funnel_through_action(action.id))
    assert named.name == "Signup → Checkout completed conversion, 14-day window"
    assert named.description == (
        "Share of users who did Signup then Checkout completed within 14 days, over the last 7 days."
    )

    # The same id seen from another environment of the tenant is not that environment's action.
    other = tenant.add_environment()
    elsewhere = await _generate(server, tenant.key("insight:write"), other, _funnel_through_action(action.id))
    assert elsewhere.name == f"Signup → Action {action.id} conversion, 14-day window"

    # A deleted action is no longer named.
    await actions.delete(action.id)
    gone = await _generate(server, key, tenant.environment_id, _funnel_through_action(action.id))
    assert gone.name == f"Signup → Action {action.id} conversion, 14-day window"


async def test_a_missing_query_is_invalid_argument_naming_query(server: Server, tenant: Tenant) -> None:
    err = await expect_error(
        _generate(server, tenant.key("insight:write"), tenant.environment_id, None), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "query", mentions="Missing 'query' field in request body")


async def test_a_query_without_a_node_is_invalid_argument(server: Server, tenant: Tenant) -> None:
    key = tenant.key("insight:write")
    err = await expect_error(
        _generate(server, key, tenant.environment_id, qpb.QueryNode()), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "query", mentions="Invalid query format")
    empty_viz = qpb.QueryNode(insight_viz_node=qpb.InsightVizNode())
    err = await expect_error(
        _generate(server, key, tenant.environment_id, empty_viz), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "query.insight_viz_node.source", mentions="Invalid query format")
    empty_sql = qpb.QueryNode(hogql_query=qpb.HogQLQuery(query="  "))
    err = await expect_error(
        _generate(server, key, tenant.environment_id, empty_sql), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "query.hogql_query.query")


async def test_the_call_needs_insight_write(server: Server, tenant: Tenant) -> None:
    err = await expect_error(
        _generate(server, tenant.key("insight:read"), tenant.environment_id, _trends_by_browser()),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "insight:write" in (err.details() or "")


async def test_an_environment_the_key_cannot_reach_is_permission_denied(server: Server, tenant: Tenant) -> None:
    other = tenant.add_environment()
    key = tenant.key("insight:write", environments=[tenant.environment_id])
    err = await expect_error(_generate(server, key, other, _trends_by_browser()), grpc.StatusCode.PERMISSION_DENIED)
    assert str(other) in (err.details() or "")


async def test_a_configured_text_model_rephrases_and_a_failing_one_is_not_noticed(
    tmp_path_factory: pytest.TempPathFactory, events_dsn: str
) -> None:
    answers = [
        (200, completion(json.dumps({"name": "Browsers of pageviews", "description": "By browser."}))),
        (500, b"{}"),
    ]
    model = Endpoint(lambda body: answers.pop(0))
    try:
        async with dedicated_server(
            tmp_path_factory.mktemp("textmodel"),
            events_dsn,
            scopes=("insight:write",),
            text_model_url=model.url,
            text_model_allowed_networks="127.0.0.1/32",
        ) as dedicated:
            stub = igrpc.InsightsServiceStub(dedicated.channel)
            request = mpb.GenerateInsightMetadataRequest(
                environment_id=dedicated.environment_id, query=_trends_by_browser()
            )
            ask: Any = stub.GenerateInsightMetadata
            rephrased = await ask(request, metadata=bearer(dedicated.key), timeout=TIMEOUT)
            assert (rephrased.name, rephrased.description) == ("Browsers of pageviews", "By browser.")
            # The model failing: the derived text, not an error.
            derived = await ask(request, metadata=bearer(dedicated.key), timeout=TIMEOUT)
            assert derived.name == "Pageview count by browser, last 7 days"
    finally:
        model.close()
    sent = json.loads(model.requests[0][1]["messages"][-1]["content"])
    assert sent["draft"]["name"] == "Pageview count by browser, last 7 days"
    assert sent["query"]["kind"] == "InsightVizNode"
