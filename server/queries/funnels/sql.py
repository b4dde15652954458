"""Builds the one ClickHouse statement of a funnel (steps visualisation), every user value bound.

The statement, inside out (docs/funnels-semantics.md has the rules it follows):

1. events: one row per event of the date range that matches a step or an exclusion (for strict
   funnels every event, since any other event breaks the sequence), with its time in
   microseconds, its breakdown value (an array, one text per dimension, '' when missing) and its
   step codes: step k matched → k + 1, "excluded between steps i-1 and i" → -(i + 1);
2. actors: the person's events sorted by time, and the breakdown values their funnel is
   computed for (the attribution);
3. walks: per person and value, one `arrayFold` over the events replays the per-person state
   machine of the reference's funnel UDF (ordered and strict), or a sliding window over the
   steps (unordered): the furthest step, the steps completed and the step times of the best
   attempt;
4. per value: actors per step and their conversion times; the top `limit` values by their
   step counts, the rest merged under ["Other"].
"""

from __future__ import annotations

from dataclasses import dataclass

from generated.insights.v1 import query_pb2
from server.queries.common.dates import QueryDateRange
from server.queries.common.properties import filters_sql, properties_sql, property_text
from server.queries.common.sql import Params
from server.queries.funnels.spec import FunnelSpec

OTHER = "Other"
# An attempt slot: (entry time µs, excluded, mandatory step times µs, events used, steps bitfield).
_EMPTY_SLOT = "tuple(toInt64(0), toUInt8(0), emptyArrayInt64(), emptyArrayUInt32(), toUInt32(0))"


@dataclass(frozen=True)
class Context:
    """Where and over what the funnel runs."""

    team_id: int
    dates: QueryDateRange
    test_filters: list[query_pb2.PropertyFilter]
    sample_threshold: int | None


def statement(params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: Context) -> str:
    """SQL returning one row per result group: (value, cut, c0..c{n-1}, a1..a{n-1}, m1..m{n-1}).

    `value` is the breakdown value (an array; [] without a breakdown), `cut` whether values were
    merged into it, `ck` the actors who completed step k, `ak`/`mk` the mean and median seconds
    of their conversions to step k (NaN when none).
    """
    n = len(spec.steps)
    walks = _walks(params, spec, query, ctx)
    counts = ", ".join(f"countIf(bitTest(bits, {k})) AS c{k}" for k in range(n))
    times = ", ".join(f"groupArrayIf(d{k}, d{k} > 0) AS t{k}" for k in range(1, n))
    per_value = f"SELECT value, {counts}, {times} FROM ({walks}) GROUP BY value"
    order = ", ".join(f"c{k} DESC" for k in reversed(range(n)))
    ranked = f"SELECT *, row_number() OVER (ORDER BY {order}, value ASC) AS r FROM ({per_value})"
    limit = params.bind(spec.limit, "UInt64")
    other = params.bind([OTHER], "Array(String)")
    sums = ", ".join(f"sum(c{k}) AS c{k}" for k in range(n))
    means = ", ".join(f"avgArray(t{k}) / 1e6 AS a{k}" for k in range(1, n))
    medians = ", ".join(f"quantileExactInclusiveArray(0.5)(t{k}) / 1e6 AS m{k}" for k in range(1, n))
    return (
        f"SELECT if(r <= {limit}, value, {other}) AS k, max(r > {limit}) AS cut, {sums}, {means}, {medians} "
        f"FROM ({ranked}) GROUP BY k"
    )


# ------------------------------------------------------------------------------------ events


