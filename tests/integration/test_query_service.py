"""QueryService through the real server: one engine run for identical concurrent calls, streamed
progress, status and cancel of runs, the queue bound and status expiry, and insights computed by
the same machinery.

Concurrent callers are made to overlap with an EngineProbe (tests/integration/engineprobe.py):
the shared run is held at the engine boundary until every caller has joined, or fronted by a real
engine query that only KILL QUERY ends. The stream test computes a real trend over a few million
events.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from generated.insights.v1 import results_pb2 as rpb
from storage.events import EventRow
from tests.integration.engineprobe import EngineProbe, cancel_leftovers, eventually, probing
from tests.integration.heavy import BULK_EVENTS, bulk_insert, heavy_trend
from tests.integration.itkit import (
    Api,
    Metadata,
    Server,
    Tenant,
    bearer,
    dedicated_server,
    expect_error,
    rich_status,
)

# The service's behaviour does not depend on the metadata backend: one server (SQLite) is enough.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

CALL_TIMEOUT = 30.0
# A caller that leaves by its deadline: the behaviour under test, not a wait. It must only outlast
# the caller's arrival on the shared run (milliseconds), which the test checks before it leaves.
LEAVING_DEADLINE = 2.0
FORCE_BLOCKING = cpb.REFRESH_MODE_FORCE_BLOCKING
BLOCKING = cpb.REFRESH_MODE_BLOCKING
ASYNC = cpb.REFRESH_MODE_ASYNC


def trend(event: str = "$pageview", **series: Any) -> qpb.QueryNode:
    return qpb.QueryNode(
        trends_query=qpb.TrendsQuery(
            series=[qpb.SeriesNode(events_node=qpb.EventsNode(event=event, **series))],
            interval=qpb.INTERVAL_TYPE_DAY,
            date_range=qpb.DateRange(date_from="-7d"),
        )
    )


def viz(query: qpb.QueryNode) -> qpb.QueryNode:
    source = qpb.InsightSource(trends_query=query.trends_query)
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=source))


def _filter(key: str, op: qpb.PropertyOperator.ValueType, value: str) -> qpb.PropertyFilter:
    return qpb.PropertyFilter(
        key=key, operator=op, value=qpb.PropertyValue(string_value=value), type=qpb.PROPERTY_FILTER_TYPE_EVENT
    )


def run_id() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def engine_tag(server: Server, environment_id: int, query_id: str) -> str:
    """The server-generated tag the run named `query_id` gives its engine statements."""
    return str(server.app.execution.runs.get(environment_id, query_id).tag)


async def _stopped_by_its_kill(run: Any, probe: EngineProbe) -> None:
    """A cancelled run ended because its engine statement was killed, not after giving up on it.

    A run whose kill failed still completes (the cancel stops waiting after STOP_WITHIN_SECONDS),
    with its statement in the engine: the statement ended first here, and the engine forgot it.
    """
    assert run.complete and run.cancelled
    assert not run.in_engine, "the run completed with its engine statement still running"
    assert run.tag in probe.kills
    assert await asyncio.to_thread(probe.store.progress, run.tag) is None


@dataclass
class Caller:
    """QueryService calls in one environment with one key."""

    stub: qs_grpc.QueryServiceStub
    environment_id: int
    metadata: Metadata

    def run(
        self,
        query: qpb.QueryNode,
        refresh: cpb.RefreshMode.ValueType = BLOCKING,
        client_query_id: str = "",
        timeout: float = CALL_TIMEOUT,
    ) -> Any:
        request = qs.RunQueryRequest(
            environment_id=self.environment_id, query=query, refresh=refresh, client_query_id=client_query_id
        )
        return self.stub.RunQuery(request, metadata=self.metadata, timeout=timeout)

    def stream(
        self, query: qpb.QueryNode, refresh: cpb.RefreshMode.ValueType = BLOCKING, client_query_id: str = ""
    ) -> Any:
        request = qs.StreamQueryRequest(
            environment_id=self.environment_id, query=query, refresh=refresh, client_query_id=client_query_id
        )
        return self.stub.StreamQuery(request, metadata=self.metadata, timeout=CALL_TIMEOUT)

    def status(self, query_id: str, show_progress: bool = True) -> Any:
        request = qs.GetQueryStatusRequest(
            environment_id=self.environment_id, query_id=query_id, show_progress=show_progress
        )
        return self.stub.GetQueryStatus(request, metadata=self.metadata, timeout=10)

    def cancel(self, query_id: str, dequeue_only: bool = False) -> Any:
        request = qs.CancelQueryRequest(
            environment_id=self.environment_id, query_id=query_id, dequeue_only=dequeue_only
        )
        return self.stub.CancelQuery(request, metadata=self.metadata, timeout=10)

    async def wait_status(
        self, query_id: str, predicate: Callable[[rpb.QueryStatus], bool], timeout: float = 15.0
    ) -> rpb.QueryStatus:
        """Polls the status until `predicate` holds; NOT_FOUND counts as "not started yet"."""
        deadline = time.monotonic() + timeout
        while True:
            status: rpb.QueryStatus | None = None
            try:
                status = await self.status(query_id)
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            if status is not None and predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"status of {query_id} never matched: {status}")
            await asyncio.sleep(0.02)


@pytest.fixture
def caller(server: Server, tenant: Tenant) -> Caller:
    return Caller(
        qs_grpc.QueryServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("query:read"))
    )


@pytest.fixture
async def probe(server: Server, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EngineProbe]:
    """The server's engine seen through an EngineProbe for the duration of a test."""
    async with probing(server.app.execution, monkeypatch) as probe:
        yield probe


