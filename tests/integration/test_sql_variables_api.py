"""SQL insight variables and {filters} through the service: RunQuery with values bound, a saved insight
read with `variables_override` (for that read only, cached apart), refusals naming the field."""

from __future__ import annotations

import grpc
from google.protobuf import json_format, struct_pb2

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, expect_error
from tests.integration.journeykit import BLOCKING, HOSTILE, day_event, ingest
from tests.integration.test_sql_api import run

_SQL = "SELECT count() AS n FROM events WHERE event = {variables.kind} AND {filters}"


def _variable(code_name: str, text: str) -> qpb.HogQLVariable:
    return qpb.HogQLVariable(variable_id="v1", code_name=code_name, value=struct_pb2.Value(string_value=text))


def _node(kind: str = "$pageview") -> qpb.HogQLQuery:
    node = qpb.HogQLQuery(query=_SQL, variables={"v1": _variable("kind", kind)})
    node.filters.date_range.date_from = "-5d"
    return node


def _count(insight_or_response: ipb.Insight | object) -> float:
    result = insight_or_response.result  # type: ignore[attr-defined]
    return float(json_format.MessageToDict(result.hogql)["results"][0][0])


async def _events(server: Server, tenant: Tenant) -> None:
    await ingest(
        server,
        tenant,
        [
            day_event("$pageview", "a", 1, **{"$browser": "Chrome"}),
            day_event("$pageview", "b", 2, **{"$browser": "Firefox"}),
            day_event("$pageview", "c", 9, **{"$browser": "Chrome"}),  # before -5d
            day_event("signup", "b", 1),
            day_event(HOSTILE, "b", 1),
        ],
    )


async def _read(api: Api, insight_id: int, **extra: object) -> ipb.Insight:
    request = ipb.GetInsightRequest(environment_id=api.environment_id, id=insight_id, refresh=BLOCKING, **extra)  # type: ignore[arg-type]
    return await api.stub.GetInsight(request, metadata=api.metadata, timeout=60)  # type: ignore[no-any-return]


async def test_run_query_binds_variables_values_and_filters(server: Server, tenant: Tenant) -> None:
    await _events(server, tenant)
    assert _count(await run(server, tenant, _node())) == 2
    browsers = _node()
    browsers.filters.properties.add(
        key="$browser",
        operator=qpb.PROPERTY_OPERATOR_EXACT,
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        value=qpb.PropertyValue(string_value="Chrome"),
    )
    assert _count(await run(server, tenant, browsers)) == 1
    # A hostile event name is a value like any other.
    assert _count(await run(server, tenant, _node(HOSTILE))) == 1
    named = qpb.HogQLQuery(query="SELECT count() FROM events WHERE event = {kind}")
    named.values["kind"].string_value = "signup"
    assert _count(await run(server, tenant, named)) == 1


async def test_a_placeholder_without_a_value_is_invalid_and_never_saved(api: Api, server: Server, tenant: Tenant) -> None:
    missing = qpb.HogQLQuery(query="SELECT {variables.kind}")
    err = await expect_error(run(server, tenant, missing), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "query.variables")
    node = qpb.QueryNode(data_visualization_node=qpb.DataVisualizationNode(source=missing))
    err = await expect_error(api.create(name="bad", query=node), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "insight.query.source.variables")
    identifier = qpb.HogQLQuery(query="SELECT count() FROM {variables.kind}", variables={"v1": _variable("kind", "events")})
    err = await expect_error(run(server, tenant, identifier), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "query.query")
    assert (await api.list()).count == 0


async def test_variables_override_changes_one_read_and_is_cached_apart(api: Api, server: Server, tenant: Tenant) -> None:
    await _events(server, tenant)
    node = qpb.QueryNode(data_visualization_node=qpb.DataVisualizationNode(source=_node()))
    saved = await api.create(name="by kind", query=node)
    assert _count(await _read(api, saved.id)) == 2

    signup = {"v1": qpb.HogQLVariable(value=struct_pb2.Value(string_value="signup"))}
    overridden = await _read(api, saved.id, variables_override=signup)
    assert _count(overridden) == 1
    # The insight is shown as saved; only the computation saw the override.
    assert overridden.query.data_visualization_node.source.variables["v1"].value.string_value == "$pageview"
    # Both answers are now cached, each under its own query: neither serves the other.
    again = await _read(api, saved.id)
    assert _count(again) == 2 and again.is_cached
    again = await _read(api, saved.id, variables_override=signup)
    assert _count(again) == 1 and again.is_cached
    nothing = {"v1": qpb.HogQLVariable(is_null=True)}
    assert _count(await _read(api, saved.id, variables_override=nothing)) == 0


async def test_a_variables_override_the_insight_cannot_take_is_refused(api: Api, server: Server, tenant: Tenant) -> None:
    node = qpb.QueryNode(data_visualization_node=qpb.DataVisualizationNode(source=_node()))
    saved = await api.create(name="by kind", query=node)
    cases = [
        ({"nope": qpb.HogQLVariable(value=struct_pb2.Value(string_value="x"))}, "variables_override.nope"),
        ({"v1": qpb.HogQLVariable(code_name="other", value=struct_pb2.Value(string_value="x"))}, "variables_override.v1.code_name"),
        ({"v1": qpb.HogQLVariable(value=struct_pb2.Value(struct_value=struct_pb2.Struct()))}, "variables_override.v1.value"),
    ]
    for override, field in cases:
        err = await expect_error(_read(api, saved.id, variables_override=override), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, field)