def _events(params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: Context) -> str:
    tz = params.bind(ctx.dates.timezone, "String")
    lower, upper = ctx.dates.sql_bounds()
    shared = [
        f"team_id = {params.bind(ctx.team_id, 'Int64')}",
        f"timestamp >= toDateTime64({params.bind(lower, 'String')}, 6, {tz})",
        f"timestamp <= toDateTime64({params.bind(upper, 'String')}, 6, {tz})",
    ]
    if ctx.sample_threshold is not None:
        # SAMPLE takes no bound parameter; this is the same row selection on the sampling key.
        shared.append(f"cityHash64(distinct_id) < {params.bind(ctx.sample_threshold, 'UInt64')}")
    if query.HasField("properties"):
        shared.append(properties_sql(params, query.properties, "properties", ctx.dates.timezone))
    if query.filter_test_accounts:
        shared.append(filters_sql(params, ctx.test_filters, "filterTestAccounts", ctx.dates.timezone))
    codes = [f"if({_step_condition(params, step.node, step.path, ctx)}, {k + 1}, 0)" for k, step in enumerate(spec.steps)]
    for i in range(1, len(spec.steps)):
        covering = [e for e in spec.exclusions if e.start < i <= e.end]
        if covering:
            condition = _or([_step_condition(params, e.node, e.path, ctx) for e in covering])
            codes.append(f"if({condition}, {-(i + 1)}, 0)")
    codes_sql = f"arrayFilter(c -> c != 0, CAST([{', '.join(codes)}], 'Array(Int8)'))"
    where = list(shared)
    if spec.order != "strict":
        names = _event_names(spec)
        if names is not None:
            # The index narrows by event name first (the reference's `event IN (...)`).
            where.append(f"event IN {params.bind(names, 'Array(String)')}")
        where.append("notEmpty(codes)")
    return (
        f"SELECT person_id AS actor, toUnixTimestamp64Micro(timestamp) AS t, {_value(params, spec)} AS bv, "
        f"{codes_sql} AS codes FROM events WHERE {_and(where)}"
    )


def _event_names(spec: FunnelSpec) -> list[str] | None:
    """Every step's and exclusion's event name; None when one of them takes all events."""
    nodes = [s.node for s in spec.steps] + [e.node for e in spec.exclusions]
    if any(not node.HasField("event") for node in nodes):
        return None
    return sorted({node.event for node in nodes})


def _step_condition(
    params: Params,
    node: query_pb2.EventsNode | query_pb2.FunnelExclusionEventsNode,
    path: str,
    ctx: Context,
) -> str:
    parts = []
    if node.HasField("event"):
        parts.append(f"event = {params.bind(node.event, 'String')}")
    parts.append(filters_sql(params, node.properties, f"{path}.properties", ctx.dates.timezone))
    return _and(parts)


def _value(params: Params, spec: FunnelSpec) -> str:
    if spec.breakdown is None:
        return "emptyArrayString()"
    dims = [f"ifNull({property_text(params, key, source)}, '')" for key, source in spec.breakdown]
    return f"[{', '.join(dims)}]"


# ------------------------------------------------------------------------------------ actors


def _actors(params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: Context) -> str:
    events = _events(params, spec, query, ctx)
    return (
        f"SELECT actor, arraySort(groupArray(tuple(t, codes, bv))) AS evs, {_values(params, spec)} AS vals "
        f"FROM ({events}) GROUP BY actor"
    )


def _values(params: Params, spec: FunnelSpec) -> str:
    """The breakdown values a person's funnel is computed for (query-engine-semantics §4.4)."""
    if spec.breakdown is None:
        return "[emptyArrayString()]"
    if spec.attribution in ("first_touch", "last_touch"):
        # The value of the first (last) event with any value; ties at one instant take the
        # smallest (largest) value, so the choice does not depend on the engine's row order.
        pick = "argMinIf" if spec.attribution == "first_touch" else "argMaxIf"
        found = f"{pick}(bv, tuple(t, bv), arrayExists(v -> v != '', bv))"
        blank = f"arrayWithConstant({params.bind(len(spec.breakdown), 'UInt8')}, '')"
        return f"[if(empty({found}), {blank}, {found})]"
    if spec.attribution == "all_events":
        return "groupUniqArray(bv)"
    assert spec.attribution_step is not None
    return f"groupUniqArrayIf(bv, has(codes, toInt8({params.bind(spec.attribution_step + 1, 'Int8')})))"


