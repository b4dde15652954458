"""Computes a TrendsQuery: validates it, runs one statement per series and period, shapes the result."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import ActionDefinition, Execute, QueryContext
from server.queries.common import nodes, sampling
from server.queries.common.breakdown_value import (
    MAX_BINS,
    PLAIN,
    Buckets,
    as_float,
    buckets,
    filter_shapes,
    shaped_field,
)
from server.queries.common.cohort_breakdown import cohort_name, is_cohort_breakdown, listed_cohorts
from server.queries.common.dates import MAX_BUCKETS, QueryDateRange, compare_range, resolve_date_range
from server.queries.common.errors import QueryError
from server.queries.common.formula import parse_formula
from server.queries.common.incohort import CohortCompiler
from server.queries.common.sql import Params
from server.queries.sql.expression import check_expression, run_statement
from server.queries.trends import sql as tsql
from server.queries.trends.smoothing import smooth

M = query_pb2

TOTAL_VALUE_DISPLAYS = frozenset(
    {
        M.CHART_DISPLAY_TYPE_BOLD_NUMBER,
        M.CHART_DISPLAY_TYPE_ACTIONS_PIE,
        M.CHART_DISPLAY_TYPE_ACTIONS_BAR_VALUE,
        M.CHART_DISPLAY_TYPE_ACTIONS_TABLE,
        M.CHART_DISPLAY_TYPE_WORLD_MAP,
    }
)
DEFAULT_BREAKDOWN_LIMIT = 25
# Values one answer may hold at most (lines × intervals): about 30-40 MB of response, and the engine
# rows, Python objects and cached bytes behind it. Each part has its own bound too (series, the
# breakdown limit, buckets); this bounds their product.
MAX_POINTS = 1_000_000
# Bounds that keep one query's work and answer in proportion (docs/decisions.md, "Query bounds").
MAX_BREAKDOWN_LIMIT = 1000
MAX_SERIES = 100
MAX_FORMULAS = 100
MAX_BREAKDOWNS = 3
# trendsFilter.smoothingIntervals: 1 (or unset) leaves the line as computed; a window longer than
# the longest line (MAX_BUCKETS) would average nothing more, so larger values are refused.
MAX_SMOOTHING_INTERVALS = MAX_BUCKETS
_SUPPORTED_BREAKDOWN_TYPES: dict[int, str] = {
    M.BREAKDOWN_TYPE_UNSPECIFIED: "event",
    M.BREAKDOWN_TYPE_EVENT: "event",
    M.BREAKDOWN_TYPE_PERSON: "person",
    M.BREAKDOWN_TYPE_HOGQL: "hogql",  # the key is a HogQL expression of the event (sql/expression.py)
}
_MATH_NAMES: dict[int, str] = {
    v.number: v.name.removeprefix("MATH_TYPE_").lower() for v in M.MathType.DESCRIPTOR.values
}


@dataclass(frozen=True)
class TrendsOutcome:
    """A computed trends result and facts about how it was computed."""

    result: results_pb2.TrendsResult
    has_more: bool
    date_range: QueryDateRange
    sql: str


@dataclass
class _Item:
    """One result line before it becomes a message."""

    series: int
    label: str
    breakdown: tuple[str, ...] | None
    data: list[float]
    aggregated: float | None = None
    compare_label: str = ""
    raw: list[float] | None = None  # data before smoothing, when smoothingIntervals > 1


@dataclass
class _Plan:
    """A checked query, its resolved ranges and its one engine statement, ready to run."""

    query: query_pb2.TrendsQuery
    ctx: QueryContext
    periods: list[tuple[str, QueryDateRange]]
    breakdown: tsql.Breakdown | None
    limit: int
    factor: float
    total_value: bool
    cumulative: bool
    smoothing: int
    formulas: list[tuple[str, str | None, str]]
    branches: list[tuple[str, QueryDateRange, int, tsql.Window, tsql.SeriesSpec]]
    params: Params
    sql: str

    @property
    def current(self) -> QueryDateRange:
        return self.periods[0][1]


def check_trends(query: query_pb2.TrendsQuery, ctx: QueryContext) -> None:
    """Raises QueryError (path relative to the query) when `query` cannot be computed; runs nothing."""
    _plan(query, ctx)


def run_trends(query: query_pb2.TrendsQuery, ctx: QueryContext, execute: Execute) -> TrendsOutcome:
    """Checks and computes `query`. Raises QueryError (path relative to the query) when invalid,
    Unimplemented (naming the field) for an option this service does not compute."""
    plan = _plan(query, ctx)
    nodes.refuse_later(query, [], "TrendsQuery", "TRENDS_OPTION_NOT_IMPLEMENTED")
    paths = expression_paths(query)
    breakdown = plan.breakdown
    if breakdown is None or not breakdown.histograms():
        return _finish(plan, execute, paths)
    # A histogram's buckets come from the numbers' minimum and maximum: one query first, then
    # the plan again with its buckets bound.
    bounds = tsql.histogram_bounds(plan.params, [(spec, window) for *_, window, spec in plan.branches], breakdown)
    # Only the parameters this statement uses (the store refuses others); names never collide.
    used = {name: value for name, value in plan.params.values.items() if f"{{{name}:" in bounds}
    # Through run_statement like the main statement, so a caller's expression the engine rejects
    # here too is INVALID_ARGUMENT naming it.
    row = run_statement(lambda sql, _all: execute(sql, used), bounds, plan.params, paths)[0]
    grids: list[Buckets | None] = [None] * len(breakdown.dimensions)
    for j, i in enumerate(breakdown.histograms()):
        grids[i] = buckets(as_float(row[2 * j]), as_float(row[2 * j + 1]), breakdown.shape(i).bins)
    outcome = _finish(_plan(query, ctx, tuple(grids)), execute, paths)
    return dataclasses.replace(outcome, sql=f"{bounds};\n{outcome.sql}")


def _plan(query: query_pb2.TrendsQuery, ctx: QueryContext, grids: tuple[Buckets | None, ...] = ()) -> _Plan:
    _validate(query)
    display = query.trends_filter.display
    total_value = display in TOTAL_VALUE_DISPLAYS
    cumulative = display == M.CHART_DISPLAY_TYPE_ACTIONS_LINE_GRAPH_CUMULATIVE
    interval = "day" if total_value else nodes.INTERVAL_NAMES[query.interval]
    date_from = query.date_range.date_from if query.date_range.HasField("date_from") else None
    date_to = query.date_range.date_to if query.date_range.HasField("date_to") else None
    current = resolve_date_range(
        date_from,
        date_to,
        explicit_date=query.date_range.explicit_date,
        interval=interval,
        timezone=ctx.timezone,
        week_start_day=ctx.week_start_day,
        now=ctx.now,
        exact_timerange=display == M.CHART_DISPLAY_TYPE_BOLD_NUMBER,
        earliest=ctx.earliest() if date_from == "all" else None,
    )
    periods: list[tuple[str, QueryDateRange]] = [("", current)]
    if query.compare_filter.compare and date_from != "all":
        # As the reference: compare is disabled when date_from is "all".
        previous = compare_range(
            current,
            date_from=date_from,
            date_to=date_to,
            compare_to=query.compare_filter.compare_to
            if query.compare_filter.HasField("compare_to")
            else None,
            now=ctx.now,
        )
        periods = [("current", current), ("previous", previous)]
    breakdown = _breakdown(_with_legacy_bins(query))
    if breakdown is not None and grids:
        breakdown = dataclasses.replace(breakdown, grids=grids)
    limit = (
        query.breakdown_filter.breakdown_limit if query.breakdown_filter.HasField("breakdown_limit") else 0
    )
    limit = limit or DEFAULT_BREAKDOWN_LIMIT
    factor = query.sampling_factor if query.HasField("sampling_factor") else 1.0
    threshold = sampling.threshold(factor)
    _check_points(query, len(periods), breakdown, limit, 1 if total_value else current.bucket_count())
    formulas = _formulas(query)
    for text, _, path in formulas:
        parse_formula(text, len(query.series), path)
    # Every series of every period in one statement (branches of a UNION ALL): one engine query per
    # run, so a cancel or deadline stops all of it, and the engine scans the branches in parallel.
    params = Params(columns=ctx.materialized)
    members = CohortCompiler(ctx)
    branches: list[tuple[str, QueryDateRange, int, tsql.Window, tsql.SeriesSpec]] = []
    # A cohort breakdown repeats the series per cohort (the reference's order: per cohort, every
    # series), each branch counting that cohort's members only.
    cohorts: list[tuple[int, str] | None] = [None]
    if breakdown and breakdown.cohorts:
        cohorts = list(breakdown.cohorts)
    for compare_label, dates in periods:
        window = tsql.Window(dates, total_value, cumulative, ctx.team_id, threshold)
        for cohort in cohorts:
            for index, node in enumerate(query.series):
                spec = _spec(params, node, query, ctx, f"series[{index}]", cohort, members)
                branches.append((compare_label, dates, index, window, spec))
    sql = tsql.union(
        [
            _ranked(params, tsql.statement(params, spec, window, breakdown), breakdown, limit)
            for *_, window, spec in branches
        ]
    )
    # Only now, the whole query checked: an invalid query is INVALID_ARGUMENT whatever cohorts it names.
    members.raise_unavailable()
    tf = query.trends_filter
    smoothing = tf.smoothing_intervals if tf.HasField("smoothing_intervals") else 1
    return _Plan(
        query,
        ctx,
        periods,
        breakdown,
        limit,
        factor,
        total_value,
        cumulative,
        smoothing,
        formulas,
        branches,
        params,
        sql,
    )


def _finish(plan: _Plan, execute: Execute, paths: Sequence[str]) -> TrendsOutcome:
    """Runs a plan's statement (and the recount of "Other" when needed) and shapes the result."""
    query, ctx, breakdown, limit, total_value = (
        plan.query,
        plan.ctx,
        plan.breakdown,
        plan.limit,
        plan.total_value,
    )
    branches, periods = plan.branches, plan.periods
    statements = [plan.sql]
    labels = [series_label(node, ctx.definitions.actions) for node in query.series]
    cohort_breakdown = bool(breakdown and breakdown.cohorts)
    found, others = _split(run_statement(execute, plan.sql, plan.params, paths), len(branches))
    has_more = False
    shaped: list[list[_Item]] = []
    recount: list[int] = []  # branches whose "Other" line is counted again
    for b, (_, dates, _, _, spec) in enumerate(branches):
        series_items, cut = _shape(
            found[b], others[b], dates, total_value, breakdown, limit, query.breakdown_filter
        )
        has_more = has_more or cut
        shaped.append(series_items)
        if cut and not query.breakdown_filter.breakdown_hide_other_aggregation and not tsql.additive(spec):
            recount.append(b)
    if recount:
        # Distinct counts of the cut values cannot be summed: count them again as one group.
        other_params = Params(columns=ctx.materialized)
        parts = []
        for b in recount:
            _, _, index, window, _ = branches[b]
            other_spec = _spec(other_params, query.series[index], query, ctx, f"series[{index}]")
            kept = [list(i.breakdown or ()) for i in shaped[b] if i.breakdown != _other_key(breakdown)]
            parts.append((tsql.statement(other_params, other_spec, window, breakdown, exclude_values=kept), False))
        other_sql = tsql.union(parts)
        statements.append(other_sql)
        recounted, _ = _split(run_statement(execute, other_sql, other_params, paths), len(recount))
        for position, b in enumerate(recount):
            values = recounted[position]
            for item in shaped[b]:
                if item.breakdown == _other_key(breakdown):
                    item.data, item.aggregated = _values_of(
                        values, next(iter(values), None), branches[b][1], total_value
                    )
    items: list[_Item] = []
    for b, (compare_label, _, index, _, spec) in enumerate(branches):
        scale = 1 / plan.factor if spec.math in tsql.COUNTING and plan.factor < 1 else 1.0
        for item in shaped[b]:
            item.series = index
            shown = _shown_key(item.breakdown, ctx, cohort_breakdown)
            item.label = _item_label(labels[index], shown, len(query.series))
            item.compare_label = compare_label
            item.data = [v * scale for v in item.data]
            if plan.cumulative:
                # The displayed line (formulas run on it, as the reference's do).
                item.data = list(itertools.accumulate(item.data))
            if plan.smoothing > 1 and not total_value:
                # Last, on the displayed line (the running total when cumulative), as the reference
                # smooths the zero-filled array it returns; formulas then run on the smoothed lines.
                item.raw, item.data = item.data, smooth(item.data, plan.smoothing)
            if item.aggregated is not None:
                item.aggregated *= scale
        items.extend(shaped[b])
    formulas = plan.formulas
    if formulas:
        items = _apply_formulas(
            formulas,
            items,
            len(query.series),
            [p for p, _ in periods],
            total_value,
            plan.cumulative,
            bool(breakdown and breakdown.multi),
            cohort_breakdown,
        )
    current = plan.current
    result = results_pb2.TrendsResult(
        series=[
            _message(
                item,
                query,
                dict(periods)[item.compare_label] if item.compare_label else current,
                plan.cumulative,
                total_value,
                bool(formulas),
                bool(breakdown and breakdown.multi),
                ctx.definitions.actions,
                cohort_breakdown,
            )
            for item in items
        ]
    )
    return TrendsOutcome(result, has_more, current, ";\n".join(statements))