def _coalesced(server: Server) -> Callable[[], int]:
    """Callers that started or joined a shared run since now."""
    stats = server.app.coalescing.stats
    start = stats.leaders + stats.followers
    return lambda: stats.leaders + stats.followers - start


async def _insert(server: Server, environment_id: int, count: int = 12) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        EventRow(
            environment_id,
            uuid.uuid4(),
            "$pageview",
            f"person-{i % 4}",
            uuid.uuid4(),
            now - dt.timedelta(hours=i),
            '{"$browser": "Chrome"}',
            "{}",
        )
        for i in range(count)
    ]
    await asyncio.to_thread(server.app.events.insert_events, rows)


# ------------------------------------------------------------------------------------------------
# Coalescing: identical concurrent calls


@sqlite_only
async def test_fifty_identical_calls_run_the_engine_once_and_unauthorised_callers_are_refused(
    server: Server,
    tenant: Tenant,
    make_tenant: Callable[[], Tenant],
    caller: Caller,
    probe: EngineProbe,
) -> None:
    await _insert(server, tenant.environment_id)
    query = trend()
    unscoped = tenant.key("insight:read")
    elsewhere = tenant.key("query:read", environments=[tenant.add_environment()])
    stranger = make_tenant().key("query:read")
    runs, statements, joined = server.app.execution.runs.engine_runs, probe.statements, _coalesced(server)
    stats = server.app.coalescing.stats
    leaders, followers = stats.leaders, stats.followers

    with probe.gate() as gate:
        calls = [asyncio.ensure_future(caller.run(query, FORCE_BLOCKING)) for _ in range(50)]
        await eventually(lambda: joined() == 50 and probe.held, what="50 callers on one held run")
        # Callers that may not see the result are refused on their own while the run is held.
        for raw in (unscoped, elsewhere, stranger):
            other = Caller(caller.stub, caller.environment_id, bearer(raw))
            await expect_error(
                other.run(query, FORCE_BLOCKING, timeout=10), grpc.StatusCode.PERMISSION_DENIED
            )
        assert not any(call.done() for call in calls)
        gate.open()
        responses = await asyncio.wait_for(asyncio.gather(*calls), CALL_TIMEOUT)

    assert server.app.execution.runs.engine_runs - runs == 1
    assert probe.statements - statements == 1  # one engine statement for the one-series trend
    assert (stats.leaders - leaders, stats.followers - followers) == (1, 49)
    first = responses[0]
    assert all(response == first for response in responses)
    assert not first.is_cached and first.calculation_trigger == "refresh param"
    assert sum(first.result.trends.series[0].data) == 12


