"""The trends visualisation of a funnel: per entrance period, the actors who reached funnelFromStep
and funnelToStep and the conversion rate between them (query-engine-semantics §4.5), over the
per-person walk of the steps view run once per person and entrance period."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.common import sampling
from server.queries.common.cohort_breakdown import cohort_name
from server.queries.common.cohorts import CohortDefinition
from server.queries.common.dates import QueryDateRange
from server.queries.common.sql import Params
from server.queries.funnels import sql as fsql
from server.queries.funnels.spec import FunnelSpec

NONE_LABEL = "None"  # an empty breakdown value, as the reference's funnel trends show it
_TRUNCATE = {"minute": "toStartOfMinute", "hour": "toStartOfHour"}


def period_index(params: Params, dates: QueryDateRange) -> Callable[[str], str]:
    """The SQL of the 0-based index, in the date range's grid, of the period holding an instant
    given in µs since the epoch (the environment's time zone and week start).

    Day, week and month count calendar units between local dates; minutes and hours are looked
    up among the grid's instants, so DST folds and half-hour zones need no arithmetic (as
    stickiness). Every event of the range falls inside the grid.
    """
    tz = params.bind(dates.timezone, "String")
    starts = dates.bucket_starts()
    interval = dates.interval
    if interval in _TRUNCATE:
        grid = params.bind([int(s.timestamp()) for s in starts], "Array(Int64)")
        truncate = _TRUNCATE[interval]
        return lambda t: (
            f"(toInt64(indexOf({grid}, toInt64(toUnixTimestamp({truncate}(fromUnixTimestamp64Micro({t}, {tz})))))) - 1)"
        )
    start = params.bind(starts[0].date().isoformat(), "Date32")
    if interval == "day":
        return lambda t: f"dateDiff('day', {start}, toDate(fromUnixTimestamp64Micro({t}, {tz})))"
    if interval == "week":
        mode = params.bind(3 if dates.week_start_day == 1 else 0, "UInt8")
        return lambda t: (
            f"intDiv(dateDiff('day', {start}, toStartOfWeek(fromUnixTimestamp64Micro({t}, {tz}), {mode})), 7)"
        )
    return lambda t: f"dateDiff('month', {start}, toStartOfMonth(fromUnixTimestamp64Micro({t}, {tz})))"


def statement(
    params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: fsql.Context
) -> str:
    """SQL returning (value, period, reached_from, reached_to, rank) per breakdown value and
    entrance period with an entry, for the top `limit` values and one more (so that a cut shows).

    An actor reached step k in a period when the furthest step of their walk for that period is
    k or later: its highest completed-step bit is k or higher, i.e. bits >= 2^k (optional steps
    skipped on the way count, as the reference's steps_completed). Values are ranked by their
    actors reaching funnelFromStep over all periods, descending, then by value descending.
    """
    walks = fsql.walks(params, spec, query, ctx, period_index(params, ctx.dates))
    reached_from = f"bits >= {params.bind(1 << spec.from_step, 'UInt32')}"
    reached_to = f"bits >= {params.bind(1 << spec.to_step, 'UInt32')}"
    per = (
        f"SELECT value, period, countIf({reached_from}) AS rf, countIf({reached_to}) AS rt "
        f"FROM ({walks}) GROUP BY value, period"
    )
    totals = f"SELECT *, sum(rf) OVER (PARTITION BY value) AS total FROM ({per})"
    # A cohort's value is its id as text: ranked as the number (the reference's id, descending).
    tie = "toUInt64(value[1])" if spec.cohorts is not None else "value"
    ranked = f"SELECT *, dense_rank() OVER (ORDER BY total DESC, {tie} DESC) AS r FROM ({totals})"
    cut = params.bind(spec.limit + 1, "UInt64")
    return f"SELECT value, period, rf, rt, r FROM ({ranked}) WHERE r <= {cut} ORDER BY r, period"


def shape(
    spec: FunnelSpec,
    dates: QueryDateRange,
    rows: Sequence[Sequence[Any]],
    cohorts: Mapping[int, CohortDefinition] | None = None,
) -> tuple[results_pb2.FunnelsResult, bool]:
    """One series per breakdown value (one without a breakdown, zero-filled when nobody entered),
    each over every period of the grid; and whether values were cut. `cohorts` names a cohort
    breakdown's values."""
    periods = dates.bucket_count()
    found: dict[int, tuple[list[str], list[int], list[int]]] = {}
    has_more = False
    for value, period, rf, rt, rank in rows:
        if int(rank) > spec.limit:
            has_more = True
            continue
        series = found.setdefault(int(rank), (list(value), [0] * periods, [0] * periods))
        series[1][int(period)] = int(rf)
        series[2][int(period)] = int(rt)
    groups = [found[r] for r in sorted(found)]
    if spec.breakdown is None and not groups:
        groups = [([], [0] * periods, [0] * periods)]
    out = results_pb2.FunnelTrendsResult()
    days, labels = dates.days(), dates.labels()
    for value, entered, converted in groups:
        item = out.series.add(count=periods)
        item.data.extend(conversion_rate(f, t) for f, t in zip(entered, converted, strict=True))
        item.days.extend(days)
        item.labels.extend(labels)
        item.reached_from_step_count.extend(sampling.scaled(c, spec.sampling) for c in entered)
        item.reached_to_step_count.extend(sampling.scaled(c, spec.sampling) for c in converted)
        if spec.cohorts is not None:
            # As the reference: a cohort's series carries the cohort's name ("all users" for 0).
            item.breakdown_value.string_value = cohort_name(int(value[0]), cohorts or {})
        elif spec.breakdown is not None:
            item.breakdown_value.list_value.values.extend(
                query_pb2.Scalar(string_value=v or NONE_LABEL) for v in value
            )
    return results_pb2.FunnelsResult(trends=out, is_udf=True), has_more


def conversion_rate(reached_from: int, reached_to: int) -> float:
    """Percent of the actors who reached funnelFromStep that reached funnelToStep, 2 decimals;
    0 when nobody reached funnelFromStep (as the reference). Sampling scales both alike."""
    return round(100 * reached_to / reached_from, 2) if reached_from else 0.0