# ----------------------------------------------------------------------------------- validation


def expression_paths(query: query_pb2.TrendsQuery) -> tuple[str, ...]:
    """The field paths of the caller's HogQL expressions the statements compute (hogql breakdown
    dimensions, math_hogql), in the order of the query."""
    bf, paths = query.breakdown_filter, []
    if bf.breakdowns:
        paths += [f"breakdownFilter.breakdowns[{i}].property" for i, b in enumerate(bf.breakdowns) if b.type == M.BREAKDOWN_TYPE_HOGQL]
    elif bf.HasField("breakdown") and bf.breakdown_type == M.BREAKDOWN_TYPE_HOGQL:
        paths.append("breakdownFilter.breakdown")
    for index, node in enumerate(query.series):
        source = getattr(node, node.WhichOneof("node") or "events_node")
        if getattr(source, "math", None) == M.MATH_TYPE_HOGQL:
            paths.append(f"series[{index}].math_hogql")
    return tuple(paths)


def _check_points(
    query: query_pb2.TrendsQuery, periods: int, breakdown: tsql.Breakdown | None, limit: int, buckets: int
) -> None:
    if breakdown and breakdown.cohorts:
        lines = len(query.series) * periods * len(breakdown.cohorts)
    else:
        lines = len(query.series) * periods * ((limit + 1) if breakdown else 1)
    if lines * buckets > MAX_POINTS:
        raise QueryError(
            f"this query could return {lines * buckets:,} values ({lines:,} lines of {buckets:,} intervals), "
            f"more than {MAX_POINTS:,}: narrow the date range, use a longer interval, fewer series or a "
            "lower breakdown_limit",
            "dateRange",
        )


