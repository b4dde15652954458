"""Threshold evaluation of a trends alert: query narrowing, value selection, conditions and breaches.

Pure functions (reference §7.2-7.5): plain values and protobuf messages in, an `Evaluation` out. No
database, no clock. The caller runs the rewritten query and hands the `TrendsResult` back.

Decisions (documented here because the reference leaves them open):
- Time-series displays: the items of `series_index` are the result items whose `order` equals it
  (every breakdown value of that series; with formulas `order` is the formula index). Items of the
  "previous" compare period are ignored: only the current period is evaluated.
- The anchor is the last point with `check_ongoing_interval`, else the second-to-last (the last
  complete interval); `previous` is the point before the anchor. A point missing because the
  series is shorter than that counts as 0.
- Total-value displays use `aggregated_value`; their date range is not narrowed (the aggregate is
  over the insight's whole range, as the reference's code does) and only `absolute_value` applies.
- An empty result (no items at all, or none for `series_index`) is one zero value, so a lower bound
  can breach; a missing result (None) is an error for the caller (the check errors).
- `calculated_value`: the value of the first breaching item; without a breach the value of the only
  item, or None when several breakdown values were evaluated (as the reference).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from enum import StrEnum

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.trends.compute import TOTAL_VALUE_DISPLAYS

MAX_BREAKDOWN_VALUES = 25


class ConditionType(StrEnum):
    ABSOLUTE_VALUE = "absolute_value"
    RELATIVE_INCREASE = "relative_increase"
    RELATIVE_DECREASE = "relative_decrease"


class ThresholdType(StrEnum):
    ABSOLUTE = "absolute"
    PERCENTAGE = "percentage"


class AlertState(StrEnum):
    FIRING = "Firing"
    NOT_FIRING = "Not firing"
    ERRORED = "Errored"
    SNOOZED = "Snoozed"


class EvaluationError(ValueError):
    """The alert cannot be evaluated (invalid configuration or no result); the check errors."""


@dataclass(frozen=True)
class Bounds:
    lower: float | None = None
    upper: float | None = None


@dataclass(frozen=True)
class Threshold:
    type: ThresholdType | str = ThresholdType.ABSOLUTE
    bounds: Bounds = field(default_factory=Bounds)


@dataclass(frozen=True)
class TrendsAlertConfig:
    series_index: int = 0
    check_ongoing_interval: bool = False


BreakdownValue = str | int | float | bool | tuple[str, ...] | None


@dataclass(frozen=True)
class ItemValue:
    """One evaluated result item (a breakdown value of the series, or the series itself)."""

    label: str
    breakdown_value: BreakdownValue
    value: float  # the compared value: the anchor, or the (relative) delta
    anchor: float
    previous: float | None  # None for absolute_value
    breaches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Evaluation:
    value: float | None  # recorded as the check's calculated_value and the alert's last_value
    state: AlertState
    breaches: list[str]
    triggered_breakdown_values: list[BreakdownValue]
    items: list[ItemValue]

    @property
    def firing(self) -> bool:
        return self.state == AlertState.FIRING


# ------------------------------------------------------------------------------- query rewriting

_INTERVAL_UNITS: dict[int, str] = {
    query_pb2.INTERVAL_TYPE_UNSPECIFIED: "d",  # trends default to day
    query_pb2.INTERVAL_TYPE_DAY: "d",
    query_pb2.INTERVAL_TYPE_WEEK: "w",
    query_pb2.INTERVAL_TYPE_MONTH: "m",
}
_INTERVAL_NAMES = {"day": "d", "week": "w", "month": "m"}


def lookback(condition: ConditionType | str, interval: int | str) -> str:
    """The narrowed `date_from`: 2 intervals back for absolute conditions, 3 for relative ones.

    `interval` is an `IntervalType` value or its name; hour and anything finer use hours (as the
    reference), unset means day.
    """
    n = 2 if ConditionType(condition) == ConditionType.ABSOLUTE_VALUE else 3
    if isinstance(interval, str):
        unit = _INTERVAL_NAMES.get(interval, "h")
    else:
        unit = _INTERVAL_UNITS.get(int(interval), "h")
    return f"-{n}{unit}"


def is_total_value(trends: query_pb2.TrendsQuery) -> bool:
    return trends.trends_filter.display in TOTAL_VALUE_DISPLAYS


def _has_breakdown(trends: query_pb2.TrendsQuery) -> bool:
    bf = trends.breakdown_filter
    return trends.HasField("breakdown_filter") and (bf.HasField("breakdown") or len(bf.breakdowns) > 0)


def rewrite_query(trends: query_pb2.TrendsQuery, condition: ConditionType | str) -> query_pb2.TrendsQuery:
    """A copy of the insight's query narrowed for the check (§7.3).

    `date_from` becomes `lookback(...)` and `date_to` is removed (up to now); total-value displays
    keep their range (their value aggregates over it). The breakdown limit is capped at 25.
    Compare, formulas, display and everything else are kept.
    """
    out = copy.deepcopy(trends)
    if not is_total_value(trends):
        out.date_range.date_from = lookback(condition, trends.interval)
        out.date_range.ClearField("date_to")
    if _has_breakdown(trends):
        bf = out.breakdown_filter
        limit = bf.breakdown_limit if bf.HasField("breakdown_limit") and bf.breakdown_limit > 0 else None
        bf.breakdown_limit = min(limit or MAX_BREAKDOWN_VALUES, MAX_BREAKDOWN_VALUES)
    return out


def series_count(trends: query_pb2.TrendsQuery) -> int:
    """How many indexable series the result has: the formulas when there are any, else the series."""
    tf = trends.trends_filter
    if tf.formula_nodes:
        return len(tf.formula_nodes)
    if tf.formulas:
        return len(tf.formulas)
    if tf.HasField("formula") and tf.formula.strip():
        return 1
    return len(trends.series)


def config_problems(
    trends: query_pb2.TrendsQuery,
    condition: ConditionType | str,
    threshold: Threshold,
    config: TrendsAlertConfig,
) -> list[tuple[str, str]]:
    """(field, message) for each §7.2 rule the configuration breaks; empty when it is valid."""
    problems: list[tuple[str, str]] = []
    cond = ConditionType(condition)
    ttype = ThresholdType(threshold.type)
    bounds = threshold.bounds
    if bounds.lower is not None and bounds.upper is not None and bounds.lower > bounds.upper:
        problems.append(
            ("threshold.configuration.bounds", "Lower threshold must be less than upper threshold")
        )
    if not 0 <= config.series_index < series_count(trends):
        problems.append(("config.series_index", "series_index is out of range of the insight's series"))
    if (
        config.check_ongoing_interval
        and cond in (ConditionType.ABSOLUTE_VALUE, ConditionType.RELATIVE_INCREASE)
        and bounds.upper is None
    ):
        problems.append(
            (
                "config.check_ongoing_interval",
                f"check_ongoing_interval is only supported for {cond.value} with an upper threshold",
            )
        )
    if cond == ConditionType.ABSOLUTE_VALUE and ttype != ThresholdType.ABSOLUTE:
        problems.append(("threshold.configuration.type", "absolute_value requires an absolute threshold"))
    if cond != ConditionType.ABSOLUTE_VALUE and is_total_value(trends):
        problems.append(("condition.type", "Relative alerts are not supported for total-value displays"))
    return problems


# ------------------------------------------------------------------------------- value selection


def breakdown_value_of(item: results_pb2.TrendsSeries) -> BreakdownValue:
    if item.breakdown_values:
        return tuple(item.breakdown_values)
    if not item.HasField("breakdown_value"):
        return None
    kind = item.breakdown_value.WhichOneof("kind")
    if kind is None:
        return None
    value: str | int | float | bool = getattr(item.breakdown_value, kind)
    return value


def select_items(result: results_pb2.TrendsResult, series_index: int) -> list[results_pb2.TrendsSeries]:
    """The current-period items of `series_index` (every breakdown value), capped at 25."""
    items = [s for s in result.series if s.order == series_index and s.compare_label != "previous"]
    return items[:MAX_BREAKDOWN_VALUES]


def _point(data: list[float], from_end: int) -> float:
    """data[-from_end], or 0 when the series is too short."""
    return data[-from_end] if len(data) >= from_end else 0.0


def _delta(cond: ConditionType, ttype: ThresholdType, anchor: float, previous: float) -> float:
    raw = anchor - previous if cond == ConditionType.RELATIVE_INCREASE else previous - anchor
    if ttype == ThresholdType.ABSOLUTE:
        return raw
    if previous == 0:
        return 0.0 if raw == 0 else math.inf
    return raw / previous


# ------------------------------------------------------------------------------- comparison


def breaches_bounds(value: float, bounds: Bounds) -> bool:
    """Strictly outside the bounds; equality does not breach."""
    return (bounds.lower is not None and value < bounds.lower) or (
        bounds.upper is not None and value > bounds.upper
    )


def fmt_number(value: float) -> str:
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def fmt_percent(value: float) -> str:
    if math.isinf(value):
        return "∞%" if value > 0 else "-∞%"
    return f"{value * 100:.1f}%"


def breach_messages(
    *,
    label: str,
    cond: ConditionType,
    ttype: ThresholdType,
    bounds: Bounds,
    value: float,
    anchor: float,
    previous: float | None,
) -> list[str]:
    """Human messages for each bound `value` breaches (none when inside the bounds)."""
    fmt_bound = fmt_percent if ttype == ThresholdType.PERCENTAGE else fmt_number
    subject = f"The trend value for {label}" if label else "The trend value"
    if cond == ConditionType.ABSOLUTE_VALUE:
        what = f"{subject} ({fmt_number(value)}) is"
    else:
        verb = "increased" if cond == ConditionType.RELATIVE_INCREASE else "decreased"
        amount = fmt_percent(value) if ttype == ThresholdType.PERCENTAGE else fmt_number(value)
        what = f"{subject} {verb} by {amount} (from {fmt_number(previous or 0.0)} to {fmt_number(anchor)}), which is"
    out = []
    if bounds.lower is not None and value < bounds.lower:
        out.append(f"{what} below the lower threshold ({fmt_bound(bounds.lower)})")
    if bounds.upper is not None and value > bounds.upper:
        out.append(f"{what} above the upper threshold ({fmt_bound(bounds.upper)})")
    return out


def _item_label(item: results_pb2.TrendsSeries) -> str:
    bv = breakdown_value_of(item)
    if bv is None or item.label.endswith(f" - {bv}") or item.label == str(bv):
        return item.label
    shown = ", ".join(bv) if isinstance(bv, tuple) else str(bv)
    return f"{item.label} - {shown}" if item.label else shown


def evaluate_trends(
    trends: query_pb2.TrendsQuery,
    result: results_pb2.TrendsResult | None,
    condition: ConditionType | str,
    threshold: Threshold,
    config: TrendsAlertConfig,
) -> Evaluation:
    """Evaluates the result of `rewrite_query(trends, condition)` against the threshold (§7.4-7.5).

    Raises EvaluationError for an invalid configuration (§7.2) or a missing result.
    """
    problems = config_problems(trends, condition, threshold, config)
    if problems:
        raise EvaluationError("; ".join(f"{f}: {m}" for f, m in problems))
    if result is None:
        raise EvaluationError("the insight query returned no result")
    cond = ConditionType(condition)
    ttype = ThresholdType(threshold.type)
    total_value = is_total_value(trends)

    items = select_items(result, config.series_index)
    evaluated: list[ItemValue] = []
    if not items:
        value = 0.0
        msgs = breach_messages(
            label="empty result",
            cond=cond,
            ttype=ttype,
            bounds=threshold.bounds,
            value=value,
            anchor=0.0,
            previous=None if cond == ConditionType.ABSOLUTE_VALUE else 0.0,
        )
        evaluated.append(ItemValue("empty result", None, value, 0.0, None, tuple(msgs)))
    for item in items:
        label = _item_label(item)
        previous: float | None = None
        if total_value:
            anchor = item.aggregated_value if item.HasField("aggregated_value") else item.count
            value = anchor
        else:
            data = list(item.data)
            back = 1 if config.check_ongoing_interval else 2
            anchor = _point(data, back)
            if cond == ConditionType.ABSOLUTE_VALUE:
                value = anchor
            else:
                previous = _point(data, back + 1)
                value = _delta(cond, ttype, anchor, previous)
        msgs = breach_messages(
            label=label,
            cond=cond,
            ttype=ttype,
            bounds=threshold.bounds,
            value=value,
            anchor=anchor,
            previous=previous,
        )
        evaluated.append(ItemValue(label, breakdown_value_of(item), value, anchor, previous, tuple(msgs)))

    breaching = [e for e in evaluated if e.breaches]
    if breaching:
        calculated: float | None = breaching[0].value
    elif len(evaluated) == 1:
        calculated = evaluated[0].value
    else:
        calculated = None
    return Evaluation(
        value=calculated,
        state=AlertState.FIRING if breaching else AlertState.NOT_FIRING,
        breaches=[m for e in breaching for m in e.breaches],
        triggered_breakdown_values=[e.breakdown_value for e in breaching if e.breakdown_value is not None],
        items=evaluated,
    )
