"""A name and a description derived from a query node, deterministically (no I/O: action names are given)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2
from server.errors import InvalidArgument

M = query_pb2
# A name longer than this is cut at a word and ends with "…" (Insight.name allows 400).
NAME_LIMIT = 200
# The reference's message for a request without a query.
MISSING = "Missing 'query' field in request body"
# Kinds whose default date range is the last 7 days (dates.DEFAULT_DATE_FROM_DAYS).
_DEFAULT_FROM = "-7d"


@dataclass(frozen=True)
class Metadata:
    """What GenerateInsightMetadata answers."""

    name: str
    description: str


def invalid(detail: str, field: str) -> InvalidArgument:
    """The reference's "Invalid query format", naming the field."""
    return InvalidArgument(f"Invalid query format: {detail}", field=field, reason="INVALID_QUERY")


# ------------------------------------------------------------------------------------ words

_UNITS = {"h": "hour", "d": "day", "w": "week", "m": "month", "M": "month", "q": "quarter", "y": "year"}
_RELATIVE = re.compile(r"-?(?P<count>\d+)?(?P<unit>[hdwmqysHDWMQY])(?P<position>Start|End)?")


def plural(count: int, unit: str) -> str:
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def pretty_event(event: str) -> str:
    """`$pageview` → "Pageview", `signed_up` → "Signed up": the way the reference titles events."""
    text = event[1:] if event.startswith("$") else event
    text = text.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else event


def pretty_property(key: str) -> str:
    """`$browser` → "browser", `$geoip_country_code` → "geoip country code"."""
    text = key[1:] if key.startswith("$") else key
    return text.replace("_", " ").strip() or key


def _relative(text: str) -> tuple[int, str, str | None] | None:
    """(count, unit word, Start/End or None) of a relative date such as "-7d" or "-1mStart"."""
    match = _RELATIVE.fullmatch(text)
    if match is None:
        return None
    unit = _UNITS.get(match["unit"] if match["unit"] == "M" else match["unit"].lower(), match["unit"])
    return (int(match["count"]) if match["count"] is not None else 0), unit, match["position"]


def _whole(count: int, unit: str) -> str:
    """A whole calendar unit counted back: "today", "yesterday", "this week", "last month", "3 weeks ago"."""
    if unit == "day" and count <= 1:
        return "today" if count == 0 else "yesterday"
    if count <= 1:
        return f"{'this' if count == 0 else 'last'} {unit}"
    return f"the {unit} {plural(count, unit)} ago"


def _point(text: str) -> str:
    """One end of a range: "7 days ago", "the start of this month", or the date as given."""
    found = _relative(text)
    if found is None:
        return text
    count, unit, position = found
    if position:
        return f"the {'start' if position == 'Start' else 'end'} of {_whole(count, unit)}"
    return "now" if count == 0 else f"{plural(count, unit)} ago"


def date_range(range_: M.DateRange, default: str = _DEFAULT_FROM) -> str:
    """ "last 7 days", "all time", "this month", "2024-01-01 to 2024-01-31", "since 2024-01-01"."""
    start = range_.date_from if range_.HasField("date_from") else default
    end = range_.date_to if range_.HasField("date_to") else None
    if end is None:
        if start == "all":
            return "all time"
        match = _RELATIVE.fullmatch(start)
        if match is None:
            return f"since {start}"
        unit = _UNITS.get(match["unit"] if match["unit"] == "M" else match["unit"].lower(), match["unit"])
        count = int(match["count"]) if match["count"] is not None else 0
        if match["position"] == "Start" and count == 0:
            return "today" if unit == "day" else f"this {unit}"
        if match["position"] == "Start":
            return f"since {_point(start)}"
        return f"last {unit}" if count == 1 and unit != "day" else f"last {plural(count, unit)}"
    first, last = _relative(start), _relative(end)
    if first and last and first[:2] == last[:2] and (first[2], last[2]) == ("Start", "End"):
        return _whole(first[0], first[1])  # one whole unit: "-1dStart" to "-1dEnd" is yesterday
    return f"{_point(start)} to {_point(end)}"


def compare(filter_: M.CompareFilter) -> str | None:
    """ "compared with the previous period" / "compared with 1 year earlier", or None."""
    if not filter_.compare:
        return None
    if filter_.HasField("compare_to") and filter_.compare_to:
        match = _RELATIVE.fullmatch(filter_.compare_to)
        if match is not None and not match["position"]:
            unit = _UNITS.get(match["unit"] if match["unit"] == "M" else match["unit"].lower(), match["unit"])
            return f"compared with {plural(int(match['count'] or 1), unit)} earlier"
        return f"compared with {filter_.compare_to}"
    return "compared with the previous period"


_INTERVALS: dict[int, str] = {
    M.INTERVAL_TYPE_SECOND: "second",
    M.INTERVAL_TYPE_MINUTE: "minute",
    M.INTERVAL_TYPE_HOUR: "hour",
    M.INTERVAL_TYPE_DAY: "day",
    M.INTERVAL_TYPE_WEEK: "week",
    M.INTERVAL_TYPE_MONTH: "month",
}


