"""Builds the one ClickHouse statement of a funnel (steps visualisation), every user value bound.

The statement, inside out (docs/funnels-semantics.md has the rules it follows):

1. events: one row per event of the date range that matches a step or an exclusion (for strict
   funnels every event, since any other event breaks the sequence), with its time in
   microseconds, its breakdown value (an array, one text per dimension, '' when missing) and its
   step codes: step k matched → k + 1, "excluded between steps i-1 and i" → -(i + 1); in the
   common case (no exclusions, optional steps or step attribution, `_narrow`) a bitmask instead,
   bit k + 1 for step k;
2. actors: the person's events sorted by time, and the breakdown values their funnel is
   computed for (the attribution);
3. walks: per person and value, the furthest step, the steps completed and the step times of the
   best attempt. In the common case a fixed number of whole-array passes per step (vector.py);
   with exclusions, optional steps or step attribution one `arrayFold` over the events that
   replays the per-person state machine of the reference's funnel UDF. Unordered funnels:
   whole-array passes;
4. per value: actors per step and their conversion times; the top `limit` values by their
   step counts, the rest merged under ["Other"].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from generated.insights.v1 import query_pb2
from server.errors import FailedPrecondition
from server.queries.base import ActionDefinition
from server.queries.common import sampling
from server.queries.common.actions import action_sql
from server.queries.common.actors import actor_sql
from server.queries.common.breakdown_value import PLAIN, Buckets, Shape, bounds_sql, shaped_sql
from server.queries.common.cohort_breakdown import ListedCohorts
from server.queries.common.dates import QueryDateRange
from server.queries.common.errors import QueryError
from server.queries.common.properties import CohortSql, filters_sql, properties_sql, property_text
from server.queries.common.sql import Params
from server.queries.funnels import vector
from server.queries.funnels.spec import AnyNode, FunnelSpec
from server.queries.sql.expression import compile_expression

OTHER = "Other"


@dataclass(frozen=True)
class Context:
    """Where and over what the funnel runs."""

    team_id: int
    dates: QueryDateRange
    test_filters: list[query_pb2.PropertyFilter]
    sample_threshold: int | None
    # Compiles the membership of the cohorts filters name (None: cohort filters are refused).
    cohorts: CohortSql | None = None
    # The environment's actions the steps and exclusions name (a missing one: FAILED_PRECONDITION).
    actions: Mapping[int, ActionDefinition] = field(default_factory=dict)
    # Actions found missing while compiling, raised once the whole funnel is checked (so that an
    # invalid funnel is INVALID_ARGUMENT whatever actions it names).
    unavailable: list[FailedPrecondition] = field(default_factory=list)
    # Per breakdown dimension: URL normalising or histogram (empty: all plain), and a histogram's
    # buckets once its bounds are known (funnels' no-value label is '').
    shapes: tuple[Shape, ...] = ()
    grids: tuple[Buckets | None, ...] = ()

    def shape(self, i: int) -> Shape:
        return self.shapes[i] if i < len(self.shapes) else PLAIN

    def grid(self, i: int) -> Buckets | None:
        return self.grids[i] if i < len(self.grids) else None


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
    # The fold's nested if()s are cheaper evaluated whole than short-circuited row by row (about a
    # fifth less CPU on 1M events); the whole-array walk is cheaper with the default (about a
    # tenth). The setting is the engine's own, written here as a constant.
    settings = "" if spec.order == "unordered" or _narrow(spec) else " SETTINGS short_circuit_function_evaluation = 'disable'"
    return (
        f"SELECT if(r <= {limit}, value, {other}) AS k, max(r > {limit}) AS cut, {sums}, {means}, {medians} "
        f"FROM ({ranked}) GROUP BY k{settings}"
    )


# ------------------------------------------------------------------------------------ events


def _shared(params: Params, query: query_pb2.FunnelsQuery, ctx: Context) -> list[str]:
    """The conditions on every event of the funnel: its team, the date range, the sample, the
    query's filters."""
    tz = params.bind(ctx.dates.timezone, "String")
    lower, upper = ctx.dates.sql_bounds()
    shared = [
        f"team_id = {params.bind(ctx.team_id, 'Int64')}",
        f"timestamp >= toDateTime64({params.bind(lower, 'String')}, 6, {tz})",
        f"timestamp <= toDateTime64({params.bind(upper, 'String')}, 6, {tz})",
    ]
    if ctx.sample_threshold is not None:
        shared.append(sampling.kept_sql(params, ctx.sample_threshold))
    if query.HasField("properties"):
        shared.append(properties_sql(params, query.properties, "properties", ctx.dates.timezone, ctx.cohorts))
    if query.filter_test_accounts:
        shared.append(filters_sql(params, ctx.test_filters, "filterTestAccounts", ctx.dates.timezone, ctx.cohorts))
    return shared