def _validate(query: query_pb2.TrendsQuery) -> None:
    nodes.check_contract(query)
    if not query.series:
        raise QueryError("a trends query needs at least one series", "series")
    if len(query.series) > MAX_SERIES:
        raise QueryError(f"a trends query has at most {MAX_SERIES} series (got {len(query.series)})", "series")
    tf = query.trends_filter
    for name, count in (("formulaNodes", len(tf.formula_nodes)), ("formulas", len(tf.formulas))):
        if count > MAX_FORMULAS:
            raise QueryError(f"at most {MAX_FORMULAS} formulas (got {count})", f"trendsFilter.{name}")
    nodes.check_breakdown_limit(query, MAX_BREAKDOWN_LIMIT)
    if query.interval == M.INTERVAL_TYPE_SECOND:
        raise QueryError("interval 'second' is not supported for trends", "interval")
    if tf.HasField("smoothing_intervals") and not 1 <= tf.smoothing_intervals <= MAX_SMOOTHING_INTERVALS:
        raise QueryError(
            f"smoothingIntervals must be between 1 and {MAX_SMOOTHING_INTERVALS:,} "
            f"(got {tf.smoothing_intervals})",
            "trendsFilter.smoothingIntervals",
        )
    nodes.check_sampling_factor(query)
    if query.HasField("aggregation_group_type_index"):
        raise QueryError("aggregating by groups is not supported yet", "aggregation_group_type_index")
    for index, node in enumerate(query.series):
        path = f"series[{index}]"
        kind = nodes.node_kind(node, path)
        if kind == "actions_node" and node.actions_node.id <= 0:
            raise QueryError("id must be a positive action id", f"{path}.id")
        if kind == "data_warehouse_node":
            raise QueryError("data warehouse series are not supported", path)
        source = getattr(node, kind)
        _validate_math(source, path)
        if kind == "group_node":
            if not source.nodes:
                raise QueryError("a GroupNode needs at least one node", f"{path}.nodes")
            if len(source.nodes) > MAX_SERIES:
                raise QueryError(f"a GroupNode has at most {MAX_SERIES} nodes", f"{path}.nodes")
            for i, member in enumerate(source.nodes):
                member_kind = member.WhichOneof("node")
                if member_kind not in ("events_node", "actions_node"):
                    raise QueryError("a GroupNode holds EventsNodes and ActionsNodes", f"{path}.nodes[{i}]")
                if member_kind == "actions_node" and member.actions_node.id <= 0:
                    raise QueryError("id must be a positive action id", f"{path}.nodes[{i}].id")


