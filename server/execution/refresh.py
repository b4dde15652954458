"""Execution of queries: the refresh modes over the result cache, and runs of the engine."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor_pool, message_factory

from generated.insights.v1 import query_pb2, results_pb2
from server.errors import Cancelled, FailedPrecondition, InvalidArgument, Unimplemented
from server.execution.resultcache import DEFAULT_MAX_BYTES, CacheEntry, ResultCache
from server.execution.runs import Progress, Run, Runs
from server.execution.staleness import (
    cache_key,
    cache_target_age,
    canonical_query_bytes,
    is_stale,
    next_allowed_client_refresh,
)
from server.memory import Memo, MemoryBudget
from server.meter import Counts, Distribution
from server.principal import EnvironmentInfo
from server.queries.base import (
    Definitions,
    DefinitionUnavailable,
    LoadDefinitions,
    QueryContext,
    Reference,
    Runner,
)
from server.queries.common.codec import CodecError, from_reference_json
from server.queries.common.errors import QueryError
from server.queries.common.incohort import filter_references
from server.queries.registry import RUNNERS, Registry, Source, source_of
from server.runtime import Blocking
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
    """What a caller gets: a result (fresh or cached) with its cache facts, or a run's status."""

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
    # Bytes of the serialized result (what memos of answers are charged by).
    size: int = 0