def histogram_bounds(params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: Context) -> str:
    """SQL returning one row: the minimum and maximum number of each histogram dimension (in
    dimension order; NULL when none) over the events of the range that match a step and have an
    actor (docs/decisions.md, "Histogram breakdowns")."""
    assert spec.breakdown is not None
    aggregates = [
        a
        for i, (key, source) in enumerate(spec.breakdown)
        if ctx.shape(i).bins
        for a in bounds_sql(_text(params, key, source, ctx))
    ]
    where = _shared(params, query, ctx)
    actor = actor_sql(params, spec.aggregation)
    if actor.condition is not None:
        where.append(actor.condition)
    where.append(_or([_step_condition(params, step.node, step.path, ctx, step.first_time) for step in spec.steps]))
    return f"SELECT {', '.join(aggregates)} FROM events WHERE {_and(where)}"


def _events(params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: Context) -> str:
    shared = _shared(params, query, ctx)
    conditions = [_step_condition(params, step.node, step.path, ctx, step.first_time) for step in spec.steps]
    codes = [f"if({c}, {k + 1}, 0)" for k, c in enumerate(conditions)]
    for i in range(1, len(spec.steps)):
        covering = [e for e in spec.exclusions if e.start < i <= e.end]
        if covering:
            condition = _or([_step_condition(params, e.node, e.path, ctx) for e in covering])
            codes.append(f"if({condition}, {-(i + 1)}, 0)")
    if _narrow(spec):
        # Bit k + 1: step k matched (exclusions, the only negative codes, take the wide path).
        codes_sql = "toUInt32(" + " + ".join(f"if({c}, {2 ** (k + 1)}, 0)" for k, c in enumerate(conditions)) + ")"
        matched = "codes != 0"
    else:
        codes_sql = f"arrayFilter(c -> c != 0, CAST([{', '.join(codes)}], 'Array(Int8)'))"
        matched = "notEmpty(codes)"
    where = list(shared)
    actor = actor_sql(params, spec.aggregation, ctx.dates.timezone)
    if actor.condition is not None:
        # Events without a group key (session id) have no actor: they are in nobody's funnel.
        where.append(actor.condition)
    if spec.order != "strict":
        names = _event_names(spec, ctx.actions)
        if names is not None:
            # The index narrows by event name first (the reference's `event IN (...)`).
            where.append(f"event IN {params.bind(names, 'Array(String)')}")
        where.append(matched)
    return (
        f"SELECT {actor.expression} AS actor, toUnixTimestamp64Micro(timestamp) AS t, {_value(params, spec, ctx)} AS bv, "
        f"{codes_sql} AS codes FROM events WHERE {_and(where)}"
    )


def _narrow(spec: FunnelSpec) -> bool:
    """Whether the funnel takes the whole-array walk (vector.py) with step codes as a bitmask:
    no exclusions, no optional steps, no step attribution."""
    return not spec.exclusions and not any(s.optional for s in spec.steps) and spec.attribution_step is None


def _event_names(spec: FunnelSpec, actions: Mapping[int, ActionDefinition]) -> list[str] | None:
    """Every step's and exclusion's event name (an action's: its steps' names); None when one of
    them takes all events (an EventsNode without a name, an action step without one)."""
    names: set[str] = set()
    for node in [s.node for s in spec.steps] + [e.node for e in spec.exclusions]:
        if isinstance(node, query_pb2.ActionsNode | query_pb2.FunnelExclusionActionsNode):
            action = actions.get(node.id)
            if action is None or not action.steps or any(not step.event for step in action.steps):
                return None
            names.update(step.event for step in action.steps)
        elif not node.HasField("event"):
            return None
        else:
            names.add(node.event)
    return sorted(names)


def _action_condition(params: Params, action_id: int, path: str, ctx: Context) -> str:
    """The predicate of a step's or exclusion's action; when it is gone or no longer compiles,
    FAILED_PRECONDITION naming the field is noted in `ctx.unavailable` (and nothing matches)."""
    action = ctx.actions.get(action_id)
    problem = f"{path}.id: action {action_id} does not exist or is deleted"
    if action is not None:
        try:
            return action_sql(params, action, ctx.dates.timezone)
        except QueryError as exc:
            problem = f"{path}.id: action {action_id} cannot be computed: {exc.path}: {exc.message}"
    ctx.unavailable.append(
        FailedPrecondition(
            problem, reason="ACTION_UNAVAILABLE", metadata={"action": str(action_id), "field": f"{path}.id"}
        )
    )
    return "0"


def _step_condition(params: Params, node: AnyNode, path: str, ctx: Context, first_time: str | None = None) -> str:
    """Whether an event matches the step (or exclusion): its event or action, its filters and,
    for a first-time step, being the person's first such event (`_first_time`)."""
    parts = []
    if isinstance(node, query_pb2.ActionsNode | query_pb2.FunnelExclusionActionsNode):
        parts.append(_action_condition(params, node.id, path, ctx))
    elif node.HasField("event"):
        parts.append(f"event = {params.bind(node.event, 'String')}")
    filters = filters_sql(params, node.properties, f"{path}.properties", ctx.dates.timezone, ctx.cohorts)
    parts.append(filters)
    if first_time is not None:
        parts.append(_first_time(params, _and(parts[:-1]), filters, first_time, ctx))
    return _and(parts)