def _validate_math(node: Any, path: str) -> None:
    math = node.math
    if math in tsql.PROPERTY_MATHS and not node.math_property:
        raise QueryError(f"math '{_MATH_NAMES[math]}' needs math_property", f"{path}.math_property")
    if math == M.MATH_TYPE_HOGQL:
        # An aggregate expression per bucket (reference §3); checked here, compiled by sql.py.
        if not getattr(node, "math_hogql", ""):
            raise QueryError("math 'hogql' needs math_hogql", f"{path}.math_hogql")
        check_expression(node.math_hogql, path=f"{path}.math_hogql", aggregate=True)
    if math in (M.MATH_TYPE_UNIQUE_GROUP, M.MATH_TYPE_FIRST_TIME_FOR_USER_WITH_FILTERS):
        raise QueryError(f"math '{_MATH_NAMES[math]}' is not supported for trends", f"{path}.math")
    if node.HasField("math_property_type") and node.math_property_type not in _PROPERTY_TYPES:
        raise QueryError(
            "math_property_type must be event_properties, person_properties or session_properties",
            f"{path}.math_property_type",
        )
    if node.math_property_type == "session_properties" and node.math_property != tsql.SESSION_DURATION:
        raise QueryError(
            f"the only session property a math can aggregate is {tsql.SESSION_DURATION}",
            f"{path}.math_property",
        )