@sqlite_only
async def test_a_caller_that_leaves_does_not_stop_the_others(
    server: Server, caller: Caller, probe: EngineProbe
) -> None:
    query = trend()
    runs, joined = server.app.execution.runs.engine_runs, _coalesced(server)
    cancelled = server.app.coalescing.stats.cancelled
    with probe.gate() as gate:
        first = caller.run(query, FORCE_BLOCKING)
        await eventually(lambda: probe.held, what="the first caller's run at the engine")
        impatient = caller.run(query, FORCE_BLOCKING, timeout=LEAVING_DEADLINE)
        others = [asyncio.ensure_future(caller.run(query, FORCE_BLOCKING)) for _ in range(3)]
        await eventually(lambda: joined() == 5, what="five callers on the run")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await expect_error(impatient, grpc.StatusCode.DEADLINE_EXCEEDED)
        await eventually(lambda: server.app.coalescing.waiting == 3, what="the server to see two leave")
        assert probe.held and not any(call.done() for call in others)
        gate.open()
        responses = await asyncio.wait_for(asyncio.gather(*others), CALL_TIMEOUT)
    assert all(r == responses[0] and r.HasField("result") for r in responses)
    assert server.app.execution.runs.engine_runs - runs == 1
    assert server.app.coalescing.stats.cancelled == cancelled and probe.kills == []


@sqlite_only
async def test_when_every_caller_leaves_the_engine_query_is_stopped(
    server: Server, caller: Caller, probe: EngineProbe
) -> None:
    query_id = run_id()
    with probe.slow():
        calls = [caller.run(trend(), FORCE_BLOCKING, client_query_id=query_id) for _ in range(2)]
        running = await caller.wait_status(query_id, lambda s: s.query_progress.rows_read > 0)
        assert not running.complete
        run = server.app.execution.runs.get(caller.environment_id, query_id)
        for call in calls:
            call.cancel()
        done = await caller.wait_status(query_id, lambda s: s.complete)
    assert done.error and done.error_message == "Query was cancelled"
    await _stopped_by_its_kill(run, probe)


@sqlite_only
async def test_a_failing_query_fails_every_waiter_and_the_next_call_runs_afresh(
    server: Server, tenant: Tenant, caller: Caller, probe: EngineProbe
) -> None:
    await _insert(server, tenant.environment_id)
    # RE2-only syntax is left to the engine, which refuses the unbalanced group at run time.
    bad = trend(properties=[_filter("$browser", qpb.PROPERTY_OPERATOR_REGEX, "\\p{Greek}(")])
    runs, joined = server.app.execution.runs.engine_runs, _coalesced(server)
    with probe.gate() as gate:
        calls = [asyncio.ensure_future(caller.run(bad)) for _ in range(5)]
        await eventually(lambda: joined() == 5 and probe.held, what="five callers on the held run")
        gate.open()
        outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), CALL_TIMEOUT)
    assert all(isinstance(o, grpc.aio.AioRpcError) for o in outcomes), outcomes
    codes = {o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)}
    # The engine's refusal of the caller's own value is the caller's error, not an internal one.
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
    assert server.app.execution.runs.engine_runs - runs == 1

    # The error was not kept: the next call computes again (and fails the same way).
    again = await expect_error(caller.run(bad), codes.pop())
    assert server.app.execution.runs.engine_runs - runs == 2
    assert again.details()
    # A good query in the same environment is unaffected.
    assert (await caller.run(trend())).HasField("result")


# ------------------------------------------------------------------------------------------------
# StreamQuery

async def _read(call: Any) -> list[qs.QueryEvent]:
    return [message async for message in call]