def _first_time(params: Params, entity: str, filters: str, math: str, ctx: Context) -> str:
    """The event is the person's first-ever event of the step's event or action (with
    first_time_for_user_with_filters: the first that also passes the step's filters).

    As the reference's `uuid IN (SELECT argMin(uuid, timestamp) ... GROUP BY person_id)`: over
    all of the person's history up to the range's end (nothing before the range is skipped),
    whatever the actor counted, sampled as the funnel, without the query's own filters (they
    apply to the step's event afterwards). The in-range and filter checks of the reference's
    HAVING are the step's own conditions on that event. Events of one first instant: the
    smallest uuid text is the first (the reference takes any one of them).
    """
    tz = params.bind(ctx.dates.timezone, "String")
    _, upper = ctx.dates.sql_bounds()
    where = [
        f"team_id = {params.bind(ctx.team_id, 'Int64')}",
        f"timestamp <= toDateTime64({params.bind(upper, 'String')}, 6, {tz})",
        entity,
    ]
    if math == "first_time_for_user_with_filters":
        where.append(filters)
    if ctx.sample_threshold is not None:
        where.append(sampling.kept_sql(params, ctx.sample_threshold))
    firsts = f"SELECT argMin(uuid, tuple(timestamp, toString(uuid))) FROM events WHERE {_and(where)} GROUP BY person_id"
    return f"uuid GLOBAL IN ({firsts})"


def _value(params: Params, spec: FunnelSpec, ctx: Context) -> str:
    if spec.breakdown is None:
        return "emptyArrayString()"
    if spec.cohorts is not None:
        return _cohort_value(params, spec.cohorts, ctx)
    dims = [_dimension(params, key, source, ctx, i) for i, (key, source) in enumerate(spec.breakdown)]
    return f"[{', '.join(dims)}]"


def _dimension(params: Params, key: str, source: str, ctx: Context, i: int) -> str:
    """Breakdown dimension `i`'s value as text ('' when missing), a histogram bucket or a
    normalised URL when asked (common/breakdown_value.py)."""
    text = _text(params, key, source, ctx)
    if ctx.shape(i) != PLAIN:
        return shaped_sql(params, text, ctx.shape(i), "", ctx.grid(i))
    return f"ifNull({text}, '')"


def _text(params: Params, key: str, source: str, ctx: Context) -> str:
    """A dimension's text, NULL when missing: a property's, or a hogql expression's (the
    reference's `toString(V)`), checked by the spec already."""
    if source == "hogql":
        return f"toString({compile_expression(key, params, path='breakdownFilter', timezone=ctx.dates.timezone)})"
    return property_text(params, key, source)


def _cohort_value(params: Params, cohorts: ListedCohorts, ctx: Context) -> str:
    """One copy of the event per listed cohort its person is in, its value that cohort's id (as
    text; all users, 0, holds everyone): each cohort's funnel then walks its members' events alone
    (the reference joins each event to its person's cohorts). An event of nobody listed has no copy."""
    if ctx.cohorts is None:
        raise QueryError("cohort breakdowns are not computed here", "breakdownFilter.breakdown")
    ids = []
    for cohort_id, path in cohorts:
        text = params.bind(str(cohort_id), "String")
        if cohort_id == 0:
            ids.append(text)
        else:
            ids.append(f"if(person_id GLOBAL IN ({ctx.cohorts(params, cohort_id, path)}), {text}, '')")
    return f"[arrayJoin(arrayFilter(v -> v != '', [{', '.join(ids)}]))]"


# ------------------------------------------------------------------------------------ actors


def _actors(params: Params, spec: FunnelSpec, query: query_pb2.FunnelsQuery, ctx: Context) -> str:
    events = _events(params, spec, query, ctx)
    if _narrow(spec):
        # Ordered by time only: the whole-array walk takes one instant's events in any order (they
        # carry equal codes), and the fold re-sorts the persons it walks (_walks).
        fields = "t, codes, bv" if spec.attribution == "all_events" else "t, codes"
        evs = f"arraySort(e -> e.1, groupArray(tuple({fields})))"
    else:
        evs = "arraySort(groupArray(tuple(t, codes, bv)))"
    if spec.cohorts is not None:
        # An actor's walk per cohort: its copies of that cohort's events.
        return f"SELECT actor, {evs} AS evs, [bv] AS vals FROM ({events}) GROUP BY actor, bv"
    return f"SELECT actor, {evs} AS evs, {_values(params, spec)} AS vals FROM ({events}) GROUP BY actor"