_PROPERTY_TYPES = ("event_properties", "person_properties", "session_properties")


def _property_source(node: Any) -> str:
    """Where a property math reads its values: "session" for $session_duration whatever
    math_property_type says (as the reference, which looks at the key only), else the event's or
    the person's properties."""
    if node.math_property == tsql.SESSION_DURATION:
        return "session"
    return "person" if node.math_property_type == "person_properties" else "event"


def _with_legacy_bins(query: query_pb2.TrendsQuery) -> query_pb2.BreakdownFilter:
    """breakdownFilter, with the deprecated trendsFilter.breakdown_histogram_bin_count as its bin
    count when it gives none (so a query saved with the old field is neither refused nor ignored)."""
    bf, tf = query.breakdown_filter, query.trends_filter
    if not tf.HasField("breakdown_histogram_bin_count") or bf.HasField("breakdown_histogram_bin_count"):
        return bf
    path = "trendsFilter.breakdown_histogram_bin_count"
    if not 1 <= tf.breakdown_histogram_bin_count <= MAX_BINS:
        raise QueryError(f"a histogram has between 1 and {MAX_BINS} bins", path)
    if bf.breakdowns or not bf.HasField("breakdown") or is_cohort_breakdown(bf):
        raise QueryError("a histogram needs a single property breakdown (breakdownFilter.breakdown)", path)
    merged = query_pb2.BreakdownFilter()
    merged.CopyFrom(bf)
    merged.breakdown_histogram_bin_count = tf.breakdown_histogram_bin_count
    return merged


def _breakdown(bf: query_pb2.BreakdownFilter) -> tsql.Breakdown | None:
    shapes = filter_shapes(bf)
    if is_cohort_breakdown(bf):
        if shapes != (PLAIN,):
            raise QueryError(
                "a cohort breakdown has no histogram and no URLs to normalise", shaped_field(bf)
            )
        cohorts = listed_cohorts(bf.breakdown, "breakdownFilter.breakdown")
        return tsql.Breakdown((("cohort", "cohort"),), cohorts=cohorts)
    if bf.breakdowns:
        if len(bf.breakdowns) > MAX_BREAKDOWNS:
            raise QueryError(f"at most {MAX_BREAKDOWNS} breakdowns", "breakdownFilter.breakdowns")
        dims = []
        for i, b in enumerate(bf.breakdowns):
            path = f"breakdownFilter.breakdowns[{i}]"
            key, source = _breakdown_key(b.property, f"{path}.property"), _breakdown_source(b.type, f"{path}.type")
            if source == "hogql":
                check_expression(key, path=f"{path}.property")
            dims.append((key, source))
        return tsql.Breakdown(tuple(dims), multi=True, shapes=shapes)
    if not bf.HasField("breakdown"):
        if shapes != (PLAIN,):
            raise QueryError("a histogram or URL normalising needs a breakdown", shaped_field(bf))
        return None
    key = _breakdown_key(bf.breakdown, "breakdownFilter.breakdown")
    source = _breakdown_source(bf.breakdown_type, "breakdownFilter.breakdown_type")
    if source == "hogql":
        check_expression(key, path="breakdownFilter.breakdown")
    return tsql.Breakdown(((key, source),), shapes=shapes)


