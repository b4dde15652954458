"""SQL insights through the service: a HogQLQuery by RunQuery and a saved DataVisualizationNode,
rendered as protobuf JSON (what grpcurl prints); the caller's environment only; refusals naming the
field (INVALID_ARGUMENT, never saved) and parts not built yet UNIMPLEMENTED (but savable); `explain`
answers the engine's plan. Alerts on SQL insights: test_sql_alerts.py."""

from __future__ import annotations

import json
from collections.abc import Callable

import grpc
from google.protobuf import field_mask_pb2, json_format

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from generated.insights.v1 import sharing_pb2 as spb
from generated.insights.v1 import sharing_pb2_grpc as sgrpc
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, error_info, expect_error
from tests.integration.journeykit import BLOCKING, HOSTILE, day_event, ingest

_SQL = (
    "SELECT event, properties.$browser AS browser, count() AS n FROM events "
    "GROUP BY event, browser ORDER BY event, browser"
)


async def run(server: Server, tenant: Tenant, node: qpb.HogQLQuery) -> qs.RunQueryResponse:
    """RunQuery (blocking) of a bare HogQLQuery with a query:read key."""
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(
        environment_id=tenant.environment_id, query=qpb.QueryNode(hogql_query=node), refresh=BLOCKING
    )
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


def _dvn(sql: str) -> qpb.QueryNode:
    return qpb.QueryNode(
        data_visualization_node=qpb.DataVisualizationNode(
            source=qpb.HogQLQuery(query=sql),
            display=qpb.CHART_DISPLAY_TYPE_ACTIONS_TABLE,
            table_settings=qpb.TableSettings(pinned_columns=["event"]),
        )
    )


async def test_sql_runs_by_run_query_and_as_a_saved_insight_for_the_caller_only(
    api: Api, server: Server, tenant: Tenant, make_tenant: Callable[[], Tenant]
) -> None:
    await ingest(
        server,
        tenant,
        [
            day_event("$pageview", "a", 1, **{"$browser": "Chrome"}),
            day_event("$pageview", "b", 1, **{"$browser": "Chrome"}),
            day_event("signup", "b", 0, **{"$browser": HOSTILE}),
        ],
    )
    other = make_tenant()
    await ingest(server, other, [day_event("$pageview", "z", 1, **{"$browser": "Other's"})])

    computed = await run(server, tenant, qpb.HogQLQuery(query=_SQL))
    rendered = json.loads(json_format.MessageToJson(computed.result.hogql))
    assert rendered["columns"] == ["event", "browser", "n"]
    assert rendered["types"] == [
        {"name": "event", "type": "String"},
        {"name": "browser", "type": "Nullable(String)"},
        {"name": "n", "type": "UInt64"},
    ]
    assert rendered["results"] == [["$pageview", "Chrome", 2.0], ["signup", HOSTILE, 1.0]]
    assert rendered["limit"] == "100" and "team_id" in rendered["clickhouse"]
    assert not computed.has_more and computed.hogql == rendered["clickhouse"]

    # The same statement for the other environment sees only its own row.
    theirs = await run(server, other, qpb.HogQLQuery(query=_SQL))
    assert json_format.MessageToDict(theirs.result.hogql)["results"] == [["$pageview", "Other's", 1.0]]

    saved = await api.create(name="sql", query=_dvn(_SQL))
    got = await api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=60,
    )
    assert got.result.hogql == computed.result.hogql
    # Chart and table settings are stored and returned as they were.
    assert list(got.query.data_visualization_node.table_settings.pinned_columns) == ["event"]
    assert got.query.data_visualization_node.display == qpb.CHART_DISPLAY_TYPE_ACTIONS_TABLE


async def test_a_refused_statement_is_invalid_argument_naming_the_field_and_is_not_saved(
    api: Api, server: Server, tenant: Tenant
) -> None:
    err = await expect_error(run(server, tenant, qpb.HogQLQuery(query="SELECT * FROM system.tables")), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "query.query")
    assert "database-qualified" in (err.details() or "")
    err = await expect_error(api.create(name="bad", query=_dvn("DROP TABLE events")), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "insight.query.source.query")
    assert (await api.list()).count == 0
    # An engine error is the caller's too: INVALID_ARGUMENT with the engine's words, no SQL.
    err = await expect_error(run(server, tenant, qpb.HogQLQuery(query="SELECT nosuch FROM events")), grpc.StatusCode.INVALID_ARGUMENT)
    assert "nosuch" in (err.details() or "") and "team_id" not in (err.details() or "")