def _values(params: Params, spec: FunnelSpec) -> str:
    """The breakdown values a person's funnel is computed for (query-engine-semantics §4.4)."""
    if spec.breakdown is None:
        return "[emptyArrayString()]"
    if spec.attribution in ("first_touch", "last_touch"):
        # The value of the first (last) event with any value; ties at one instant take the
        # smallest (largest) value, so the choice does not depend on the engine's row order.
        pick = "argMinIf" if spec.attribution == "first_touch" else "argMaxIf"
        found = f"{pick}(bv, {_order_key(len(spec.breakdown))}, arrayExists(v -> v != '', bv))"
        blank = f"arrayWithConstant({params.bind(len(spec.breakdown), 'UInt8')}, '')"
        return f"[if(empty({found}), {blank}, {found})]"
    if spec.attribution == "all_events":
        return "groupUniqArray(bv)"
    assert spec.attribution_step is not None
    if spec.order == "unordered":
        # Step 0 of an unordered attempt is its first event, which may match any step.
        return "groupUniqArrayIf(bv, arrayExists(c -> c > 0, codes))"
    return f"groupUniqArrayIf(bv, has(codes, toInt8({params.bind(spec.attribution_step + 1, 'Int8')})))"


def _order_key(dims: int) -> str:
    """A String that sorts as tuple(t, bv) does: the time as 8 big-endian bytes (sign bit flipped,
    so that earlier is smaller), then the value. argMin/argMax compare a String key bytewise,
    several times cheaper per row than a tuple key (with a tuple key this aggregate was most of a
    breakdown funnel's cost). One dimension: the text itself (last, so any byte may follow);
    several: each text with NUL escaped as NUL 1 and closed by NUL NUL, which keeps the
    element-wise order of the arrays (every array has `dims` elements)."""
    time = "reinterpretAsFixedString(byteSwap(bitXor(toUInt64(t), toUInt64(9223372036854775808))))"
    if dims == 1:
        return f"concat({time}, bv[1])"
    texts = "arrayStringConcat(arrayMap(v -> concat(replaceAll(v, '\\0', '\\0\\1'), '\\0\\0'), bv))"
    return f"concat({time}, {texts})"


# ------------------------------------------------------------------------------------- walks


def walks(
    params: Params,
    spec: FunnelSpec,
    query: query_pb2.FunnelsQuery,
    ctx: Context,
    period: Callable[[str], str] | None = None,
    *,
    stamps: bool = False,
) -> str:
    """The per-person walk (`_walks`) for the other visualisations (ttc.py, trends_view.py) and the
    paths of a funnel.

    With `period` (the SQL of an event's entrance period from its time in µs), one walk per person,
    value and period in which the person has a first-step event, with rows (value, period, bits,
    d1..d{n-1}): the period's walk sees no event before the period, and the events after it lose
    their first-step match (they may be later steps, never entries), so it follows only attempts
    entering in the period (unordered: any step event enters, and the walk takes only the attempts
    whose first event is in the period). With `stamps` (no period): the actor and the step times
    too (see `_walks`).
    """
    return _walks(params, spec, query, ctx, period, stamps=stamps)


def _in_period(evs: str, spec: FunnelSpec, period: Callable[[str], str]) -> str:
    """`evs` as the walk of the row's `period` sees them (see `walks`), in the same tuple shape."""
    if _narrow(spec):
        stripped = f"toUInt32(bitAnd(e.2, toUInt32({0xFFFFFFFF ^ 2})))"  # bit 1: step 0
        rest = ", e.3" if spec.attribution == "all_events" else ""
    else:
        stripped = "arrayFilter(c -> c != 1, e.2)"  # code 1: step 0
        rest = ", e.3"
    moved = f"tuple(e.1, if({period('e.1')} > period, {stripped}, e.2){rest})"
    return f"arrayMap(e -> {moved}, arrayFilter(e -> {period('e.1')} >= period, {evs}))"


def _entered(spec: FunnelSpec, period: Callable[[str], str]) -> str:
    """The distinct periods of a person's first-step events (unordered: of any step event, each
    the entry of an attempt)."""
    if spec.order == "unordered":
        first = "e.2 != 0" if _narrow(spec) else "arrayExists(c -> c > 0, e.2)"
    else:
        first = "bitTest(e.2, 1)" if _narrow(spec) else "has(e.2, toInt8(1))"
    return f"arrayDistinct(arrayMap(e -> {period('e.1')}, arrayFilter(e -> {first}, evs)))"


def _unordered_entry(spec: FunnelSpec, period: Callable[[str], str] | None) -> str | None:
    """What an event `e` needs to start an unordered attempt beside matching a step: its period
    is the row's (trends), its value the row's (step attribution, the value at the attempt's
    first event); None when nothing."""
    parts = []
    if period is not None:
        parts.append(f"{period('e.1')} = period")
    if spec.attribution_step is not None and spec.breakdown is not None:
        parts.append("e.3 = value")
    return " AND ".join(f"({p})" for p in parts) or None


