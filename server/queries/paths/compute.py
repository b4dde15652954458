"""Computes a PathsQuery: checks it, runs its one statement, keeps the edges reachable from a first step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Execute, QueryContext
from server.queries.common import nodes
from server.queries.common.dates import QueryDateRange, resolve_date_range
from server.queries.common.incohort import CohortCompiler
from server.queries.common.sql import Params
from server.queries.funnels import sql as fsql
from server.queries.funnels.compute import funnel_context
from server.queries.paths import sql as psql
from server.queries.paths.spec import EXPRESSION_PATH, PathsSpec, paths_spec
from server.queries.sql.expression import run_statement


@dataclass(frozen=True)
class PathsOutcome:
    """A computed paths result and facts about how it was computed."""

    result: results_pb2.PathsResult
    date_range: QueryDateRange
    sql: str
    has_more: bool = False


@dataclass(frozen=True)
class Plan:
    """A statement over a paths query, ready to run."""

    spec: PathsSpec
    grid: QueryDateRange
    params: Params
    sql: str


def check_paths(query: query_pb2.PathsQuery, ctx: QueryContext) -> None:
    """Raises QueryError (path relative to the query) when `query` is invalid; runs nothing."""
    spec = paths_spec(query)
    if not spec.later:
        plan(query, spec, ctx)


def run_paths(query: query_pb2.PathsQuery, ctx: QueryContext, execute: Execute) -> PathsOutcome:
    """Checks and computes `query`. QueryError when invalid; Unimplemented (naming the field) for
    an option this service does not compute yet."""
    spec = paths_spec(query)
    nodes.refuse_later(query, spec.later, "PathsQuery", "PATHS_OPTION_NOT_IMPLEMENTED")
    edges = plan(query, spec, ctx)
    paths = (EXPRESSION_PATH,) if spec.expression is not None else ()
    rows = run_statement(execute, edges.sql, edges.params, paths)
    return PathsOutcome(shape(rows), edges.grid, edges.sql)


# Builds a statement over the checked query: psql.statement (the edges) or a drill-down's.
Build = Callable[[Params, PathsSpec, query_pb2.PathsQuery, psql.Context], str]


def plan(query: query_pb2.PathsQuery, spec: PathsSpec, ctx: QueryContext, build: Build = psql.statement) -> Plan:
    """The statement `build` makes of `query`, with its range and bound parameters; the cohorts and
    funnel it names are compiled alike for every statement over the same paths."""
    dr = query.date_range
    date_from = dr.date_from if dr.HasField("date_from") else None
    # Paths count whole days: the range starts at the start of date_from's day (§8.1), unless
    # explicitDate asks for the exact range (both ends as given, as in trends).
    grid = resolve_date_range(
        date_from,
        dr.date_to if dr.HasField("date_to") else None,
        explicit_date=dr.explicit_date,
        interval="day",
        timezone=ctx.timezone,
        week_start_day=ctx.week_start_day,
        now=ctx.now,
        earliest=ctx.earliest() if date_from is not None and date_from.strip() == "all" else None,
    )
    params = Params(columns=ctx.materialized)
    cohorts = CohortCompiler(ctx)
    funnel_sql = None
    unavailable = []
    if spec.funnel is not None:
        # The funnel's own walk (its steps, exclusions, window, range and filters), with the
        # person and the step times, in the same statement.
        source = query.funnel_paths_filter.funnel_source
        fctx = funnel_context(source, spec.funnel.source, ctx, cohorts)
        funnel_sql = fsql.walks(params, spec.funnel.source, source, fctx, stamps=True)
        unavailable = fctx.unavailable
    context = psql.Context(ctx.team_id, ctx.timezone, grid, list(ctx.test_account_filters), cohorts, funnel_sql)
    sql = build(params, spec, query, context)
    # Only now, the whole query checked: an invalid query is INVALID_ARGUMENT whatever cohorts or
    # actions it names.
    cohorts.raise_unavailable()
    if unavailable:
        raise unavailable[0]
    return Plan(spec, grid, params, sql)


def shape(rows: Sequence[Sequence[Any]]) -> results_pb2.PathsResult:
    """The edges in the statement's order, keeping those reachable from a node "1_..." (the edge
    limit can cut a path's earlier edges and orphan the later ones)."""
    edges = [(str(s), str(t), int(v), float(g)) for s, t, v, g in rows]
    out_of: dict[str, list[str]] = {}
    for source, target, _, _ in edges:
        out_of.setdefault(source, []).append(target)
    reached = {source for source, *_ in edges if source.startswith("1_")}
    stack = list(reached)
    while stack:
        for target in out_of.get(stack.pop(), []):
            if target not in reached:
                reached.add(target)
                stack.append(target)
    out = results_pb2.PathsResult()
    for source, target, value, gap in edges:
        if source in reached:
            # The gap is in microseconds; the reference reports milliseconds.
            out.edges.add(source=source, target=target, value=float(value), average_conversion_time=gap / 1000)
    return out
