"""Cohort membership as SQL: a subquery returning one `person_id` per member, every value bound.

A dynamic cohort is evaluated over the environment's `persons` (the universe: a person without a
row there is in no dynamic cohort), their latest properties, and one scan of their events that
counts, per person, the events of every behavioural criterion at once. A static cohort is its
rows of `cohort_static_members`. "In another cohort" nests that cohort's subquery, so a query that
filters or breaks down by a cohort computes the membership it needs, as of `now`, in the same
statement (docs/decisions.md, "Cohort membership: computed at query time").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from generated.insights.v1 import cohorts_pb2, query_pb2
from server.errors import FailedPrecondition
from server.queries.common.dates import parse_point
from server.queries.common.errors import QueryError
from server.queries.common.properties import filter_sql
from server.queries.common.sql import Params

# Bounds of a definition: enough for any cohort a person builds, small enough for one statement.
MAX_GROUPS = 20
MAX_CRITERIA_PER_GROUP = 50
MAX_CRITERIA = 100
# A cohort inside a cohort inside ...: the root counts as level 1.
MAX_NESTING = 5
MAX_COUNT = 1_000_000
MAX_TIME_VALUE = 3650
MAX_EVENT_NAME = 400

_Op = cohorts_pb2.CohortCountOperator
_Interval = cohorts_pb2.CohortTimeInterval
_Type = query_pb2.PropertyFilterType
_UNITS = {
    _Interval.COHORT_TIME_INTERVAL_UNSPECIFIED: "d",
    _Interval.COHORT_TIME_INTERVAL_DAY: "d",
    _Interval.COHORT_TIME_INTERVAL_WEEK: "w",
    _Interval.COHORT_TIME_INTERVAL_MONTH: "m",
    _Interval.COHORT_TIME_INTERVAL_YEAR: "y",
}
_SIGNS = {
    _Op.COHORT_COUNT_OPERATOR_UNSPECIFIED: ">=",
    _Op.COHORT_COUNT_OPERATOR_AT_LEAST: ">=",
    _Op.COHORT_COUNT_OPERATOR_AT_MOST: "<=",
    _Op.COHORT_COUNT_OPERATOR_EXACTLY: "=",
}
_BARE_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")
_OR = query_pb2.FilterLogicalOperator.FILTER_LOGICAL_OPERATOR_OR
_MICROSECOND = dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class CohortDefinition:
    """What the compiler needs of a stored cohort."""

    id: int
    name: str
    version: int
    is_static: bool
    filters: cohorts_pb2.CohortFilters = field(default_factory=cohorts_pb2.CohortFilters)
    deleted: bool = False


class CohortUnavailable(FailedPrecondition):
    """A cohort a query needs is deleted or gone, or its definition cannot be computed now."""

    def __init__(self, message: str, path: str, cohort_id: int):
        super().__init__(
            message, reason="COHORT_UNAVAILABLE", metadata={"cohort": str(cohort_id), "field": path}
        )
        self.path = path
        self.cohort_id = cohort_id


class ActionsNotComputable(FailedPrecondition):
    """A behavioural criterion counts an action, and no action compiler was given."""

    def __init__(self, path: str, action_id: int):
        super().__init__(
            f"{path}: action {action_id} cannot be computed yet (actions are not compiled by this service)",
            reason="ACTIONS_NOT_COMPUTABLE",
            metadata={"action": str(action_id), "field": path},
        )
        self.path = path


# The cohort a reference names, in the same environment; None when there is none.
Resolve = Callable[[int], CohortDefinition | None]
# SQL (0/1, over one `events` row) for "the event matches action `id`"; given the bound parameters.
ActionSql = Callable[[int, Params], str]


@dataclass(frozen=True)
class Window:
    """A behavioural criterion's time window, as UTC instants (both inclusive)."""

    start: dt.datetime
    end: dt.datetime