def _breakdown_key(key: query_pb2.BreakdownKey, path: str) -> str:
    if key.WhichOneof("kind") != "string_value" or not key.string_value:
        raise QueryError(
            'breakdown must be a property name (a list of cohort ids goes with breakdown_type "cohort")', path
        )
    return key.string_value


def _breakdown_source(kind: int, path: str) -> str:
    if kind not in _SUPPORTED_BREAKDOWN_TYPES:
        raise QueryError(
            'only event, person and hogql breakdowns are supported here (cohorts go in breakdown with breakdown_type "cohort")',
            path,
        )
    return _SUPPORTED_BREAKDOWN_TYPES[kind]


def _formulas(query: query_pb2.TrendsQuery) -> list[tuple[str, str | None, str]]:
    """(formula, custom name, path) of each formula, from formulaNodes, formulas or formula."""
    tf = query.trends_filter
    if tf.formula_nodes:
        return [
            (
                n.formula,
                n.custom_name if n.HasField("custom_name") else None,
                f"trendsFilter.formulaNodes[{i}]",
            )
            for i, n in enumerate(tf.formula_nodes)
        ]
    if tf.formulas:
        return [(f, None, f"trendsFilter.formulas[{i}]") for i, f in enumerate(tf.formulas)]
    if tf.HasField("formula") and tf.formula.strip():
        return [(tf.formula, None, "trendsFilter.formula")]
    return []


# ---------------------------------------------------------------------------------- statements


def _spec(
    params: Params,
    node: query_pb2.SeriesNode,
    query: query_pb2.TrendsQuery,
    ctx: QueryContext,
    path: str,
    cohort: tuple[int, str] | None = None,
    members: CohortCompiler | None = None,
) -> tsql.SeriesSpec:
    """The series reduced to what its SQL needs; with a `cohort` (id, field) of a cohort breakdown,
    restricted to its members and labelled with its id. `members` compiles the cohorts it names."""
    source = getattr(node, node.WhichOneof("node") or "events_node")
    members = members or CohortCompiler(ctx)
    base, match = tsql.series_conditions(
        params, node, query, ctx.test_account_filters, path, ctx.timezone, ctx.definitions.actions, members
    )
    extra = []
    if cohort is not None and cohort[0] != 0:
        extra.append(f"person_id GLOBAL IN ({members(params, cohort[0], cohort[1])})")
    return tsql.SeriesSpec(
        extra=extra,
        breakdown_value=None if cohort is None else str(cohort[0]),
        math=source.math or M.MATH_TYPE_TOTAL,
        base_where=base,
        match_where=match,
        math_property=source.math_property if source.math_property else None,
        math_property_source=_property_source(source),
        multiplier=source.math_multiplier if source.HasField("math_multiplier") else None,
        math_hogql=getattr(source, "math_hogql", "") or None,
        math_hogql_path=f"{path}.math_hogql",
    )


Values = dict[tuple[str, ...], dict[str, float]]


def _ranked(params: Params, sql: str, breakdown: tsql.Breakdown | None, limit: int) -> tuple[str, bool]:
    if breakdown is None or breakdown.cohorts:
        # A cohort breakdown keeps every cohort it lists (as the reference: no limit, no Other).
        return sql, False
    return tsql.ranked(params, sql, breakdown, limit), True


def _split(rows: Sequence[Sequence[Any]], branches: int) -> tuple[list[Values], list[dict[str, float]]]:
    """Rows of (branch, bucket text, breakdown value(s), value, cut) → per branch: the kept values
    (breakdown key → bucket → value), and the cut values summed per bucket."""
    found: list[Values] = [{} for _ in range(branches)]
    others: list[dict[str, float]] = [{} for _ in range(branches)]
    for branch, bucket, value_key, value, cut in rows:
        if cut:
            buckets = others[branch]
        else:
            key = tuple(value_key) if isinstance(value_key, list | tuple) else (value_key,)
            buckets = found[branch].setdefault(key, {})
        buckets[bucket] = buckets.get(bucket, 0.0) + float(value)
    return found, others


