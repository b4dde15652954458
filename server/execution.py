"""Execution of queries: the refresh modes over the result cache, and runs of the engine."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import functools
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.errors import Cancelled, FailedPrecondition, InvalidArgument
from server.memory import Memo, MemoryBudget
from server.principal import EnvironmentInfo
from server.queries.codec import CodecError, from_reference_json
from server.queries.errors import QueryError
from server.queries.trends import (
    INTERVAL_NAMES,
    TOTAL_VALUE_DISPLAYS,
    TrendsContext,
    run_trends,
    series_label,
)
from server.resultcache import DEFAULT_MAX_BYTES, CacheEntry, ResultCache
from server.runs import Progress, Run, Runs
from server.runtime import Blocking
from server.staleness import cache_key, cache_target_age, is_stale, next_allowed_client_refresh
from storage.events import EventStore, QueryCancelled, check_run_id, user_error
from storage.models import utcnow


class Refresh(enum.Enum):
    """The reference's execution modes (the `refresh` parameter)."""

    FORCE_BLOCKING = "force_blocking"
    FORCE_ASYNC = "force_async"
    BLOCKING = "blocking"
    ASYNC = "async"
    ASYNC_EXCEPT_ON_CACHE_MISS = "async_except_on_cache_miss"
    LAZY_ASYNC = "lazy_async"
    FORCE_CACHE = "force_cache"


# Answers rebuilt from cached entries are kept for hot reads while they fit this share of the memory
# budget; a large result is parsed again rather than held twice.
ANSWER_MEMO_SHARE, ANSWER_MEMO_MAX_ITEM = 8, 256 * 1024
# A parsed result takes more memory than its serialized bytes (objects, the arena): an estimate.
PARSED_FACTOR = 3
_ASYNC = frozenset({Refresh.ASYNC, Refresh.LAZY_ASYNC, Refresh.FORCE_ASYNC})
# How often a stream reports while a run computes: not more often than this, and at least every second.
STREAM_MIN_GAP, STREAM_HEARTBEAT = 0.25, 1.0


@dataclass(frozen=True)
class Computed:
    """What a caller gets: a result (fresh or cached) with its cache facts, a run's status, or an error."""

    result: results_pb2.InsightResult | None = None
    has_more: bool = False
    date_from: dt.datetime | None = None
    date_to: dt.datetime | None = None
    last_refresh: dt.datetime | None = None
    cache_target_age: dt.datetime | None = None
    next_allowed_client_refresh: dt.datetime | None = None
    sql: str = ""
    is_cached: bool = False
    cache_key: str = ""
    timezone: str = ""
    trigger: str = ""
    status: Run | None = None
    error: str | None = None
    # Bytes of the serialized result (what memos of answers are charged by).
    size: int = 0


def trends_source(query: query_pb2.QueryNode | None) -> query_pb2.TrendsQuery | None:
    """The TrendsQuery an insight computes, unwrapping an InsightVizNode; None for other kinds."""
    if query is None:
        return None
    node = query.WhichOneof("node")
    if node == "trends_query":
        return query.trends_query
    if node == "insight_viz_node" and query.insight_viz_node.source.WhichOneof("query") == "trends_query":
        return query.insight_viz_node.source.trends_query
    return None


def _source_path(query: query_pb2.QueryNode) -> str:
    return "query.source" if query.WhichOneof("node") == "insight_viz_node" else "query"


def _interval(trends: query_pb2.TrendsQuery) -> str:
    return (
        "day"
        if trends.trends_filter.display in TOTAL_VALUE_DISPLAYS
        else INTERVAL_NAMES.get(trends.interval, "day")
    )