def window_of(
    criterion: cohorts_pb2.BehavioralCriterion, path: str, timezone: str, now: dt.datetime
) -> Window:
    """The window of a behavioural criterion; QueryError naming the field when it has none or a bad one."""
    relative = criterion.time_value != 0
    if relative and criterion.date_from:
        raise QueryError("give either time_value or date_from, not both", f"{path}.date_from")
    if relative:
        if not 1 <= criterion.time_value <= MAX_TIME_VALUE:
            raise QueryError(
                f"time_value must be between 1 and {MAX_TIME_VALUE} (got {criterion.time_value})",
                f"{path}.time_value",
            )
        if criterion.date_to:
            raise QueryError("date_to goes with date_from, not with time_value", f"{path}.date_to")
        unit = _UNITS.get(criterion.time_interval)
        if unit is None:
            raise QueryError("time_interval must be day, week, month or year", f"{path}.time_interval")
        start = parse_point(f"-{criterion.time_value}{unit}", timezone, now)
        return Window(start.astimezone(dt.UTC), now.astimezone(dt.UTC))
    if not criterion.date_from:
        raise QueryError("a behavioural criterion needs time_value or date_from", f"{path}.time_value")
    try:
        start = parse_point(criterion.date_from, timezone, now)
    except ValueError as exc:
        raise QueryError(str(exc), f"{path}.date_from") from None
    end = now
    if criterion.date_to:
        try:
            end = parse_point(criterion.date_to, timezone, now)
        except ValueError as exc:
            raise QueryError(str(exc), f"{path}.date_to") from None
        if _BARE_DATE.fullmatch(criterion.date_to.strip()):
            # A bare end date counts through its last instant (its next midnight, exclusive).
            end = parse_point(_next_day(criterion.date_to.strip()), timezone, now) - _MICROSECOND
    if start > end:
        raise QueryError("date_from must not be after date_to", f"{path}.date_from")
    return Window(start.astimezone(dt.UTC), end.astimezone(dt.UTC))


def _next_day(bare: str) -> str:
    year, month, day = (int(part) for part in bare.split("-"))
    try:
        return (dt.date(year, month, day) + dt.timedelta(days=1)).isoformat()
    except ValueError:
        return bare  # parse_point has already refused it


