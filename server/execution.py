"""Execution of insight queries: which refresh modes compute, and running the engine."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from generated.insights.v1 import query_pb2, results_pb2
from server.errors import DomainError, FailedPrecondition, InvalidArgument
from server.principal import EnvironmentInfo
from server.queries.codec import CodecError, from_reference_json
from server.queries.dates import QueryDateRange
from server.queries.errors import QueryError
from server.queries.trends import TrendsContext, run_trends
from storage.db import Database
from storage.events import EventStore
from storage.models import Environment, utcnow


class Refresh(enum.Enum):
    """The reference's execution modes (the `refresh` parameter)."""

    FORCE_BLOCKING = "force_blocking"
    FORCE_ASYNC = "force_async"
    BLOCKING = "blocking"
    ASYNC = "async"
    ASYNC_EXCEPT_ON_CACHE_MISS = "async_except_on_cache_miss"
    LAZY_ASYNC = "lazy_async"
    FORCE_CACHE = "force_cache"


# With no cache yet, these are the modes that compute now; the others answer as a cache miss.
_COMPUTING = frozenset({Refresh.FORCE_BLOCKING, Refresh.BLOCKING, Refresh.ASYNC_EXCEPT_ON_CACHE_MISS})


@dataclass(frozen=True)
class Computed:
    """A computed result, or the reason none could be computed."""

    result: results_pb2.InsightResult | None
    has_more: bool = False
    date_range: QueryDateRange | None = None
    last_refresh: dt.datetime | None = None
    sql: str = ""
    error: str | None = None


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


class Execution:
    """Runs insight queries on the event store (synchronously: call it from the blocking pool)."""

    def __init__(self, db: Database, events: EventStore, clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.events = events
        self.clock = clock

    def validate(self, env: EnvironmentInfo, query: query_pb2.QueryNode | None, field_prefix: str) -> None:
        """Raises INVALID_ARGUMENT for a query the engine would refuse; runs nothing."""
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

    def computes(self, refresh: Refresh) -> bool:
        """Whether `refresh` can compute (else the answer is a cache miss, known without any I/O)."""
        return refresh in _COMPUTING

    def compute(
        self, env: EnvironmentInfo, query: query_pb2.QueryNode | None, refresh: Refresh
    ) -> Computed | None:
        """The result for `refresh`, or None when the mode does not compute (a cache miss)."""
        if not self.computes(refresh) or query is None:
            return None
        trends = trends_source(query)
        if trends is None:
            kind = query.WhichOneof("node") or "empty"
            return Computed(None, error=f"computing {kind} queries is not supported yet")
        try:
            outcome = run_trends(trends, self._context(env), self._execute)
        except QueryError as exc:
            raise _invalid(exc, _source_path(query)) from None
        except DomainError:
            raise
        return Computed(
            results_pb2.InsightResult(trends=outcome.result),
            outcome.has_more,
            outcome.date_range,
            self.clock(),
            outcome.sql,
        )

    def _context(self, env: EnvironmentInfo) -> TrendsContext:
        return TrendsContext(
            team_id=env.id,
            timezone=env.timezone,
            week_start_day=env.week_start_day,
            now=self.clock(),
            test_account_filters=self._test_account_filters(env.id),
            earliest=lambda: self.events.earliest_timestamp(env.id),
        )

    def _test_account_filters(self, environment_id: int) -> list[query_pb2.PropertyFilter]:
        with self.db.session() as session:
            raw = session.scalar(
                select(Environment.test_account_filters).where(Environment.id == environment_id)
            )
        filters = []
        for i, item in enumerate(raw or []):
            try:
                filters.append(from_reference_json(item, query_pb2.PropertyFilter))
            except CodecError as exc:
                raise FailedPrecondition(
                    f"the environment's test account filter {i} is invalid: {exc}",
                    reason="BAD_TEST_ACCOUNT_FILTERS",
                ) from None
        return filters

    def _execute(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return self.events.query(sql, params)


def _invalid(exc: QueryError, prefix: str) -> InvalidArgument:
    field = f"{prefix}.{exc.path}" if exc.path else prefix
    return InvalidArgument(f"{field}: {exc.message}", field=field, reason="INVALID_QUERY")
