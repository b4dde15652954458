"""Builds the one ClickHouse statement of a lifecycle query, every user value bound.

Periods are numbered by their index in the query's grid (0 = the first period shown, -1 the one
before it). The statement, inside out (query-engine-semantics §7.2; docs/decisions.md, "Lifecycle"):

1. events: the series' events from the period before the grid to its end, each with its period;
2. actors: per person the sorted distinct active periods, joined with the period of the person's
   `created_at` (storage/persons.py: the earliest event, kept current by ingestion);
3. statuses: per active period new / returning / resurrecting, and dormant the period after each
   active period not followed by another, counted per (period, status) inside the grid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from generated.insights.v1 import query_pb2
from server.queries.base import ActionDefinition, DefinitionUnavailable
from server.queries.common import sampling
from server.queries.common.actions import action_sql
from server.queries.common.actors import actor_sql
from server.queries.common.dates import QueryDateRange
from server.queries.common.errors import QueryError
from server.queries.common.properties import CohortSql, filters_sql, properties_sql, property_text
from server.queries.common.sql import Params
from server.queries.lifecycle.spec import LifecycleSpec
from server.utc import as_utc

# Status numbers of the statement, in the reference's series order.
NEW, RETURNING, RESURRECTING, DORMANT = 1, 2, 3, 4
STATUSES = {NEW: "new", RETURNING: "returning", RESURRECTING: "resurrecting", DORMANT: "dormant"}

# More than one period, so the timestamp bounds (there for the index's pruning) never cut what the
# exact period filter keeps; a DST shift lengthens a day by an hour at most.
_MARGIN = {
    "hour": dt.timedelta(hours=2),
    "day": dt.timedelta(days=2),
    "week": dt.timedelta(days=8),
    "month": dt.timedelta(days=32),
}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Context:
    """Where and over what the lifecycle query runs."""

    team_id: int
    timezone: str
    week_start_day: int
    grid: QueryDateRange
    test_filters: list[query_pb2.PropertyFilter]
    actions: Mapping[int, ActionDefinition]
    cohorts: CohortSql  # compiles the membership of the cohorts filters name


def statement(params: Params, spec: LifecycleSpec, query: query_pb2.LifecycleQuery, ctx: Context) -> str:
    """SQL returning rows (period index, status number, actors) for the grid's periods."""
    n = params.bind(ctx.grid.bucket_count(), "Int64")
    team = params.bind(ctx.team_id, "Int64")
    created = _index(params, ctx, "created_at")
    actor = actor_sql(params, spec.aggregation)
    if actor.condition is None:
        persons = f"SELECT id, min(created_at) AS created_at FROM persons WHERE team_id = {team} GROUP BY id"
    else:
        # A group is created with its first event (there is no groups table; a person's created_at
        # is its first event too, storage/persons.py): over all of the environment's events.
        persons = (
            f"SELECT {actor.expression} AS id, min(timestamp) AS created_at FROM events "
            f"WHERE team_id = {team} AND {actor.condition} GROUP BY id"
        )
    actors = (
        f"SELECT e.actor AS actor, e.A AS A, {created} AS c "
        f"FROM (SELECT actor, arraySort(groupUniqArray(i)) AS A FROM ({_events(params, spec, query, ctx)}) GROUP BY actor) AS e "
        f"LEFT JOIN ({persons}) AS p ON p.id = e.actor"
    )
    # A[0] and A[length + 1] read as 0 (never an error); the conditions that use them exclude those j.
    active = (
        f"arrayMap(j -> (A[j], toUInt8(if(j = 1 AND A[j] = c, {NEW}, if(j > 1 AND A[j] - 1 = A[j - 1], "
        f"{RETURNING}, {RESURRECTING})))), arrayEnumerate(A))"
    )
    dormant = (
        f"arrayMap(j -> (A[j] + 1, toUInt8({DORMANT})), "
        "arrayFilter(j -> j = length(A) OR A[j + 1] != A[j] + 1, arrayEnumerate(A)))"
    )
    pairs = f"SELECT arrayJoin(arrayConcat({active}, {dormant})) AS x FROM ({actors})"
    return (
        f"SELECT x.1 AS period, x.2 AS status, count() AS actors FROM ({pairs}) "
        f"WHERE x.1 >= 0 AND x.1 < {n} GROUP BY period, status"
    )