def _walks(
    params: Params,
    spec: FunnelSpec,
    query: query_pb2.FunnelsQuery,
    ctx: Context,
    period: Callable[[str], str] | None = None,
    *,
    stamps: bool = False,
) -> str:
    """Rows (value, bits, d1..d{n-1}): per person and value, the steps completed (bit k: step k)
    and the microseconds of each step's conversion (0 when none), for persons who entered. With
    `period`: (value, period, bits, d1..d{n-1}) per person, value and entrance period (`walks`).

    With `stamps` (no period) each row also has `actor` and s0..s{n-1}, the microsecond time of
    each step of the best attempt (0 when not completed, an optional step skipped too; unordered:
    the time it had completed k + 1 steps); the steps view never asks for them, so its statement
    is unchanged."""
    if stamps and period is not None:
        raise ValueError("step times are those of a walk without periods")
    actors = _actors(params, spec, query, ctx)
    window = params.bind(spec.window_seconds * 1_000_000, "Int64")
    evs = "arrayFilter(e -> e.3 = value, evs)" if spec.attribution == "all_events" else "evs"
    n = len(spec.steps)
    joined = "ARRAY JOIN vals AS value"
    if period is not None:
        if spec.order != "unordered":
            # Unordered attempts are filtered by their entry's period inside the walk instead.
            evs = _in_period(evs, spec, period)
        joined += f" ARRAY JOIN {_entered(spec, period)} AS period"
    # The columns that name a row besides the walk's results.
    key = "value, period" if period is not None else "value"

    def source(*layers: list[str]) -> str:
        """The person's events as `fw_evs`, then each layer's columns over the one before."""
        who = "actor, " if stamps else ""
        sql = f"SELECT {who}{key}, {evs} AS fw_evs FROM ({actors}) {joined}"
        for cols in layers:
            sql = f"SELECT *, {', '.join(cols)} FROM ({sql})"
        return sql

    if spec.order == "unordered":
        layers, most, gaps, found, firsts = vector.unordered(
            n, "fw_evs", window, _narrow(spec), _unordered_entry(spec, period)
        )
        times = ", ".join(f"if(length({gaps}) >= {k}, {gaps}[{k}], 0) AS d{k}" for k in range(1, n))
        if stamps:
            # Step k of an unordered attempt: the time it had completed k + 1 steps (its sorted times).
            times += ", actor, " + ", ".join(f"if(length({firsts}) > {k}, {firsts}[{k + 1}], 0) AS s{k}" for k in range(n))
        inner = source(*layers)
        return (
            f"SELECT {key}, toUInt32(bitShiftLeft(toUInt32(1), {most}) - 1) AS bits, {times} "
            f"FROM ({inner}) WHERE {found}"
        )
    if _narrow(spec):
        # The common case: the whole-array walk. Persons with an instant whose events carry different
        # step codes get the fold's items (one per step code at such instants, in its order) first.
        times = "arrayMap(e -> e.1, fw_evs) AS fw_t"
        codes = "arrayMap(e -> e.2, fw_evs) AS fw_c"
        mixed = (
            "arrayExists((a, b, c, d) -> a = b AND c != d, arrayPopBack(fw_t), arrayPopFront(fw_t), "
            "arrayPopBack(fw_c), arrayPopFront(fw_c)) AS fw_mixed"
        )
        # Mixed persons' events as the wide path has them: (t, step codes, value) sorted; their items'
        # codes back to a bitmask.
        listed = f"arrayFilter(k -> bitTest(e.2, k), CAST({list(range(1, n + 1))}, 'Array(Int8)'))"
        walked = "arraySlice(fw_evs, 1, if(fw_mixed, length(fw_evs), 0))"
        wide = f"arraySort(arrayMap(e -> tuple(e.1, {listed}, emptyArrayString()), {walked}))"
        mask = "toUInt32(arraySum(arrayMap(c -> bitShiftLeft(toUInt32(1), c), y.2)))"
        expanded = f"arrayMap(y -> tuple(y.1, {mask}, y.4, y.5), {_items(wide)})"
        plain = "arrayMap(e -> tuple(e.1, e.2, toUInt8(0), toUInt32(0)), fw_evs)"
        items = f"if(fw_mixed, {expanded}, {plain}) AS fw_items"
        layers, furthest, best = vector.ordered(n, "fw_items", window, spec.order == "strict")
        inner = source([times, codes], [mixed], [items], *layers)
        columns = ", ".join(f"if(length({best}) > {k}, {best}[{k + 1}] - {best}[{k}], 0) AS d{k}" for k in range(1, n))
        bits = f"toUInt32(bitShiftLeft(toUInt32(1), {furthest}) - 1)"
        if stamps:
            columns += ", actor, " + ", ".join(f"if(length({best}) > {k}, {best}[{k + 1}], 0) AS s{k}" for k in range(n))
        return f"SELECT {key}, {bits} AS bits, {columns} FROM ({inner}) WHERE {furthest} > 0"
    # Exclusions, optional steps or step attribution: the fold for every person.
    mandatory = [k for k, step in enumerate(spec.steps) if not step.optional]
    stamps_of = "tupleElement(res, 9)"
    fold_times = []
    for k in range(1, n):
        if spec.steps[k].optional:
            fold_times.append("toInt64(0)")
        else:
            # The j-th gap between mandatory step times belongs to the j-th mandatory step after the first.
            j = mandatory.index(k)
            fold_times.append(f"if(length({stamps_of}) > {j}, {stamps_of}[{j + 1}] - {stamps_of}[{j}], 0)")
    fold_bits = "tupleElement(res, 10)"
    # The best attempt reached a step and is not excluded.
    fold_entered = "tupleElement(res, 6) > 0 AND tupleElement(res, 8) = 0"
    # Optional steps keep no time among the mandatory ones: the step times by step ride along.
    by_step = stamps and len(mandatory) < n
    fold = _ordered_fold(params, spec, _thinned("fw_evs"), window, by_step=by_step)
    columns = ", ".join(f"{t} AS d{k}" for k, t in enumerate(fold_times, 1))
    if by_step:
        columns += ", actor, " + ", ".join(f"tupleElement(res, {_BEST_AT})[{k + 1}] AS s{k}" for k in range(n))
    elif stamps:
        # Without optional steps every step is mandatory: the j-th time is step j's.
        columns += ", actor, " + ", ".join(f"if(length({stamps_of}) > {k}, {stamps_of}[{k + 1}], 0) AS s{k}" for k in range(n))
    inner = source([f"{fold} AS res"])
    return f"SELECT {key}, {fold_bits} AS bits, {columns} FROM ({inner}) WHERE {fold_entered}"