@sqlite_only
async def test_streams_report_monotonic_progress_then_the_result_of_run_query(
    server: Server, tenant: Tenant, caller: Caller
) -> None:
    await asyncio.to_thread(bulk_insert, server, tenant.environment_id, BULK_EVENTS)
    query = heavy_trend()
    runs = server.app.execution.runs.engine_runs
    # Two streams and a RunQuery on the same query share one computation and its progress. How
    # soon and how often a stream reports (first progress, largest gap, the minimum gap between
    # messages) are timing goals: bench/stream.py measures them.
    streams = [asyncio.ensure_future(_read(caller.stream(query))) for _ in range(2)]
    blocking = asyncio.ensure_future(caller.run(query))
    received = await asyncio.wait_for(asyncio.gather(*streams), CALL_TIMEOUT)
    direct = await asyncio.wait_for(blocking, CALL_TIMEOUT)
    assert server.app.execution.runs.engine_runs - runs == 1

    for messages in received:
        kinds = [m.WhichOneof("event") for m in messages]
        assert kinds[0] == "status" and kinds[-1] == "result" and set(kinds[1:-1]) <= {"status"}, kinds
        assert not messages[0].status.complete and messages[0].status.id
        assert len({m.status.id for m in messages[:-1]}) == 1  # one run, named alike throughout
        rows = [m.status.query_progress.rows_read for m in messages if m.status.HasField("query_progress")]
        assert len(rows) >= 2, f"{len(rows)} progress messages"
        assert rows == sorted(rows) and rows[-1] > rows[0], rows
        final = messages[-1].result
        assert final.result == direct.result and final.result.trends.series
        assert not final.is_cached and final.calculation_trigger == "cache miss"
    assert direct.result.trends.series[0].count > 0

    # Once computed, RunQuery and StreamQuery answer from the cache.
    cached = await caller.run(query)
    assert cached.is_cached and cached.result == direct.result
    (only,) = await _read(caller.stream(query))
    assert only.WhichOneof("event") == "result" and only.result.is_cached
    assert server.app.execution.runs.engine_runs - runs == 1


@sqlite_only
async def test_cancelling_a_stream_stops_the_engine_query(
    server: Server, caller: Caller, probe: EngineProbe
) -> None:
    query_id = run_id()
    with probe.slow():
        call = caller.stream(trend(), FORCE_BLOCKING, client_query_id=query_id)
        first = await asyncio.wait_for(call.read(), 10)
        assert first.WhichOneof("event") == "status" and first.status.id == query_id
        while not (await asyncio.wait_for(call.read(), 10)).status.query_progress.rows_read:
            pass
        run = server.app.execution.runs.get(caller.environment_id, query_id)
        call.cancel()
        done = await caller.wait_status(query_id, lambda s: s.complete)
    assert done.error and done.error_message == "Query was cancelled"
    await _stopped_by_its_kill(run, probe)


@sqlite_only
async def test_cancelling_a_stream_leaves_the_run_to_other_callers(
    server: Server, caller: Caller, probe: EngineProbe
) -> None:
    query = trend()
    runs = server.app.execution.runs.engine_runs
    with probe.gate() as gate:
        call = caller.stream(query)
        first = await asyncio.wait_for(call.read(), 10)
        assert first.WhichOneof("event") == "status"
        waiting = asyncio.ensure_future(caller.run(query))
        run = server.app.execution.runs.in_flight(first.status.id)
        assert run is not None
        await eventually(lambda: run.waiters == 2, what="RunQuery to join the stream's run")
        call.cancel()
        # A leaving caller decides whether it was the last one before it stops counting as a
        # waiter: once the count is down, a cancel of the run would have begun (marked cancelled).
        await eventually(lambda: run.waiters == 1, what="the stream to leave the run")
        assert not run.cancelled and not run.stop.is_set()
        assert probe.held and probe.kills == []
        gate.open()
        response = await asyncio.wait_for(waiting, CALL_TIMEOUT)
    assert response.HasField("result") and not response.is_cached
    assert server.app.execution.runs.engine_runs - runs == 1


# ------------------------------------------------------------------------------------------------
# GetQueryStatus and CancelQuery


@sqlite_only
async def test_unknown_ids_are_not_found(caller: Caller) -> None:
    await expect_error(caller.status("no-such-query"), grpc.StatusCode.NOT_FOUND)
    await expect_error(caller.cancel("no-such-query"), grpc.StatusCode.NOT_FOUND)


