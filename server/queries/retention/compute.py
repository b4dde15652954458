"""Computes a RetentionQuery: checks it, runs its one statement, shapes the cohorts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Execute, QueryContext
from server.queries.common import nodes, sampling
from server.queries.common.breakdown_value import PLAIN, Buckets, as_float, buckets, filter_shapes
from server.queries.common.errors import QueryError
from server.queries.common.incohort import CohortCompiler
from server.queries.common.sql import Params
from server.queries.retention import sql as rsql
from server.queries.retention.dates import RetentionRange, retention_range
from server.queries.retention.spec import RetentionSpec, expression_path, retention_spec
from server.queries.sql.expression import run_statement

# Values one answer may hold at most (cohorts × periods × breakdown values), as trends bounds its
# points; lower than trends' million because each value is a message with its label (~20 bytes).
MAX_VALUES = 200_000


@dataclass(frozen=True)
class RetentionOutcome:
    """A computed retention result and facts about how it was computed."""

    result: results_pb2.RetentionResult
    has_more: bool
    dates: RetentionRange
    sql: str


@dataclass(frozen=True)
class _Plan:
    spec: RetentionSpec
    dates: RetentionRange
    params: Params
    sql: str
    context: rsql.Context


def check_retention(query: query_pb2.RetentionQuery, ctx: QueryContext) -> None:
    """Raises QueryError (path relative to the query) when `query` is invalid; runs nothing.

    A valid query using an option not computed yet passes (it may be saved); computing it is
    refused (see run_retention).
    """
    _plan(query, ctx)


def run_retention(query: query_pb2.RetentionQuery, ctx: QueryContext, execute: Execute) -> RetentionOutcome:
    """Checks and computes `query`. QueryError when invalid; Unimplemented (naming the field) for
    an option this service does not compute yet."""
    plan = _plan(query, ctx)
    nodes.refuse_later(query, plan.spec.later, "RetentionQuery", "RETENTION_OPTION_NOT_IMPLEMENTED")
    hogql = plan.spec.breakdown is not None and plan.spec.breakdown[1] == "hogql"
    paths = (expression_path(query.breakdown_filter),) if hogql else ()
    prelude = ""
    if plan.context.shape.bins:
        # A histogram's buckets come from the numbers' minimum and maximum: one query first,
        # then the plan again with its buckets bound.
        params = Params(columns=ctx.materialized)
        prelude = rsql.histogram_bounds(params, plan.spec, query, plan.context)
        low, high = run_statement(execute, prelude, params, paths)[0]
        plan = _plan(query, ctx, buckets(as_float(low), as_float(high), plan.context.shape.bins))
        prelude += ";\n"
    rows = run_statement(execute, plan.sql, plan.params, paths)
    result, has_more = _shape(plan.spec, plan.dates, rows)
    return RetentionOutcome(result, has_more, plan.dates, prelude + plan.sql)


def _plan(query: query_pb2.RetentionQuery, ctx: QueryContext, grid: Buckets | None = None) -> _Plan:
    spec = retention_spec(query)
    date_from = query.date_range.date_from if query.date_range.HasField("date_from") else None
    dates = retention_range(
        query.date_range,
        period=spec.period,
        total_intervals=spec.total_intervals,
        timezone=ctx.timezone,
        week_start_day=ctx.week_start_day,
        now=ctx.now,
        earliest=ctx.earliest() if date_from is not None and date_from.strip() == "all" else None,
    )
    cohorts = dates.grid.bucket_count()
    lines = spec.limit + 1 if spec.breakdown is not None else 1
    if cohorts * spec.total_intervals * lines > MAX_VALUES:
        raise QueryError(
            f"this query could return {cohorts * spec.total_intervals * lines:,} values ({cohorts:,} cohorts of "
            f"{spec.total_intervals:,} periods, {lines:,} breakdown values), more than {MAX_VALUES:,}: narrow the "
            "date range, use a longer period, fewer totalIntervals or a lower breakdown_limit",
            "dateRange",
        )
    threshold = sampling.threshold(spec.sampling)
    params = Params(columns=ctx.materialized)
    members = CohortCompiler(ctx)
    context = rsql.Context(
        ctx.team_id,
        ctx.timezone,
        ctx.week_start_day,
        dates,
        list(ctx.test_account_filters),
        ctx.definitions.actions,
        threshold,
        members,
        filter_shapes(query.breakdown_filter)[0] if spec.breakdown is not None else PLAIN,
        grid,
    )
    sql = rsql.statement(params, spec, query, context)
    # Only now, the whole query checked: an invalid one is INVALID_ARGUMENT whatever cohorts it names.
    members.raise_unavailable()
    return _Plan(spec, dates, params, sql, context)


# ------------------------------------------------------------------------------------ results


def _shape(
    spec: RetentionSpec, dates: RetentionRange, rows: Sequence[Sequence[Any]]
) -> tuple[results_pb2.RetentionResult, bool]:
    """Every cohort of every value, each with totalIntervals values (periods not reached yet: 0)."""
    counts: dict[str, dict[tuple[int, int], int]] = {}
    ranks: dict[str, int] = {}
    has_more = False
    for value, s, k, c, rank, cut in rows:
        key = str(value)
        counts.setdefault(key, {})[(int(s), int(k))] = sampling.scaled(int(c), spec.sampling)
        ranks[key] = min(int(rank), ranks.get(key, int(rank)))
        has_more = has_more or bool(cut)
    if spec.breakdown is None:
        values: list[str | None] = [None]
    else:
        ordered = sorted(ranks, key=lambda v: (ranks[v], v))
        values = [v for v in ordered if not (spec.hide_other and v == rsql.OTHER_LABEL)]
    name = spec.period.title()
    starts = dates.starts()
    out = results_pb2.RetentionResult()
    for value in values:
        found = counts.get(value if value is not None else "", {})
        for i, start in enumerate(starts):
            cohort = out.cohorts.add(date=start.isoformat(), label=f"{name} {i}")
            for k in range(spec.total_intervals):
                cohort.values.add(count=found.get((i, k), 0), label=f"{name} {k}")
            if value is not None:
                cohort.breakdown_value.string_value = value
    return out, has_more

