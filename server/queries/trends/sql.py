"""Builds the ClickHouse SQL of one trends series: rows of (bucket, breakdown value, value)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from generated.insights.v1 import query_pb2
from server.errors import FailedPrecondition
from server.queries.base import ActionDefinition
from server.queries.common import sampling
from server.queries.common.actions import action_sql
from server.queries.common.breakdown_value import PLAIN, Buckets, Shape, bounds_sql, shaped_sql
from server.queries.common.dates import QueryDateRange
from server.queries.common.errors import QueryError
from server.queries.common.properties import (
    CohortSql,
    breakdown_value_sql,
    filters_sql,
    properties_sql,
    property_number,
    property_text,
)
from server.queries.common.sql import Params
from server.queries.sql.expression import compile_expression

M = query_pb2
# Buckets are keyed by text that matches grid_keys(): the start instant in epoch seconds for minute,
# hour and day buckets (so the two 01:00 hours of a DST fall-back night stay apart), and the local
# start date for week and month buckets (ClickHouse gives those as Date).
_DATE_KEYED = frozenset({"week", "month"})
NULL_LABEL = "$$_posthog_breakdown_null_$$"
OTHER_LABEL = "$$_posthog_breakdown_other_$$"

# Maths whose per-bucket values can be added across breakdown values (so "Other" is a sum).
ADDITIVE = frozenset(
    {
        M.MATH_TYPE_TOTAL,
        M.MATH_TYPE_SUM,
        M.MATH_TYPE_FIRST_TIME_FOR_USER,
        M.MATH_TYPE_FIRST_MATCHING_EVENT_FOR_USER,
    }
)
# Maths counted in events or actors, which sampling scales back.
COUNTING = frozenset(
    {
        M.MATH_TYPE_TOTAL,
        M.MATH_TYPE_DAU,
        M.MATH_TYPE_WEEKLY_ACTIVE,
        M.MATH_TYPE_MONTHLY_ACTIVE,
        M.MATH_TYPE_UNIQUE_SESSION,
        M.MATH_TYPE_FIRST_TIME_FOR_USER,
        M.MATH_TYPE_FIRST_MATCHING_EVENT_FOR_USER,
    }
)
PROPERTY_MATHS: dict[int, str | float] = {
    M.MATH_TYPE_SUM: "sum",
    M.MATH_TYPE_AVG: "avg",
    M.MATH_TYPE_MIN: "min",
    M.MATH_TYPE_MAX: "max",
    M.MATH_TYPE_MEDIAN: 0.5,
    M.MATH_TYPE_P75: 0.75,
    M.MATH_TYPE_P90: 0.9,
    M.MATH_TYPE_P95: 0.95,
    M.MATH_TYPE_P99: 0.99,
}
PER_ACTOR_MATHS: dict[int, str | float] = {
    M.MATH_TYPE_AVG_COUNT_PER_ACTOR: "avg",
    M.MATH_TYPE_MIN_COUNT_PER_ACTOR: "min",
    M.MATH_TYPE_MAX_COUNT_PER_ACTOR: "max",
    M.MATH_TYPE_MEDIAN_COUNT_PER_ACTOR: 0.5,
    M.MATH_TYPE_P75_COUNT_PER_ACTOR: 0.75,
    M.MATH_TYPE_P90_COUNT_PER_ACTOR: 0.9,
    M.MATH_TYPE_P95_COUNT_PER_ACTOR: 0.95,
    M.MATH_TYPE_P99_COUNT_PER_ACTOR: 0.99,
}
# The math property that is a session's duration (reference §3.5), not a property of the event.
SESSION_DURATION = "$session_duration"
ACTIVE_WINDOW_DAYS: dict[int, int] = {M.MATH_TYPE_WEEKLY_ACTIVE: 7, M.MATH_TYPE_MONTHLY_ACTIVE: 30}
_TRUNCATE = {
    "minute": "toStartOfMinute",
    "hour": "toStartOfHour",
    "day": "toStartOfDay",
    "month": "toStartOfMonth",
}
_STEPS_PER_DAY = {"minute": 1440, "hour": 24, "day": 1, "week": 1}
_STEP = {
    "minute": "toIntervalMinute",
    "hour": "toIntervalHour",
    "day": "toIntervalDay",
    "week": "toIntervalDay",
}


@dataclass(frozen=True)
class Breakdown:
    """What a series is split by: (key, source) per dimension; source is "event" or "person"."""

    dimensions: tuple[tuple[str, str], ...]
    # Given as the `breakdowns` list (values are lists, even of one), not the single `breakdown`.
    multi: bool = False
    # A cohort breakdown: (cohort id, the field naming it) in the order given (0: all users). Each
    # is a branch of its own whose rows carry its id (SeriesSpec.breakdown_value); nothing is cut.
    cohorts: tuple[tuple[int, str], ...] = ()
    # Per dimension: URL normalising or histogram (empty: every dimension plain), and the
    # histogram buckets once their bounds are known (None: not yet, or no histogram).
    shapes: tuple[Shape, ...] = ()
    grids: tuple[Buckets | None, ...] = ()

    def shape(self, i: int) -> Shape:
        return self.shapes[i] if i < len(self.shapes) else PLAIN

    def grid(self, i: int) -> Buckets | None:
        return self.grids[i] if i < len(self.grids) else None

    def histograms(self) -> list[int]:
        """The dimensions that are histograms."""
        return [i for i in range(len(self.dimensions)) if self.shape(i).bins]


@dataclass
class SeriesSpec:
    """One series reduced to what the SQL needs."""

    math: int
    # Condition selecting the series' events before property filters (event names), and with them.
    base_where: str
    match_where: str
    math_property: str | None = None
    # "event" or "person" (whose properties hold it), or "session" for SESSION_DURATION.
    math_property_source: str = "event"
    multiplier: float | None = None
    extra: list[str] = field(default_factory=list)
    # The breakdown value of every row, instead of one computed per event (a cohort breakdown's
    # branch: its cohort's id; `extra` then holds the membership condition).
    breakdown_value: str | None = None
    # math hogql: the aggregate expression (math_hogql, checked) and its field path.
    math_hogql: str | None = None
    math_hogql_path: str = ""


def additive(spec: SeriesSpec) -> bool:
    """Whether the series' per-bucket values of several breakdown values add up to theirs together.

    Not for a sum of session durations: a session with events of two values counts in both.
    """
    return spec.math in ADDITIVE and spec.math_property_source != "session"


@dataclass(frozen=True)
class Window:
    """The time frame and bucketing a statement runs over."""

    dates: QueryDateRange
    total_value: bool
    cumulative: bool
    team_id: int
    sample_threshold: int | None


def series_conditions(
    params: Params,
    node: query_pb2.SeriesNode,
    query: query_pb2.TrendsQuery,
    test_filters: list[query_pb2.PropertyFilter],
    path: str,
    timezone: str,
    actions: Mapping[int, ActionDefinition] | None = None,
    cohorts: CohortSql | None = None,
) -> tuple[str, str]:
    """(event-name condition, full match condition) of a series node (an action's predicate stands
    for the event name of an ActionsNode); `cohorts` compiles the cohort filters."""
    shared = [
        properties_sql(params, query.properties, "properties", timezone, cohorts)
        if query.HasField("properties")
        else "1"
    ]
    if query.filter_test_accounts:
        shared.append(filters_sql(params, test_filters, "filterTestAccounts", timezone, cohorts))
    kind = node.WhichOneof("node")
    if kind in ("events_node", "actions_node"):
        source = getattr(node, kind)
        name = _name_condition(params, node, path, timezone, actions or {})
        own = filters_sql(params, source.properties, f"{path}.properties", timezone, cohorts)
        return name, _and([name, own, *shared])
    group = node.group_node
    names, matches = [], []
    for i, member in enumerate(group.nodes):
        member_path = f"{path}.nodes[{i}]"
        member_node = getattr(member, member.WhichOneof("node") or "events_node")
        name = _name_condition(params, member, member_path, timezone, actions or {})
        names.append(name)
        own_filters = filters_sql(params, member_node.properties, f"{member_path}.properties", timezone, cohorts)
        matches.append(_and([name, own_filters]))
    own = filters_sql(params, group.properties, f"{path}.properties", timezone, cohorts)
    return _or(names), _and([_or(matches), own, *shared])


def grid_keys(dates: QueryDateRange) -> list[str]:
    """The key of each bucket of the grid, as the SQL of this module writes it."""
    if dates.interval in _DATE_KEYED:
        return [b.strftime("%Y-%m-%d") for b in dates.bucket_starts()]
    return [str(int(b.timestamp())) for b in dates.bucket_starts()]


def statement(
    params: Params,
    spec: SeriesSpec,
    window: Window,
    breakdown: Breakdown | None,
    exclude_values: list[list[str]] | None = None,
) -> str:
    """SQL returning (b, bv, v): local bucket start text ('' for totals), breakdown value, value.

    `exclude_values` recomputes the "Other" bucket: events of those breakdown values are left out
    and every remaining value is grouped under the Other label.
    """
    tz = params.bind(window.dates.timezone, "String")
    if spec.breakdown_value is not None:
        bv = params.bind(spec.breakdown_value, "String")
    else:
        bv = _breakdown_expr(params, breakdown, window.dates.timezone)
    where = [spec.match_where, *spec.extra]
    if exclude_values is not None:
        where.append(f"NOT has({params.bind(exclude_values, 'Array(Array(String))')}, {_as_array(bv)})")
        other = params.bind(OTHER_LABEL, "String")
        width = len(breakdown.dimensions) if breakdown else 1
        bv = other if width == 1 else f"[{', '.join([other] * width)}]"
    if spec.math in ACTIVE_WINDOW_DAYS and not _active_is_dau(spec.math, window.dates.interval):
        return _active_statement(params, spec, window, bv, where, tz)
    if spec.math in (M.MATH_TYPE_FIRST_TIME_FOR_USER, M.MATH_TYPE_FIRST_MATCHING_EVENT_FOR_USER):
        return _first_time_statement(params, spec, window, bv, where, tz)
    if spec.math in PROPERTY_MATHS and spec.math_property_source == "session":
        return _session_statement(params, spec, window, bv, where, tz)
    filters = _in_window(params, window, tz, where)
    bucket = _bucket("timestamp", window, tz, params)
    if spec.math in PER_ACTOR_MATHS:
        inner = (
            f"SELECT {bucket} AS b, {bv} AS bv, person_id, count() AS c FROM events WHERE {filters} "
            f"GROUP BY b, bv, person_id"
        )
        return f"SELECT b, bv, {_aggregate(PER_ACTOR_MATHS[spec.math], 'toFloat64(c)')} AS v FROM ({inner}) GROUP BY b, bv"
    if window.cumulative and spec.math in (
        M.MATH_TYPE_DAU,
        M.MATH_TYPE_WEEKLY_ACTIVE,
        M.MATH_TYPE_MONTHLY_ACTIVE,
    ):
        # A running count of distinct actors: each actor counts once, in their first bucket.
        inner = (
            f"SELECT person_id, {bv} AS bv, min({bucket}) AS b FROM events WHERE {filters} "
            f"GROUP BY person_id, bv"
        )
        return f"SELECT b, bv, toFloat64(count()) AS v FROM ({inner}) GROUP BY b, bv"
    value = _math_value(params, spec, window.dates.timezone)
    return f"SELECT {bucket} AS b, {bv} AS bv, {value} AS v FROM events WHERE {filters} GROUP BY b, bv"


def _math_value(params: Params, spec: SeriesSpec, tz: str) -> str:
    if spec.math in (M.MATH_TYPE_TOTAL, M.MATH_TYPE_UNSPECIFIED):
        return "toFloat64(count())"
    if spec.math in (M.MATH_TYPE_DAU, M.MATH_TYPE_WEEKLY_ACTIVE, M.MATH_TYPE_MONTHLY_ACTIVE):
        return "toFloat64(uniqExact(person_id))"
    if spec.math == M.MATH_TYPE_UNIQUE_SESSION:
        return "toFloat64(uniqExact(`$session_id`))"
    if spec.math == M.MATH_TYPE_HOGQL:
        assert spec.math_hogql is not None
        # The bucket's value is the caller's aggregate (a field read outside an aggregate is the
        # engine's NOT_AN_AGGREGATE, theirs: compute.py); no value (NULL) is 0 as every math's.
        expression = compile_expression(spec.math_hogql, params, path=spec.math_hogql_path, timezone=tz, aggregate=True)
        return f"ifNull(toFloat64({expression}), 0)"
    assert spec.math_property is not None
    number = property_number(params, spec.math_property, spec.math_property_source)
    if spec.multiplier is not None:
        number = f"({number} * {params.bind(spec.multiplier, 'Float64')})"
    return _aggregate(PROPERTY_MATHS[spec.math], number)


def _aggregate(kind: str | float, value: str) -> str:
    if isinstance(kind, float):
        # Exact quantile with linear interpolation (numpy's default), deterministic unlike quantile().
        return f"ifNull(toFloat64(quantileExactInclusive({kind})({value})), 0)"
    return f"ifNull(toFloat64({kind}({value})), 0)"


def _active_is_dau(math: int, interval: str) -> bool:
    # As the reference: weekly_active over week (or longer) buckets is dau; monthly over months too.
    return interval == "month" or (math == M.MATH_TYPE_WEEKLY_ACTIVE and interval == "week")


def _active_statement(
    params: Params, spec: SeriesSpec, window: Window, bv: str, where: list[str], tz: str
) -> str:
    """Rolling distinct actors: bucket d counts actors active in (d - L days, d] (truncated times)."""
    days = ACTIVE_WINDOW_DAYS[spec.math]
    dates = window.dates
    upper = params.bind(dates.sql_bounds()[1], "String")
    upper_sql = f"toDateTime64({upper}, 6, {tz})"
    days_param = params.bind(days, "UInt32")
    if window.total_value:
        filters = _and(
            [
                _team(params, window),
                f"timestamp > {upper_sql} - toIntervalDay({days_param})",
                f"timestamp <= {upper_sql}",
                *_sampling(params, window),
                *where,
            ]
        )
        return f"SELECT '' AS b, {bv} AS bv, toFloat64(uniqExact(person_id)) AS v FROM events WHERE {filters} GROUP BY b, bv"
    first = params.bind(dates.bucket_starts()[0].strftime("%Y-%m-%d %H:%M:%S"), "String")
    lower_sql = f"toDateTime64({first}, 6, {tz}) - toIntervalDay({days_param})"
    unit = dates.interval
    truncate = "toStartOfDay" if unit == "week" else _TRUNCATE[unit]
    steps = params.bind(days * _STEPS_PER_DAY[unit], "UInt32")
    filters = _and(
        [
            _team(params, window),
            f"timestamp >= {lower_sql}",
            f"timestamp <= {upper_sql}",
            *_sampling(params, window),
            *where,
        ]
    )
    inner = (
        f"SELECT {truncate}(toTimeZone(timestamp, {tz})) AS t, {bv} AS bv, person_id FROM events "
        f"WHERE {filters} GROUP BY t, bv, person_id"
    )
    grid_param = params.bind(grid_keys(dates), "Array(String)")
    key = "formatDateTime(d, '%Y-%m-%d')" if unit in _DATE_KEYED else "toString(toUnixTimestamp(d))"
    if unit in ("minute", "hour"):
        # The window is L calendar days (wall clock, as `d - INTERVAL L DAY` in the time zone), so a
        # DST change inside it makes it an hour longer or shorter: take a step more, then keep the
        # bucket starts d with d - L days < t.
        candidates = (
            f"arrayFilter(x -> toTimeZone(x - toIntervalDay({days_param}), {tz}) < t, "
            f"arrayMap(i -> toTimeZone(t + {_STEP[unit]}(i), {tz}), range({steps} + 2)))"
        )
    else:
        candidates = f"arrayMap(i -> t + {_STEP[unit]}(i), range({steps}))"
    return (
        f"SELECT {key} AS b, bv, toFloat64(uniqExact(person_id)) AS v "
        f"FROM ({inner}) ARRAY JOIN {candidates} AS d "
        f"WHERE has({grid_param}, b) GROUP BY b, bv"
    )


def _first_time_statement(
    params: Params, spec: SeriesSpec, window: Window, bv: str, where: list[str], tz: str
) -> str:
    """Actors counted in the bucket of their first event (first-ever, or first matching)."""
    lower, upper = _bounds(params, window, tz)
    match = _and(where)
    in_range = f"timestamp >= {lower}"
    if spec.math == M.MATH_TYPE_FIRST_TIME_FOR_USER:
        first = "min(timestamp)"
        matched_first = f"minIf(timestamp, {in_range} AND {match})"
        value = f"argMin({bv}, timestamp)"
        having = "first = matched AND first >= " + lower
    else:
        first = f"minIf(timestamp, {match})"
        matched_first = first
        value = f"argMinIf({bv}, timestamp, {match})"
        having = f"first = matched AND first >= {lower} AND countIf({match}) > 0"
    filters = _and(
        [_team(params, window), spec.base_where, f"timestamp <= {upper}", *_sampling(params, window)]
    )
    inner = (
        f"SELECT person_id, {first} AS first, {matched_first} AS matched, {value} AS bv FROM events "
        f"WHERE {filters} GROUP BY person_id HAVING {having}"
    )
    bucket = _bucket("first", window, tz, params)
    return f"SELECT {bucket} AS b, bv, toFloat64(count()) AS v FROM ({inner}) GROUP BY b, bv"


def _session_statement(
    params: Params, spec: SeriesSpec, window: Window, bv: str, where: list[str], tz: str
) -> str:
    """A property math over session durations (reference §3.5): each session counts once per bucket
    and breakdown value it has a matching event in, with its duration; then the math over those.

    A session's duration spans all of its events in the environment (whatever their name, time or
    properties, unsampled), as the reference's sessions table: whole seconds between the first and
    the last (`dateDiff`, second boundaries crossed). Events without a `$session_id` are in no
    session: they add no value, though their breakdown value is listed (with 0 when it has no
    session), as a property math lists values whose events lack the property.
    """
    filters = _in_window(params, window, tz, where)
    bucket = _bucket("timestamp", window, tz, params)
    matched = (
        f"SELECT {bucket} AS b, {bv} AS bv, `$session_id` AS sid FROM events WHERE {filters} "
        "GROUP BY b, bv, sid"
    )
    # Only the matched sessions are measured, but over all their events. GLOBAL: on a Distributed
    # table the set is built once and sent to every shard (a session's events span shards).
    sessions = (
        "SELECT `$session_id` AS sid, toFloat64(dateDiff('second', min(timestamp), max(timestamp))) AS d "
        f"FROM events WHERE {_team(params, window)} "
        f"AND `$session_id` != '' AND `$session_id` GLOBAL IN (SELECT `$session_id` FROM events "
        f"WHERE {filters}) GROUP BY sid"
    )
    duration = "if(sid != '', d, NULL)"  # NULL: the aggregates skip it
    if spec.multiplier is not None:
        duration = f"({duration} * {params.bind(spec.multiplier, 'Float64')})"
    return (
        f"SELECT b, bv, {_aggregate(PROPERTY_MATHS[spec.math], duration)} AS v "
        f"FROM ({matched}) AS m LEFT JOIN ({sessions}) AS s USING sid GROUP BY b, bv"
    )


def _bucket(column: str, window: Window, tz: str, params: Params) -> str:
    if window.total_value:
        return "''"
    unit = window.dates.interval
    local = f"toTimeZone({column}, {tz})"
    if unit == "week":
        mode = params.bind(3 if window.dates.week_start_day == 1 else 0, "UInt8")
        return f"toString(toStartOfWeek({local}, {mode}))"
    if unit == "month":
        return f"toString(toStartOfMonth({local}))"
    return f"toString(toUnixTimestamp({_TRUNCATE[unit]}({local})))"


def _bounds(params: Params, window: Window, tz: str) -> tuple[str, str]:
    lower, upper = window.dates.sql_bounds()
    return (
        f"toDateTime64({params.bind(lower, 'String')}, 6, {tz})",
        f"toDateTime64({params.bind(upper, 'String')}, 6, {tz})",
    )


def _in_window(params: Params, window: Window, tz: str, where: list[str]) -> str:
    """The conditions on an event counted in `window`: its team, its time range, the sample, `where`."""
    lower, upper = _bounds(params, window, tz)
    return _and(
        [
            _team(params, window),
            f"timestamp >= {lower}",
            f"timestamp <= {upper}",
            *_sampling(params, window),
            *where,
        ]
    )


def _team(params: Params, window: Window) -> str:
    return f"team_id = {params.bind(window.team_id, 'Int64')}"


def _sampling(params: Params, window: Window) -> list[str]:
    # SAMPLE takes no bound parameter; this is the same row selection on the sampling key.
    if window.sample_threshold is None:
        return []
    return [sampling.kept_sql(params, window.sample_threshold)]


def _breakdown_expr(params: Params, breakdown: Breakdown | None, tz: str) -> str:
    if breakdown is None:
        return "''"
    values = [
        breakdown_value_sql(params, key, source)
        if breakdown.shape(i) == PLAIN and source != "hogql"
        else shaped_sql(params, dimension_text(params, key, source, tz), breakdown.shape(i), NULL_LABEL, breakdown.grid(i))
        for i, (key, source) in enumerate(breakdown.dimensions)
    ]
    return values[0] if len(values) == 1 else f"[{', '.join(values)}]"


def dimension_text(params: Params, key: str, source: str, tz: str) -> str:
    """A dimension's text (Nullable(String), NULL when missing): a property's, or a hogql
    expression's `toString` (the reference's), the expression checked by compute.py already."""
    if source == "hogql":
        return f"toString({compile_expression(key, params, path='breakdownFilter', timezone=tz)})"
    return property_text(params, key, source)


def histogram_bounds(params: Params, branches: list[tuple[SeriesSpec, Window]], breakdown: Breakdown) -> str:
    """SQL returning one row: the minimum and maximum number of each histogram dimension (in
    `breakdown.histograms()` order; NULL when none) over the events every branch counts in its window.

    One set of buckets for the whole query (docs/decisions.md, "Histogram breakdowns"), so that
    the lines of several series and of both compare periods are split alike."""
    dims = [breakdown.dimensions[i] for i in breakdown.histograms()]
    parts = []
    for spec, window in branches:
        tz = params.bind(window.dates.timezone, "String")
        aggregates = [
            a for key, source in dims for a in bounds_sql(dimension_text(params, key, source, window.dates.timezone))
        ]
        named = ", ".join(f"{a} AS x{j}" for j, a in enumerate(aggregates))
        filters = _in_window(params, window, tz, [spec.match_where, *spec.extra])
        parts.append(f"SELECT {named} FROM events WHERE {filters}")
    outer = ", ".join(f"{'min' if j % 2 == 0 else 'max'}(x{j})" for j in range(2 * len(dims)))
    return f"SELECT {outer} FROM ({' UNION ALL '.join(parts)})"


def _as_array(expr: str) -> str:
    return expr if expr.startswith("[") else f"[{expr}]"


def _name_condition(
    params: Params,
    node: query_pb2.SeriesNode | query_pb2.GroupMember,
    path: str,
    timezone: str,
    actions: Mapping[int, ActionDefinition],
) -> str:
    """The event name of an EventsNode, the predicate of an ActionsNode's action."""
    if node.WhichOneof("node") != "actions_node":
        return _event_condition(params, node.events_node)
    action_id = node.actions_node.id
    action = actions.get(action_id)
    if action is None:
        raise FailedPrecondition(
            f"{path}.id: action {action_id} does not exist or is deleted",
            reason="ACTION_UNAVAILABLE",
            metadata={"action": str(action_id), "field": f"{path}.id"},
        )
    try:
        return action_sql(params, action, timezone)
    except QueryError as exc:
        # A stored step that no longer compiles: the action needs fixing, not the query.
        raise FailedPrecondition(
            f"{path}.id: action {action_id} cannot be computed: {exc.path}: {exc.message}",
            reason="ACTION_UNAVAILABLE",
            metadata={"action": str(action_id), "field": f"{path}.id"},
        ) from None