@sqlite_only
async def test_a_running_query_shows_progress_and_is_cancelled(
    server: Server, caller: Caller, probe: EngineProbe, make_tenant: Callable[[], Tenant]
) -> None:
    query_id = run_id()
    with probe.slow():
        response = await caller.run(trend(), ASYNC, client_query_id=query_id)
        assert response.query_status.id == query_id and not response.query_status.complete
        assert not response.HasField("result") and response.calculation_trigger == "cache miss"
        first = await caller.wait_status(query_id, lambda s: s.query_progress.rows_read > 0)
        later = await caller.wait_status(
            query_id, lambda s: s.query_progress.rows_read > first.query_progress.rows_read
        )
        assert later.HasField("pickup_time") and not later.complete and not later.HasField("results")
        assert later.query_progress.bytes_read > 0 and later.query_progress.estimated_rows_total > 0
        quiet = await caller.status(query_id, show_progress=False)
        assert not quiet.HasField("query_progress")
        tag = engine_tag(server, caller.environment_id, query_id)
        # Another tenant cannot see or cancel the run.
        stranger = make_tenant()
        other = Caller(caller.stub, stranger.environment_id, bearer(stranger.key("query:read")))
        await expect_error(other.status(query_id), grpc.StatusCode.NOT_FOUND)
        await expect_error(other.cancel(query_id), grpc.StatusCode.NOT_FOUND)

        run = server.app.execution.runs.get(caller.environment_id, query_id)
        cancelled = await caller.cancel(query_id)
        assert cancelled.outcome == qs.CANCEL_OUTCOME_CANCELLED
        assert cancelled.message == "Cancelled query on clickhouse"
        # CancelQuery answers once the run has ended.
        done = await caller.status(query_id)
    assert done.complete and done.HasField("end_time")
    assert done.error and done.error_message == "Query was cancelled"
    assert not done.HasField("results")
    assert run.tag == tag
    await _stopped_by_its_kill(run, probe)
    again = await caller.cancel(query_id)
    assert again.outcome == qs.CANCEL_OUTCOME_ALREADY_COMPLETE and again.message == "Query already complete"


@sqlite_only
async def test_the_same_query_id_in_two_environments_names_two_unrelated_runs(
    server: Server, caller: Caller, probe: EngineProbe, make_tenant: Callable[[], Tenant]
) -> None:
    query_id = run_id()
    stranger = make_tenant()
    other = Caller(caller.stub, stranger.environment_id, bearer(stranger.key("query:read")))
    with probe.slow():
        await caller.run(trend(), ASYNC, client_query_id=query_id)
        await caller.wait_status(query_id, lambda s: s.query_progress.rows_read > 0)
        mine = engine_tag(server, caller.environment_id, query_id)
        with probe.gate():
            # The other environment's run with the same id is held before the engine: it has read nothing.
            await other.run(trend("$autocapture"), ASYNC, client_query_id=query_id)
            await eventually(lambda: len(probe.held) == 2, what="the other run at the engine boundary")
            theirs = engine_tag(server, stranger.environment_id, query_id)
            assert theirs != mine
            seen = await other.status(query_id)
            await eventually(lambda: server.app.execution.runs.get(caller.environment_id, query_id).progress)
            assert not seen.HasField("query_progress") and not seen.complete
            outcome = await other.cancel(query_id)
            assert outcome.outcome == qs.CANCEL_OUTCOME_CANCELLED
            assert (await other.status(query_id)).error_message == "Query was cancelled"
        # The first environment's run goes on, and its engine query was never a target.
        still = await caller.status(query_id)
        assert not still.complete and mine not in probe.kills and theirs in probe.kills
        assert await asyncio.to_thread(probe.store.progress, mine) is not None
        await caller.cancel(query_id)


@sqlite_only
async def test_a_complete_query_has_its_results_and_cannot_be_cancelled(
    server: Server, caller: Caller
) -> None:
    query_id = run_id()
    response = await caller.run(trend(), ASYNC, client_query_id=query_id)
    assert not response.query_status.complete
    done = await caller.wait_status(query_id, lambda s: s.complete)
    assert not done.error and done.HasField("results") and not done.HasField("query_progress")
    lifetime = done.expiration_time.ToDatetime() - done.end_time.ToDatetime()
    assert lifetime == dt.timedelta(seconds=server.app.settings.query_status_ttl_seconds)
    cached = await caller.run(trend(), cpb.REFRESH_MODE_FORCE_CACHE)
    assert cached.is_cached and cached.result == done.results
    outcome = await caller.cancel(query_id)
    assert outcome.outcome == qs.CANCEL_OUTCOME_ALREADY_COMPLETE