# ------------------------------------------------------------------------------------- walks


def _walks(params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: Context) -> str:
    """Rows (value, bits, d1..d{n-1}): per person and value, the steps completed (bit k: step k)
    and the microseconds of each step's conversion (0 when none), for persons who entered."""
    actors = _actors(params, spec, query, ctx)
    window = params.bind(spec.window_seconds * 1_000_000, "Int64")
    evs = "arrayFilter(e -> e.3 = value, evs)" if spec.attribution == "all_events" else "evs"
    n = len(spec.steps)
    if spec.order == "unordered":
        fold = _unordered_fold(n, evs, window)
        steps = "tupleElement(res, 2)"
        gaps = "tupleElement(res, 3)"
        times = ", ".join(f"if(length({gaps}) >= {k}, {gaps}[{k}], 0) AS d{k}" for k in range(1, n))
        return (
            f"SELECT value, toUInt32(bitShiftLeft(toUInt32(1), {steps}) - 1) AS bits, {times} "
            f"FROM (SELECT value, {fold} AS res FROM ({actors}) ARRAY JOIN vals AS value) WHERE {steps} > 0"
        )
    fold = _ordered_fold(params, spec, evs, window)
    best = "tupleElement(res, 3)"
    stamps = f"tupleElement({best}, 3)"
    mandatory = [k for k, step in enumerate(spec.steps) if not step.optional]
    columns = []
    for k in range(1, n):
        if spec.steps[k].optional:
            columns.append(f"toInt64(0) AS d{k}")
        else:
            # The j-th gap between mandatory step times belongs to the j-th mandatory step after the first.
            j = mandatory.index(k)
            columns.append(f"if(length({stamps}) > {j}, {stamps}[{j + 1}] - {stamps}[{j}], 0) AS d{k}")
    return (
        f"SELECT value, tupleElement({best}, 5) AS bits, {', '.join(columns)} "
        f"FROM (SELECT value, {fold} AS res FROM ({actors}) ARRAY JOIN vals AS value) "
        f"WHERE tupleElement(res, 2) > 0 AND tupleElement({best}, 2) = 0"
    )


def _let(name: str, value: str, body: str) -> str:
    """`body` with `name` bound to `value`, computed once (a one-element arrayMap)."""
    return f"arrayMap({name} -> {body}, [{value}])[1]"


def _set(slots: str, index: str, value: str) -> str:
    """`slots` with the slot at 0-based `index` replaced by `value`."""
    return f"arrayMap((o, i) -> if(i = {index} + 1, {value}, o), {slots}, arrayEnumerate({slots}))"