def _events(params: Params, spec: LifecycleSpec, query: query_pb2.LifecycleQuery, ctx: Context) -> str:
    starts = ctx.grid.bucket_starts()
    margin = _MARGIN[ctx.grid.interval]
    lower = _micros(as_utc(starts[0]) - margin)
    upper = _micros(as_utc(starts[-1]) + 2 * margin)
    n = params.bind(len(starts), "Int64")
    where = [
        f"team_id = {params.bind(ctx.team_id, 'Int64')}",
        f"timestamp >= fromUnixTimestamp64Micro({params.bind(lower, 'Int64')})",
        f"timestamp < fromUnixTimestamp64Micro({params.bind(upper, 'Int64')})",
        # Events that do not touch a person profile have no lifecycle (the reference's filter).
        f"ifNull({property_text(params, '$process_person_profile', 'event')}, '') != 'false'",
    ]
    bound = sampling.threshold(spec.sampling)
    if bound is not None:
        where.append(sampling.kept_sql(params, bound))
    if query.HasField("properties"):
        where.append(properties_sql(params, query.properties, "properties", ctx.timezone, ctx.cohorts))
    if query.filter_test_accounts:
        where.append(filters_sql(params, ctx.test_filters, "filterTestAccounts", ctx.timezone, ctx.cohorts))
    actor = actor_sql(params, spec.aggregation)
    if actor.condition is not None:
        # Events without the group's key belong to no group: in nobody's lifecycle.
        where.append(actor.condition)
    exact = ""
    if spec.exact:
        # An exact range (explicitDate): inside the grid, only the events from date_from to date_to
        # are activity (its first and last periods may be partial, as a trends bucket); the margin
        # period before it is read whole (docs/decisions.md, "Lifecycle: exact ranges").
        start = params.bind(_micros(ctx.grid.date_from), "Int64")
        end = params.bind(_micros(ctx.grid.date_to), "Int64")
        exact = (
            f" AND (i = -1 OR (timestamp >= fromUnixTimestamp64Micro({start}) "
            f"AND timestamp <= fromUnixTimestamp64Micro({end})))"
        )
    series = spec.series
    if series.action_id is not None:
        where.append(_action(params, series.action_id, ctx))
    elif series.event is not None:
        where.append(f"event = {params.bind(series.event, 'String')}")
    if series.properties:
        where.append(
            filters_sql(params, list(series.properties), "series[0].properties", ctx.timezone, ctx.cohorts)
        )
    return (
        f"SELECT {actor.expression} AS actor, {_index(params, ctx, 'timestamp')} AS i FROM events "
        f"WHERE {' AND '.join(f'({w})' for w in where)} AND i >= -1 AND i < {n}{exact}"
    )


def _index(params: Params, ctx: Context, column: str) -> str:
    """The period of the instant in `column` as an index into the grid (any Int64 outside it).

    Day, week and month count whole calendar units between local dates (the grid starts at a period
    start); an hour is an elapsed hour (the reference's `- INTERVAL 1 HOUR`), so indexes count
    hours since the first period's start.
    """
    tz = params.bind(ctx.timezone, "String")
    local = f"toTimeZone({column}, {tz})"
    first = ctx.grid.bucket_starts()[0]
    period = ctx.grid.interval
    if period == "hour":
        start = params.bind(int(as_utc(first).timestamp()), "Int64")
        return f"intDiv(toInt64(toUnixTimestamp(toStartOfHour({local}))) - {start}, 3600)"
    day = params.bind(first.date().isoformat(), "Date32")
    if period == "day":
        return f"toInt64(dateDiff('day', {day}, toDate32({local})))"
    if period == "week":
        mode = params.bind(3 if ctx.week_start_day == 1 else 0, "UInt8")
        return f"toInt64(intDiv(dateDiff('day', {day}, toDate32(toStartOfWeek({local}, {mode}))), 7))"
    return f"toInt64(dateDiff('month', {day}, toDate32(toStartOfMonth({local}))))"


def _action(params: Params, action_id: int, ctx: Context) -> str:
    action = ctx.actions.get(action_id)
    if action is None:
        raise DefinitionUnavailable("action", action_id, "series[0].id")
    try:
        return action_sql(params, action, ctx.timezone)
    except QueryError as exc:
        # A stored step that no longer compiles: the action needs fixing, not the query.
        raise DefinitionUnavailable(
            "action",
            action_id,
            "series[0].id",
            message=f"action {action_id} cannot be computed: {exc.path}: {exc.message}",
        ) from None


def _micros(moment: dt.datetime) -> int:
    return (as_utc(moment) - _EPOCH) // dt.timedelta(microseconds=1)