class Execution:
    """Answers queries per refresh mode from the result cache or by running the engine (one run per key)."""

    def __init__(
        self,
        events: EventStore,
        blocking: Blocking,
        cache: ResultCache,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        budget: MemoryBudget | None = None,
        max_running: int = 4,
        max_queued: int = 100,
        status_ttl: dt.timedelta = dt.timedelta(minutes=20),
    ):
        self.events = events
        self.blocking = blocking
        self.cache = cache
        self.clock = clock
        # Progress polls and kills must never queue behind the engine queries they watch.
        self._control = Blocking(2)
        budget = budget or MemoryBudget(DEFAULT_MAX_BYTES)
        self._answers: Memo[tuple[Any, ...], tuple[CacheEntry, Computed]] = Memo(
            budget, "answers", share=budget.limit // ANSWER_MEMO_SHARE, max_item=ANSWER_MEMO_MAX_ITEM
        )
        self.runs = Runs(
            clock=clock,
            poll_progress=self._progress,
            kill=self._kill,
            max_running=max_running,
            max_queued=max_queued,
            status_ttl=status_ttl,
        )

    def close(self) -> None:
        self._control.close()

    # ------------------------------------------------------------------------------ validation

    def validate(self, env: EnvironmentInfo, query: query_pb2.QueryNode | None, field_prefix: str) -> None:
        """Raises INVALID_ARGUMENT for a query the engine would refuse; runs nothing (synchronous)."""
        trends = trends_source(query)
        if trends is None or query is None:
            return
        try:
            run_trends(trends, self._context(env), lambda sql, params: [])
        except QueryError as exc:
            raise _invalid(exc, f"{field_prefix}{_source_path(query)}") from None
        except FailedPrecondition:
            # Saving a query that cannot be computed yet (e.g. with actions) is allowed.
            return

    # ------------------------------------------------------------------------------- answering

    async def result(
        self,
        env: EnvironmentInfo,
        query: query_pb2.QueryNode | None,
        refresh: Refresh,
        *,
        client_query_id: str = "",
        insight_id: int | None = None,
        field_prefix: str = "",
    ) -> Computed | None:
        """The answer for `refresh` (the reference's cache decision flow); None is a plain cache miss."""
        if query is None:
            return None
        trends = trends_source(query)
        if trends is None:
            if refresh == Refresh.FORCE_CACHE:
                return None
            return Computed(
                error=f"computing {query.WhichOneof('node') or 'empty'} queries is not supported yet"
            )
        key = await self._key(env, trends)
        entry = None if refresh == Refresh.FORCE_BLOCKING else self.cache.get(key)
        now = self.clock()
        start = self._starter(env, query, trends, key, client_query_id, insight_id, field_prefix)
        if entry is not None:
            stale = is_stale(now, entry.last_refresh, entry.interval, entry.date_to)
            if refresh == Refresh.FORCE_ASYNC:
                return self._cached(entry, trends, env, key, start(detached=True), "refresh param")
            if not stale:
                return self._cached(entry, trends, env, key, self.runs.in_flight(key), "")
            if refresh == Refresh.FORCE_CACHE:
                return self._cached(entry, trends, env, key, self.runs.in_flight(key), "")
            if refresh in (Refresh.ASYNC, Refresh.ASYNC_EXCEPT_ON_CACHE_MISS):
                return self._cached(entry, trends, env, key, start(detached=True), "stale")
            if refresh == Refresh.LAZY_ASYNC:
                lazily_stale = is_stale(now, entry.last_refresh, entry.interval, entry.date_to, lazy=True)
                run = start(detached=True) if lazily_stale else self.runs.in_flight(key)
                return self._cached(entry, trends, env, key, run, "stale" if lazily_stale else "")
        elif refresh == Refresh.FORCE_CACHE:
            return None
        elif refresh in _ASYNC:
            run = start(detached=True)
            return Computed(status=run, cache_key=key, timezone=env.timezone, trigger="cache miss")
        # The blocking answers: BLOCKING (stale or missing), ASYNC_EXCEPT_ON_CACHE_MISS (missing), FORCE_BLOCKING.
        run = start(detached=False, waiting=True)
        fresh: CacheEntry = await self.runs.wait(run)
        trigger = "refresh param" if refresh == Refresh.FORCE_BLOCKING else "stale" if entry else "cache miss"
        return self._fresh(fresh, trends, env, key, trigger)

    async def cached(self, env: EnvironmentInfo, query: query_pb2.QueryNode | None) -> CacheEntry | None:
        """The cached entry of a query, if any, without computing anything."""
        trends = trends_source(query)
        if trends is None:
            return None
        return self.cache.get(await self._key(env, trends))

    async def stream(
        self,
        env: EnvironmentInfo,
        query: query_pb2.QueryNode | None,
        refresh: Refresh,
        *,
        client_query_id: str = "",
    ) -> AsyncIterator[Computed | Run]:
        """A run's status snapshots while it computes, then the answer; a fresh cached answer at once."""
        if refresh == Refresh.FORCE_CACHE:
            # Never computes: the cached answer, or nothing (a cache miss).
            answer = await self.result(env, query, refresh, client_query_id=client_query_id)
            if answer is not None:
                yield answer
            return
        trends = trends_source(query)
        if trends is None or query is None:
            yield Computed(error="computing this query kind is not supported yet")
            return
        key = await self._key(env, trends)
        entry = None if refresh == Refresh.FORCE_BLOCKING else self.cache.get(key)
        if entry is not None and not is_stale(
            self.clock(), entry.last_refresh, entry.interval, entry.date_to
        ):
            yield self._cached(entry, trends, env, key, None, "")
            return
        run = self._starter(env, query, trends, key, client_query_id, None, "")(
            detached=refresh in _ASYNC, waiting=True
        )
        waiter = asyncio.ensure_future(self.runs.wait(run))
        try:
            last = 0.0
            while True:
                changed = run.changed
                yield run
                last = time.monotonic()
                if waiter.done():
                    break
                # Wake on a change (or a heartbeat), then keep at least the minimum gap.
                change = asyncio.ensure_future(changed.wait())
                try:
                    await asyncio.wait(
                        {waiter, change}, timeout=STREAM_HEARTBEAT, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    change.cancel()
                if waiter.done():
                    break
                gap = STREAM_MIN_GAP - (time.monotonic() - last)
                if gap > 0:
                    await asyncio.wait({waiter}, timeout=gap)
            fresh: CacheEntry = waiter.result()
            yield self._fresh(fresh, trends, env, key, "cache miss" if entry is None else "stale")
        finally:
            if not waiter.done():
                waiter.cancel()

    def status(self, env: EnvironmentInfo, run_id: str) -> Run:
        """A run of the environment; a complete one points at its result while the cache holds it."""
        run = self.runs.get(env.id, run_id)
        if run.complete and not run.error and run.result() is None:
            # Its own entry was evicted; a newer result of the same query is as good an answer.
            entry = self.cache.get(run.key)
            if entry is not None:
                run.remember(entry)
        return run

    async def cancel(self, env: EnvironmentInfo, run_id: str, *, dequeue_only: bool = False) -> str:
        return await self.runs.cancel(self.runs.get(env.id, run_id), dequeue_only=dequeue_only)

    # ---------------------------------------------------------------------------------- runs

    def _starter(
        self,
        env: EnvironmentInfo,
        query: query_pb2.QueryNode,
        trends: query_pb2.TrendsQuery,
        key: str,
        client_query_id: str,
        insight_id: int | None,
        field_prefix: str,
    ) -> Callable[..., Run]:
        if client_query_id:
            try:
                check_run_id(client_query_id)
            except ValueError as exc:
                raise InvalidArgument(str(exc), field="client_query_id") from None

        def start(*, detached: bool, waiting: bool = False) -> Run:
            async def compute(run: Run) -> CacheEntry:
                return await self._compute(run, env, query, trends, key, field_prefix)

            return self.runs.start(
                client_query_id or key, env.id, key, insight_id, compute, detached=detached, waiting=waiting
            )

        return start

    async def _compute(
        self,
        run: Run,
        env: EnvironmentInfo,
        query: query_pb2.QueryNode,
        trends: query_pb2.TrendsQuery,
        key: str,
        field_prefix: str,
    ) -> CacheEntry:
        context = await self.blocking.run(self._context, env)

        def execute(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
            with run.engine_statement():
                return self.events.query(sql, params, run_id=run.tag)

        try:
            outcome = await self.blocking.run(run_trends, trends, context, execute)
        except QueryError as exc:
            raise _invalid(exc, f"{field_prefix}{_source_path(query)}") from None
        except QueryCancelled:
            raise Cancelled("the query was cancelled", reason="QUERY_CANCELLED") from None
        except Exception as exc:
            problem = user_error(exc)
            if problem is None:
                raise
            # E.g. a regex filter RE2 rejects: the caller's query is at fault, and may be told so.
            field = f"{field_prefix}{_source_path(query)}"
            raise InvalidArgument(
                f"{field}: the engine refused a value of the query ({problem})", field=field, reason=problem
            ) from None
        entry = CacheEntry(
            payload=results_pb2.InsightResult(trends=outcome.result).SerializeToString(),
            has_more=outcome.has_more,
            sql=outcome.sql,
            date_from=outcome.date_range.date_from,
            date_to=outcome.date_range.date_to,
            interval=_interval(trends),
            last_refresh=self.clock(),
        )
        self.cache.put(key, entry)
        return entry

    async def _progress(self, run_id: str) -> Progress | None:
        found = await self._control.run(self.events.progress, run_id)
        if found is None:
            return None
        return Progress(found.read_rows, found.total_rows_approx, found.read_bytes, found.elapsed_seconds)

    async def _kill(self, run_id: str) -> bool:
        return await self._control.run(self.events.kill, run_id)

    # -------------------------------------------------------------------------------- answers

    def _cached(
        self,
        entry: CacheEntry,
        trends: query_pb2.TrendsQuery,
        env: EnvironmentInfo,
        key: str,
        run: Run | None,
        trigger: str,
    ) -> Computed:
        return self._answer(entry, trends, env, key, is_cached=True, run=run, trigger=trigger)

    def _fresh(
        self, entry: CacheEntry, trends: query_pb2.TrendsQuery, env: EnvironmentInfo, key: str, trigger: str
    ) -> Computed:
        return self._answer(entry, trends, env, key, is_cached=False, run=None, trigger=trigger)

    def _answer(
        self,
        entry: CacheEntry,
        trends: query_pb2.TrendsQuery,
        env: EnvironmentInfo,
        key: str,
        *,
        is_cached: bool,
        run: Run | None,
        trigger: str,
    ) -> Computed:
        # Hot reads of one cached result build the same answer again and again: keep the last few
        # (answers are never mutated after this point, so sharing them is safe).
        memo = (
            key,
            id(entry),
            trends.SerializeToString(deterministic=True),
            is_cached,
            run.id if run else None,
            trigger,
            env.timezone,
        )
        found = self._answers.get(memo)
        if found is not None and found[0] is entry:
            return found[1]
        result = results_pb2.InsightResult()
        result.ParseFromString(entry.payload)
        # Names are not part of the key: the entry may hold another caller's (reference §3.2, 4).
        _apply_names(result.trends, trends)
        answer = Computed(
            result=result,
            has_more=entry.has_more,
            date_from=entry.date_from,
            date_to=entry.date_to,
            last_refresh=entry.last_refresh,
            cache_target_age=cache_target_age(entry.last_refresh, entry.interval),
            next_allowed_client_refresh=next_allowed_client_refresh(
                entry.last_refresh, entry.interval, entry.date_from, entry.date_to
            ),
            sql=entry.sql,
            is_cached=is_cached,
            cache_key=key,
            timezone=env.timezone,
            trigger=trigger,
            status=run,
            size=len(entry.payload),
        )
        if run is None:
            self._answers.put(memo, (entry, answer), answer.size * PARSED_FACTOR)
        return answer

    # -------------------------------------------------------------------------------- helpers

    async def _key(self, env: EnvironmentInfo, trends: query_pb2.TrendsQuery) -> str:
        # The environment's test-account filters belong in the key only when the query applies them.
        filters = env.test_account_filters if trends.filter_test_accounts else ""
        return _memo_key(
            env.id, env.timezone, env.week_start_day, filters, trends.SerializeToString(deterministic=True)
        )

    def _context(self, env: EnvironmentInfo) -> TrendsContext:
        return TrendsContext(
            team_id=env.id,
            timezone=env.timezone,
            week_start_day=env.week_start_day,
            now=self.clock(),
            test_account_filters=self._test_account_filters(env),
            earliest=lambda: self.events.earliest_timestamp(env.id),
            materialized=self.events.materialized,
        )

    def _test_account_filters(self, env: EnvironmentInfo) -> list[query_pb2.PropertyFilter]:
        filters = []
        for i, item in enumerate(json.loads(env.test_account_filters)):
            try:
                filters.append(from_reference_json(item, query_pb2.PropertyFilter))
            except CodecError as exc:
                raise FailedPrecondition(
                    f"the environment's test account filter {i} is invalid: {exc}",
                    reason="BAD_TEST_ACCOUNT_FILTERS",
                ) from None
        return filters


def _apply_names(result: results_pb2.TrendsResult, trends: query_pb2.TrendsQuery) -> None:
    """Puts the caller's series and formula names (custom_name) on a result computed under others."""
    formulas = trends.trends_filter.formula_nodes
    for line in result.series:
        if line.HasField("action"):
            if line.order >= len(trends.series):
                continue
            node = trends.series[line.order]
            source = getattr(node, node.WhichOneof("node") or "events_node")
            old, new = line.action.name, series_label(node)
            keyed = line.HasField("breakdown_value") or len(line.breakdown_values) > 0
            if not keyed:
                line.label = new
            elif len(trends.series) > 1 and line.label.startswith(f"{old} - "):
                line.label = new + line.label[len(old) :]
            line.action.name = new
            if source.HasField("custom_name"):
                line.action.custom_name = source.custom_name
            else:
                line.action.ClearField("custom_name")
        elif line.order < len(formulas):
            formula = formulas[line.order]
            line.label = formula.custom_name or f"Formula ({formula.formula})"


@functools.lru_cache(maxsize=4096)
def _memo_key(
    environment_id: int, timezone: str, week_start_day: int, test_filters: str, query: bytes
) -> str:
    """The cache key of a query given as bytes: hot reads of the same insight skip normalising it."""
    trends = query_pb2.TrendsQuery()
    trends.ParseFromString(query)
    return cache_key(
        trends,
        environment_id=environment_id,
        timezone=timezone,
        week_start_day=week_start_day,
        test_account_filters=json.loads(test_filters) if test_filters else None,
    )


def _invalid(exc: QueryError, prefix: str) -> InvalidArgument:
    field = f"{prefix}.{exc.path}" if exc.path else prefix
    return InvalidArgument(f"{field}: {exc.message}", field=field, reason="INVALID_QUERY")