def _thinned(evs: str) -> str:
    """The events without the middle of three alike in a row (same step codes and value, strictly
    increasing times), as the reference's UDF input. For ordered and strict funnels dropping it
    changes nothing: the first of the three did whatever it could do (a step it completes the
    middle finds already completed; an exclusion it applies the middle finds applied; a strict
    reset the middle repeats), and it is no later, so inside every window the middle is in.
    """
    return (
        "arrayFilter((e, b, a) -> NOT (length(e.2) <= 1 AND e.2 = b.2 AND e.2 = a.2 AND e.3 = b.3 AND e.3 = a.3 "
        f"AND e.1 > b.1 AND e.1 < a.1), {evs}, arrayRotateRight({evs}, 1), arrayRotateLeft({evs}, 1))"
    )


def _set(array: str, index: str, value: str) -> str:
    """`array` with its element at 0-based `index` replaced by `value`.

    No lambda: a lambda would copy every column it refers to (the whole state) once per element.
    """
    return f"arrayConcat(arraySlice({array}, 1, {index}), [{value}], arraySlice({array}, {index} + 2))"


# The fold's state, one field per position (a tuple of parallel arrays, not an array of slots, so
# that one slot changes without rebuilding the others): per slot 0..n its attempt's entry time
# (µs, 0: none), excluded flag, mandatory step times, events used and steps bitfield; then the
# best attempt's slot index, entry, excluded flag, step times and bitfield.
_ENTRY, _EXCLUDED, _TIMES, _USED, _BITS = 1, 2, 3, 4, 5
_BEST, _BEST_ENTRY, _BEST_EXCLUDED, _BEST_TIMES, _BEST_BITS = 6, 7, 8, 9, 10
# With `by_step` only (funnel paths): per slot, then for the best attempt, each step's time by step
# index (0: not completed), optional steps included.
_AT, _BEST_AT = 11, 12