@dataclass(frozen=True)
class _Job:
    """A query the execution layer computes: its source node, the runner of its kind, its cache key."""

    source: Source
    runner: Runner[Any]
    key: str
    field: str  # the request field path of the source node, for errors
    definitions: Definitions = dataclasses.field(default_factory=Definitions)


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
        registry: Registry = RUNNERS,
        definitions: LoadDefinitions | None = None,
    ):
        self.events = events
        self.registry = registry
        # Reads the actions and cohorts a query names (None: a query naming one cannot be computed).
        self.definitions = definitions
        self.blocking = blocking
        self.cache = cache
        self.clock = clock
        # Progress polls and kills must never queue behind the engine queries they watch.
        self._control = Blocking(2)
        budget = budget or MemoryBudget(DEFAULT_MAX_BYTES)
        self._answers: Memo[tuple[Any, ...], tuple[CacheEntry, Computed]] = Memo(
            budget, "answers", share=budget.limit // ANSWER_MEMO_SHARE, max_item=ANSWER_MEMO_MAX_ITEM
        )
        # Engine computations by query kind (the registry's name for it) and outcome, their seconds,
        # and the rows the engine read for them: what the metrics endpoint shows.
        self.queries = Counts()
        self.query_seconds = Distribution()
        self.rows_read = Counts()
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
        """Raises INVALID_ARGUMENT for a query its runner would refuse; runs nothing (synchronous).

        A query of a kind with no runner yet, or one that cannot be computed yet (FailedPrecondition,
        e.g. with actions), may still be saved.
        """
        source = source_of(query)
        runner = self.registry.runner(source.kind) if source else None
        if source is None or runner is None:
            return
        try:
            runner.check(source.node, self._context(env))
        except QueryError as exc:
            raise _invalid(exc, f"{field_prefix}{source.path}") from None
        except FailedPrecondition:
            return

    def require_runner(self, query: query_pb2.QueryNode | None, refresh: Refresh, field_prefix: str = "") -> None:
        """UNIMPLEMENTED when `refresh` would compute a query of a kind no runner computes (checked
        before a write, so that a refused call changes nothing)."""
        if refresh != Refresh.FORCE_CACHE:
            self._job(None, query, field_prefix, computing=True, key=False)

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
        """The answer for `refresh` (the reference's cache decision flow); None is a plain cache miss.

        UNIMPLEMENTED for a kind no runner computes (a FORCE_CACHE read is a plain miss instead).
        """
        job = await self._loaded(env, self._job(env, query, field_prefix, computing=refresh != Refresh.FORCE_CACHE))
        if job is None:
            return None
        key = job.key
        entry = None if refresh == Refresh.FORCE_BLOCKING else self.cache.get(key)
        now = self.clock()
        start = self._starter(env, job, client_query_id, insight_id)
        if entry is not None:
            stale = is_stale(now, entry.last_refresh, entry.interval, entry.settles_at)
            if refresh == Refresh.FORCE_ASYNC:
                return self._cached(entry, job, env, start(detached=True), "refresh param")
            if not stale:
                return self._cached(entry, job, env, self.runs.in_flight(key), "")
            if refresh == Refresh.FORCE_CACHE:
                return self._cached(entry, job, env, self.runs.in_flight(key), "")
            if refresh in (Refresh.ASYNC, Refresh.ASYNC_EXCEPT_ON_CACHE_MISS):
                return self._cached(entry, job, env, start(detached=True), "stale")
            if refresh == Refresh.LAZY_ASYNC:
                lazily_stale = is_stale(now, entry.last_refresh, entry.interval, entry.settles_at, lazy=True)
                run = start(detached=True) if lazily_stale else self.runs.in_flight(key)
                return self._cached(entry, job, env, run, "stale" if lazily_stale else "")
        elif refresh == Refresh.FORCE_CACHE:
            return None
        elif refresh in _ASYNC:
            run = start(detached=True)
            return Computed(status=run, cache_key=key, timezone=env.timezone, trigger="cache miss")
        # The blocking answers: BLOCKING (stale or missing), ASYNC_EXCEPT_ON_CACHE_MISS (missing), FORCE_BLOCKING.
        run = start(detached=False, waiting=True)
        fresh: CacheEntry = await self.runs.wait(run)
        trigger = "refresh param" if refresh == Refresh.FORCE_BLOCKING else "stale" if entry else "cache miss"
        return self._fresh(fresh, job, env, trigger)

    async def missed(self, env: EnvironmentInfo, query: query_pb2.QueryNode | None) -> Computed:
        """A cache miss as a query answer shows it: no result, the key a computation would fill
        (so that a caller can tell which entry it asked for), none for a kind no runner computes."""
        job = await self._loaded(env, self._job(env, query, "", computing=False))
        return Computed(cache_key=job.key if job is not None else "", timezone=env.timezone)

    async def cached(self, env: EnvironmentInfo, query: query_pb2.QueryNode | None) -> CacheEntry | None:
        """The cached entry of a query, if any, without computing anything."""
        job = await self._loaded(env, self._job(env, query, "", computing=False))
        return None if job is None else self.cache.get(job.key)

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
        job = await self._loaded(env, self._job(env, query, "", computing=True))
        if job is None:
            return
        entry = None if refresh == Refresh.FORCE_BLOCKING else self.cache.get(job.key)
        if entry is not None and not is_stale(
            self.clock(), entry.last_refresh, entry.interval, entry.settles_at
        ):
            yield self._cached(entry, job, env, None, "")
            return
        run = self._starter(env, job, client_query_id, None)(detached=refresh in _ASYNC, waiting=True)
        waiter = asyncio.ensure_future(self.runs.wait(run))
        try:
            last = 0.0
            while True:
                changed = run.changed
                run.watch()
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
            yield self._fresh(fresh, job, env, "cache miss" if entry is None else "stale")
        finally:
            if not waiter.done():
                waiter.cancel()

    def status(self, env: EnvironmentInfo, run_id: str) -> Run:
        """A run of the environment; a complete one points at its result while the cache holds it."""
        run = self.runs.get(env.id, run_id)
        run.watch()
        if run.complete and not run.error and run.result() is None:
            # Its own entry was evicted; a newer result of the same query is as good an answer.
            entry = self.cache.get(run.key)
            if entry is not None:
                run.remember(entry)
        return run

    async def cancel(self, env: EnvironmentInfo, run_id: str, *, dequeue_only: bool = False) -> str:
        return await self.runs.cancel(self.runs.get(env.id, run_id), dequeue_only=dequeue_only)

    # ---------------------------------------------------------------------------------- runs

    def _job(
        self,
        env: EnvironmentInfo | None,
        query: query_pb2.QueryNode | None,
        field_prefix: str,
        *,
        computing: bool,
        key: bool = True,
    ) -> _Job | None:
        """What computing `query` takes; None when there is nothing to compute, or nothing cached to
        read for a kind no runner computes. UNIMPLEMENTED when asked to compute such a kind."""
        source = source_of(query)
        if source is None:
            if query is not None and computing:
                field = f"{field_prefix}query"
                raise InvalidArgument(f"{field}: the query has no node to compute", field=field)
            return None
        runner = self.registry.runner(source.kind)
        if runner is None:
            if not computing:
                return None
            raise Unimplemented(
                f"computing {source.name} queries is not implemented yet",
                reason="QUERY_KIND_NOT_IMPLEMENTED",
                metadata={"kind": source.name, "field": f"{field_prefix}{source.path}"},
            )
        if env is None or not key:
            return None
        return _Job(source, runner, self._key(env, source, ()), f"{field_prefix}{source.path}")

    def _key(self, env: EnvironmentInfo, source: Source, versions: tuple[tuple[str, int, int, str], ...]) -> str:
        return _memo_key(
            source.node.DESCRIPTOR.full_name,
            env.id,
            env.timezone,
            env.week_start_day,
            env.test_account_filters,
            source.node.SerializeToString(deterministic=True),
            versions,
        )

    async def _loaded(self, env: EnvironmentInfo, job: _Job | None) -> _Job | None:
        """`job` with the stored definitions its node names, and a cache key holding their versions
        (so an edited action or cohort computes anew). FAILED_PRECONDITION naming the field of a
        definition that is missing or deleted, or when no loader was given."""
        if job is None:
            return None
        references = job.runner.references(job.source.node) + self._test_account_references(env, job.source.node)
        if not references:
            return job
        if self.definitions is None:
            ref = references[0]
            raise FailedPrecondition(
                f"{job.field}.{ref.path}: {ref.kind}s cannot be computed by this service",
                reason="DEFINITIONS_UNAVAILABLE",
                metadata={"field": f"{job.field}.{ref.path}"},
            )
        try:
            definitions = await self.blocking.run(self.definitions, env.id, references)
        except DefinitionUnavailable as exc:
            where = f"{job.field}.{exc.path}"
            raise FailedPrecondition(
                f"{where}: {exc.message}", reason=exc.reason, metadata={**exc.metadata, "field": where}
            ) from None
        key = self._key(env, job.source, definitions.versions())
        return _Job(job.source, job.runner, key, job.field, definitions)

    def _starter(
        self, env: EnvironmentInfo, job: _Job, client_query_id: str, insight_id: int | None
    ) -> Callable[..., Run]:
        if client_query_id:
            try:
                check_run_id(client_query_id)
            except ValueError as exc:
                raise InvalidArgument(str(exc), field="client_query_id") from None

        def start(*, detached: bool, waiting: bool = False) -> Run:
            async def compute(run: Run) -> CacheEntry:
                return await self._compute(run, env, job)

            return self.runs.start(
                client_query_id or job.key,
                env.id,
                job.key,
                insight_id,
                compute,
                detached=detached,
                waiting=waiting,
            )

        return start

    async def _compute(self, run: Run, env: EnvironmentInfo, job: _Job) -> CacheEntry:
        kind = (job.source.kind,)
        started = time.perf_counter()
        ended = "error"
        try:
            entry = await self._computed(run, env, job)
            ended = "ok"
            return entry
        except (Cancelled, asyncio.CancelledError):
            ended = "cancelled"
            raise
        finally:
            self.queries.add((*kind, ended))
            self.query_seconds.observe(kind, time.perf_counter() - started)

    async def _computed(self, run: Run, env: EnvironmentInfo, job: _Job) -> CacheEntry:
        context = await self.blocking.run(self._context, env, job.definitions)
        kind = (job.source.kind,)

        def counted(rows: int) -> None:
            self.rows_read.add(kind, rows)

        def execute(
            sql: str, params: dict[str, Any], settings: Mapping[str, Any] | None = None
        ) -> list[tuple[Any, ...]]:
            with run.engine_statement():
                return self.events.query(sql, params, settings=settings, run_id=run.tag, read=counted)

        try:
            outcome = await self.blocking.run(job.runner.compute, job.source.node, context, execute)
        except QueryError as exc:
            raise _invalid(exc, job.field) from None
        except QueryCancelled:
            raise Cancelled("the query was cancelled", reason="QUERY_CANCELLED") from None
        except DefinitionUnavailable as exc:
            # Found while compiling (e.g. an action a loaded cohort counts is gone), as the loader's.
            where = f"{job.field}.{exc.path}"
            raise FailedPrecondition(
                f"{where}: {exc.message}", reason=exc.reason, metadata={**exc.metadata, "field": where}
            ) from None
        except Exception as exc:
            problem = user_error(exc)
            if problem is None:
                raise
            # E.g. a regex filter RE2 rejects: the caller's query is at fault, and may be told so.
            raise InvalidArgument(
                f"{job.field}: the engine refused a value of the query ({problem})",
                field=job.field,
                reason=problem,
            ) from None
        entry = CacheEntry(
            payload=outcome.result.SerializeToString(),
            has_more=outcome.has_more,
            sql=outcome.sql,
            date_from=outcome.date_from,
            date_to=outcome.date_to,
            interval=job.runner.interval(job.source.node),
            last_refresh=self.clock(),
            settles=outcome.settles,
        )
        self.cache.put(job.key, entry)
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
        self, entry: CacheEntry, job: _Job, env: EnvironmentInfo, run: Run | None, trigger: str
    ) -> Computed:
        return self._answer(entry, job, env, is_cached=True, run=run, trigger=trigger)

    def _fresh(self, entry: CacheEntry, job: _Job, env: EnvironmentInfo, trigger: str) -> Computed:
        return self._answer(entry, job, env, is_cached=False, run=None, trigger=trigger)

    def _answer(
        self,
        entry: CacheEntry,
        job: _Job,
        env: EnvironmentInfo,
        *,
        is_cached: bool,
        run: Run | None,
        trigger: str,
    ) -> Computed:
        # Hot reads of one cached result build the same answer again and again: keep the last few
        # (answers are never mutated after this point, so sharing them is safe).
        key = job.key
        memo = (
            key,
            id(entry),
            job.source.node.SerializeToString(deterministic=True),
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
        job.runner.relabel(result, job.source.node, job.definitions)
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

    def _context(self, env: EnvironmentInfo, definitions: Definitions | None = None) -> QueryContext:
        return QueryContext(
            team_id=env.id,
            timezone=env.timezone,
            week_start_day=env.week_start_day,
            now=self.clock(),
            test_account_filters=self._test_account_filters(env),
            earliest=lambda: self.events.earliest_timestamp(env.id),
            materialized=self.events.materialized,
            definitions=definitions or Definitions(),
        )

    def _test_account_references(self, env: EnvironmentInfo, node: Any) -> list[Reference]:
        """The cohorts the environment's test-account filters name, when `node` applies them (they
        are the environment's, so no runner lists them). Paths as the compiler reports them."""
        if '"cohort"' not in env.test_account_filters:
            return []  # the common case, told from the JSON text without decoding or walking the node
        if not canonical_query_bytes(node)[1]:
            return []
        return filter_references(self._test_account_filters(env), "filterTestAccounts")

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


@functools.lru_cache(maxsize=4096)
def _memo_key(
    node_type: str,
    environment_id: int,
    timezone: str,
    week_start_day: int,
    test_filters: str,
    node: bytes,
    definitions: tuple[tuple[str, int, int, str], ...] = (),
) -> str:
    """The cache key of a source node given as bytes: hot reads of the same insight skip normalising it."""
    parsed = message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(node_type))()
    parsed.ParseFromString(node)
    return cache_key(
        parsed,
        environment_id=environment_id,
        timezone=timezone,
        week_start_day=week_start_day,
        test_account_filters=json.loads(test_filters) if test_filters else None,
        definitions=definitions,
    )


def _invalid(exc: QueryError, prefix: str) -> InvalidArgument:
    field = f"{prefix}.{exc.path}" if exc.path else prefix
    return InvalidArgument(f"{field}: {exc.message}", field=field, reason="INVALID_QUERY")
