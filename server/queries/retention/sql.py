"""Builds the one ClickHouse statement of a retention query, every user value bound.

The statement, inside out (query-engine-semantics §5.3; docs/decisions.md, "Retention"):

1. events: the events of the window (for the first-time types, of all time before its end) that
   match the target or the returning entity, with their period's index in the cohort grid
   (-1 outside it) and the breakdown value;
2. actors: per person (and breakdown value) the periods they started a cohort in (every one for
   recurring retention, the first for the first-time types) and the periods they returned in
   (with minimumOccurrences, periods with at least that many returning events);
3. walks: per person and cohort, the periods after its start the person returned in, below
   totalIntervals, plus 0 (the cohort itself); cumulative retention counts every period up to the
   last return instead;
4. counts of persons per (value, cohort, period); with a breakdown the values ranked by their
   cohorts' total size, the ones past the limit summed into "Other".

24-hour windows (timeWindowMode) replace steps 2-3 by `_rolling`: one cohort per person, periods
counted as windows of elapsed time from the person's first start event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from generated.insights.v1 import query_pb2
from server.errors import FailedPrecondition
from server.queries.base import ActionDefinition
from server.queries.common import sampling
from server.queries.common.actions import action_sql
from server.queries.common.actors import actor_sql
from server.queries.common.breakdown_value import PLAIN, Buckets, Shape, bounds_sql, shaped_sql
from server.queries.common.errors import QueryError
from server.queries.common.properties import (
    BREAKDOWN_NULL,
    CohortSql,
    breakdown_value_sql,
    filters_sql,
    properties_sql,
    property_text,
)
from server.queries.common.sql import Params
from server.queries.retention.dates import RetentionRange, epoch_us
from server.queries.retention.spec import WINDOW_SECONDS, Entity, RetentionSpec
from server.queries.sql.expression import compile_expression

OTHER_LABEL = "$$_posthog_breakdown_other_$$"


@dataclass(frozen=True)
class Context:
    """Where and over what the retention query runs."""

    team_id: int
    timezone: str
    week_start_day: int
    dates: RetentionRange
    test_filters: list[query_pb2.PropertyFilter]
    actions: Mapping[int, ActionDefinition]
    sample_threshold: int | None
    # Compiles the membership of the cohorts filters name (None: cohort filters are refused).
    cohorts: CohortSql | None = None
    # The breakdown's histogram or URL normalising, and a histogram's buckets once known.
    shape: Shape = PLAIN
    grid: Buckets | None = None


def statement(params: Params, spec: RetentionSpec, query: query_pb2.RetentionQuery, ctx: Context) -> str:
    """SQL returning rows (value, cohort index, period index, persons, rank, cut).

    `value` is the breakdown value ('' without a breakdown; Other for the merged ones), `rank` its
    position (1 = the largest cohorts), `cut` whether values were merged into it.
    """
    counts = f"SELECT bv, s, k, count() AS c FROM ({_walks(params, spec, query, ctx)}) GROUP BY bv, s, k"
    if spec.breakdown is None:
        return f"SELECT bv, s, k, c, toUInt64(1) AS r, toUInt8(0) AS cut FROM ({counts})"
    totals = f"SELECT bv, s, k, c, sum(if(k = 0, c, 0)) OVER (PARTITION BY bv) AS t FROM ({counts})"
    ranked = f"SELECT bv, s, k, c, dense_rank() OVER (ORDER BY t DESC, bv ASC) AS r FROM ({totals})"
    limit = params.bind(spec.limit, "UInt64")
    other = params.bind(OTHER_LABEL, "String")
    return (
        f"SELECT if(r <= {limit}, bv, {other}) AS key, s, k, sum(c) AS n, min(r) AS rank, toUInt8(max(r > {limit})) AS cut "
        f"FROM ({ranked}) GROUP BY key, s, k"
    )


# ------------------------------------------------------------------------------------ events


def histogram_bounds(params: Params, spec: RetentionSpec, query: query_pb2.RetentionQuery, ctx: Context) -> str:
    """SQL returning one row: the minimum and maximum number of the breakdown (NULL when none)
    over the window's events of the target or returning entity (docs/decisions.md, "Histogram
    breakdowns"), whatever the retention type."""
    assert spec.breakdown is not None
    key, source = spec.breakdown
    where = _where(params, spec, query, ctx, whole_window=True)
    entities = [_matches(params, e, ctx, with_properties=True) for e in (spec.target, spec.returning)]
    where.append(f"({entities[0]} OR {entities[1]})")
    return f"SELECT {', '.join(bounds_sql(_text(params, key, source, ctx)))} FROM events WHERE {_and(where)}"


