"""Builds the one ClickHouse statement of a paths query, every user value bound.

Inside out (query-engine-semantics §8.2; docs/decisions.md, "Paths"):

1. events: the followed events of the range, each with its path item (cleaned, then grouped), in
   microseconds;
   funnel paths keep the funnel's actors at a step, within its step times;
2. per person the (time, item) pairs sorted, split into sessions at a gap of 30 minutes or more
   (funnel paths: the funnel's conversion window);
3. per session: consecutive duplicates collapsed (the time of a run's last event), cut at the
   start/end point, truncated to the step limit;
4. edges "{i-1}_{item}" -> "{i}_{item}" counted per traversal with the mean gap, weight-bounded,
   heaviest first, at most edgeLimit (the runner then keeps those reachable from a first step).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from generated.insights.v1 import query_pb2
from server.queries.common import sampling
from server.queries.common.actors import actor_sql
from server.queries.common.dates import QueryDateRange
from server.queries.common.properties import CohortSql, filters_sql, properties_sql, property_text
from server.queries.common.sql import Params
from server.queries.paths.spec import EXPRESSION_PATH, FunnelPaths, PathsSpec, wildcard_regex
from server.queries.sql.expression import compile_expression
from server.utc import as_utc

SESSION_GAP_MICROS = 1800 * 1_000_000
ELLIPSIS = "..."
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Context:
    """Where and over what the paths query runs."""

    team_id: int
    timezone: str
    grid: QueryDateRange
    test_filters: list[query_pb2.PropertyFilter]
    cohorts: CohortSql  # compiles the membership of the cohorts filters name
    # funnelPathsFilter: the funnel's walks with the person and step times (funnels/sql.py `walks`).
    funnel_walks: str | None = None


def statement(params: Params, spec: PathsSpec, query: query_pb2.PathsQuery, ctx: Context) -> str:
    """SQL returning rows (source, target, traversals, mean gap in microseconds), heaviest first."""
    edges = (
        "SELECT arrayJoin(arrayMap(i -> (concat(toString(i - 1), '_', p[i - 1].2), "
        "concat(toString(i), '_', p[i].2), p[i].1 - p[i - 1].1), range(2, length(p) + 1))) AS e "
        f"FROM ({paths(params, spec, query, ctx)})"
    )
    # Sampled: traversals scaled back to the whole (as other kinds' counts), before the edge
    # weights and the order see them, so they read the numbers the caller sees.
    value = "count()" if spec.sampling >= 1 else f"toInt64(round(count() / {params.bind(spec.sampling, 'Float64')}))"
    having = []
    if spec.min_weight is not None:
        having.append(f"value >= {params.bind(spec.min_weight, 'Int64')}")
    if spec.max_weight is not None:
        having.append(f"value <= {params.bind(spec.max_weight, 'Int64')}")
    return (
        f"SELECT e.1 AS source, e.2 AS target, {value} AS value, avg(e.3) AS gap FROM ({edges}) "
        f"GROUP BY source, target {'HAVING ' + ' AND '.join(having) if having else ''} "
        f"ORDER BY value DESC, source, target LIMIT {params.bind(spec.edge_limit, 'Int64')}"
    )


def paths(params: Params, spec: PathsSpec, query: query_pb2.PathsQuery, ctx: Context) -> str:
    """SQL returning one row per path (a session, collapsed, cut and truncated): `actor` and `p`,
    its steps (time in microseconds, item) in order; step i is the node "{i}_{item}"."""
    events = _events(params, spec, query, ctx)
    gap_micros = SESSION_GAP_MICROS
    if spec.funnel is not None:
        assert ctx.funnel_walks is not None
        events = _funnel_events(params, spec.funnel, events, ctx.funnel_walks)
        # Funnel paths split sessions at the funnel's conversion window (§8.2 step 2).
        gap_micros = spec.funnel.window_seconds * 1_000_000
    per_person = f"SELECT actor, arraySort(x -> (x.1, x.2), groupArray((t, item))) AS evs FROM ({events}) GROUP BY actor"
    gap = params.bind(gap_micros, "Int64")
    sessions = (
        f"SELECT actor, arrayJoin(arraySplit((x, g) -> g, evs, "
        f"arrayMap(i -> i > 1 AND evs[i].1 - evs[i - 1].1 >= {gap}, arrayEnumerate(evs)))) AS s "
        f"FROM ({per_person})"
    )
    collapsed = f"SELECT actor, arrayFilter((x, i) -> i = length(s) OR x.2 != s[i + 1].2, s, arrayEnumerate(s)) AS c FROM ({sessions})"
    cut, where = _cut(params, spec)
    return f"SELECT actor, {_truncate(params, spec)} AS p FROM (SELECT actor, {cut} AS d FROM ({collapsed}) {where})"


def _funnel_events(params: Params, funnel: FunnelPaths, events: str, walks: str) -> str:
    """The path events of the funnel's actors at `funnelStep`, within their times: before (up to
    and with) the bounding step's time, after it (from it; after a drop-off, from one window past
    the last step completed), or between the step completed before it and it (docs/decisions.md,
    "Path groupings, drill-down keys and funnel paths" and "Funnel paths of optional steps,
    breakdowns, samples and groups"). An actor walked once per breakdown value has a span per
    walk at the step: an event in any of them is on its path (once)."""
    target = funnel.target
    if funnel.dropped:
        assert funnel.required is not None
        who = f"bitTest(bits, {funnel.required}) AND NOT bitTest(bits, {target})"
    else:
        who = f"bitTest(bits, {target})"
    # The times of the steps completed before the target, in step order (so in time order).
    before = ", ".join(f"s{k}" for k in range(target))
    done = f"arrayFilter((x, k) -> bitTest(bits, k), [{before}], range({target}))" if target else "emptyArrayInt64()"
    valid = "1"
    if funnel.dropped:
        to = "fp_done[-1]"
        since = "fp_done[-2]"
        if funnel.kind == "between":
            # Only one step completed before the drop-off: no step before it to start from.
            valid = "length(fp_done) >= 2"
    else:
        to = f"s{target}"
        since = "fp_done[-1]"
    if funnel.kind == "before":
        span = f"{params.bind(-(2**63), 'Int64')}, {to}"
    elif funnel.kind == "between":
        span = f"{since}, {to}"
    elif funnel.dropped:
        span = f"{to} + {params.bind(funnel.window_seconds * 1_000_000, 'Int64')}, {params.bind(2**63 - 1, 'Int64')}"
    else:
        span = f"{to}, {params.bind(2**63 - 1, 'Int64')}"
    rows = (
        f"SELECT actor AS fp_actor, tuple({span}) AS fp_span "
        f"FROM (SELECT *, {done} AS fp_done FROM ({walks}) WHERE {who}) WHERE {valid}"
    )
    spans = f"SELECT fp_actor, groupArray(fp_span) AS fp_spans FROM ({rows}) GROUP BY fp_actor"
    return (
        f"SELECT actor, t, item FROM ({events}) AS pe INNER JOIN ({spans}) AS fa ON pe.actor = fa.fp_actor "
        "WHERE arrayExists(w -> t >= w.1 AND t <= w.2, fp_spans)"
    )


def _cut(params: Params, spec: PathsSpec) -> tuple[str, str]:
    """The session cut at its start/end point, and the WHERE dropping sessions without them."""
    if spec.start_point is not None and spec.end_point is not None:
        start = params.bind(spec.start_point, "String")
        end = params.bind(spec.end_point, "String")
        si = f"indexOf(arrayMap(y -> y.2, c), {start})"
        # The first end after the first start.
        ei = f"arrayFirstIndex((z, j) -> z.2 = {end} AND j > {si}, c, arrayEnumerate(c))"
        return f"arraySlice(c, {si}, {ei} - {si} + 1)", f"WHERE {si} > 0 AND {ei} > 0"
    if spec.start_point is not None:
        si = f"indexOf(arrayMap(y -> y.2, c), {params.bind(spec.start_point, 'String')})"
        return f"arraySlice(c, {si})", f"WHERE {si} > 0"
    if spec.end_point is not None:
        ei = f"indexOf(arrayMap(y -> y.2, c), {params.bind(spec.end_point, 'String')})"
        return f"arraySlice(c, 1, {ei})", f"WHERE {ei} > 0"
    return "c", ""


def _truncate(params: Params, spec: PathsSpec) -> str:
    n = params.bind(spec.step_limit, "Int64")
    if spec.start_point is not None and spec.end_point is not None:
        h = params.bind(spec.step_limit // 2, "Int64")
        dots = params.bind(ELLIPSIS, "String")
        # The "..." step takes the time of the first step it stands for.
        middle = f"[(d[{h} + 1].1, {dots})]"
        return (
            f"if(length(d) <= {n}, d, arrayConcat(arraySlice(d, 1, {h}), {middle}, "
            f"arraySlice(d, length(d) - {h} + 1, {h})))"
        )
    if spec.end_point is not None:
        return f"arraySlice(d, greatest(toInt64(length(d)) - {n} + 1, 1))"
    return f"arraySlice(d, 1, {n})"


def _item(params: Params, spec: PathsSpec, tz: str) -> str:
    """The path item of an event (§8.2 step 1), then the cleaning rules in order (the groupings
    follow, in `_grouped`). A $pageview's is its URL and a $screen's its screen name when that type
    is listed (or none is); any other event's is the pathsHogQLExpression's text when it applies
    ('' for NULL), else the event's name."""
    item = "event"
    if spec.expression is not None:
        item = f"ifNull(toString({compile_expression(spec.expression, params, path=EXPRESSION_PATH, timezone=tz)}), '')"
    branches = []
    # Only the branches used: each binds its key (the store refuses unused parameters).
    if not spec.listed or spec.pageview:
        url = f"replaceRegexpAll(ifNull({property_text(params, '$current_url', 'event')}, ''), '(.)/$', '\\\\1')"
        branches.append(f"event = '$pageview', {url}")
    if not spec.listed or spec.screen:
        branches.append(f"event = '$screen', ifNull({property_text(params, '$screen_name', 'event')}, '')")
    if branches:
        item = f"multiIf({', '.join(branches)}, {item})"
    for regex, alias in spec.cleaning:
        item = f"replaceRegexpAll({item}, {params.bind(regex, 'String')}, {params.bind(alias, 'String')})"
    return item


def _grouped(params: Params, spec: PathsSpec, cleaned: str) -> str:
    """The step after the groupings: the text of the first grouping whose wildcard pattern the
    cleaned step matches, else the cleaned step (the reference's multiMatchAnyIndex returns any
    matching index; the first makes overlapping groupings deterministic)."""
    if not spec.groupings:
        return cleaned
    branches = []
    for grouping in spec.groupings:
        branches.append(f"match({cleaned}, {params.bind(wildcard_regex(grouping), 'String')})")
        branches.append(params.bind(grouping, "String"))
    return f"multiIf({', '.join(branches)}, {cleaned})"


def _events(params: Params, spec: PathsSpec, query: query_pb2.PathsQuery, ctx: Context) -> str:
    lower = _micros(ctx.grid.events_from)
    upper = _micros(ctx.grid.date_to)
    where = [
        f"team_id = {params.bind(ctx.team_id, 'Int64')}",
        f"timestamp >= fromUnixTimestamp64Micro({params.bind(lower, 'Int64')})",
        f"timestamp <= fromUnixTimestamp64Micro({params.bind(upper, 'Int64')})",
    ]
    if not spec.all_events:
        kinds = []
        if spec.pageview:
            kinds.append("event = '$pageview'")
        if spec.screen:
            kinds.append("event = '$screen'")
        if spec.custom:
            kinds.append("NOT startsWith(event, '$')")
        where.append(" OR ".join(kinds))
    bound = sampling.threshold(spec.sampling)
    if bound is not None:
        where.append(sampling.kept_sql(params, bound))
    if query.HasField("properties"):
        where.append(properties_sql(params, query.properties, "properties", ctx.timezone, ctx.cohorts))
    if query.filter_test_accounts:
        where.append(filters_sql(params, ctx.test_filters, "filterTestAccounts", ctx.timezone, ctx.cohorts))
    actor = actor_sql(params, spec.aggregation)
    if actor.condition is not None:
        # Events without the group's key belong to no group: on nobody's path.
        where.append(actor.condition)
    having = ""
    if spec.exclude:
        having = f" AND item NOT IN {params.bind(list(spec.exclude), 'Array(String)')}"
    return (
        f"SELECT {actor.expression} AS actor, toUnixTimestamp64Micro(timestamp) AS t, {_item(params, spec, ctx.timezone)} AS path_cleaned, "
        f"{_grouped(params, spec, 'path_cleaned')} AS item "
        f"FROM events WHERE {' AND '.join(f'({w})' for w in where)}{having}"
    )


def _micros(moment: dt.datetime) -> int:
    return (as_utc(moment) - _EPOCH) // dt.timedelta(microseconds=1)