def _ordered_fold(params: Params, spec: FunnelSpec, evs: str, window: str, *, by_step: bool = False) -> str:
    """The per-person state machine (query-engine-semantics §4.3, docs/funnels-semantics.md).

    Slot s (1..n) holds the latest attempt that completed step s-1, slot 0 an attempt entering at
    the current instant. Events of one instant with different step sets become one item per
    matched step in step order (`multi`); the others stay one item each. Each item's codes are
    applied in reverse (exclusions first, then the steps from the last), so one event never
    completes two consecutive steps. The body has no lambda that refers to the state: each would
    copy the whole state per element. With `by_step` the state also keeps every step's time by
    step index (fields _AT, _BEST_AT), for the paths of a funnel with optional steps.
    """
    n = len(spec.steps)
    size_of_state = _BEST_AT if by_step else _BEST_BITS
    optional = [0] + [1 if step.optional else 0 for step in spec.steps]  # by slot number
    # Slots an attempt may come from when step s completes: s-1, then back over optional steps,
    # padded with the last one to one length (so that a fixed multiIf walks any of them).
    chains = [[0]]
    for number in range(1, n + 1):
        back = [number - 1]
        while back[-1] > 0 and optional[back[-1]]:
            back.append(back[-1] - 1)
        chains.append(back)
    depth = max(len(c) for c in chains)
    chains = [c + [c[-1]] * (depth - len(c)) for c in chains]
    chain = f"{params.bind(chains, 'Array(Array(UInt8))')}[s1]"
    skip_step = f"{params.bind(optional, 'Array(UInt8)')}[s1] = 1"

    def f(k: int) -> str:
        return f"tupleElement(st, {k})"

    t = "tupleElement(x, 1)"
    s = "toUInt8(abs(c))"

    def valid(q: str) -> str:
        return f"({f(_ENTRY)}[{q} + 1] != 0 AND {t} - {f(_ENTRY)}[{q} + 1] <= {window})"

    candidates = [f"{chain}[{j}]" for j in range(1, depth + 1)]
    if depth == 1:
        p = candidates[0]
    else:
        p = "multiIf(" + ", ".join(f"{valid(q)}, {q}" for q in candidates[:-1]) + f", {candidates[-1]})"
    body_parts = {
        "s1": f"({s} + 1)",
    }
    entry, excluded = f"{f(_ENTRY)}[p + 1]", f"{f(_EXCLUDED)}[p + 1]"
    times, used, bits = f"{f(_TIMES)}[p + 1]", f"{f(_USED)}[p + 1]", f"{f(_BITS)}[p + 1]"
    ok = f"{entry} != 0 AND {t} - {entry} <= {window} AND {f(_ENTRY)}[s1] != {entry}"
    untouched = [f(k) for k in range(1, size_of_state + 1)]

    def state(**changed: str) -> str:
        fields = list(untouched)
        for name, value in changed.items():
            fields[globals()[f"_{name.upper()}"] - 1] = value
        return f"tuple({', '.join(fields)})"

    exclude = (
        f"if({excluded} = 1, st, "
        + state(
            excluded=_set(f(_EXCLUDED), "p", "toUInt8(1)"),
            best_excluded=f"if({f(_BEST)} = p AND {t} - {f(_BEST_ENTRY)} <= {window}, toUInt8(1), {f(_BEST_EXCLUDED)})",
        )
        + ")"
    )
    new_times = f"if({skip_step}, {times}, arrayPushBack({times}, {t}))"
    new_used = f"if({skip_step}, {used}, arrayPushBack({used}, tupleElement(x, 5)))"
    new_bits = f"toUInt32(bitOr({bits}, bitShiftLeft(toUInt32(1), {s} - 1)))"
    better = f"({s} > {f(_BEST)} OR ({s} = {f(_BEST)} AND {f(_BEST_EXCLUDED)} = 1))"
    stored = f"{excluded} = 1"  # an excluded attempt advances only as the best, never in a slot
    by_step_fields: dict[str, str] = {}
    if by_step:
        new_at = _set(f"{f(_AT)}[p + 1]", f"({s} - 1)", t)
        by_step_fields = {
            "at": f"if({stored}, {f(_AT)}, {_set(f(_AT), s, new_at)})",
            "best_at": f"if({better}, {new_at}, {f(_BEST_AT)})",
        }
    advanced = state(
        **by_step_fields,
        entry=f"if({stored}, {f(_ENTRY)}, {_set(f(_ENTRY), s, entry)})",
        excluded=f"if({stored}, {f(_EXCLUDED)}, {_set(f(_EXCLUDED), s, excluded)})",
        times=f"if({stored}, {f(_TIMES)}, {_set(f(_TIMES), s, new_times)})",
        used=f"if({stored}, {f(_USED)}, {_set(f(_USED), s, new_used)})",
        bits=f"if({stored}, {f(_BITS)}, {_set(f(_BITS), s, new_bits)})",
        best=f"if({better}, {s}, {f(_BEST)})",
        best_entry=f"if({better}, {entry}, {f(_BEST_ENTRY)})",
        best_excluded=f"if({better}, {excluded}, {f(_BEST_EXCLUDED)})",
        best_times=f"if({better}, {new_times}, {f(_BEST_TIMES)})",
        best_bits=f"if({better}, {new_bits}, {f(_BEST_BITS)})",
    )
    skips = [f"(tupleElement(x, 4) = 1 AND has({used}, tupleElement(x, 5)))"]
    if spec.attribution_step is not None and spec.breakdown is not None:
        skips.append(f"(p = {params.bind(spec.attribution_step, 'UInt8')} AND tupleElement(x, 3) != value)")
    advance = f"if({' OR '.join(skips)}, st, {advanced})"
    body = f"if(NOT ({ok}), st, if(c < 0, {exclude}, {advance}))"
    # p and s1 are written once above and substituted here (the engine computes a repeated
    # subexpression once).
    body = _substitute(_substitute(body, {"p": f"({p})"}), body_parts)

    def g(k: int) -> str:
        return f"tupleElement(acc, {k})"

    fresh = [
        _set(g(_ENTRY), "0", t),
        _set(g(_EXCLUDED), "0", "toUInt8(0)"),
        _set(g(_TIMES), "0", "emptyArrayInt64()"),
        _set(g(_USED), "0", "emptyArrayUInt32()"),
        _set(g(_BITS), "0", "toUInt32(0)"),
        *(g(k) for k in range(6, 11)),
    ]
    zeros = f"arrayWithConstant({n}, toInt64(0))"
    if by_step:
        fresh += [_set(g(_AT), "0", zeros), g(_BEST_AT)]
    stepped = f"arrayFold((st, c) -> {body}, arrayReverse(tupleElement(x, 2)), tuple({', '.join(fresh)}))"
    if spec.order == "strict":
        # Any event that does not match a step ends the attempts waiting for that step.
        keep = f"arrayMap(i -> i = 1 OR has(tupleElement(x, 2), toInt8(i - 1)), range(1, {n + 2}))"
        blanks = ["toInt64(0)", "toUInt8(0)", "emptyArrayInt64()", "emptyArrayUInt32()", "toUInt32(0)"]
        cleared = [
            f"arrayMap((o, k) -> if(k, o, {blank}), tupleElement(y, {i + 1}), {keep})" for i, blank in enumerate(blanks)
        ]
        rest = [f"tupleElement(y, {k})" for k in range(6, 11)]
        if by_step:
            rest += [f"arrayMap((o, k) -> if(k, o, {zeros}), tupleElement(y, {_AT}), {keep})", f"tupleElement(y, {_BEST_AT})"]
        kept = f"tuple({', '.join(cleared)}, {', '.join(rest)})"
        stepped = f"arrayMap(y -> if(tupleElement(x, 4) = 1, y, {kept}), [{stepped}])[1]"
    size = n + 1
    initial = (
        f"tuple(arrayWithConstant({size}, toInt64(0)), arrayWithConstant({size}, toUInt8(0)), "
        f"arrayWithConstant({size}, emptyArrayInt64()), arrayWithConstant({size}, emptyArrayUInt32()), "
        f"arrayWithConstant({size}, toUInt32(0)), toUInt8(0), toInt64(0), toUInt8(0), emptyArrayInt64(), toUInt32(0)"
        + (f", arrayWithConstant({size}, {zeros}), {zeros})" if by_step else ")")
    )
    return f"arrayFold((acc, x) -> {stepped}, {_items(evs)}, {initial})"