def _where(
    params: Params, spec: RetentionSpec, query: query_pb2.RetentionQuery, ctx: Context, *, whole_window: bool
) -> list[str]:
    """The conditions on every event read: team, time, sample, the query's filters, event names,
    an actor. `whole_window`: from the window's start whatever the retention type."""
    where = [
        f"team_id = {params.bind(ctx.team_id, 'Int64')}",
        f"timestamp < fromUnixTimestamp64Micro({params.bind(epoch_us(ctx.dates.date_to), 'Int64')})",
    ]
    if spec.retention_type == "recurring" or whole_window:
        # The first-time types look for the first target event over all time before the end.
        where.append(
            f"timestamp >= fromUnixTimestamp64Micro({params.bind(epoch_us(ctx.dates.date_from), 'Int64')})"
        )
    if ctx.sample_threshold is not None:
        where.append(sampling.kept_sql(params, ctx.sample_threshold))
    if query.HasField("properties"):
        where.append(properties_sql(params, query.properties, "properties", ctx.timezone, ctx.cohorts))
    if query.filter_test_accounts:
        where.append(filters_sql(params, ctx.test_filters, "filterTestAccounts", ctx.timezone, ctx.cohorts))
    names = _event_names(spec)
    if names is not None:
        # The index narrows by event name first (the reference's `event IN (...)`).
        where.append(f"event IN {params.bind(names, 'Array(String)')}")
    actor = actor_sql(params, spec.aggregation)
    if actor.condition is not None:
        # Events without the group's key belong to no group: nobody's cohort or return.
        where.append(actor.condition)
    return where


def _events(params: Params, spec: RetentionSpec, query: query_pb2.RetentionQuery, ctx: Context) -> str:
    tz = params.bind(ctx.timezone, "String")
    where = _where(params, spec, query, ctx, whole_window=False)
    actor = actor_sql(params, spec.aggregation)
    columns = [
        f"{actor.expression} AS actor",
        f"{_value(params, spec, ctx)} AS bv",
        "timestamp AS t",
        f"{_index(params, ctx, tz)} AS i",
        f"{_matches(params, spec.target, ctx, with_properties=True)} AS is_t",
        f"{_matches(params, spec.returning, ctx, with_properties=True)} AS is_r",
    ]
    relevant = "is_t OR is_r"
    if spec.retention_type == "first_ever_occurrence":
        columns.append(f"{_matches(params, spec.target, ctx, with_properties=False)} AS is_b")
        relevant += " OR is_b"
    where.append(f"({relevant})")
    return f"SELECT {', '.join(columns)} FROM events WHERE {_and(where)}"


def _event_names(spec: RetentionSpec) -> list[str] | None:
    """Both entities' event names; None when one of them is an action or takes every event."""
    entities = (spec.target, spec.returning)
    if any(e.action_id is not None or e.event is None for e in entities):
        return None
    return sorted({e.event for e in entities if e.event is not None})


def _index(params: Params, ctx: Context, tz: str) -> str:
    """The 0-based index of the event's period in the cohort grid; -1 (or out of range) outside it.

    Day, week and month periods count whole calendar units between local dates; hours are looked
    up among the grid's instants, so DST folds and half-hour zones need no arithmetic.
    """
    local = f"toTimeZone(timestamp, {tz})"
    period = ctx.dates.grid.interval
    first = ctx.dates.starts()[0]
    if period == "hour":
        grid = params.bind([int(s.timestamp()) for s in ctx.dates.starts()], "Array(Int64)")
        return f"toInt64(indexOf({grid}, toInt64(toUnixTimestamp(toStartOfHour({local}))))) - 1"
    start = params.bind(first.date().isoformat(), "Date32")
    if period == "day":
        return f"dateDiff('day', {start}, toDate({local}))"
    if period == "week":
        mode = params.bind(3 if ctx.week_start_day == 1 else 0, "UInt8")
        return f"intDiv(dateDiff('day', {start}, toStartOfWeek({local}, {mode})), 7)"
    return f"dateDiff('month', {start}, toStartOfMonth({local}))"