def _event_condition(params: Params, node: query_pb2.EventsNode) -> str:
    return f"event = {params.bind(node.event, 'String')}" if node.HasField("event") else "1"


def _and(parts: list[str]) -> str:
    useful = [p for p in parts if p and p != "1"]
    return " AND ".join(f"({p})" for p in useful) if useful else "1"


def _or(parts: list[str]) -> str:
    # Every part stays in the text, even next to a "1": each parameter bound must be used.
    if not parts:
        return "1"
    if len(parts) == 1:
        return parts[0]
    return " OR ".join(f"({p})" for p in parts)


def ranked(params: Params, sql: str, breakdown: Breakdown, limit: int) -> str:
    """A statement's rows with its breakdown values ranked in the engine: (b, bv, v, o).

    The top `limit` values (by their total over every bucket; a value with a null part after the
    rest; ties by value) keep their rows with `o = 0`; every other value is summed per bucket into
    one row with `o = 1` and an empty `bv`. So the engine returns at most (limit + 1) rows per
    bucket whatever the cardinality of the breakdown, and `o` tells whether anything was cut.
    """
    null = params.bind(NULL_LABEL, "String")
    has_null = f"has(bv, {null})" if len(breakdown.dimensions) > 1 else f"bv = {null}"
    totals = f"SELECT b, bv, v, sum(v) OVER (PARTITION BY bv) AS t, {has_null} AS n FROM ({sql})"
    cut = f"(dense_rank() OVER (ORDER BY n ASC, t DESC, bv ASC)) > {params.bind(limit, 'UInt64')}"
    marked = f"SELECT b, bv, v, {cut} AS o FROM ({totals})"
    return (
        f"SELECT b, if(o, defaultValueOfArgumentType(bv), bv) AS k, sum(v) AS v, toUInt8(o) AS o "
        f"FROM ({marked}) GROUP BY b, k, o"
    )


def union(statements: list[tuple[str, bool]]) -> str:
    """One statement returning (s, b, bv, v, o): each statement's rows tagged with its index `s`.

    A statement is (sql, ranked): ranked ones return (b, k, v, o) (see `ranked`), the others
    (b, bv, v) and get `o = 0`. The indexes are our own small integers, written as literals.
    """
    parts = []
    for i, (sql, is_ranked) in enumerate(statements):
        columns = "b, k AS bv, v, o" if is_ranked else "b, bv, v, toUInt8(0) AS o"
        parts.append(f"SELECT toUInt32({i}) AS s, {columns} FROM ({sql})")
    return "\nUNION ALL\n".join(parts)