def _values_of(
    found: Values, key: tuple[str, ...] | None, dates: QueryDateRange, total_value: bool
) -> tuple[list[float], float | None]:
    buckets = found.get(key, {}) if key is not None else {}
    if total_value:
        return [], float(sum(buckets.values()))
    return [buckets.get(key, 0.0) for key in tsql.grid_keys(dates)], None


def _other_key(breakdown: tsql.Breakdown | None) -> tuple[str, ...]:
    return tuple([tsql.OTHER_LABEL] * (len(breakdown.dimensions) if breakdown else 1))


def _shape(
    found: Values,
    cut: dict[str, float],
    dates: QueryDateRange,
    total_value: bool,
    breakdown: tsql.Breakdown | None,
    limit: int,
    bf: query_pb2.BreakdownFilter,
) -> tuple[list[_Item], bool]:
    """Items of one series and period: the kept breakdown values in rank order, then "Other" (the
    values the engine cut, summed per bucket); and whether any value was cut."""
    if breakdown is None:
        data, aggregated = _values_of(found, next(iter(found), None), dates, total_value)
        return [_Item(0, "", None, data, aggregated)], False
    totals = {key: sum(buckets.values()) for key, buckets in found.items()}

    def rank(key: tuple[str, ...]) -> tuple[int, float, tuple[str, ...]]:
        # As the reference (`has(bv, NULL_LABEL)`): a value with any null part ranks after the rest.
        is_null = tsql.NULL_LABEL in key
        return (1 if is_null else 0, -totals[key], key)

    items = []
    for key in sorted(found, key=rank)[:limit]:
        data, aggregated = _values_of(found, key, dates, total_value)
        items.append(_Item(0, "", key, data, aggregated))
    if cut and not bf.breakdown_hide_other_aggregation:
        other = _other_key(breakdown)
        data, aggregated = _values_of({other: cut}, other, dates, total_value)
        items.append(_Item(0, "", other, data, aggregated))
    return items, bool(cut)


# ------------------------------------------------------------------------------------ results


def series_label(node: query_pb2.SeriesNode, actions: Mapping[int, ActionDefinition] | None = None) -> str:
    """The custom name, else (an action's stored name for an ActionsNode) the node's name, else the
    event name ("All events" without one)."""
    kind = node.WhichOneof("node") or "events_node"
    source = getattr(node, kind)
    if source.HasField("custom_name") and source.custom_name:
        return str(source.custom_name)
    if kind == "actions_node":
        action = (actions or {}).get(source.id)
        if action is not None:
            return action.name
    if source.HasField("name") and source.name:
        return str(source.name)
    if kind == "group_node":
        return ", ".join(_member_name(m, actions) for m in source.nodes)
    if kind == "actions_node":
        return ""
    return str(source.event) if source.HasField("event") else "All events"


def _member_name(member: query_pb2.GroupMember, actions: Mapping[int, ActionDefinition] | None) -> str:
    if member.WhichOneof("node") == "actions_node":
        action = (actions or {}).get(member.actions_node.id)
        return action.name if action is not None else member.actions_node.name
    return member.events_node.event if member.events_node.HasField("event") else "All events"


def _shown_key(
    key: tuple[str, ...] | None, ctx: QueryContext, cohort_breakdown: bool
) -> tuple[str, ...] | None:
    """A breakdown key as labels show it: a cohort breakdown's by the cohort's name."""
    if key is None or not cohort_breakdown:
        return key
    return (cohort_name(int(key[0]), ctx.definitions.cohorts),)


def _item_label(series_label: str, key: tuple[str, ...] | None, series_count: int) -> str:
    if key is None:
        return series_label
    value = "::".join(key)
    return f"{series_label} - {value}" if series_count > 1 else value