def _ordered_fold(params: Params, spec: FunnelSpec, evs: str, window: str) -> str:
    """The per-person state machine (query-engine-semantics §4.3, docs/funnels-semantics.md).

    State: (slots, best slot index, best attempt). Slot s (0..n) holds the latest attempt that
    completed step s-1, slot 0 an attempt entering at the current instant. Events of one instant
    with different step sets become one item per matched step in step order (`multi`); the others
    stay one item each. Each item's codes are applied in reverse (exclusions first, then the
    steps from the last), so one event never completes two consecutive steps.
    """
    n = len(spec.steps)
    optional = [0] + [1 if step.optional else 0 for step in spec.steps]  # by slot number
    # Slots an attempt may come from when step s completes: s-1, then back over optional steps.
    chains = [[0]]
    for number in range(1, n + 1):
        back = [number - 1]
        while back[-1] > 0 and optional[back[-1]]:
            back.append(back[-1] - 1)
        chains.append(back)
    chain_param = params.bind(chains, "Array(Array(UInt8))")
    opt_param = params.bind(optional, "Array(UInt8)")
    items = _items(evs)

    # Inside the step lambda: st (state), c (code); x (item: t, codes, bv, multi, id) and value
    # come from the enclosing lambdas.
    slots = "tupleElement(st, 1)"
    t = "tupleElement(x, 1)"
    s = "toUInt8(abs(c))"
    chain = f"{chain_param}[{s} + 1]"
    entry = f"tupleElement({slots}[q + 1], 1)"
    pick = f"arrayFirst(q -> ({entry} != 0 AND {t} - {entry} <= {window}) OR q = {chain}[-1], {chain})"
    prev = f"{slots}[p + 1]"
    prev_entry = f"tupleElement({prev}, 1)"
    here_entry = f"tupleElement({slots}[{s} + 1], 1)"
    ok = f"{prev_entry} != 0 AND {t} - {prev_entry} <= {window} AND {here_entry} != {prev_entry}"
    best_index, best = "tupleElement(st, 2)", "tupleElement(st, 3)"
    excluded_prev = f"tuple({prev_entry}, toUInt8(1), tupleElement({prev}, 3), tupleElement({prev}, 4), tupleElement({prev}, 5))"
    excluded_best = (
        f"tuple(tupleElement({best}, 1), toUInt8(1), tupleElement({best}, 3), tupleElement({best}, 4), "
        f"tupleElement({best}, 5))"
    )
    exclude = (
        f"if(tupleElement({prev}, 2) = 1, st, tuple({_set(slots, 'p', excluded_prev)}, {best_index}, "
        f"if({best_index} = p AND {t} - tupleElement({best}, 1) <= {window}, {excluded_best}, {best})))"
    )
    skip_step = f"{opt_param}[{s} + 1] = 1"
    new = (
        f"tuple({prev_entry}, tupleElement({prev}, 2), "
        f"if({skip_step}, tupleElement({prev}, 3), arrayPushBack(tupleElement({prev}, 3), {t})), "
        f"if({skip_step}, tupleElement({prev}, 4), arrayPushBack(tupleElement({prev}, 4), tupleElement(x, 5))), "
        f"toUInt32(bitOr(tupleElement({prev}, 5), bitShiftLeft(toUInt32(1), {s} - 1))))"
    )
    better = f"({s} > {best_index} OR ({s} = {best_index} AND tupleElement({best}, 2) = 1))"
    advanced = (
        f"tuple(if(tupleElement({prev}, 2) = 1, {slots}, {_set(slots, s, 'nw')}), "
        f"if({better}, {s}, {best_index}), if({better}, nw, {best}))"
    )
    skips = [f"(tupleElement(x, 4) = 1 AND has(tupleElement({prev}, 4), tupleElement(x, 5)))"]
    if spec.attribution_step is not None and spec.breakdown is not None:
        attribution = params.bind(spec.attribution_step, "UInt8")
        skips.append(f"(p = {attribution} AND tupleElement(x, 3) != value)")
    advance = f"if({' OR '.join(skips)}, st, {_let('nw', new, advanced)})"
    body = _let("p", pick, f"if(NOT ({ok}), st, if(c < 0, {exclude}, {advance}))")

    entered = f"tuple({_set('tupleElement(acc, 1)', '0', f'tuple({t}, toUInt8(0), emptyArrayInt64(), emptyArrayUInt32(), toUInt32(0))')}, tupleElement(acc, 2), tupleElement(acc, 3))"
    stepped = f"arrayFold((st, c) -> {body}, arrayReverse(tupleElement(x, 2)), {entered})"
    if spec.order == "strict":
        # Any event that does not match a step ends the attempts waiting for that step.
        kept = f"arrayMap((o, i) -> if(i = 1 OR has(tupleElement(x, 2), toInt8(i - 1)), o, {_EMPTY_SLOT}), tupleElement(y, 1), arrayEnumerate(tupleElement(y, 1)))"
        stepped = _let("y", stepped, f"if(tupleElement(x, 4) = 1, y, tuple({kept}, tupleElement(y, 2), tupleElement(y, 3)))")
    initial = f"tuple(arrayMap(i -> {_EMPTY_SLOT}, range({n + 1})), toUInt8(0), {_EMPTY_SLOT})"
    return f"arrayFold((acc, x) -> {stepped}, {items}, {initial})"