def interval(value: int) -> str:
    return _INTERVALS.get(value, "day")


# ------------------------------------------------------------------------------------ series

_AGGREGATES: dict[int, str] = {
    M.MATH_TYPE_AVG: "average",
    M.MATH_TYPE_SUM: "sum",
    M.MATH_TYPE_MIN: "minimum",
    M.MATH_TYPE_MAX: "maximum",
    M.MATH_TYPE_MEDIAN: "median",
    M.MATH_TYPE_P75: "75th percentile",
    M.MATH_TYPE_P90: "90th percentile",
    M.MATH_TYPE_P95: "95th percentile",
    M.MATH_TYPE_P99: "99th percentile",
}
_PER_ACTOR: dict[int, str] = {
    M.MATH_TYPE_AVG_COUNT_PER_ACTOR: "average",
    M.MATH_TYPE_MIN_COUNT_PER_ACTOR: "minimum",
    M.MATH_TYPE_MAX_COUNT_PER_ACTOR: "maximum",
    M.MATH_TYPE_MEDIAN_COUNT_PER_ACTOR: "median",
    M.MATH_TYPE_P75_COUNT_PER_ACTOR: "75th percentile",
    M.MATH_TYPE_P90_COUNT_PER_ACTOR: "90th percentile",
    M.MATH_TYPE_P95_COUNT_PER_ACTOR: "95th percentile",
    M.MATH_TYPE_P99_COUNT_PER_ACTOR: "99th percentile",
}
_MEASURES: dict[int, str] = {
    M.MATH_TYPE_UNSPECIFIED: "count",
    M.MATH_TYPE_TOTAL: "count",
    M.MATH_TYPE_DAU: "unique users",
    M.MATH_TYPE_WEEKLY_ACTIVE: "weekly active users",
    M.MATH_TYPE_MONTHLY_ACTIVE: "monthly active users",
    M.MATH_TYPE_UNIQUE_SESSION: "unique sessions",
    M.MATH_TYPE_FIRST_TIME_FOR_USER: "first-time users",
    M.MATH_TYPE_FIRST_TIME_FOR_USER_WITH_FILTERS: "first-time users (with filters)",
    M.MATH_TYPE_FIRST_MATCHING_EVENT_FOR_USER: "first matching event per user",
    M.MATH_TYPE_UNIQUE_GROUP: "unique groups",
}


class Labels:
    """Labels of series nodes; actions by their stored name in the environment, else "Action <id>"."""

    def __init__(self, action_names: Mapping[int, str]):
        self._actions = action_names

    def action(self, action_id: int | None) -> str:
        if action_id is None:
            return "Action"
        return self._actions.get(action_id) or f"Action {action_id}"

    def node(self, node: Any) -> str:
        """The label of a series: its custom name, else what it matches."""
        kind = node.WhichOneof("node")
        if kind == "events_node":
            e = node.events_node
            if e.HasField("custom_name") and e.custom_name:
                return str(e.custom_name)
            return pretty_event(e.event) if e.HasField("event") and e.event else "All events"
        if kind == "actions_node":
            a = node.actions_node
            if a.HasField("custom_name") and a.custom_name:
                return str(a.custom_name)
            return self.action(a.id if a.HasField("id") else None)
        if kind == "data_warehouse_node":
            d = node.data_warehouse_node
            return str(d.custom_name or d.table_name or "Data warehouse table")
        if kind == "group_node":
            g = node.group_node
            if g.custom_name:
                return str(g.custom_name)
            word = " or " if g.operator != M.FILTER_LOGICAL_OPERATOR_AND else " and "
            return word.join(self.node(member) for member in g.nodes) or "Group"
        return "Series"

    def measured(self, node: M.SeriesNode) -> str:
        """ "Pageview count", "Purchase average of price", "Signup unique users"."""
        label = self.node(node)
        kind = node.WhichOneof("node")
        inner = getattr(node, kind) if kind else None
        math = inner.math if inner is not None else M.MATH_TYPE_UNSPECIFIED
        prop = pretty_property(inner.math_property) if inner is not None and inner.math_property else "value"
        if math in _AGGREGATES:
            return f"{label} {_AGGREGATES[math]} of {prop}"
        if math in _PER_ACTOR:
            return f"{label} {_PER_ACTOR[math]} count per user"
        if math == M.MATH_TYPE_HOGQL:
            return f"{label} {inner.math_hogql}" if inner is not None and inner.math_hogql else f"{label} expression"
        return f"{label} {_MEASURES.get(math, 'count')}"

    def entity(self, entity: M.RetentionEntity) -> str:
        """A retention entity: an event (by name, or all events) or an action (by stored name)."""
        if entity.custom_name:
            return entity.custom_name
        which = entity.id.WhichOneof("kind")
        value = getattr(entity.id, which) if which else None
        if entity.type == "actions" or entity.kind == "ActionsNode":
            return self.action(int(value) if value is not None and str(value).lstrip("-").isdigit() else None)
        if value is None or value == "":
            return pretty_event(entity.name) if entity.name else "All events"
        return pretty_event(str(value))