@sqlite_only
async def test_a_second_caller_that_joined_the_run_can_cancel_it_by_its_own_id(
    server: Server, tenant: Tenant, caller: Caller, probe: EngineProbe
) -> None:
    first_id, second_id = run_id(), run_id()
    other_key = Caller(caller.stub, caller.environment_id, bearer(tenant.key("query:read")))
    with probe.slow():
        first = await caller.run(trend(), ASYNC, client_query_id=first_id)
        assert first.query_status.id == first_id
        await caller.wait_status(first_id, lambda s: s.query_progress.rows_read > 0)
        tag = engine_tag(server, caller.environment_id, first_id)
        joined = await other_key.run(trend(), ASYNC, client_query_id=second_id)
        assert joined.query_status.id == first_id  # the run in flight, not a new one
        assert (await other_key.status(second_id)).id == first_id
        outcome = await other_key.cancel(second_id)
        assert outcome.outcome == qs.CANCEL_OUTCOME_CANCELLED
        # CancelQuery answers once the run has ended.
        done = await caller.status(first_id)
    assert done.complete and done.error_message == "Query was cancelled"
    assert probe.kills == [tag]


@sqlite_only
# ------------------------------------------------------------------------------------------------
# A dedicated server: one running slot, one queued, statuses kept for a second


@dataclass
class SmallServer:
    app: Any
    channel: grpc.aio.Channel
    probe: EngineProbe
    caller: Caller


@pytest.fixture
async def small_server(
    tmp_path_factory: pytest.TempPathFactory, events_dsn: str
) -> AsyncIterator[SmallServer]:
    async with dedicated_server(
        tmp_path_factory.mktemp("small"),
        events_dsn,
        max_running_queries=1,
        max_queued_queries=1,
        query_status_ttl_seconds=1.0,
    ) as dedicated:
        app = dedicated.app
        probe = EngineProbe(app.execution.events)
        app.execution.events = probe  # type: ignore[assignment]
        caller = Caller(qs_grpc.QueryServiceStub(dedicated.channel), dedicated.environment_id, bearer(dedicated.key))
        try:
            yield SmallServer(app, dedicated.channel, probe, caller)
        finally:
            await cancel_leftovers(app.execution)


def _retry_info(err: grpc.aio.AioRpcError) -> error_details_pb2.RetryInfo | None:
    for detail in rich_status(err).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info
    return None


