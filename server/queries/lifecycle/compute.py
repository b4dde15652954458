"""Computes a LifecycleQuery: checks it, runs its one statement, shapes the four series."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import ActionDefinition, DefinitionUnavailable, Execute, QueryContext
from server.queries.common import nodes, sampling
from server.queries.common.dates import QueryDateRange, resolve_date_range
from server.queries.common.errors import QueryError
from server.queries.common.incohort import CohortCompiler
from server.queries.common.sql import Params
from server.queries.lifecycle import sql as lsql
from server.queries.lifecycle.spec import LifecycleSpec, lifecycle_spec
from server.queries.sql.expression import run_statement

# The engine's dates (Date32, DateTime64) hold 1900-2299; one period of margin on each side.
MIN_YEAR, MAX_YEAR = 1901, 2298

TOGGLES = {
    lsql.NEW: query_pb2.LIFECYCLE_TOGGLE_NEW,
    lsql.RETURNING: query_pb2.LIFECYCLE_TOGGLE_RETURNING,
    lsql.RESURRECTING: query_pb2.LIFECYCLE_TOGGLE_RESURRECTING,
    lsql.DORMANT: query_pb2.LIFECYCLE_TOGGLE_DORMANT,
}


@dataclass(frozen=True)
class LifecycleOutcome:
    """A computed lifecycle result and facts about how it was computed."""

    result: results_pb2.LifecycleResult
    date_range: QueryDateRange
    sql: str
    has_more: bool = False


@dataclass(frozen=True)
class _Plan:
    spec: LifecycleSpec
    grid: QueryDateRange
    params: Params
    sql: str


def check_lifecycle(query: query_pb2.LifecycleQuery, ctx: QueryContext) -> None:
    """Raises QueryError (path relative to the query) when `query` is invalid; runs nothing.

    A valid query using an option not computed yet passes (it may be saved); computing it is
    refused (see run_lifecycle).
    """
    spec = lifecycle_spec(query)
    if not spec.later:
        _plan(query, spec, ctx)


def run_lifecycle(query: query_pb2.LifecycleQuery, ctx: QueryContext, execute: Execute) -> LifecycleOutcome:
    """Checks and computes `query`. QueryError when invalid; Unimplemented (naming the field) for
    an option this service does not compute yet."""
    spec = lifecycle_spec(query)
    nodes.refuse_later(query, spec.later, "LifecycleQuery", "LIFECYCLE_OPTION_NOT_IMPLEMENTED")
    plan = _plan(query, spec, ctx)
    rows = run_statement(execute, plan.sql, plan.params)
    action = ctx.definitions.actions.get(spec.series.action_id) if spec.series.action_id is not None else None
    return LifecycleOutcome(_shape(spec, plan.grid, rows, action), plan.grid, plan.sql)


def _plan(query: query_pb2.LifecycleQuery, spec: LifecycleSpec, ctx: QueryContext) -> _Plan:
    dr = query.date_range
    date_from = dr.date_from if dr.HasField("date_from") else None
    grid = resolve_date_range(
        date_from,
        dr.date_to if dr.HasField("date_to") else None,
        explicit_date=spec.exact,
        interval=spec.interval,
        timezone=ctx.timezone,
        week_start_day=ctx.week_start_day,
        now=ctx.now,
        earliest=ctx.earliest() if date_from is not None and date_from.strip() == "all" else None,
    )
    starts = grid.bucket_starts()
    if starts[0].year < MIN_YEAR or starts[-1].year > MAX_YEAR:
        raise QueryError(f"lifecycle periods must fall between {MIN_YEAR} and {MAX_YEAR}", "dateRange")
    params = Params(columns=ctx.materialized)
    cohorts = CohortCompiler(ctx)
    context = lsql.Context(
        ctx.team_id,
        ctx.timezone,
        ctx.week_start_day,
        grid,
        list(ctx.test_account_filters),
        ctx.definitions.actions,
        cohorts,
    )
    sql = lsql.statement(params, spec, query, context)
    # Only now, the whole query checked: an invalid query is INVALID_ARGUMENT whatever cohorts it names.
    cohorts.raise_unavailable()
    return _Plan(spec, grid, params, sql)


# ------------------------------------------------------------------------------------ results


def _shape(
    spec: LifecycleSpec,
    grid: QueryDateRange,
    rows: Sequence[Sequence[Any]],
    action: ActionDefinition | None,
) -> results_pb2.LifecycleResult:
    """Four series in the reference's order, every period of the grid (0 where nobody)."""
    counts = {(int(period), int(status)): sampling.scaled(int(actors), spec.sampling) for period, status, actors in rows}
    series = spec.series
    ident: str | None
    if series.action_id is not None:
        if action is None:  # loaded by the execution layer with the node's references
            raise DefinitionUnavailable("action", series.action_id, "series[0].id")
        ident, kind, name = str(series.action_id), "actions", action.name
        label_name = action.name
    else:
        ident, kind = series.event, "events"
        name = series.event if series.event is not None else "All events"
        label_name = series.event or ""
    days, labels = grid.days(), grid.labels()
    out = results_pb2.LifecycleResult()
    for status, toggle in TOGGLES.items():
        sign = -1 if status == lsql.DORMANT else 1
        data = [float(sign * counts.get((i, status), 0)) for i in range(len(days))]
        item = out.series.add(
            data=data,
            labels=labels,
            days=days,
            count=float(sum(data)),
            label=f"{label_name} - {lsql.STATUSES[status]}",
            status=toggle,
        )
        item.action.type = kind
        item.action.order = 0
        item.action.name = name
        item.action.math = query_pb2.MATH_TYPE_TOTAL
        if ident is not None:
            item.action.id = ident
        if series.custom_name is not None:
            item.action.custom_name = series.custom_name
    return out