def _matches(params: Params, entity: Entity, ctx: Context, *, with_properties: bool) -> str:
    """SQL (0/1) for "the event is the entity" (with or without the entity's own filters)."""
    if entity.action_id is not None:
        parts = [_action(params, entity, ctx)]
    elif entity.event is not None:
        parts = [f"event = {params.bind(entity.event, 'String')}"]
    else:
        parts = []
    if with_properties and entity.properties:
        parts.append(filters_sql(params, entity.properties, f"{entity.path}.properties", ctx.timezone, ctx.cohorts))
    return f"toUInt8({_and(parts)})"


def _action(params: Params, entity: Entity, ctx: Context) -> str:
    assert entity.action_id is not None
    path = f"{entity.path}.id"
    action = ctx.actions.get(entity.action_id)
    if action is None:
        raise FailedPrecondition(
            f"{path}: action {entity.action_id} does not exist or is deleted",
            reason="ACTION_UNAVAILABLE",
            metadata={"action": str(entity.action_id), "field": path},
        )
    try:
        return action_sql(params, action, ctx.timezone)
    except QueryError as exc:
        # A stored step that no longer compiles: the action needs fixing, not the query.
        raise FailedPrecondition(
            f"{path}: action {entity.action_id} cannot be computed: {exc.path}: {exc.message}",
            reason="ACTION_UNAVAILABLE",
            metadata={"action": str(entity.action_id), "field": path},
        ) from None


def _value(params: Params, spec: RetentionSpec, ctx: Context) -> str:
    if spec.breakdown is None:
        return "''"
    key, source = spec.breakdown
    if ctx.shape != PLAIN or source == "hogql":
        return shaped_sql(params, _text(params, key, source, ctx), ctx.shape, BREAKDOWN_NULL, ctx.grid)
    return breakdown_value_sql(params, key, source)


def _text(params: Params, key: str, source: str, ctx: Context) -> str:
    """The breakdown's text (NULL when missing): a property's, or a hogql expression's `toString`
    (the reference's), checked by the spec already."""
    if source == "hogql":
        return f"toString({compile_expression(key, params, path='breakdownFilter', timezone=ctx.timezone)})"
    return property_text(params, key, source)


# ------------------------------------------------------------------------------------ actors


def _actors(params: Params, spec: RetentionSpec, query: query_pb2.RetentionQuery, ctx: Context) -> str:
    """Rows (actor, bv, starts, rets): cohort and return period indexes (0-based, distinct)."""
    n = params.bind(ctx.dates.grid.bucket_count(), "Int64")
    inside = f"i >= 0 AND i < {n}"
    if spec.retention_type == "recurring":
        starts = f"arrayDistinct(groupArrayIf(i, is_t = 1 AND {inside}))"
    else:
        # The first target event's period (argMin: the events of one instant share a period).
        flag = "is_t" if spec.retention_type == "first_time" else "is_b"
        first = f"argMinIf(i, t, {flag} = 1)"
        ok = f"countIf(is_t = 1) > 0 AND {first} >= 0 AND {first} < {n}"
        if spec.retention_type == "first_ever_occurrence":
            # The first-ever target event must itself match the entity's filters.
            ok += " AND minIf(t, is_b = 1) = minIf(t, is_t = 1)"
        starts = f"if({ok}, [{first}], emptyArrayInt64())"
    returned = f"groupArrayIf(i, is_r = 1 AND {inside})"
    if spec.minimum_occurrences > 1:
        least = params.bind(spec.minimum_occurrences, "UInt64")
        returns = f"arrayFilter(x -> countEqual(R, x) >= {least}, arrayDistinct(R))"
        returns = f"arrayMap(R -> {returns}, [{returned}])[1]"
    else:
        returns = f"arrayDistinct({returned})"
    return (
        f"SELECT actor, bv, CAST({starts}, 'Array(Int64)') AS starts, CAST({returns}, 'Array(Int64)') AS rets "
        f"FROM ({_events(params, spec, query, ctx)}) GROUP BY actor, bv"
    )


