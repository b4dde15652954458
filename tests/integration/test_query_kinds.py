"""Query kinds through the real server: a kind no runner computes is UNIMPLEMENTED naming it (never
OK with an error string), saving it stays allowed, a list page survives it; and a new kind is one
runner registered, computed, cached, streamed and cancelled by the unchanged execution layer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from generated.insights.v1 import results_pb2 as rpb
from server.errors import FailedPrecondition
from server.queries.base import Execute, Outcome, QueryContext, Runner
from server.queries.common.errors import QueryError
from server.queries.registry import Registry
from tests.integration.engineprobe import eventually
from tests.integration.itkit import (
    Api,
    Dedicated,
    Server,
    Tenant,
    bearer,
    dedicated_server,
    error_info,
    expect_error,
    paths_viz,
    sql_viz,
    trends_viz,
)

BLOCKING = cpb.REFRESH_MODE_BLOCKING


@pytest.fixture
def without_sql(server: Server) -> Any:
    """The shared server without its SQL runners for one test: SQL insights stand for a kind that
    no runner computes (every kind of the contract has one now)."""
    execution = server.app.execution
    saved = execution.registry
    execution.registry = Registry(
        [saved.runner(k) for k in saved.kinds if k not in ("hogql_query", "data_visualization_node")]
    )
    yield
    execution.registry = saved


def _queries(server: Server, tenant: Tenant) -> tuple[qs_grpc.QueryServiceStub, Any]:
    return qs_grpc.QueryServiceStub(server.channel), bearer(tenant.key("query:read"))


async def test_computing_a_kind_without_a_runner_is_unimplemented_naming_it(
    server: Server, tenant: Tenant, without_sql: None
) -> None:
    stub, metadata = _queries(server, tenant)
    request = qs.RunQueryRequest(environment_id=tenant.environment_id, query=sql_viz(), refresh=BLOCKING)
    err = await expect_error(stub.RunQuery(request, metadata=metadata, timeout=10), grpc.StatusCode.UNIMPLEMENTED)
    assert "DataVisualizationNode" in (err.details() or "")
    info = error_info(err)
    assert info.reason == "QUERY_KIND_NOT_IMPLEMENTED" and info.metadata["kind"] == "DataVisualizationNode"
    # A SQL insight has no InsightVizNode: its node is the query itself.
    assert info.metadata["field"] == "query"
    stream = qs.StreamQueryRequest(environment_id=tenant.environment_id, query=sql_viz(), refresh=BLOCKING)

    async def read_all() -> None:
        async for _ in stub.StreamQuery(stream, metadata=metadata, timeout=10):
            pass

    await expect_error(read_all(), grpc.StatusCode.UNIMPLEMENTED)
    # Reading the cache never computes: a plain miss.
    request.refresh = cpb.REFRESH_MODE_FORCE_CACHE
    missed = await stub.RunQuery(request, metadata=metadata, timeout=10)
    assert not missed.HasField("result") and not missed.HasField("query_status")


async def test_saving_is_allowed_but_a_computing_write_is_refused_before_it_writes(api: Api, without_sql: None) -> None:
    saved = await api.create(name="sql", query=sql_viz())
    assert saved.id and not saved.HasField("result")
    before = await api.list_ids()
    refused = api.stub.CreateInsight(
        ipb.CreateInsightRequest(
            environment_id=api.environment_id, insight=ipb.Insight(name="computed", query=sql_viz()), refresh=BLOCKING
        ),
        metadata=api.metadata,
        timeout=10,
    )
    err = await expect_error(refused, grpc.StatusCode.UNIMPLEMENTED)
    assert error_info(err).metadata["field"] == "insight.query"
    assert await api.list_ids() == before
    renamed = api.stub.UpdateInsight(
        ipb.UpdateInsightRequest(
            environment_id=api.environment_id,
            id=saved.id,
            insight=ipb.Insight(name="renamed"),
            update_mask={"paths": ["name"]},
            refresh=BLOCKING,
        ),
        metadata=api.metadata,
        timeout=10,
    )
    await expect_error(renamed, grpc.StatusCode.UNIMPLEMENTED)
    assert (await api.get(saved.id)).name == "sql"
    got = api.stub.GetInsight(
        ipb.GetInsightRequest(environment_id=api.environment_id, id=saved.id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=10,
    )
    await expect_error(got, grpc.StatusCode.UNIMPLEMENTED)


async def test_a_list_page_shows_what_cannot_compute_in_that_insights_status(api: Api, without_sql: None) -> None:
    trend = await api.create(name="trend", query=trends_viz())
    sql = await api.create(name="sql", query=sql_viz())
    page = await api.stub.ListInsights(
        ipb.ListInsightsRequest(environment_id=api.environment_id, refresh=BLOCKING),
        metadata=api.metadata,
        timeout=30,
    )
    by_id = {insight.id: insight for insight in page.results}
    assert by_id[trend.id].HasField("result") and not by_id[trend.id].query_status.error
    failed = by_id[sql.id].query_status
    assert failed.complete and failed.error and "DataVisualizationNode" in failed.error_message
    assert not by_id[sql.id].HasField("result")


class CountingPaths(Runner[qpb.PathsQuery]):
    """A stand-in kind for the extension point: counts the environment's events with a real engine
    statement (slow on demand, so that it can be cancelled mid-run)."""

    kind = "paths_query"

    def __init__(self) -> None:
        self.slow = False
        self.failing = False
        self.computed = 0

    def check(self, node: qpb.PathsQuery, ctx: QueryContext) -> None:
        if not node.HasField("paths_filter"):
            raise QueryError("a paths query needs a pathsFilter", "pathsFilter")

    def interval(self, node: qpb.PathsQuery) -> str | None:
        return "day"

    def compute(self, node: qpb.PathsQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        self.check(node, ctx)
        self.computed += 1
        if self.failing:
            # What a later kind meets at compute time, e.g. an action deleted since the insight was saved.
            raise FailedPrecondition("Action 7 was deleted", reason="ACTION_DELETED")
        if self.slow:
            sql = "SELECT count() FROM numbers(3000000000) WHERE sipHash64(number, {team:Int64}) % 7 = 3"
        else:
            sql = "SELECT count() FROM events WHERE team_id = {team:Int64}"
        rows = execute(sql, {"team": ctx.team_id})
        edge = rpb.PathsEdge(source="1_/home", target="2_/pricing", value=float(rows[0][0]))
        return Outcome(rpb.InsightResult(paths=rpb.PathsResult(edges=[edge])), False, None, None, sql)


@pytest.fixture
async def extended(tmp_path_factory: pytest.TempPathFactory, events_dsn: str) -> Any:
    async with dedicated_server(
        tmp_path_factory.mktemp("kinds"), events_dsn, scopes=("query:read", "insight:write")
    ) as dedicated:
        runner = CountingPaths()
        execution = dedicated.app.execution
        # The only change a new kind needs: its runner in the registry.
        execution.registry = execution.registry.with_runner(runner)
        yield dedicated, runner


async def test_a_new_kind_is_one_runner_computed_cached_streamed_and_cancelled(extended: Any) -> None:
    dedicated, runner = extended
    stub = qs_grpc.QueryServiceStub(dedicated.channel)
    metadata = bearer(dedicated.key)
    env = dedicated.environment_id

    def request(refresh: int, query_id: str = "") -> qs.RunQueryRequest:
        return qs.RunQueryRequest(environment_id=env, query=paths_viz(), refresh=refresh, client_query_id=query_id)  # type: ignore[arg-type]

    computed = await stub.RunQuery(request(BLOCKING), metadata=metadata, timeout=30)
    assert computed.result.HasField("paths") and not computed.is_cached
    assert computed.hogql.startswith("SELECT count()")
    cached = await stub.RunQuery(request(cpb.REFRESH_MODE_FORCE_CACHE), metadata=metadata, timeout=30)
    assert cached.is_cached and cached.result == computed.result and runner.computed == 1

    events = [
        event
        async for event in stub.StreamQuery(
            qs.StreamQueryRequest(
                environment_id=env, query=paths_viz(), refresh=cpb.REFRESH_MODE_FORCE_BLOCKING
            ),
            metadata=metadata,
            timeout=30,
        )
    ]
    assert events[0].WhichOneof("event") == "status" and events[-1].WhichOneof("event") == "result"
    assert runner.computed == 2

    runner.slow = True
    query_id = f"kind-{uuid.uuid4().hex[:8]}"
    await stub.RunQuery(request(cpb.REFRESH_MODE_FORCE_ASYNC, query_id), metadata=metadata, timeout=30)
    run = await eventually(lambda: _reading(dedicated, query_id), what="the new kind's statement at the engine")
    cancelled = await stub.CancelQuery(
        qs.CancelQueryRequest(environment_id=env, query_id=query_id), metadata=metadata, timeout=30
    )
    assert cancelled.outcome == qs.CANCEL_OUTCOME_CANCELLED
    assert await asyncio.to_thread(dedicated.app.events.progress, run.tag) is None
    status = await stub.GetQueryStatus(
        qs.GetQueryStatusRequest(environment_id=env, query_id=query_id), metadata=metadata, timeout=10
    )
    assert status.complete and status.error_message == "Query was cancelled"


def _reading(dedicated: Dedicated, query_id: str) -> Any:
    try:
        run = dedicated.app.execution.runs.get(dedicated.environment_id, query_id)
    except Exception:
        return None
    run.watch()  # the engine is polled for progress only while someone watches
    return run if run.progress is not None and run.progress.read_rows > 0 else None


async def test_a_new_kinds_check_refuses_its_node_naming_the_field(extended: Any) -> None:
    dedicated, _ = extended
    stub = qs_grpc.QueryServiceStub(dedicated.channel)
    query = qpb.QueryNode(paths_query=qpb.PathsQuery())
    request = qs.RunQueryRequest(environment_id=dedicated.environment_id, query=query, refresh=BLOCKING)
    err = await expect_error(
        stub.RunQuery(request, metadata=bearer(dedicated.key), timeout=10), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert (err.details() or "").startswith("query.pathsFilter")



async def test_a_write_whose_computation_fails_is_saved_and_says_so(extended: Any) -> None:
    dedicated, runner = extended
    api = Api(igrpc.InsightsServiceStub(dedicated.channel), dedicated.environment_id, bearer(dedicated.key))
    runner.failing = True
    created = await api.stub.CreateInsight(
        ipb.CreateInsightRequest(
            environment_id=api.environment_id, insight=ipb.Insight(name="paths", query=paths_viz()), refresh=BLOCKING
        ),
        metadata=api.metadata,
        timeout=30,
    )
    assert created.id and not created.HasField("result")
    status = created.query_status
    assert status.complete and status.error and "Action 7 was deleted" in status.error_message
    assert (await api.get(created.id)).name == "paths"
    updated = await api.stub.UpdateInsight(
        ipb.UpdateInsightRequest(
            environment_id=api.environment_id,
            id=created.id,
            insight=ipb.Insight(name="renamed"),
            update_mask={"paths": ["name"]},
            refresh=BLOCKING,
        ),
        metadata=api.metadata,
        timeout=30,
    )
    assert updated.name == "renamed" and updated.query_status.error
    assert (await api.get(created.id)).name == "renamed"
