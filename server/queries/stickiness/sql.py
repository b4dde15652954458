"""Builds the one ClickHouse statement of a stickiness query, every user value bound.

Per series (query-engine-semantics §6.2; docs/decisions.md, "Stickiness"), inside out:

1. events of the window matching the series, the query's filters and the test-account filters,
   with their bucket's index in the date range's grid;
2. per (actor, period) the number of events, kept when it meets stickinessCriteria (a period is
   `intervalCount` buckets, counted back from the last bucket as the reference counts from date_to);
3. per actor the number of periods kept;
4. per number of periods the number of actors.

The series (and with compare each series' previous period) are one UNION ALL; rows are (branch,
periods, actors), branch = series index × number of ranges + range index. Zero fill and cumulative
sums are done when shaping the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from generated.insights.v1 import query_pb2
from server.errors import FailedPrecondition
from server.queries.base import ActionDefinition
from server.queries.common import sampling
from server.queries.common.actions import action_sql
from server.queries.common.dates import QueryDateRange
from server.queries.common.errors import QueryError
from server.queries.common.properties import CohortSql, filters_sql, properties_sql
from server.queries.common.sql import Params
from server.queries.stickiness.spec import Series, StickinessSpec

_HAVING = {"gte": ">=", "lte": "<=", "exact": "="}


@dataclass(frozen=True)
class Context:
    """Where and over what the stickiness query runs."""

    team_id: int
    timezone: str
    dates: QueryDateRange
    test_filters: list[query_pb2.PropertyFilter]
    actions: Mapping[int, ActionDefinition]
    sample_threshold: int | None
    # Compiles the membership of the cohorts the filters name (None: cohort filters are refused).
    cohorts: CohortSql | None = None


def periods(spec: StickinessSpec, dates: QueryDateRange) -> int:
    """N: how many periods of intervalCount buckets the range holds (the last may be partial)."""
    return -(-dates.bucket_count() // spec.interval_count)


def statement(
    params: Params,
    spec: StickinessSpec,
    query: query_pb2.StickinessQuery,
    ctx: Context,
    ranges: list[QueryDateRange],
) -> str:
    """SQL returning rows (branch, periods active, actors) for every series over every range."""
    parts = [
        _series(params, spec, s, query, replace(ctx, dates=dates), s.index * len(ranges) + r)
        for s in spec.series
        for r, dates in enumerate(ranges)
    ]
    return " UNION ALL ".join(f"({p})" for p in parts)


def _series(
    params: Params,
    spec: StickinessSpec,
    series: Series,
    query: query_pb2.StickinessQuery,
    ctx: Context,
    branch: int,
) -> str:
    n = params.bind(ctx.dates.bucket_count(), "Int64")
    c = params.bind(spec.interval_count, "Int64")
    value = params.bind(spec.value, "UInt64")
    events = _events(params, series, query, ctx)
    per_period = (
        f"SELECT actor, intDiv({n} - 1 - i, {c}) AS g, count() AS e FROM ({events}) "
        f"WHERE i >= 0 AND i < {n} GROUP BY actor, g HAVING e {_HAVING[spec.operator]} {value}"
    )
    per_actor = f"SELECT actor, count() AS k FROM ({per_period}) GROUP BY actor"
    index = params.bind(branch, "UInt32")
    return f"SELECT {index} AS s, k, count() AS actors FROM ({per_actor}) GROUP BY k"


def _events(params: Params, series: Series, query: query_pb2.StickinessQuery, ctx: Context) -> str:
    tz = params.bind(ctx.timezone, "String")
    lower, upper = ctx.dates.sql_bounds()
    where = [
        f"team_id = {params.bind(ctx.team_id, 'Int64')}",
        f"timestamp >= toDateTime64({params.bind(lower, 'String')}, 6, {tz})",
        f"timestamp <= toDateTime64({params.bind(upper, 'String')}, 6, {tz})",
    ]
    if ctx.sample_threshold is not None:
        where.append(sampling.kept_sql(params, ctx.sample_threshold))
    where.append(_name(params, series, ctx))
    if series.properties:
        where.append(filters_sql(params, series.properties, f"{series.path}.properties", ctx.timezone, ctx.cohorts))
    if query.HasField("properties"):
        where.append(properties_sql(params, query.properties, "properties", ctx.timezone, ctx.cohorts))
    if query.filter_test_accounts:
        where.append(filters_sql(params, ctx.test_filters, "filterTestAccounts", ctx.timezone, ctx.cohorts))
    return f"SELECT person_id AS actor, {_index(params, ctx, tz)} AS i FROM events WHERE {_and(where)}"


def _index(params: Params, ctx: Context, tz: str) -> str:
    """The 0-based index of the event's bucket in the grid (-1 or past the end outside it).

    Day, week and month count calendar units between local dates; hours are looked up among the
    grid's instants, so DST folds and half-hour zones need no arithmetic (as retention).
    """
    local = f"toTimeZone(timestamp, {tz})"
    starts = ctx.dates.bucket_starts()
    interval = ctx.dates.interval
    if interval == "hour":
        grid = params.bind([int(s.timestamp()) for s in starts], "Array(Int64)")
        return f"toInt64(indexOf({grid}, toInt64(toUnixTimestamp(toStartOfHour({local}))))) - 1"
    start = params.bind(starts[0].date().isoformat(), "Date32")
    if interval == "day":
        return f"dateDiff('day', {start}, toDate({local}))"
    if interval == "week":
        mode = params.bind(3 if ctx.dates.week_start_day == 1 else 0, "UInt8")
        return f"intDiv(dateDiff('day', {start}, toStartOfWeek({local}, {mode})), 7)"
    return f"dateDiff('month', {start}, toStartOfMonth({local}))"


def _name(params: Params, series: Series, ctx: Context) -> str:
    """The event name of an EventsNode ("1": every event), the predicate of an ActionsNode's action."""
    if series.action_id is None:
        return f"event = {params.bind(series.event, 'String')}" if series.event is not None else "1"
    path = f"{series.path}.id"
    action = ctx.actions.get(series.action_id)
    if action is None:
        raise FailedPrecondition(
            f"{path}: action {series.action_id} does not exist or is deleted",
            reason="ACTION_UNAVAILABLE",
            metadata={"action": str(series.action_id), "field": path},
        )
    try:
        return action_sql(params, action, ctx.timezone)
    except QueryError as exc:
        # A stored step that no longer compiles: the action needs fixing, not the query.
        raise FailedPrecondition(
            f"{path}: action {series.action_id} cannot be computed: {exc.path}: {exc.message}",
            reason="ACTION_UNAVAILABLE",
            metadata={"action": str(series.action_id), "field": path},
        ) from None


def _and(parts: list[str]) -> str:
    useful = [p for p in parts if p and p != "1"]
    return " AND ".join(f"({p})" for p in useful) if useful else "1"
