"""Stopping real trends runs on the real engine: CancelQuery, a caller's deadline and a dropped
stream each leave no statement of the run in the engine (`system.processes`, by the run's tag).

The query is heavy (several series over millions of events, one engine statement), so it is
still computing when it is stopped; no probe or stand-in statement is involved.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from tests.integration.engineprobe import eventually
from tests.integration.heavy import bulk_insert, heavy_trend
from tests.integration.itkit import Server, Tenant, bearer, expect_error, new_tenant

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Far more work than any of these tests lets run: each is stopped once the engine reports rows read.
SERIES = 12
STOPPED_WITHIN = 10.0  # seconds allowed for the engine to forget the run (a bound, not a target)


@pytest.fixture(scope="module")
async def loaded(server: Server) -> Tenant:
    tenant = new_tenant(server)
    await asyncio.to_thread(bulk_insert, server, tenant.environment_id)
    return tenant


@pytest.fixture
def stub(server: Server) -> qs_grpc.QueryServiceStub:
    return qs_grpc.QueryServiceStub(server.channel)


def _request(tenant: Tenant, query_id: str, refresh: int, series: int = SERIES) -> qs.RunQueryRequest:
    return qs.RunQueryRequest(
        environment_id=tenant.environment_id,
        query=heavy_trend(series),
        refresh=refresh,  # type: ignore[arg-type]
        client_query_id=query_id,
    )


async def _engine_busy(server: Server, tenant: Tenant, query_id: str) -> str:
    """Waits until the run's engine statement has read rows; returns the run's engine tag."""
    runs = server.app.execution.runs

    def reading() -> str | None:
        try:
            run = runs.get(tenant.environment_id, query_id)
        except Exception:
            return None
        run.watch()  # the engine is polled for progress only while someone watches
        return run.tag if run.progress is not None and run.progress.read_rows > 0 else None

    return str(await eventually(reading, timeout=30, what="the run's engine statement to read rows"))


async def _cancel_while_busy(
    server: Server, stub: qs_grpc.QueryServiceStub, tenant: Tenant, query_id: str, metadata: Any
) -> None:
    """Cancels a run once its engine statement reads rows; checks the statement is gone on the answer."""
    tag = await _engine_busy(server, tenant, query_id)
    outcome = await stub.CancelQuery(
        qs.CancelQueryRequest(environment_id=tenant.environment_id, query_id=query_id),
        metadata=metadata,
        timeout=30,
    )
    assert outcome.outcome == qs.CANCEL_OUTCOME_CANCELLED
    # CancelQuery answers once the statement is gone: nothing to wait for.
    assert await asyncio.to_thread(server.app.events.progress, tag) is None


async def _engine_forgot(server: Server, tag: str) -> None:
    async def gone() -> bool:
        return await asyncio.to_thread(server.app.events.progress, tag) is None

    for _ in range(int(STOPPED_WITHIN / 0.05)):
        if await gone():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the engine still runs {tag} {STOPPED_WITHIN} s after the run was stopped")


@sqlite_only
async def test_cancel_query_leaves_nothing_running_in_the_engine(
    server: Server, loaded: Tenant, stub: qs_grpc.QueryServiceStub
) -> None:
    metadata = bearer(loaded.key("query:read"))
    query_id = f"stop-{uuid.uuid4().hex[:8]}"
    started = await stub.RunQuery(
        _request(loaded, query_id, cpb.REFRESH_MODE_FORCE_ASYNC), metadata=metadata, timeout=30
    )
    assert not started.query_status.complete
    await _cancel_while_busy(server, stub, loaded, query_id, metadata)
    status = await stub.GetQueryStatus(
        qs.GetQueryStatusRequest(environment_id=loaded.environment_id, query_id=query_id),
        metadata=metadata,
        timeout=10,
    )
    assert status.complete and status.error and status.error_message == "Query was cancelled"


@sqlite_only
async def test_a_get_insight_computation_is_named_by_its_client_query_id_and_cancellable(
    server: Server, loaded: Tenant, stub: qs_grpc.QueryServiceStub
) -> None:
    insights = igrpc.InsightsServiceStub(server.channel)
    metadata = bearer(loaded.key("insight:write", "query:read"))
    created = await insights.CreateInsight(
        ipb.CreateInsightRequest(
            environment_id=loaded.environment_id, insight=ipb.Insight(name="heavy", query=heavy_trend(SERIES))
        ),
        metadata=metadata,
        timeout=30,
    )
    query_id = f"get-{uuid.uuid4().hex[:8]}"
    started = await insights.GetInsight(
        ipb.GetInsightRequest(
            environment_id=loaded.environment_id,
            id=created.id,
            refresh=cpb.REFRESH_MODE_FORCE_ASYNC,
            client_query_id=query_id,
        ),
        metadata=metadata,
        timeout=30,
    )
    assert started.query_status.id == query_id and not started.query_status.complete
    await _cancel_while_busy(server, stub, loaded, query_id, metadata)


@sqlite_only
async def test_a_callers_deadline_stops_its_run_in_the_engine(
    server: Server, loaded: Tenant, stub: qs_grpc.QueryServiceStub
) -> None:
    metadata = bearer(loaded.key("query:read"))
    query_id = f"deadline-{uuid.uuid4().hex[:8]}"
    call = stub.RunQuery(
        _request(loaded, query_id, cpb.REFRESH_MODE_FORCE_BLOCKING, series=SERIES + 1),
        metadata=metadata,
        timeout=3,
    )
    tag = await _engine_busy(server, loaded, query_id)
    await expect_error(call, grpc.StatusCode.DEADLINE_EXCEEDED)
    await _engine_forgot(server, tag)
    run = server.app.execution.runs.get(loaded.environment_id, query_id)
    await eventually(lambda: run.complete, what="the run to end")
    assert run.cancelled and not run.in_engine


async def _messages(call: Any) -> AsyncIterator[qs.QueryEvent]:
    async for message in call:
        yield message


@sqlite_only
async def test_a_dropped_stream_stops_its_run_in_the_engine(
    server: Server, loaded: Tenant, stub: qs_grpc.QueryServiceStub
) -> None:
    metadata = bearer(loaded.key("query:read"))
    query_id = f"stream-{uuid.uuid4().hex[:8]}"
    request = qs.StreamQueryRequest(
        environment_id=loaded.environment_id,
        query=heavy_trend(SERIES + 2),
        refresh=cpb.REFRESH_MODE_FORCE_BLOCKING,
        client_query_id=query_id,
    )
    call = stub.StreamQuery(request, metadata=metadata, timeout=60)
    async for message in _messages(call):
        if message.status.query_progress.rows_read > 0:
            break
    tag = server.app.execution.runs.get(loaded.environment_id, query_id).tag
    call.cancel()
    await _engine_forgot(server, tag)
    run = server.app.execution.runs.get(loaded.environment_id, query_id)
    await eventually(lambda: run.complete, what="the run to end")
    assert run.cancelled and run.error_message == "Query was cancelled"