def _utc_text(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass
class _Compiler:
    params: Params
    team_id: int
    timezone: str
    now: dt.datetime
    resolve: Resolve
    action_sql: ActionSql | None
    # The ids of the cohorts being compiled, outermost first: a reference to one of them is a cycle.
    stack: list[int] = field(default_factory=list)
    # How deep the cohort being compiled is nested (the root is level 1); it also names the
    # subqueries' aliases, so a nested membership never reuses its parent's.
    depth: int = 1

    def membership(self, cohort: CohortDefinition, path: str, root_path: str | None) -> str:
        if cohort.is_static:
            return (
                "SELECT DISTINCT person_id FROM cohort_static_members "
                f"WHERE team_id = {self._team()} AND cohort_id = {self.params.bind(cohort.id, 'Int64')}"
            )
        groups = cohort.filters.properties
        if not groups.values:
            raise QueryError("a dynamic cohort needs at least one group of criteria", f"{path}.values")
        if len(groups.values) > MAX_GROUPS:
            raise QueryError(f"at most {MAX_GROUPS} groups (got {len(groups.values)})", f"{path}.values")
        total = sum(len(group.values) for group in groups.values)
        if total > MAX_CRITERIA:
            raise QueryError(f"at most {MAX_CRITERIA} criteria in all (got {total})", f"{path}.values")
        counts: list[tuple[str, Window]] = []
        group_parts = []
        for g, group in enumerate(groups.values):
            group_path = f"{path}.values[{g}]"
            if not group.values:
                raise QueryError("a group needs at least one criterion", f"{group_path}.values")
            if len(group.values) > MAX_CRITERIA_PER_GROUP:
                raise QueryError(
                    f"a group holds at most {MAX_CRITERIA_PER_GROUP} criteria (got {len(group.values)})",
                    f"{group_path}.values",
                )
            parts = [
                self.criterion(item, f"{group_path}.values[{i}]", counts, root_path)
                for i, item in enumerate(group.values)
            ]
            group_parts.append(_combine(parts, "OR" if group.type == _OR else "AND"))
        where = _combine(group_parts, "OR" if groups.type == _OR else "AND")
        persons = (
            "(SELECT id, properties AS person_properties FROM persons FINAL "
            f"WHERE team_id = {self._team()}) AS {self._alias('persons')}"
        )
        if not counts:
            return f"SELECT id AS person_id FROM {persons} WHERE {where}"
        columns = ", ".join(f"countIf({condition}) AS c{n}" for n, (condition, _) in enumerate(counts))
        lowest = min(window.start for _, window in counts)
        highest = max(window.end for _, window in counts)
        behaviour = (
            f"(SELECT person_id, {columns} FROM events "
            f"WHERE team_id = {self._team()} "
            f"AND timestamp >= toDateTime64({self.params.bind(_utc_text(lowest), 'String')}, 6, 'UTC') "
            f"AND timestamp <= toDateTime64({self.params.bind(_utc_text(highest), 'String')}, 6, 'UTC') "
            f"AND ({' OR '.join(condition for condition, _ in counts)}) "
            f"GROUP BY person_id) AS {self._alias('behaviour')}"
        )
        return (
            f"SELECT {self._alias('persons')}.id AS person_id FROM {persons} LEFT JOIN {behaviour} "
            f"ON {self._alias('behaviour')}.person_id = {self._alias('persons')}.id WHERE {where}"
        )

    def criterion(
        self,
        item: cohorts_pb2.CohortCriterion,
        path: str,
        counts: list[tuple[str, Window]],
        root_path: str | None,
    ) -> str:
        kind = item.WhichOneof("kind")
        if kind == "person_property":
            sql = self.person_property(item.person_property, f"{path}.person_property")
        elif kind == "behavioral":
            sql = self.behavioral(item.behavioral, f"{path}.behavioral", counts)
        elif kind == "in_cohort":
            ref_path = f"{path}.in_cohort.cohort_id"
            nested = self.nested(item.in_cohort.cohort_id, ref_path, root_path or ref_path)
            sql = f"{self._alias('persons')}.id IN ({nested})"
        else:
            raise QueryError("a criterion needs person_property, behavioral or in_cohort", path)
        return f"(NOT ({sql}))" if item.negation else sql

    def person_property(self, f: query_pb2.PropertyFilter, path: str) -> str:
        if f.type not in (_Type.PROPERTY_FILTER_TYPE_UNSPECIFIED, _Type.PROPERTY_FILTER_TYPE_PERSON):
            raise QueryError(
                "a cohort's property criterion filters person properties (type person)", f"{path}.type"
            )
        person = query_pb2.PropertyFilter()
        person.CopyFrom(f)
        person.type = _Type.PROPERTY_FILTER_TYPE_PERSON
        return filter_sql(self.params, person, path, self.timezone)

    def behavioral(
        self, criterion: cohorts_pb2.BehavioralCriterion, path: str, counts: list[tuple[str, Window]]
    ) -> str:
        target = criterion.WhichOneof("target")
        if target == "event":
            if not criterion.event or len(criterion.event) > MAX_EVENT_NAME:
                raise QueryError(f"event must hold 1 to {MAX_EVENT_NAME} characters", f"{path}.event")
            matches = f"event = {self.params.bind(criterion.event, 'String')}"
        elif target == "action_id":
            if criterion.action_id <= 0:
                raise QueryError("action_id must be a positive action id", f"{path}.action_id")
            if self.action_sql is None:
                raise ActionsNotComputable(f"{path}.action_id", criterion.action_id)
            matches = self.action_sql(criterion.action_id, self.params)
        else:
            raise QueryError("a behavioural criterion needs an event or an action_id", f"{path}.event")
        sign = _SIGNS.get(criterion.operator)
        if sign is None:
            raise QueryError("operator must be gte, lte or exact", f"{path}.operator")
        count = criterion.count if criterion.HasField("count") else 1
        if not 0 <= count <= MAX_COUNT:
            raise QueryError(f"count must be between 0 and {MAX_COUNT} (got {count})", f"{path}.count")
        window = window_of(criterion, path, self.timezone, self.now)
        start = self.params.bind(_utc_text(window.start), "String")
        end = self.params.bind(_utc_text(window.end), "String")
        condition = (
            f"({matches} AND timestamp >= toDateTime64({start}, 6, 'UTC') "
            f"AND timestamp <= toDateTime64({end}, 6, 'UTC'))"
        )
        column = f"c{len(counts)}"
        counts.append((condition, window))
        return f"(ifNull({self._alias('behaviour')}.{column}, 0) {sign} {self.params.bind(count, 'UInt64')})"

    def nested(self, cohort_id: int, path: str, root_path: str) -> str:
        chain = " → ".join(str(c) for c in [*self.stack, cohort_id])
        if cohort_id in self.stack:
            raise QueryError(f"cohorts must not refer to each other in a cycle ({chain})", root_path)
        if self.depth >= MAX_NESTING:
            raise QueryError(f"cohorts nest at most {MAX_NESTING} levels deep ({chain})", root_path)
        if cohort_id <= 0:
            raise QueryError("cohort_id must be a positive cohort id", path)
        cohort = self.resolve(cohort_id)
        if cohort is None or cohort.deleted:
            raise CohortUnavailable(
                f"{root_path}: cohort {cohort_id} does not exist or is deleted ({chain})",
                root_path,
                cohort_id,
            )
        self.stack.append(cohort_id)
        self.depth += 1
        try:
            return self.membership(cohort, "filters.properties", root_path)
        except QueryError as exc:
            if exc.path.startswith(root_path):
                raise
            # A stored cohort that no longer compiles (a bound lowered since it was saved).
            raise CohortUnavailable(
                f"{root_path}: cohort {cohort_id} cannot be computed: {exc.path}: {exc.message}",
                root_path,
                cohort_id,
            ) from None
        finally:
            self.stack.pop()
            self.depth -= 1

    def _team(self) -> str:
        return self.params.bind(self.team_id, "Int64")

    def _alias(self, name: str) -> str:
        return f"cohort_{name}_{self.depth}"


def _combine(parts: list[str], joiner: Literal["AND", "OR"]) -> str:
    if len(parts) == 1:
        return parts[0]
    return "(" + f" {joiner} ".join(parts) + ")"


def membership_sql(
    params: Params,
    cohort: CohortDefinition,
    *,
    team_id: int,
    timezone: str,
    now: dt.datetime,
    resolve: Resolve,
    action_sql: ActionSql | None = None,
    path: str = "cohort.filters.properties",
) -> str:
    """A subquery returning one `person_id` per member of `cohort` as of `now`.

    `resolve` gives the cohorts a definition refers to (same environment). Raises QueryError
    naming the field under `path` for a definition that cannot be computed (a reference cycle or
    nesting deeper than MAX_NESTING is reported at the root's referencing field), CohortUnavailable
    for a referenced cohort that is gone, and ActionsNotComputable for an action criterion when
    no `action_sql` is given.
    """
    compiler = _Compiler(params, team_id, timezone, now, resolve, action_sql)
    if cohort.id:
        compiler.stack.append(cohort.id)
    return compiler.membership(cohort, path, None)


def referenced_cohorts(filters: cohorts_pb2.CohortFilters) -> list[tuple[str, int]]:
    """(field path, cohort id) of every "in cohort" criterion of a definition."""
    found = []
    for g, group in enumerate(filters.properties.values):
        for i, item in enumerate(group.values):
            if item.WhichOneof("kind") == "in_cohort":
                found.append(
                    (
                        f"cohort.filters.properties.values[{g}].values[{i}].in_cohort.cohort_id",
                        item.in_cohort.cohort_id,
                    )
                )
    return found
