"""Computes a StickinessQuery: checks it, runs its one statement, shapes one item per series."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import ActionDefinition, Execute, QueryContext
from server.queries.common import nodes, sampling
from server.queries.common.dates import QueryDateRange, compare_range, resolve_date_range
from server.queries.common.incohort import CohortCompiler
from server.queries.common.sql import Params
from server.queries.sql.expression import run_statement
from server.queries.stickiness import sql as ssql
from server.queries.stickiness.spec import Series, StickinessSpec, stickiness_spec


@dataclass(frozen=True)
class StickinessOutcome:
    """A computed stickiness result and facts about how it was computed."""

    result: results_pb2.StickinessResult
    has_more: bool
    date_range: QueryDateRange
    sql: str


@dataclass(frozen=True)
class _Plan:
    spec: StickinessSpec
    dates: QueryDateRange
    compared: bool  # the ranges are (current, previous)
    params: Params
    sql: str


def check_stickiness(query: query_pb2.StickinessQuery, ctx: QueryContext) -> None:
    """Raises QueryError (path relative to the query) when `query` is invalid; runs nothing.

    A valid query using an option not computed yet passes (it may be saved); computing it is
    refused (see run_stickiness).
    """
    _plan(query, ctx)


def run_stickiness(query: query_pb2.StickinessQuery, ctx: QueryContext, execute: Execute) -> StickinessOutcome:
    """Checks and computes `query`. QueryError when invalid; Unimplemented (naming the field) for
    an option this service does not compute yet."""
    plan = _plan(query, ctx)
    nodes.refuse_later(query, plan.spec.later, "StickinessQuery", "STICKINESS_OPTION_NOT_IMPLEMENTED")
    rows = run_statement(execute, plan.sql, plan.params)
    result = _shape(plan.spec, plan.dates, plan.compared, rows, ctx.definitions.actions)
    return StickinessOutcome(result, False, plan.dates, plan.sql)


def _plan(query: query_pb2.StickinessQuery, ctx: QueryContext) -> _Plan:
    spec = stickiness_spec(query)
    dr = query.date_range
    date_from = dr.date_from if dr.HasField("date_from") else None
    # Minute (refused later) resolves as day here so that the query can still be checked and saved.
    interval = spec.interval if spec.interval != "minute" else "day"
    dates = resolve_date_range(
        date_from,
        dr.date_to if dr.HasField("date_to") else None,
        explicit_date=dr.explicit_date,
        interval=interval,
        timezone=ctx.timezone,
        week_start_day=ctx.week_start_day,
        now=ctx.now,
        earliest=ctx.earliest() if date_from is not None and date_from.strip() == "all" else None,
    )
    ranges = [dates]
    compared = spec.compare and (date_from is None or date_from.strip() != "all")
    if compared:
        # As the reference: compare is disabled when date_from is "all". Same bucket count, so the
        # previous item has the same N.
        ranges.append(
            compare_range(
                dates,
                date_from=date_from,
                date_to=dr.date_to if dr.HasField("date_to") else None,
                compare_to=spec.compare_to,
                now=ctx.now,
            )
        )
    threshold = sampling.threshold(spec.sampling)
    params = Params(columns=ctx.materialized)
    members = CohortCompiler(ctx)
    context = ssql.Context(
        ctx.team_id, ctx.timezone, dates, list(ctx.test_account_filters), ctx.definitions.actions, threshold, members
    )
    sql = ssql.statement(params, spec, query, context, ranges) if not spec.later else ""
    # After compiling the whole query: an invalid one is INVALID_ARGUMENT whatever cohorts it names.
    members.raise_unavailable()
    return _Plan(spec, dates, compared, params, sql)


# ------------------------------------------------------------------------------------ results


def _shape(
    spec: StickinessSpec,
    dates: QueryDateRange,
    compared: bool,
    rows: Sequence[Sequence[Any]],
    actions: Mapping[int, ActionDefinition],
) -> results_pb2.StickinessResult:
    """One item per series (compared: its current then its previous item, interleaved as the
    reference), data for 1..N periods zero-filled (cumulative: N or more)."""
    n = ssql.periods(spec, dates)
    found: dict[tuple[int, int], int] = {}
    for s, k, actors in rows:
        found[(int(s), int(k))] = sampling.scaled(int(actors), spec.sampling)
    out = results_pb2.StickinessResult()
    compare_labels = ["current", "previous"] if compared else [""]
    for series in spec.series:
        for r, compare_label in enumerate(compare_labels):
            exact = [found.get((series.index * len(compare_labels) + r, k), 0) for k in range(1, n + 1)]
            data = [sum(exact[i:]) for i in range(n)] if spec.cumulative else exact
            item = out.series.add(
                data=[float(v) for v in data],
                days=list(range(1, n + 1)),
                labels=[label(k, spec) for k in range(1, n + 1)],
                count=float(sum(exact)),
                label=series_label(series, actions),
            )
            if compare_label:
                item.compare = True
                item.compare_label = compare_label
            _describe(item.action, series, actions)
    return out


def label(k: int, spec: StickinessSpec) -> str:
    """ "1 day", "3 weeks" ("3 weeks or more" cumulative); with intervalCount c > 1, "2 periods of 3 days"."""
    unit = spec.interval
    if spec.interval_count == 1:
        text = f"{k} {unit}{'' if k == 1 else 's'}"
    else:
        text = f"{k} period{'' if k == 1 else 's'} of {spec.interval_count} {unit}s"
    return f"{text} or more" if spec.cumulative else text


def series_label(series: Series, actions: Mapping[int, ActionDefinition]) -> str:
    """The custom name, else the action's stored name (the node's name if it is gone), else the
    node's name, else the event name ("All events" without one)."""
    if series.custom_name:
        return series.custom_name
    if series.action_id is not None:
        action = actions.get(series.action_id)
        return action.name if action is not None else (series.name or "")
    if series.name:
        return series.name
    return series.event if series.event is not None else "All events"


def _describe(action: results_pb2.SeriesAction, series: Series, actions: Mapping[int, ActionDefinition]) -> None:
    """The reference's `action` object of an item: the series definition it was computed from."""
    action.order = series.index
    if series.action_id is not None:
        action.type = "actions"
        action.id = str(series.action_id)
    else:
        action.type = "events"
        if series.event is not None:
            action.id = series.event
    action.name = series_label(series, actions)
    if series.custom_name:
        action.custom_name = series.custom_name