def _items(evs: str) -> str:
    """The fold's items from the sorted events (t, codes, bv): (t, codes, bv, multi, id).

    Events of one instant whose step sets differ become one item per positive code, sorted by
    code (then by event), with multi = 1; the others stay as they are. Sorted by time, then step
    sets, the events of one instant differ exactly when the first and the last of them do.
    """
    times = f"arrayMap(e -> e.1, {evs})"
    codes = f"arrayMap(e -> e.2, {evs})"
    starts = "arrayMap((tt, i) -> i = 1 OR tt != T[greatest(i - 1, 1)], T, arrayEnumerate(T))"
    ends = "arrayMap((tt, i) -> i = length(T) OR tt != T[least(i + 1, length(T))], T, arrayEnumerate(T))"
    mixed = (
        f"arrayMap((a, b) -> a != b, arrayFill((cc, f) -> f, C, {starts}), arrayReverseFill((cc, f) -> f, C, {ends}))"
    )
    expand = (
        "arrayFlatten(arrayMap((e, i, mx) -> if(mx, "
        "arrayMap(cc -> tuple(e.1, [cc], e.3, toUInt8(1), toUInt32(i)), arrayFilter(cc -> cc > 0, e.2)), "
        f"[tuple(e.1, e.2, e.3, toUInt8(0), toUInt32(i))]), E, arrayEnumerate(E), {mixed}))"
    )
    ordered = f"arraySort(y -> tuple(y.1, if(y.4 = 1, y.2[1], 0), y.5), {expand})"
    return _let("E", evs, _let("T", times, _let("C", codes, ordered)))


def _unordered_fold(n: int, evs: str, window: str) -> str:
    """Unordered: after each event, the steps with an event in the window ending there (an event
    counts for the first step it matches); the best is the first instant with the most steps.
    State: (times per step inside the window, most steps, gaps between the sorted first times)."""
    t = "tupleElement(x, 1)"
    step = "arrayMin(arrayFilter(cc -> cc > 0, tupleElement(x, 2)))"
    moved = (
        f"arrayMap((d, i) -> arrayFilter(v -> {t} - v <= {window}, if(i = {step}, arrayPushBack(d, {t}), d)), "
        "tupleElement(acc, 1), arrayEnumerate(tupleElement(acc, 1)))"
    )
    firsts = "arraySort(arrayMap(d -> d[1], arrayFilter(d -> notEmpty(d), D)))"
    gaps = _let("F", firsts, "arrayMap(i -> F[i + 1] - F[i], range(1, length(F)))")
    update = _let(
        "D",
        moved,
        _let(
            "k",
            "toUInt8(arrayCount(d -> notEmpty(d), D))",
            f"tuple(D, if(k > tupleElement(acc, 2), k, tupleElement(acc, 2)), if(k > tupleElement(acc, 2), {gaps}, tupleElement(acc, 3)))",
        ),
    )
    items = f"arrayFilter(x -> arrayExists(cc -> cc > 0, tupleElement(x, 2)), {evs})"
    initial = f"tuple(arrayMap(i -> emptyArrayInt64(), range({n})), toUInt8(0), emptyArrayInt64())"
    return f"arrayFold((acc, x) -> {update}, {items}, {initial})"


def _and(parts: list[str]) -> str:
    useful = [p for p in parts if p and p != "1"]
    return " AND ".join(f"({p})" for p in useful) if useful else "1"


def _or(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return " OR ".join(f"({p})" for p in parts)