def _apply_formulas(
    formulas: list[tuple[str, str | None, str]],
    items: list[_Item],
    series_count: int,
    periods: list[str],
    total_value: bool,
    cumulative: bool,
    multi: bool,
    cohort: bool = False,
) -> list[_Item]:
    """Formula items per period, as the reference: on the displayed data (cumulative when shown so).

    With a breakdown the formula runs per breakdown value and keeps its plain label; the rows of a
    formula are sorted descending by (normal 0 / null -1 / Other -2, total, count, data, repr(value)).
    With compare the items of a period are then ordered by count descending.
    """
    parsed = [
        (index, parse_formula(text, series_count, path), custom_name or f"Formula ({text})")
        for index, (text, custom_name, path) in enumerate(formulas)
    ]
    out: list[_Item] = []
    for period in periods:
        in_period = [i for i in items if i.compare_label == period]
        keys: list[tuple[str, ...] | None] = []
        for item in in_period:
            if item.breakdown not in keys:
                keys.append(item.breakdown)
        width = next((len(i.data) for i in in_period if not total_value), 0)
        period_items: list[_Item] = []
        for index, formula, label in parsed:
            results = []
            for key in keys:
                by_series = {i.series: i for i in in_period if i.breakdown == key}
                if total_value:
                    columns = [
                        [by_series[s].aggregated or 0.0] if s in by_series else [0.0]
                        for s in range(series_count)
                    ]
                    results.append(_Item(index, label, key, [], sum(formula.evaluate(columns)), period))
                else:
                    columns = [
                        by_series[s].data if s in by_series else [0.0] * width for s in range(series_count)
                    ]
                    results.append(_Item(index, label, key, formula.evaluate(columns), None, period))
            if any(k is not None for k in keys):
                results.sort(
                    key=lambda r: _formula_rank(r, total_value, cumulative, multi, cohort), reverse=True
                )
            period_items.extend(results)
        if period:
            period_items.sort(key=lambda r: -_count(r.data, total_value, cumulative))
        out.extend(period_items)
    return out


def _count(data: list[float], total_value: bool, cumulative: bool) -> float:
    """The `count` of a result line: 0 for totals, the last value when cumulative, else the sum."""
    if total_value:
        return 0.0
    if cumulative:
        return data[-1] if data else 0.0
    return float(sum(data))


def _formula_rank(
    item: _Item, total_value: bool, cumulative: bool, multi: bool, cohort: bool = False
) -> tuple[Any, ...]:
    key = item.breakdown or ()
    value: Any = key if multi else key[0]
    if cohort:
        value = _cohort_value(key[0])  # the reference compares the shown value: an int, or "all"
    total = (item.aggregated or 0.0) if total_value else sum(item.data)
    return (
        _bucket_rank(item.breakdown),
        total,
        _count(item.data, total_value, cumulative),
        item.data,
        repr(value),
    )


def _cohort_value(text: str) -> int | str:
    """A cohort breakdown's value as results show it: the cohort id, "all" for all users."""
    return "all" if text == "0" else int(text)


def _bucket_rank(key: tuple[str, ...] | None) -> int:
    if key is None:
        return 0
    if tsql.OTHER_LABEL in key:
        return -2
    if tsql.NULL_LABEL in key:
        return -1
    return 0


def _message(
    item: _Item,
    query: query_pb2.TrendsQuery,
    dates: QueryDateRange,
    cumulative: bool,
    total_value: bool,
    is_formula: bool,
    multi: bool,
    actions: Mapping[int, ActionDefinition],
    cohort: bool = False,
) -> results_pb2.TrendsSeries:
    data = list(item.data)  # already cumulative for the cumulative display
    message = results_pb2.TrendsSeries(label=item.label, order=item.series)
    if total_value:
        message.aggregated_value = item.aggregated or 0.0
    else:
        message.data.extend(data)
        message.days.extend(dates.days())
        message.labels.extend(
            [f"day {i}" for i in range(len(data))] if item.compare_label else dates.labels()
        )
        message.count = _count(data, total_value, cumulative)
        if item.raw is not None:
            message.raw_data.extend(item.raw)
    if item.breakdown is not None:
        if cohort:
            value = _cohort_value(item.breakdown[0])
            if isinstance(value, int):
                message.breakdown_value.int_value = value
            else:
                message.breakdown_value.string_value = value
        elif not multi:
            message.breakdown_value.string_value = item.breakdown[0]
        else:
            message.breakdown_values.extend(item.breakdown)
    if item.compare_label:
        message.compare = True
        message.compare_label = item.compare_label
    if not is_formula:
        node = query.series[item.series]
        kind = node.WhichOneof("node") or "events_node"
        source = getattr(node, kind)
        if kind == "actions_node":
            # As the reference: the action's id as text, its type "actions".
            action_id, action_type = str(source.id), "actions"
        else:
            action_id = str(source.event) if kind == "events_node" and source.HasField("event") else ""
            action_type = "events"
        message.action.CopyFrom(
            results_pb2.TrendsSeriesAction(
                id=action_id,
                type=action_type,
                order=item.series,
                name=series_label(node, actions),
                math=source.math,
            )
        )
        if source.HasField("custom_name"):
            message.action.custom_name = source.custom_name
        if source.math_property:
            message.action.math_property = source.math_property
    return message