async def test_parts_not_built_yet_are_unimplemented_naming_the_field_but_savable(
    api: Api, server: Server, tenant: Tenant
) -> None:
    cases = [
        (qpb.HogQLQuery(query="SELECT count() FROM events WHERE {filters.dateRange.to}"), "query"),
    ]
    for node, field in cases:
        err = await expect_error(run(server, tenant, node), grpc.StatusCode.UNIMPLEMENTED)
        assert error_info(err).metadata["field"] == field, node
        assert (err.details() or "").startswith(field)
    saved = await api.create(name="later", query=_dvn("SELECT count() FROM events WHERE {filters}"))
    assert saved.id and not saved.HasField("result")


async def test_an_external_connection_is_refused_as_not_part_of_this_service(server: Server, tenant: Tenant) -> None:
    err = await expect_error(
        run(server, tenant, qpb.HogQLQuery(query="SELECT 1", connection_id="c1")), grpc.StatusCode.UNIMPLEMENTED
    )
    assert error_info(err).metadata["field"] == "connection_id"
    assert (err.details() or "").startswith("connection_id: external connections are not part of this service")


async def test_explain_returns_the_plan_of_the_scoped_statement_without_running_it(
    api: Api, server: Server, tenant: Tenant
) -> None:
    await ingest(server, tenant, [day_event("$pageview", "a", 1)])
    # toInt64('$pageview') fails when a row is read: only a statement that never runs can answer.
    sql = "SELECT toInt64(event) AS x FROM events"
    err = await expect_error(run(server, tenant, qpb.HogQLQuery(query=sql)), grpc.StatusCode.INVALID_ARGUMENT)
    assert "Cannot parse" in (err.details() or "")
    planned = await run(server, tenant, qpb.HogQLQuery(query=sql, explain=True))
    plan = planned.result.hogql
    assert list(plan.columns) == ["explain"] and [(t.name, t.type) for t in plan.types] == [("explain", "String")]
    lines = [row.values[0].string_value for row in plan.rows]
    assert lines == list(plan.explain) and all(len(row.values) == 1 for row in plan.rows)
    assert any(f"team_id = {tenant.environment_id}" in line for line in lines), lines
    assert "team_id" in plan.clickhouse and not planned.has_more
    # A saved SQL insight explains its source the same way.
    saved = await api.create(name="plan", query=qpb.QueryNode(
        data_visualization_node=qpb.DataVisualizationNode(source=qpb.HogQLQuery(query=sql, explain=True))
    ))
    got = await api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=30,
    )
    assert list(got.result.hogql.explain) == lines


async def test_a_shared_sql_insight_shows_its_table_but_not_the_statement_as_run(
    api: Api, server: Server, tenant: Tenant
) -> None:
    await ingest(server, tenant, [day_event("$pageview", "a", 1, **{"$browser": "Chrome"})])
    saved = await api.create(name="shared sql", query=_dvn(_SQL))
    sharing = sgrpc.SharingServiceStub(server.channel)
    config = await sharing.UpdateSharingConfiguration(
        spb.UpdateSharingConfigurationRequest(
            environment_id=tenant.environment_id,
            insight_id=saved.id,
            sharing_configuration=spb.SharingConfiguration(enabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        ),
        metadata=bearer(tenant.key("sharing_configuration:write")),
        timeout=10,
    )
    seen = await sharing.GetSharedInsight(
        spb.GetSharedInsightRequest(refresh=BLOCKING),
        metadata=(("x-sharing-access-token", config.access_token),),
        timeout=30,
    )
    assert json_format.MessageToDict(seen.result.hogql)["results"] == [["$pageview", "Chrome", 1.0]]
    assert list(seen.columns) == ["event", "browser", "n"] and seen.types[2].type == "UInt64"
    assert not seen.result.hogql.clickhouse and not seen.hogql
    # The owner reading with a key gets the statement as run.
    owned = await api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=30,
    )
    assert "team_id" in owned.result.hogql.clickhouse and list(owned.columns) == ["event", "browser", "n"]


async def test_a_sql_query_streams_its_status_then_its_result(server: Server, tenant: Tenant) -> None:
    await ingest(server, tenant, [day_event("$pageview", "a", 1)])
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.StreamQueryRequest(
        environment_id=tenant.environment_id,
        query=qpb.QueryNode(hogql_query=qpb.HogQLQuery(query="SELECT count() AS n FROM events")),
        refresh=BLOCKING,
    )
    events = [e async for e in stub.StreamQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)]
    assert events[0].WhichOneof("event") == "status" and events[-1].WhichOneof("event") == "result"
    assert json_format.MessageToDict(events[-1].result.result.hogql)["results"] == [[1.0]]