def _substitute(text: str, names: dict[str, str]) -> str:
    """`text` with each whole-word placeholder name replaced by its expression."""
    import re

    pattern = re.compile(r"\b(" + "|".join(re.escape(name) for name in names) + r")\b")
    return pattern.sub(lambda m: names[m.group(1)], text)


def _items(evs: str) -> str:
    """The fold's items from the sorted events (t, codes, bv): (t, codes, bv, multi, id).

    Events of one instant whose step sets differ become one item per positive code, sorted by
    code (then by event), with multi = 1; the others stay as they are. Sorted by time, then step
    sets, the events of one instant differ exactly when the first and the last of them do.
    Neighbours are compared through shifted copies (a lambda reading T[i - 1] would copy T per
    element).
    """
    times = f"arrayMap(e -> e.1, {evs})"
    codes = f"arrayMap(e -> e.2, {evs})"
    # Pushed then popped (not popped then pushed), so that an empty T gives empty shifts.
    starts = "arrayMap((a, b) -> a != b, T, arrayPopBack(arrayPushFront(T, toInt64(-1))))"
    ends = "arrayMap((a, b) -> a != b, T, arrayPopFront(arrayPushBack(T, toInt64(-1))))"
    mixed = f"arrayMap((a, b) -> a != b, arrayFill((cc, f) -> f, C, {starts}), arrayReverseFill((cc, f) -> f, C, {ends}))"
    expand = (
        "arrayFlatten(arrayMap((e, i, mx) -> if(mx, "
        "arrayMap(cc -> tuple(e.1, [cc], e.3, toUInt8(1), toUInt32(i)), arrayFilter(cc -> cc > 0, e.2)), "
        f"[tuple(e.1, e.2, e.3, toUInt8(0), toUInt32(i))]), E, arrayEnumerate(E), {mixed}))"
    )
    ordered = f"arraySort(y -> tuple(y.1, if(y.4 = 1, y.2[1], 0), y.5), {expand})"
    return _let("E", evs, _let("T", times, _let("C", codes, ordered)))


def _let(name: str, value: str, body: str) -> str:
    """`body` with `name` bound to `value`, computed once (a one-element arrayMap). Only for
    bodies that refer to nothing large but the bound name (the lambda copies what it refers to)."""
    return f"arrayMap({name} -> {body}, [{value}])[1]"


def _and(parts: list[str]) -> str:
    useful = [p for p in parts if p and p != "1"]
    return " AND ".join(f"({p})" for p in useful) if useful else "1"


def _or(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return " OR ".join(f"({p})" for p in parts)
