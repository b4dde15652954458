"""Checks a RetentionQuery and reduces it to what the SQL needs (no SQL here, nothing runs).

What a caller can send and this service does not compute is collected in `later` (field path,
what) and refused as UNIMPLEMENTED when computing, so that such a query can still be saved; an
invalid value is a QueryError naming the field. Display-only options (meanRetentionCalculation,
retentionReference, selectedInterval, display, dashboardDisplay, showTrendLines) are checked for
their values and shape nothing here: the reference computes the same cohorts whatever they say.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generated.insights.v1 import query_pb2
from server.queries.common.actors import PERSONS, Aggregation, aggregation
from server.queries.common.breakdown_value import PLAIN, filter_shapes, shaped_field
from server.queries.common.checks import problems
from server.queries.common.cohort_breakdown import is_cohort_breakdown
from server.queries.common.errors import QueryError
from server.queries.sql.expression import check_expression

M = query_pb2

DEFAULT_TOTAL_INTERVALS = 7  # the reference runner's default when totalIntervals is unset (or 0)
MAX_TOTAL_INTERVALS = 1000
MAX_MINIMUM_OCCURRENCES = 1_000_000
DEFAULT_BREAKDOWN_LIMIT = 25
MAX_BREAKDOWN_LIMIT = 1000
DEFAULT_EVENT = "$pageview"

PERIOD_NAMES = {
    M.RETENTION_PERIOD_UNSPECIFIED: "day",
    M.RETENTION_PERIOD_HOUR: "hour",
    M.RETENTION_PERIOD_DAY: "day",
    M.RETENTION_PERIOD_WEEK: "week",
    M.RETENTION_PERIOD_MONTH: "month",
}
TYPE_NAMES = {
    M.RETENTION_TYPE_UNSPECIFIED: "recurring",
    M.RETENTION_TYPE_RECURRING: "recurring",
    M.RETENTION_TYPE_FIRST_TIME: "first_time",
    M.RETENTION_TYPE_FIRST_EVER_OCCURRENCE: "first_ever_occurrence",
}
_BREAKDOWN_SOURCES = {
    M.BREAKDOWN_TYPE_UNSPECIFIED: "event",
    M.BREAKDOWN_TYPE_EVENT: "event",
    M.BREAKDOWN_TYPE_PERSON: "person",
    M.BREAKDOWN_TYPE_HOGQL: "hogql",  # the key is a HogQL expression of the event (sql/expression.py)
}
# Breakdown types the reference computes for retention: refused as not built yet.
_LATER_BREAKDOWNS = frozenset({M.BREAKDOWN_TYPE_COHORT, M.BREAKDOWN_TYPE_GROUP})
_MEAN_CALCULATIONS = ("simple", "weighted", "none")
_REFERENCES = ("total", "previous")
_WINDOW_MODES = ("strict_calendar_dates", "24_hour_windows")
_AGGREGATIONS = ("count", "sum", "avg")
# 24-hour windows: each period's window in elapsed seconds (the reference's rolling builder: an hour,
# 24 hours, 7 days, 30 days).
WINDOW_SECONDS = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400}


@dataclass(frozen=True)
class Entity:
    """The target or returning entity: an event name (None: every event) or an action, and its filters."""

    path: str  # "retentionFilter.targetEntity" or "retentionFilter.returningEntity"
    event: str | None = None
    action_id: int | None = None
    properties: tuple[query_pb2.PropertyFilter, ...] = ()


@dataclass(frozen=True)
class RetentionSpec:
    """A checked retention query: everything the SQL and the result shaping need."""

    period: str  # "hour", "day", "week" or "month"
    total_intervals: int
    retention_type: str  # "recurring", "first_time" or "first_ever_occurrence"
    target: Entity
    returning: Entity
    cumulative: bool
    minimum_occurrences: int
    # (property key, "event" | "person"); None without a breakdown.
    breakdown: tuple[str, str] | None
    limit: int
    hide_other: bool
    sampling: float
    later: list[tuple[str, str]] = field(default_factory=list)
    # Who is retained: persons (default), or a group type's keys (aggregation_group_type_index).
    aggregation: Aggregation = PERSONS
    # timeWindowMode 24_hour_windows: periods after the start are windows of WINDOW_SECONDS elapsed
    # from the actor's first start event (docs/decisions.md, "Retention: 24-hour windows").
    rolling: bool = False


def retention_spec(query: query_pb2.RetentionQuery) -> RetentionSpec:
    """The checked form of `query`; QueryError (path relative to the query) when it is invalid."""
    for path, problem in problems(query):
        raise QueryError(problem, path)
    later: list[tuple[str, str]] = []
    rf = query.retention_filter
    total = rf.total_intervals if rf.HasField("total_intervals") else 0
    if not 0 <= total <= MAX_TOTAL_INTERVALS:
        raise QueryError(
            f"totalIntervals must be between 1 and {MAX_TOTAL_INTERVALS} (got {total})",
            "retentionFilter.totalIntervals",
        )
    occurrences = rf.minimum_occurrences if rf.HasField("minimum_occurrences") else 0
    if not 0 <= occurrences <= MAX_MINIMUM_OCCURRENCES:
        raise QueryError(
            f"minimumOccurrences must be between 1 and {MAX_MINIMUM_OCCURRENCES:,} (got {occurrences})",
            "retentionFilter.minimumOccurrences",
        )
    _choice(rf, "mean_retention_calculation", "meanRetentionCalculation", _MEAN_CALCULATIONS)
    _choice(rf, "retention_reference", "retentionReference", _REFERENCES)
    windows = _choice(rf, "time_window_mode", "timeWindowMode", _WINDOW_MODES) == "24_hour_windows"
    if windows and rf.cumulative:
        # As the reference: a cumulative count of rolling windows is refused, not reinterpreted.
        raise QueryError("cumulative retention is not supported for 24 hour windows", "retentionFilter.cumulative")
    value_kind = _choice(rf, "aggregation_type", "aggregationType", _AGGREGATIONS)
    if value_kind in ("sum", "avg"):
        later.append(("retentionFilter.aggregationType", "value-based (sum and avg) retention"))
    elif rf.HasField("aggregation_property") and rf.aggregation_property:
        raise QueryError(
            "aggregationProperty is used with aggregationType sum or avg",
            "retentionFilter.aggregationProperty",
        )
    target = _entity(rf, "target_entity", "targetEntity", later)
    returning = _entity(rf, "returning_entity", "returningEntity", later)
    breakdown = _breakdown(query.breakdown_filter, later)
    limit = query.breakdown_filter.breakdown_limit
    if not 0 <= limit <= MAX_BREAKDOWN_LIMIT:
        raise QueryError(
            f"breakdown_limit must be between 1 and {MAX_BREAKDOWN_LIMIT} (got {limit})",
            "breakdownFilter.breakdown_limit",
        )
    if query.HasField("sampling_factor") and not 0 < query.sampling_factor <= 1:
        raise QueryError("samplingFactor must be in (0, 1]", "samplingFactor")
    group = query.aggregation_group_type_index if query.HasField("aggregation_group_type_index") else None
    agg = aggregation(group, None, group_path="aggregation_group_type_index", expression_path="", later=later)
    return RetentionSpec(
        period=PERIOD_NAMES[rf.period],
        total_intervals=total or DEFAULT_TOTAL_INTERVALS,
        retention_type=TYPE_NAMES[rf.retention_type],
        target=target,
        returning=returning,
        cumulative=rf.cumulative,
        minimum_occurrences=occurrences or 1,
        breakdown=breakdown,
        limit=limit or DEFAULT_BREAKDOWN_LIMIT,
        hide_other=query.breakdown_filter.breakdown_hide_other_aggregation,
        sampling=query.sampling_factor if query.HasField("sampling_factor") else 1.0,
        later=later,
        aggregation=agg,
        rolling=windows,
    )


def _choice(rf: query_pb2.RetentionFilter, name: str, json_name: str, allowed: tuple[str, ...]) -> str | None:
    """The value of a free-text option the reference types as an enum; QueryError for another value."""
    if not rf.HasField(name):  # type: ignore[arg-type]
        return None
    value = str(getattr(rf, name))
    if value not in allowed:
        raise QueryError(
            f"{json_name} must be one of {', '.join(allowed)} (got {value!r})", f"retentionFilter.{json_name}"
        )
    return value


def _entity(rf: query_pb2.RetentionFilter, name: str, json_name: str, later: list[tuple[str, str]]) -> Entity:
    path = f"retentionFilter.{json_name}"
    if not rf.HasField(name):  # type: ignore[arg-type]
        return Entity(path, event=DEFAULT_EVENT)  # the reference's default entity
    node: query_pb2.RetentionEntity = getattr(rf, name)
    kind = _entity_kind(node, path, later)
    properties = tuple(node.properties)
    id_kind = node.id.WhichOneof("kind") if node.HasField("id") else None
    if kind == "actions":
        if id_kind != "int_value" or node.id.int_value <= 0:
            raise QueryError("an ActionsNode entity's id is a positive action id", f"{path}.id")
        return Entity(path, action_id=node.id.int_value, properties=properties)
    if id_kind not in (None, "string_value"):
        raise QueryError("an EventsNode entity's id is an event name (or null for every event)", f"{path}.id")
    return Entity(path, event=node.id.string_value if id_kind else None, properties=properties)


def _entity_kind(node: query_pb2.RetentionEntity, path: str, later: list[tuple[str, str]]) -> str:
    """ "events" or "actions", from `kind` (EventsNode, ActionsNode) or the older `type`."""
    by_kind = {"EventsNode": "events", "ActionsNode": "actions"}
    kinds = []
    if node.HasField("kind"):
        if node.kind == "DataWarehouseNode":
            later.append((f"{path}.kind", "data warehouse entities"))
            return "events"
        if node.kind not in by_kind:
            raise QueryError("an entity's kind is EventsNode or ActionsNode", f"{path}.kind")
        kinds.append(by_kind[node.kind])
    if node.HasField("type"):
        if node.type == "data_warehouse":
            later.append((f"{path}.type", "data warehouse entities"))
            return "events"
        if node.type not in ("events", "actions"):
            raise QueryError("an entity's type is events or actions", f"{path}.type")
        kinds.append(node.type)
    if len(set(kinds)) > 1:
        raise QueryError("an entity's kind and type disagree", f"{path}.type")
    return kinds[0] if kinds else "events"


def _breakdown(bf: query_pb2.BreakdownFilter, later: list[tuple[str, str]]) -> tuple[str, str] | None:
    # Histograms and URL normalising, checked here, are applied by sql.py (breakdown_value).
    if filter_shapes(bf) != (PLAIN,) and (
        not (bf.breakdowns or bf.HasField("breakdown")) or is_cohort_breakdown(bf)
    ):
        raise QueryError("a histogram or URL normalising needs a property breakdown", shaped_field(bf))
    if bf.breakdown_path_cleaning:
        later.append(("breakdownFilter.breakdown_path_cleaning", "path-cleaning breakdowns"))
    if bf.breakdowns:
        # As the reference, which turns `breakdown` into a one-item `breakdowns`: one dimension.
        if len(bf.breakdowns) > 1:
            raise QueryError("a retention query takes one breakdown", "breakdownFilter.breakdowns")
        b = bf.breakdowns[0]
        path = "breakdownFilter.breakdowns[0]"
        source = _source(b.type, f"{path}.type", later)
        return _checked(_key(b.property, f"{path}.property", source is None), source or "event", f"{path}.property")
    if not bf.HasField("breakdown"):
        return None
    source = _source(bf.breakdown_type, "breakdownFilter.breakdown_type", later)
    return _checked(_key(bf.breakdown, "breakdownFilter.breakdown", source is None), source or "event", "breakdownFilter.breakdown")


def expression_path(bf: query_pb2.BreakdownFilter) -> str:
    """The field of a hogql breakdown's expression (its errors name it)."""
    return "breakdownFilter.breakdowns[0].property" if bf.breakdowns else "breakdownFilter.breakdown"


def _checked(key: str, source: str, path: str) -> tuple[str, str]:
    """(key, source), a hogql dimension's expression checked (QueryError naming `path`)."""
    if source == "hogql":
        check_expression(key, path=path)
    return (key, source)


def _source(kind: query_pb2.BreakdownType.ValueType, path: str, later: list[tuple[str, str]]) -> str | None:
    if kind in _BREAKDOWN_SOURCES:
        return _BREAKDOWN_SOURCES[kind]
    if kind in _LATER_BREAKDOWNS:
        later.append(
            (
                path,
                f"{M.BreakdownType.Name(kind).removeprefix('BREAKDOWN_TYPE_').lower()} breakdowns of retention",
            )
        )
        return None
    raise QueryError("retention breakdowns are by event, person, cohort, group or hogql", path)


def _key(key: query_pb2.BreakdownKey, path: str, lenient: bool) -> str:
    """The property name of a breakdown (cohort ids and expressions, refused later, pass as text)."""
    if key.WhichOneof("kind") == "string_value" and key.string_value:
        return key.string_value
    if lenient:
        return ""
    raise QueryError("a breakdown is a property name", path)
