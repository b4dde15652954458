"""Computes a FunnelsQuery (steps, time_to_convert or trends visualisation): checks it, runs its one statement, shapes the result."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import ActionDefinition, Execute, QueryContext
from server.queries.common import nodes, sampling
from server.queries.common.breakdown_value import Buckets, as_float, buckets, filter_shapes
from server.queries.common.cohort_breakdown import cohort_name
from server.queries.common.cohorts import CohortDefinition
from server.queries.common.dates import QueryDateRange, resolve_date_range
from server.queries.common.incohort import CohortCompiler
from server.queries.common.sql import Params
from server.queries.funnels import sql as fsql
from server.queries.funnels import trends_view, ttc
from server.queries.funnels.spec import FunnelSpec, funnel_spec, spec_node
from server.queries.sql.expression import run_statement


@dataclass(frozen=True)
class FunnelsOutcome:
    """A computed funnel and facts about how it was computed."""

    result: results_pb2.FunnelsResult
    has_more: bool
    date_range: QueryDateRange
    sql: str


@dataclass(frozen=True)
class _Plan:
    spec: FunnelSpec
    dates: QueryDateRange
    params: Params
    sql: str
    context: fsql.Context
    # The histogram dimensions whose buckets are still to be found (their bounds queried).
    histograms: list[int]


def check_funnels(query: query_pb2.FunnelsQuery, ctx: QueryContext) -> None:
    """Raises QueryError (path relative to the query) when `query` is invalid; runs nothing.

    A valid funnel using an option not computed yet passes (it may be saved); computing it is
    refused (see run_funnels).
    """
    _plan(query, ctx)


def run_funnels(query: query_pb2.FunnelsQuery, ctx: QueryContext, execute: Execute) -> FunnelsOutcome:
    """Checks and computes `query`. QueryError when invalid; Unimplemented (naming the field) for
    an option this service does not compute yet."""
    plan = _plan(query, ctx)
    nodes.refuse_later(query, plan.spec.later, "FunnelsQuery", "FUNNEL_OPTION_NOT_IMPLEMENTED")
    prelude = ""
    if plan.histograms:
        # A histogram's buckets come from the numbers' minimum and maximum: one query first,
        # then the plan again with its buckets bound.
        params = Params(columns=ctx.materialized)
        prelude = fsql.histogram_bounds(params, plan.spec, query, plan.context)
        row = _execute(plan.spec, prelude, params, execute)[0]
        grids: list[Buckets | None] = [None] * len(plan.context.shapes)
        for j, i in enumerate(plan.histograms):
            grids[i] = buckets(as_float(row[2 * j]), as_float(row[2 * j + 1]), plan.context.shapes[i].bins)
        plan = _plan(query, ctx, tuple(grids))
        prelude += ";\n"
    rows = _execute(plan.spec, plan.sql, plan.params, execute)
    if plan.spec.viz == "time_to_convert":
        return FunnelsOutcome(ttc.shape(plan.spec, rows), False, plan.dates, prelude + plan.sql)
    if plan.spec.viz == "trends":
        trends, cut = trends_view.shape(plan.spec, plan.dates, rows, ctx.definitions.cohorts)
        return FunnelsOutcome(trends, cut, plan.dates, prelude + plan.sql)
    result, has_more = _shape(plan.spec, query, rows, ctx.definitions.cohorts)
    name_actions(result, query, ctx.definitions.actions)
    return FunnelsOutcome(result, has_more, plan.dates, prelude + plan.sql)


def _execute(spec: FunnelSpec, sql: str, params: Params, execute: Execute) -> Any:
    """A statement's rows; an engine error about the caller's HogQL expressions in it (an
    aggregation, hogql breakdowns, hogql property filters) is INVALID_ARGUMENT naming the first."""
    return run_statement(execute, sql, params, spec.expressions)


def _plan(query: query_pb2.FunnelsQuery, ctx: QueryContext, grids: tuple[Buckets | None, ...] = ()) -> _Plan:
    spec = funnel_spec(query)
    params = Params(columns=ctx.materialized)
    members = CohortCompiler(ctx)
    context = funnel_context(query, spec, ctx, members)
    if spec.breakdown is not None and spec.cohorts is None:
        context = dataclasses.replace(context, shapes=filter_shapes(query.breakdown_filter), grids=grids)
    build = {"time_to_convert": ttc.statement, "trends": trends_view.statement}.get(spec.viz, fsql.statement)
    sql = build(params, spec, query, context)
    # Only now, the whole funnel checked: an invalid one is INVALID_ARGUMENT whatever cohorts it names.
    members.raise_unavailable()
    if context.unavailable:
        raise context.unavailable[0]
    histograms = [i for i, shape in enumerate(context.shapes) if shape.bins]
    return _Plan(spec, context.dates, params, sql, context, histograms if not grids else [])


def funnel_context(
    query: query_pb2.FunnelsQuery, spec: FunnelSpec, ctx: QueryContext, members: CohortCompiler
) -> fsql.Context:
    """Where and over what `query`'s statement runs: its date range in the environment's time
    zone, its sampling, the actions and cohorts (`members`) it names (also for funnel paths)."""
    date_from = query.date_range.date_from if query.date_range.HasField("date_from") else None
    date_to = query.date_range.date_to if query.date_range.HasField("date_to") else None
    dates = resolve_date_range(
        date_from,
        date_to,
        explicit_date=query.date_range.explicit_date,
        interval=spec.interval,
        timezone=ctx.timezone,
        week_start_day=ctx.week_start_day,
        now=ctx.now,
        earliest=ctx.earliest() if date_from == "all" else None,
    )
    threshold = sampling.threshold(spec.sampling)
    return fsql.Context(ctx.team_id, dates, list(ctx.test_account_filters), threshold, members, ctx.definitions.actions)


# ------------------------------------------------------------------------------------ results


def _number(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def _shape(
    spec: FunnelSpec,
    query: query_pb2.FunnelsQuery,
    rows: Sequence[Sequence[Any]],
    cohorts: Mapping[int, CohortDefinition],
) -> tuple[results_pb2.FunnelsResult, bool]:
    n = len(spec.steps)
    groups = []
    has_more = False
    for row in rows:
        value, cut = list(row[0]), bool(row[1])
        counts = [int(c) for c in row[2 : 2 + n]]
        means = [_number(v) for v in row[2 + n : 1 + 2 * n]]
        medians = [_number(v) for v in row[1 + 2 * n : 3 * n]]
        has_more = has_more or cut
        groups.append((value, counts, [None, *means], [None, *medians]))
    # As the reference: the furthest step's count first, then the earlier steps' (then the value,
    # so that equal counts come in one order).
    # A cohort breakdown's equal counts come in the order the cohorts are listed.
    listed = {str(cohort_id): i for i, (cohort_id, _) in enumerate(spec.cohorts or ())}
    groups.sort(key=lambda g: (*(-c for c in reversed(g[1])), listed.get(g[0][0], 0) if listed else 0, g[0]))
    if spec.breakdown is None and not groups:
        groups = [([], [0] * n, [None] * n, [None] * n)]
    out = results_pb2.FunnelStepsResult()
    for value, counts, means, medians in groups:
        steps = out.breakdowns.add()
        for k in range(n):
            steps.steps.append(_step(spec, query, k, counts[k], means[k], medians[k], value, cohorts))
    return results_pb2.FunnelsResult(steps=out, is_udf=True), has_more


def _step(
    spec: FunnelSpec,
    query: query_pb2.FunnelsQuery,
    k: int,
    count: int,
    mean: float | None,
    median: float | None,
    value: list[str],
    cohorts: Mapping[int, CohortDefinition],
) -> results_pb2.FunnelStep:
    node = spec.steps[k].node
    step = results_pb2.FunnelStep(order=k, count=sampling.scaled(count, spec.sampling), type="events")
    if isinstance(node, query_pb2.ActionsNode):
        step.type = "actions"  # unordered funnels too: the reference types a step by its node
    if spec.order == "unordered":
        step.name = f"Completed {k + 1} step{'s' if k else ''}"
    else:
        if isinstance(node, query_pb2.ActionsNode):
            # The action's id; its name is the stored action's (name_actions).
            step.action_id.int_value = node.id
        elif node.HasField("event"):
            step.action_id.string_value = node.event
            step.name = node.event
        if node.HasField("custom_name"):
            step.custom_name = node.custom_name
    if k > 0 and mean is not None:
        step.average_conversion_time = mean
    if k > 0 and median is not None:
        step.median_conversion_time = median
    if spec.cohorts is not None:
        # As the reference: the cohort's name shown, its id the value (0: all users).
        step.breakdown.string_value = cohort_name(int(value[0]), cohorts)
        step.breakdown_value.int_value = int(value[0])
    elif spec.breakdown is not None:
        step.breakdown.list_value.values.extend(_scalars(value))
        step.breakdown_value.list_value.values.extend(_scalars(value))
    return step


def _scalars(value: list[str]) -> list[query_pb2.Scalar]:
    return [query_pb2.Scalar(string_value=v) for v in value]



def name_actions(
    result: results_pb2.FunnelsResult, query: query_pb2.FunnelsQuery, actions: Mapping[int, ActionDefinition]
) -> None:
    """Action steps named as their stored action is now (insights-api-behaviour §6.11)."""
    if query.funnels_filter.funnel_order_type == query_pb2.FUNNEL_ORDER_TYPE_UNORDERED:
        return
    for group in result.steps.breakdowns:
        for step in group.steps:
            if step.order >= len(query.series) or query.series[step.order].WhichOneof("node") != "actions_node":
                continue
            action = actions.get(query.series[step.order].actions_node.id)
            if action is not None:
                step.name = action.name


def relabel(
    result: results_pb2.InsightResult,
    query: query_pb2.FunnelsQuery,
    actions: Mapping[int, ActionDefinition] | None = None,
) -> None:
    """The caller's step names (custom_name, outside the cache key) on a computed funnel."""
    if query.funnels_filter.funnel_order_type == query_pb2.FUNNEL_ORDER_TYPE_UNORDERED:
        return
    if not result.funnels.HasField("steps"):
        return
    for group in result.funnels.steps.breakdowns:
        for step in group.steps:
            if step.order >= len(query.series):
                continue
            node = spec_node(query.series[step.order])
            if node.HasField("custom_name"):
                step.custom_name = node.custom_name
            else:
                step.ClearField("custom_name")
    name_actions(result.funnels, query, actions or {})