async def test_async_runs_beyond_the_queue_bound_are_refused_and_statuses_expire(
    small_server: SmallServer,
) -> None:
    caller, probe = small_server.caller, small_server.probe
    with probe.gate() as gate:
        running = await caller.run(trend("a"), ASYNC)
        await eventually(lambda: probe.held, what="the first run to take the slot")
        queued = await caller.run(trend("b"), ASYNC)
        assert not queued.query_status.HasField("pickup_time")
        err = await expect_error(caller.run(trend("c"), ASYNC), grpc.StatusCode.RESOURCE_EXHAUSTED)
        info = _retry_info(err)
        assert info is not None and info.retry_delay.ToTimedelta() > dt.timedelta(0)
        # A blocking call needs a run too: refused alike.
        await expect_error(caller.run(trend("d"), FORCE_BLOCKING), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # The queued run can be taken off the queue; the running one cannot be only dequeued.
        not_dequeued = await caller.cancel(running.query_status.id, dequeue_only=True)
        assert not_dequeued.outcome == qs.CANCEL_OUTCOME_NOT_DEQUEUED
        dequeued = await caller.cancel(queued.query_status.id, dequeue_only=True)
        assert dequeued.outcome == qs.CANCEL_OUTCOME_CANCELLED
        dropped = await caller.status(queued.query_status.id)
        assert dropped.complete and dropped.error and not dropped.HasField("pickup_time")
        # Room again in the queue.
        room = await caller.run(trend("e"), ASYNC)
        gate.open()
        done = await caller.wait_status(running.query_status.id, lambda s: s.complete)
        await caller.wait_status(room.query_status.id, lambda s: s.complete)
    assert not done.error and done.HasField("results")

    # The status is readable until its expiration time (one second), then NOT_FOUND: the runs'
    # clock is moved there instead of waiting for it.
    expires = done.expiration_time.ToDatetime(dt.UTC)
    assert expires - done.end_time.ToDatetime(dt.UTC) == dt.timedelta(seconds=1)
    runs = small_server.app.execution.runs
    runs.clock = lambda: expires
    assert (await caller.status(running.query_status.id)).complete
    runs.clock = lambda: expires + dt.timedelta(microseconds=1)
    await expect_error(caller.status(running.query_status.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(caller.cancel(running.query_status.id), grpc.StatusCode.NOT_FOUND)


# ------------------------------------------------------------------------------------------------
# Insights use the same machinery


@sqlite_only
async def test_get_and_list_insights_honour_refresh(
    server: Server, tenant: Tenant, api: Api, caller: Caller
) -> None:
    await _insert(server, tenant.environment_id)
    first = await api.create(name="views", query=viz(trend()))
    second = await api.create(name="signups", query=viz(trend("signup")))
    assert not first.HasField("result") and not first.HasField("query_status")

    request = ipb.GetInsightRequest(environment_id=tenant.environment_id, id=first.id, refresh=ASYNC)
    started = await api.stub.GetInsight(request, metadata=api.metadata, timeout=CALL_TIMEOUT)
    assert started.query_status.id and not started.query_status.complete
    assert started.query_status.insight_id == first.id and not started.HasField("result")
    status = await caller.wait_status(started.query_status.id, lambda s: s.complete)
    cached = await api.get(first.id)  # force_cache by default
    assert cached.is_cached and cached.HasField("last_refresh") and not cached.HasField("query_status")
    assert cached.result == status.results and sum(cached.result.trends.series[0].data) == 12

    listing = await api.list(refresh=ASYNC)
    by_id = {i.id: i for i in listing.results}
    assert by_id[first.id].is_cached and by_id[first.id].result == cached.result  # fresh: served as is
    assert by_id[second.id].query_status.id and not by_id[second.id].HasField("result")
    await caller.wait_status(by_id[second.id].query_status.id, lambda s: s.complete)
    listed = {i.id: i for i in (await api.list()).results}
    assert all(i.is_cached and i.HasField("result") for i in listed.values())


@sqlite_only
async def test_get_insight_and_run_query_share_one_computation(
    server: Server, tenant: Tenant, api: Api, caller: Caller, probe: EngineProbe
) -> None:
    await _insert(server, tenant.environment_id)
    insight = await api.create(name="views", query=viz(trend()))
    runs = server.app.execution.runs.engine_runs
    request = ipb.GetInsightRequest(environment_id=tenant.environment_id, id=insight.id, refresh=BLOCKING)
    with probe.gate() as gate:
        got = asyncio.ensure_future(api.stub.GetInsight(request, metadata=api.metadata, timeout=CALL_TIMEOUT))
        await eventually(lambda: probe.held, what="the insight's run at the engine")
        (tag,) = probe.held
        ran = asyncio.ensure_future(caller.run(trend(), FORCE_BLOCKING))
        run = next(r for r in server.app.execution.runs._in_flight.values() if r.tag == tag)
        await eventually(lambda: run.waiters == 2, what="RunQuery to join the insight's run")
        assert not ran.done()
        gate.open()
        computed, response = await asyncio.wait_for(asyncio.gather(got, ran), CALL_TIMEOUT)
    assert server.app.execution.runs.engine_runs - runs == 1
    assert computed.result == response.result and not computed.is_cached and not response.is_cached
    assert sum(response.result.trends.series[0].data) == 12


async def test_a_force_cache_miss_names_the_cache_key_the_computation_then_fills(caller: Caller) -> None:
    query = trend()
    query.trends_query.date_range.date_from = "-11d"  # a query nothing computed yet
    missed = await caller.run(query, cpb.REFRESH_MODE_FORCE_CACHE)
    assert not missed.HasField("result") and not missed.is_cached
    assert missed.cache_key
    computed = await caller.run(query, cpb.REFRESH_MODE_BLOCKING)
    assert computed.HasField("result") and computed.cache_key == missed.cache_key
