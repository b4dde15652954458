"""The refresh modes over the result cache, driven by a controllable clock (no gRPC server).

An Execution runs on a migrated SQLite database and the session's chDB store; the clock decides
what is fresh, stale or lazily stale, and `runs.engine_runs` counts the engine computations.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from generated.insights.v1 import query_pb2 as qpb
from server.domain import accounts
from server.errors import NotFound
from server.execution.refresh import Computed, Execution, Refresh
from server.execution.resultcache import MemoryResultCache
from server.execution.runs import Run
from server.principal import EnvironmentInfo
from server.runtime import Blocking
from storage.db import Database
from storage.events import EventRow, EventStore
from storage.migrate import upgrade
from storage.models import Environment
from tests.integration.engineprobe import EngineProbe
from tests.integration.itkit import Clock

# A Wednesday noon: "-7d" ends at the end of this day, so a day trend stays mutable for 12 hours.
T0 = dt.datetime(2025, 3, 12, 12, 0, tzinfo=dt.UTC)
TICK = dt.timedelta(microseconds=1)
SETTLE = 15.0  # seconds an async run may take here at most
# Far above the ids of the servers' databases: events of this module never show in their tenants.
ENV_ID = 40_000_000 + uuid.uuid4().int % 1_000_000


@dataclass
class World:
    db: Database
    store: EventStore
    blocking: Blocking
    env: EnvironmentInfo


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, events_dsn: str) -> Iterator[World]:
    url = f"sqlite:///{tmp_path_factory.mktemp('refresh') / 'insights.db'}"
    upgrade(url)
    db = Database(url)
    organization_id = accounts.create_organization(db, "refresh modes")
    with db.session() as session:
        session.add(Environment(id=ENV_ID, organization_id=organization_id, name="refresh", timezone="UTC"))
    store = EventStore(events_dsn, pool_size=2)
    store.ensure_schema()
    day = dt.timedelta(days=1)
    store.insert_events(
        EventRow(ENV_ID, uuid.uuid4(), event, f"p{i % 3}", uuid.uuid4(), T0 - day * (i % 4), "{}", "{}")
        for event, count in (("$pageview", 10), ("$pageleave", 3))
        for i in range(count)
    )
    blocking = Blocking(4)
    env = EnvironmentInfo(id=ENV_ID, organization_id=organization_id, timezone="UTC", week_start_day=0)
    try:
        yield World(db, store, blocking, env)
    finally:
        blocking.close()
        store.close()
        db.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def probe(world: World) -> EngineProbe:
    return EngineProbe(world.store)


@pytest.fixture
async def execution(world: World, clock: Clock, probe: EngineProbe) -> AsyncIterator[Execution]:
    # Through a probe: a test can hold a run at the engine while it looks at the run's status.
    store: Any = probe
    execution = Execution(store, world.blocking, MemoryResultCache(), clock=clock)
    try:
        yield execution
    finally:
        for run in list(execution.runs._in_flight.values()):
            await execution.runs.cancel(run)
        execution.close()


def trend(
    interval: qpb.IntervalType.ValueType = qpb.INTERVAL_TYPE_DAY,
    date_from: str = "-7d",
    date_to: str | None = None,
    custom_name: str | None = None,
    properties: list[qpb.PropertyFilter] | None = None,
) -> qpb.QueryNode:
    node = qpb.EventsNode(event="$pageview", properties=properties or [])
    if custom_name is not None:
        node.custom_name = custom_name
    date_range = qpb.DateRange(date_from=date_from)
    if date_to is not None:
        date_range.date_to = date_to
    return qpb.QueryNode(
        trends_query=qpb.TrendsQuery(
            series=[qpb.SeriesNode(events_node=node)], interval=interval, date_range=date_range
        )
    )


async def settle(run: Run | None) -> None:
    """Waits for an async run to finish (bounded)."""
    assert run is not None and run.task is not None
    await asyncio.wait_for(asyncio.shield(run.task), SETTLE)
    assert run.complete and not run.error, run.error_message


async def answer(execution: Execution, env: EnvironmentInfo, query: qpb.QueryNode, mode: Refresh) -> Computed:
    found = await asyncio.wait_for(execution.result(env, query, mode), SETTLE)
    assert found is not None
    return found


# ------------------------------------------------------------------------------------------------
# Every mode in every cache state

FRESH, STALE, LAZILY_STALE, MISS = "fresh", "stale", "lazily stale", "miss"
# Day interval: stale after 6 h, lazily stale after 12 h.
AGE = {FRESH: dt.timedelta(hours=1), STALE: dt.timedelta(hours=7), LAZILY_STALE: dt.timedelta(hours=13)}

# What a mode answers: the cached entry as is, the cached entry plus a started async run, a
# status-only answer for a started run, a result computed in the call, or nothing (a miss).
CACHED, CACHED_AND_RUN, STATUS_ONLY, COMPUTED, NOTHING = "cached", "cached+run", "status", "computed", "none"
EXPECTED: dict[Refresh, dict[str, tuple[str, str]]] = {
    Refresh.FORCE_BLOCKING: {
        FRESH: (COMPUTED, "refresh param"),
        STALE: (COMPUTED, "refresh param"),
        LAZILY_STALE: (COMPUTED, "refresh param"),
        MISS: (COMPUTED, "refresh param"),
    },
    Refresh.FORCE_ASYNC: {
        FRESH: (CACHED_AND_RUN, "refresh param"),
        STALE: (CACHED_AND_RUN, "refresh param"),
        LAZILY_STALE: (CACHED_AND_RUN, "refresh param"),
        MISS: (STATUS_ONLY, "cache miss"),
    },
    Refresh.BLOCKING: {
        FRESH: (CACHED, ""),
        STALE: (COMPUTED, "stale"),
        LAZILY_STALE: (COMPUTED, "stale"),
        MISS: (COMPUTED, "cache miss"),
    },
    Refresh.ASYNC: {
        FRESH: (CACHED, ""),
        STALE: (CACHED_AND_RUN, "stale"),
        LAZILY_STALE: (CACHED_AND_RUN, "stale"),
        MISS: (STATUS_ONLY, "cache miss"),
    },
    Refresh.ASYNC_EXCEPT_ON_CACHE_MISS: {
        FRESH: (CACHED, ""),
        STALE: (CACHED_AND_RUN, "stale"),
        LAZILY_STALE: (CACHED_AND_RUN, "stale"),
        MISS: (COMPUTED, "cache miss"),
    },
    Refresh.LAZY_ASYNC: {
        FRESH: (CACHED, ""),
        STALE: (CACHED, ""),  # stale, but not by the lazy threshold
        LAZILY_STALE: (CACHED_AND_RUN, "stale"),
        MISS: (STATUS_ONLY, "cache miss"),
    },
    Refresh.FORCE_CACHE: {
        FRESH: (CACHED, ""),
        STALE: (CACHED, ""),
        LAZILY_STALE: (CACHED, ""),
        MISS: (NOTHING, ""),
    },
}
CASES = [(mode, state) for mode, states in EXPECTED.items() for state in states]


@pytest.mark.parametrize(("mode", "state"), CASES, ids=[f"{m.value}-{s}" for m, s in CASES])
async def test_each_mode_in_each_cache_state(
    execution: Execution, probe: EngineProbe, world: World, clock: Clock, mode: Refresh, state: str
) -> None:
    query = trend()
    if state != MISS:
        primed = await answer(execution, world.env, query, Refresh.FORCE_BLOCKING)
        assert primed.last_refresh == T0 and not primed.is_cached
        clock.set(T0 + AGE[state])
    now = clock.now
    before = execution.runs.engine_runs
    outcome, trigger = EXPECTED[mode][state]

    # A run started in the background is held at the engine until its status has been checked.
    held = probe.gate() if outcome in (CACHED_AND_RUN, STATUS_ONLY) else contextlib.nullcontext()
    with held:
        got = await asyncio.wait_for(execution.result(world.env, query, mode), SETTLE)
        assert got is None or got.status is None or not got.status.complete

    if outcome == NOTHING:
        assert got is None
        assert execution.runs.engine_runs == before
        return
    assert got is not None
    assert got.trigger == trigger
    assert got.cache_key.startswith("query_") and got.timezone == "UTC"
    if outcome in (CACHED, CACHED_AND_RUN):
        assert got.is_cached and got.result is not None
        assert got.last_refresh == T0
        assert got.cache_target_age == T0 + dt.timedelta(hours=6)
        assert got.next_allowed_client_refresh == T0 + dt.timedelta(minutes=15)
    if outcome == CACHED:
        assert got.status is None
        # Nothing was scheduled either: a run, even a detached one, is in flight from its start.
        assert execution.runs.engine_runs == before and execution.runs.in_flight(got.cache_key) is None
        return
    if outcome == COMPUTED:
        assert not got.is_cached and got.status is None and got.result is not None
        assert got.last_refresh == now
        assert got.cache_target_age == now + dt.timedelta(hours=6)
        assert got.next_allowed_client_refresh == now + dt.timedelta(minutes=15)
        assert execution.runs.engine_runs == before + 1
    else:  # an async run was started: the answer carries its status, the result comes later
        run = got.status
        assert run is not None and run.id == got.cache_key
        if outcome == STATUS_ONLY:
            assert got.result is None and got.last_refresh is None and not got.is_cached
        await settle(run)
        assert execution.runs.engine_runs == before + 1
    # Whatever was computed is what the cache holds now.
    clock.set(now + dt.timedelta(minutes=1))
    cached = await answer(execution, world.env, query, Refresh.FORCE_CACHE)
    assert cached.is_cached and cached.last_refresh == now and cached.status is None


async def test_a_fresh_answer_carries_the_status_of_a_run_in_flight(
    execution: Execution, probe: EngineProbe, world: World
) -> None:
    query = trend()
    await answer(execution, world.env, query, Refresh.FORCE_BLOCKING)
    with probe.gate():
        started = await answer(execution, world.env, query, Refresh.FORCE_ASYNC)
        assert started.status is not None and not started.status.complete
        # A second async refresh joins the run in flight instead of starting another.
        again = await answer(execution, world.env, query, Refresh.FORCE_ASYNC)
        assert again.status is started.status
        for mode in (Refresh.BLOCKING, Refresh.ASYNC, Refresh.FORCE_CACHE):
            fresh = await answer(execution, world.env, query, mode)
            assert fresh.is_cached and fresh.status is started.status, mode
        assert not started.status.complete
    await settle(started.status)
    assert execution.runs.engine_runs == 2
    assert (await answer(execution, world.env, query, Refresh.BLOCKING)).status is None


# ------------------------------------------------------------------------------------------------
# Staleness per interval, at the boundaries


@pytest.mark.parametrize(
    ("interval", "date_from", "stale_after", "lazy_after", "client_refresh"),
    [
        (qpb.INTERVAL_TYPE_MINUTE, "-1h", dt.timedelta(minutes=5), dt.timedelta(minutes=15), 3),
        (qpb.INTERVAL_TYPE_HOUR, "-2d", dt.timedelta(hours=1), dt.timedelta(hours=2), 3),
        (qpb.INTERVAL_TYPE_DAY, "-7d", dt.timedelta(hours=6), dt.timedelta(hours=12), 15),
        (qpb.INTERVAL_TYPE_DAY, "-6d", dt.timedelta(hours=6), dt.timedelta(hours=12), 3),
        (qpb.INTERVAL_TYPE_WEEK, "-30d", dt.timedelta(days=1), dt.timedelta(days=1), 15),
        (qpb.INTERVAL_TYPE_MONTH, "-90d", dt.timedelta(days=1), dt.timedelta(days=1), 15),
    ],
    ids=["minute", "hour", "day", "day-6d", "week", "month"],
)
async def test_staleness_boundaries_per_interval(
    execution: Execution,
    world: World,
    clock: Clock,
    interval: qpb.IntervalType.ValueType,
    date_from: str,
    stale_after: dt.timedelta,
    lazy_after: dt.timedelta,
    client_refresh: int,
) -> None:
    query = trend(interval, date_from)
    primed = await answer(execution, world.env, query, Refresh.FORCE_BLOCKING)
    assert primed.cache_target_age == T0 + stale_after
    assert primed.next_allowed_client_refresh == T0 + dt.timedelta(minutes=client_refresh)

    # lazy_async: still served as is at exactly the lazy threshold, refreshed just past it.
    clock.set(T0 + lazy_after)
    at_boundary = await answer(execution, world.env, query, Refresh.LAZY_ASYNC)
    assert at_boundary.is_cached and at_boundary.status is None and execution.runs.engine_runs == 1
    clock.set(T0 + lazy_after + TICK)
    past = await answer(execution, world.env, query, Refresh.LAZY_ASYNC)
    assert past.is_cached and past.last_refresh == T0 and past.status is not None
    await settle(past.status)
    assert execution.runs.engine_runs == 2

    # blocking: fresh up to the threshold included, recomputed just past it.
    refreshed = clock.now
    clock.set(refreshed + stale_after)
    fresh = await answer(execution, world.env, query, Refresh.BLOCKING)
    assert fresh.is_cached and fresh.last_refresh == refreshed and execution.runs.engine_runs == 2
    clock.set(refreshed + stale_after + TICK)
    stale = await answer(execution, world.env, query, Refresh.BLOCKING)
    assert not stale.is_cached and stale.trigger == "stale" and stale.last_refresh == clock.now
    assert execution.runs.engine_runs == 3


async def test_an_immutable_range_never_goes_stale(execution: Execution, world: World, clock: Clock) -> None:
    query = trend(date_from="2025-01-01", date_to="2025-01-31")
    primed = await answer(execution, world.env, query, Refresh.BLOCKING)
    assert not primed.is_cached and primed.trigger == "cache miss"
    # The target age is still reported (advisory), but passing it changes nothing.
    assert primed.cache_target_age == T0 + dt.timedelta(hours=6)
    clock.set(T0 + dt.timedelta(days=400))
    for mode in (Refresh.BLOCKING, Refresh.ASYNC, Refresh.LAZY_ASYNC, Refresh.ASYNC_EXCEPT_ON_CACHE_MISS):
        got = await answer(execution, world.env, query, mode)
        assert got.is_cached and got.last_refresh == T0 and got.status is None, mode
    assert execution.runs.engine_runs == 1
    # The same range computed while it was still going on is not immutable: it goes stale.
    ongoing = trend(date_from="2025-03-01", date_to="2025-03-12")
    clock.set(T0)
    await answer(execution, world.env, ongoing, Refresh.BLOCKING)
    clock.set(T0 + dt.timedelta(hours=6) + TICK)
    assert not (await answer(execution, world.env, ongoing, Refresh.BLOCKING)).is_cached
    assert execution.runs.engine_runs == 3


async def test_a_sql_insights_past_filters_range_is_resolved_but_never_final(
    execution: Execution, world: World, clock: Clock
) -> None:
    """The range `{filters}` applies is the answer's resolved range; unlike a trend's, a past one does
    not freeze the result: the SQL may read outside it (and persons change), so it goes stale."""
    sql = "SELECT count() FROM events WHERE event = '$pageview' AND {filters}"
    dates = qpb.DateRange(date_from="2025-03-10", date_to="2025-03-12")
    query = qpb.QueryNode(hogql_query=qpb.HogQLQuery(query=sql, filters=qpb.HogQLFilters(date_range=dates)))
    primed = await answer(execution, world.env, query, Refresh.BLOCKING)
    assert (primed.date_from, primed.date_to) == (
        dt.datetime(2025, 3, 10, tzinfo=dt.UTC),
        dt.datetime(2025, 3, 12, tzinfo=dt.UTC),
    )
    clock.set(T0 + dt.timedelta(days=400))
    assert not (await answer(execution, world.env, query, Refresh.BLOCKING)).is_cached
    assert execution.runs.engine_runs == 2
    # Without {filters} nothing bounds the statement's range: none is reported.
    plain = qpb.QueryNode(hogql_query=qpb.HogQLQuery(query="SELECT 1", filters=qpb.HogQLFilters(date_range=dates)))
    unbounded = await answer(execution, world.env, plain, Refresh.BLOCKING)
    assert unbounded.date_from is None and unbounded.date_to is None


# ------------------------------------------------------------------------------------------------
# The cache key


def _labels(computed: Computed) -> list[tuple[str, str]]:
    assert computed.result is not None
    return [(s.label, s.action.custom_name) for s in computed.result.trends.series]


async def test_renaming_a_series_keeps_the_hit_and_changing_a_filter_misses(
    execution: Execution, world: World, clock: Clock
) -> None:
    named = await answer(execution, world.env, trend(custom_name="Views"), Refresh.BLOCKING)
    assert _labels(named) == [("Views", "Views")]
    clock.set(T0 + dt.timedelta(minutes=1))

    renamed = await answer(execution, world.env, trend(custom_name="Page views"), Refresh.FORCE_CACHE)
    assert renamed.is_cached and renamed.cache_key == named.cache_key and renamed.last_refresh == T0
    assert renamed.result is not None and named.result is not None
    assert [list(s.data) for s in renamed.result.trends.series] == [
        list(s.data) for s in named.result.trends.series
    ]
    # The caller's own names are applied to the shared result.
    assert _labels(renamed) == [("Page views", "Page views")]
    unnamed = await answer(execution, world.env, trend(), Refresh.BLOCKING)
    assert unnamed.is_cached and _labels(unnamed) == [("$pageview", "")]
    assert execution.runs.engine_runs == 1

    chrome = qpb.PropertyFilter(
        key="$browser",
        operator=qpb.PROPERTY_OPERATOR_EXACT,
        value=qpb.PropertyValue(string_value="Chrome"),
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
    )
    filtered = trend(custom_name="Views", properties=[chrome])
    assert await execution.result(world.env, filtered, Refresh.FORCE_CACHE) is None
    computed = await answer(execution, world.env, filtered, Refresh.BLOCKING)
    assert not computed.is_cached and computed.trigger == "cache miss"
    assert computed.cache_key != named.cache_key
    assert execution.runs.engine_runs == 2


# ------------------------------------------------------------------------------------------------
# Run statuses expire


async def test_a_finished_run_status_expires_after_its_ttl(world: World, clock: Clock) -> None:
    execution = Execution(
        world.store,
        world.blocking,
        MemoryResultCache(),
        clock=clock,
        status_ttl=dt.timedelta(minutes=20),
    )
    try:
        started = await answer(execution, world.env, trend(), Refresh.ASYNC)
        run = started.status
        await settle(run)
        assert run is not None and run.end_time == T0
        assert run.expiration_time == T0 + dt.timedelta(minutes=20)
        # Another environment never sees the run.
        other = EnvironmentInfo(id=ENV_ID + 1, organization_id=0, timezone="UTC", week_start_day=0)
        with pytest.raises(NotFound):
            execution.status(other, run.id)
        clock.set(T0 + dt.timedelta(minutes=20))
        assert execution.status(world.env, run.id) is run
        clock.set(T0 + dt.timedelta(minutes=20) + TICK)
        with pytest.raises(NotFound):
            execution.status(world.env, run.id)
    finally:
        execution.close()


def _two_series(first: str | None, second: str | None, formula_name: str | None = None) -> qpb.QueryNode:
    nodes = []
    for event, name in (("$pageview", first), ("$pageleave", second)):
        node = qpb.EventsNode(event=event)
        if name is not None:
            node.custom_name = name
        nodes.append(qpb.SeriesNode(events_node=node))
    query = qpb.TrendsQuery(
        series=nodes,
        interval=qpb.INTERVAL_TYPE_DAY,
        date_range=qpb.DateRange(date_from="-7d"),
        breakdown_filter=qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser")),
    )
    if formula_name is not None:
        formula = qpb.TrendsFormulaNode(formula="A+B")
        if formula_name:
            formula.custom_name = formula_name
        query.trends_filter.formula_nodes.append(formula)
    return qpb.QueryNode(trends_query=query)


async def test_renamed_breakdown_and_formula_lines_take_the_callers_names(
    execution: Execution, world: World
) -> None:
    null = "$$_posthog_breakdown_null_$$"
    named = await answer(execution, world.env, _two_series("Views", "Leaves"), Refresh.BLOCKING)
    assert [s.label for s in named.result.trends.series] == [f"Views - {null}", f"Leaves - {null}"]
    renamed = await answer(execution, world.env, _two_series("Seen", None), Refresh.BLOCKING)
    assert renamed.is_cached and execution.runs.engine_runs == 1
    assert [(s.label, s.action.name, s.action.custom_name) for s in renamed.result.trends.series] == [
        (f"Seen - {null}", "Seen", "Seen"),
        (f"$pageleave - {null}", "$pageleave", ""),
    ]

    summed = await answer(execution, world.env, _two_series(None, None, "Sum"), Refresh.BLOCKING)
    assert [s.label for s in summed.result.trends.series] == ["Sum"]
    total = await answer(execution, world.env, _two_series(None, None, "Total"), Refresh.BLOCKING)
    assert total.is_cached and [s.label for s in total.result.trends.series] == ["Total"]
    plain = await answer(execution, world.env, _two_series(None, None, ""), Refresh.BLOCKING)
    assert plain.is_cached and [s.label for s in plain.result.trends.series] == ["Formula (A+B)"]
    assert execution.runs.engine_runs == 2