def joined(parts: Sequence[str], word: str = "and") -> str:
    """ "A", "A and B", "A, B and C"."""
    if len(parts) <= 1:
        return "".join(parts)
    return f"{', '.join(parts[:-1])} {word} {parts[-1]}"


def listed(parts: Sequence[str], limit: int = 3) -> str:
    """At most `limit` parts, then "and N more"."""
    if len(parts) <= limit:
        return joined(parts)
    return f"{', '.join(parts[:limit])} and {len(parts) - limit} more"


# ------------------------------------------------------------------------------------ filters

_OPERATORS: dict[int, str] = {
    M.PROPERTY_OPERATOR_UNSPECIFIED: "=",
    M.PROPERTY_OPERATOR_EXACT: "=",
    M.PROPERTY_OPERATOR_IS_NOT: "≠",
    M.PROPERTY_OPERATOR_ICONTAINS: "contains",
    M.PROPERTY_OPERATOR_NOT_ICONTAINS: "does not contain",
    M.PROPERTY_OPERATOR_REGEX: "matches",
    M.PROPERTY_OPERATOR_NOT_REGEX: "does not match",
    M.PROPERTY_OPERATOR_GT: ">",
    M.PROPERTY_OPERATOR_GTE: "≥",
    M.PROPERTY_OPERATOR_LT: "<",
    M.PROPERTY_OPERATOR_LTE: "≤",
    M.PROPERTY_OPERATOR_IS_SET: "is set",
    M.PROPERTY_OPERATOR_IS_NOT_SET: "is not set",
}


def _value(value: M.PropertyValue) -> str:
    which = value.WhichOneof("kind")
    if which is None:
        return ""
    if which == "list_value":
        items = [str(getattr(s, k)) for s in value.list_value.values if (k := s.WhichOneof("kind"))]
        return " or ".join(items)
    return str(getattr(value, which))


def property_filter(f: M.PropertyFilter) -> str:
    """ "browser = Chrome", "cohort Paying users", "email is set"."""
    if f.type == M.PROPERTY_FILTER_TYPE_COHORT:
        name = f.cohort_name or f"cohort {_value(f.value)}"
        return f"{'not in' if f.negation else 'in'} {name}"
    if f.type == M.PROPERTY_FILTER_TYPE_HOGQL:
        return f.key
    operator = _OPERATORS.get(f.operator, M.PropertyOperator.Name(f.operator).removeprefix("PROPERTY_OPERATOR_").lower())
    key = f.label or pretty_property(f.key)
    if f.operator in (M.PROPERTY_OPERATOR_IS_SET, M.PROPERTY_OPERATOR_IS_NOT_SET):
        return f"{key} {operator}"
    return f"{key} {operator} {_value(f.value)}"


def _flat(properties: M.Properties) -> list[M.PropertyFilter] | None:
    """The filters of a list, or of a group of AND-only filters; None for OR groups."""
    which = properties.WhichOneof("kind")
    if which == "list":
        return list(properties.list.values)
    if which == "group":
        found: list[M.PropertyFilter] = []
        stack: list[M.PropertyGroupFilterValue] = list(properties.group.values)
        if properties.group.type == M.FILTER_LOGICAL_OPERATOR_OR and len(stack) > 1:
            return None
        while stack:
            group = stack.pop(0)
            if group.type == M.FILTER_LOGICAL_OPERATOR_OR and len(group.values) > 1:
                return None
            for item in group.values:
                if item.WhichOneof("item") == "filter":
                    found.append(item.filter)
                elif item.WhichOneof("item") == "group":
                    stack.append(item.group)
        return found
    return []


def filters(properties: M.Properties, test_accounts: bool) -> str:
    """A sentence on what is filtered out ("" when nothing is)."""
    parts: list[str] = []
    flat = _flat(properties)
    if flat is None:
        parts.append("where any of several property conditions holds")
    elif flat:
        parts.append("where " + joined([property_filter(f) for f in flat]))
    if test_accounts:
        parts.append("excluding internal and test accounts")
    return f" Filtered {joined(parts)}." if parts else ""


# ------------------------------------------------------------------------------------ breakdowns


def _breakdown_key(key: M.BreakdownKey, kind: int) -> str:
    which = key.WhichOneof("kind")
    if kind == M.BREAKDOWN_TYPE_COHORT:
        return "cohort"
    if which == "string_value":
        if kind == M.BREAKDOWN_TYPE_HOGQL:
            return key.string_value
        return pretty_property(key.string_value)
    if which == "int_value":
        return str(key.int_value)
    return "value"


def breakdown(filter_: M.BreakdownFilter) -> str | None:
    """ "browser", "browser and os", "cohort", or None when there is no breakdown."""
    if filter_.breakdowns:
        return joined([_breakdown_key(b.property, b.type) for b in filter_.breakdowns])
    if filter_.HasField("breakdown") and filter_.breakdown.WhichOneof("kind") is not None:
        return _breakdown_key(filter_.breakdown, filter_.breakdown_type)
    return None
