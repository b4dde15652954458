"""Independent pure-Python cohort membership, from docs/engine-semantics.md ("Cohorts").

Cohorts are given as the reference-style JSON the codec reads (`{"properties": {"type", "values":
[{"type", "values": [criterion, ...]}]}}`). It shares the trends oracle's property filters and
date parsing, and nothing under server/.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from tests.oracle.actions import action_pred
from tests.oracle.trends import (
    Event,
    FailedPrecondition,
    InvalidArgument,
    _compile_regex,
    _local_naive,
    _parse_date,
    _to_utc,
    compile_properties,
    prop_text,
)

_UNITS = {"day": "days", "week": "weeks", "month": "months", "year": "years"}


@dataclass(frozen=True)
class Person:
    """A row of `persons`: an id and its (latest) properties."""

    id: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OracleCohort:
    """A stored cohort: static (its listed person ids) or dynamic (its filters JSON)."""

    id: int
    is_static: bool = False
    filters: dict[str, Any] = field(default_factory=dict)
    members: frozenset[str] = frozenset()
    deleted: bool = False
    name: str = ""


class CohortUnavailable(Exception):
    """A referenced cohort is missing or deleted (the engine's FAILED_PRECONDITION)."""


def _window(criterion: Mapping[str, Any], tz: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    """[start, end] in UTC, both inclusive."""
    time_value = criterion.get("time_value") or 0
    if time_value:
        unit = _UNITS[criterion.get("time_interval") or "day"]
        local = _local_naive(now, tz) - relativedelta(**{unit: time_value})
        return _to_utc(local, tz), now.astimezone(UTC)
    start = _to_utc(_parse_date(criterion["date_from"], tz, _local_naive(now, tz), False).value, tz)
    end = now.astimezone(UTC)
    text = criterion.get("date_to") or ""
    if text:
        parsed = _parse_date(text, tz, _local_naive(now, tz), False)
        end = _to_utc(parsed.value, tz)
        if parsed.unit is None and len(text.strip()) <= 10:
            # A bare date: through the last instant of that day.
            day: date = parsed.value.date()
            next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time())
            end = _to_utc(next_midnight, tz) - timedelta(microseconds=1)
    if start > end:
        raise InvalidArgument("date_from after date_to")
    return start, end


def _count_test(operator: str | None, count: int) -> Callable[[int], bool]:
    if operator in (None, "", "gte"):
        return lambda n: n >= count
    if operator == "lte":
        return lambda n: n <= count
    if operator == "exact":
        return lambda n: n == count
    raise InvalidArgument(f"unknown operator {operator!r}")


def members(
    cohort: OracleCohort,
    cohorts: Mapping[int, OracleCohort],
    persons: Sequence[Person],
    events: Sequence[Event],
    *,
    timezone: str,
    now: datetime,
    actions: Mapping[int, dict[str, Any]] | None = None,
    _seen: tuple[int, ...] = (),
) -> set[str]:
    """The person ids in `cohort` as of `now`; `actions` (reference JSON by id, live ones only) are
    the actions behavioural criteria may count."""
    if cohort.is_static:
        return set(cohort.members)
    tz = ZoneInfo(timezone)
    per_person: dict[str, list[Event]] = {}
    for e in events:
        per_person.setdefault(e.person_id, []).append(e)
    # Latest properties per person id (a later row of the same id replaces an earlier one).
    latest = {p.id: p.properties for p in persons}

    def criterion(item: Mapping[str, Any]) -> Callable[[str], bool]:
        if "person_property" in item:
            pred = compile_properties({**item["person_property"], "type": "person"}, tz)

            def prop(pid: str) -> bool:
                probe = Event("", "", "", pid, now, {}, latest[pid])
                return pred(probe)

            test: Callable[[str], bool] = prop
        elif "behavioral" in item:
            b = item["behavioral"]
            start, end = _window(b, tz, now)
            compare = _count_test(b.get("operator"), b.get("count", 1))
            if "action_id" in b:
                action = (actions or {}).get(b["action_id"])
                if action is None:
                    raise FailedPrecondition(f"action {b['action_id']} does not exist or is deleted")
                counted = action_pred(
                    action, lambda props: compile_properties(props, tz), prop_text, _compile_regex
                )
            else:
                counted = lambda e, name=b["event"]: e.event == name  # noqa: E731

            def performed(pid: str) -> bool:
                n = sum(1 for e in per_person.get(pid, []) if start <= e.timestamp <= end and counted(e))
                return compare(n)

            test = performed
        else:
            other_id = item["in_cohort"]["cohort_id"]
            other = cohorts.get(other_id)
            if other is None or other.deleted:
                raise CohortUnavailable(other_id)
            if other_id in (*_seen, cohort.id):
                raise InvalidArgument("cycle")
            inside = members(
                other,
                cohorts,
                persons,
                events,
                timezone=timezone,
                now=now,
                actions=actions,
                _seen=(*_seen, cohort.id),
            )
            test = inside.__contains__
        if item.get("negation"):
            return lambda pid: not test(pid)
        return test

    def combine(kind: str | None, tests: list[Callable[[str], bool]]) -> Callable[[str], bool]:
        if kind == "OR":
            return lambda pid: any(t(pid) for t in tests)
        return lambda pid: all(t(pid) for t in tests)

    top = cohort.filters["properties"]
    groups = [
        combine(group.get("type"), [criterion(item) for item in group["values"]]) for group in top["values"]
    ]
    matches = combine(top.get("type"), groups)
    return {pid for pid in latest if matches(pid)}