def _rolling(params: Params, spec: RetentionSpec, query: query_pb2.RetentionQuery, ctx: Context) -> str:
    """24-hour windows: rows (actor, bv, s, ks). One cohort per actor (and value): the period of its
    anchor, the first target event in the window (first-time types: the first of all time, when in
    the window); `ks` 0 and every window k (elapsed time since the anchor divided by the period's
    window) below totalIntervals with a returning event in the window (with minimumOccurrences, at
    least that many)."""
    n = params.bind(ctx.dates.grid.bucket_count(), "Int64")
    inside = f"i >= 0 AND i < {n}"
    if spec.retention_type == "recurring":
        first = f"argMinIf(i, t, is_t = 1 AND {inside})"
        anchor = f"minIf(toUnixTimestamp64Micro(t), is_t = 1 AND {inside})"
        ok = f"countIf(is_t = 1 AND {inside}) > 0"
    else:
        flag = "is_t" if spec.retention_type == "first_time" else "is_b"
        first = f"argMinIf(i, t, {flag} = 1)"
        anchor = "minIf(toUnixTimestamp64Micro(t), is_t = 1)"
        ok = f"countIf(is_t = 1) > 0 AND {first} >= 0 AND {first} < {n}"
        if spec.retention_type == "first_ever_occurrence":
            ok += " AND minIf(t, is_b = 1) = minIf(t, is_t = 1)"
    returned = f"groupArrayIf(toUnixTimestamp64Micro(t), is_r = 1 AND {inside})"
    actors = (
        f"SELECT actor, bv, {first} AS s, {anchor} AS t0, {returned} AS R FROM ({_events(params, spec, query, ctx)}) "
        f"GROUP BY actor, bv HAVING {ok}"
    )
    window = params.bind(WINDOW_SECONDS[spec.period] * 1_000_000, "Int64")
    total = params.bind(spec.total_intervals, "Int64")
    windows = f"arrayMap(r -> intDiv(r - t0, {window}), arrayFilter(r -> r >= t0, R))"
    least = params.bind(spec.minimum_occurrences, "UInt64")
    kept = f"arrayFilter(k -> k > 0 AND k < {total} AND countEqual(K, k) >= {least}, arrayDistinct(K))"
    ks = f"arrayConcat([toInt64(0)], arrayMap(K -> {kept}, [{windows}])[1])"
    return f"SELECT actor, bv, toInt64(s) AS s, CAST({ks}, 'Array(Int64)') AS ks FROM ({actors})"


def _walks(params: Params, spec: RetentionSpec, query: query_pb2.RetentionQuery, ctx: Context) -> str:
    """Rows (actor, bv, s, k): the person counts in cohort `s` at `k` periods after its start."""
    if spec.rolling:
        return f"SELECT actor, bv, s, k FROM ({_rolling(params, spec, query, ctx)}) ARRAY JOIN ks AS k"
    total = params.bind(spec.total_intervals, "Int64")
    later = f"arrayFilter(x -> x > 0 AND x < {total}, arrayMap(r -> r - s, rets))"
    ks = f"arrayConcat([toInt64(0)], {later})"
    if spec.cumulative:
        # Retained at k or later: every period up to the last one the person came back in.
        ks = f"arrayMap(x -> toInt64(x), range(toUInt64(arrayMax({ks})) + 1))"
    per_cohort = (
        f"SELECT actor, bv, s, {ks} AS ks FROM ({_actors(params, spec, query, ctx)}) ARRAY JOIN starts AS s"
    )
    return f"SELECT actor, bv, s, k FROM ({per_cohort}) ARRAY JOIN ks AS k"


def _and(parts: list[str]) -> str:
    useful = [p for p in parts if p and p != "1"]
    return " AND ".join(f"({p})" for p in useful) if useful else "1"
