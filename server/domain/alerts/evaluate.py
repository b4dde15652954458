"""Threshold evaluation of an alert: conditions, comparison and breaches, for any alertable kind.

Pure functions (reference §7.2, §7.4-7.5): plain values and protobuf messages in, an `Evaluation`
out. No database, no clock. What a kind's result gives (the watched lines, the query a check runs,
which configs fit a node) is asked of the kind's `AlertValues` (server.queries.alerting, registered
beside its runner); the caller runs `values.query(...)` and hands the result back.

Decisions (documented here because the reference leaves them open):
- `previous` is the point before the checked one; a point missing because the line is shorter than
  that counts as 0.
- An empty result (no watched line at all) is one zero value, so a lower bound can breach; a
  missing result (None) is an error for the caller (the check errors).
- `calculated_value`: the value of the first breaching line; without a breach the value of the only
  line, or None when several breakdown values were evaluated (as the reference).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from google.protobuf.message import Message

from generated.insights.v1 import results_pb2
from server.queries.alerting import AlertAsk, AlertValueError, AlertValues, BreakdownValue, Watched


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


# ------------------------------------------------------------------------------- configuration


def ask_of(
    condition: ConditionType | str, threshold: Threshold, config: Mapping[str, Any], *, detector: bool = False
) -> AlertAsk:
    """What the alert asks of its insight's kind."""
    return AlertAsk(
        condition=ConditionType(condition).value,
        config=config,
        has_upper=threshold.bounds.upper is not None,
        detector=detector,
    )


def config_problems(
    values: AlertValues[Any],
    node: Message,
    condition: ConditionType | str,
    threshold: Threshold,
    config: Mapping[str, Any],
    *,
    detector: bool = False,
) -> list[tuple[str, str]]:
    """(field, message) for each §7.2 rule the configuration breaks; empty when it is valid."""
    problems: list[tuple[str, str]] = []
    cond = ConditionType(condition)
    bounds = threshold.bounds
    if bounds.lower is not None and bounds.upper is not None and bounds.lower > bounds.upper:
        problems.append(
            ("threshold.configuration.bounds", "Lower threshold must be less than upper threshold")
        )
    ask = ask_of(cond, threshold, config, detector=detector)
    problems += [(p.field, p.message) for p in values.problems(node, ask)]
    if cond == ConditionType.ABSOLUTE_VALUE and ThresholdType(threshold.type) != ThresholdType.ABSOLUTE:
        problems.append(("threshold.configuration.type", "absolute_value requires an absolute threshold"))
    return problems


# ------------------------------------------------------------------------------- value selection


def _point(data: tuple[float, ...], from_end: int) -> float:
    """data[-from_end], or 0 when the line is too short."""
    return data[-from_end] if len(data) >= from_end else 0.0


def _delta(cond: ConditionType, ttype: ThresholdType, anchor: float, previous: float) -> float:
    raw = anchor - previous if cond == ConditionType.RELATIVE_INCREASE else previous - anchor
    if ttype == ThresholdType.ABSOLUTE:
        return raw
    if previous == 0:
        return 0.0 if raw == 0 else math.inf
    return raw / previous


# ------------------------------------------------------------------------------- comparison


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
    subject: str = "The trend value",
    unit: str = "",
) -> list[str]:
    """Human messages for each bound `value` breaches (none when inside the bounds).

    `unit` follows values in the metric's own units (e.g. "%" for a funnel's conversion rate).
    """

    def metric(number: float) -> str:
        return fmt_number(number) + unit

    fmt_bound = fmt_percent if ttype == ThresholdType.PERCENTAGE else metric
    subject = f"{subject} for {label}" if label else subject
    if cond == ConditionType.ABSOLUTE_VALUE:
        what = f"{subject} ({metric(value)}) is"
    else:
        verb = "increased" if cond == ConditionType.RELATIVE_INCREASE else "decreased"
        amount = fmt_percent(value) if ttype == ThresholdType.PERCENTAGE else metric(value)
        what = f"{subject} {verb} by {amount} (from {metric(previous or 0.0)} to {metric(anchor)}), which is"
    out = []
    # Strictly outside a bound breaches it; equality does not.
    if bounds.lower is not None and value < bounds.lower:
        out.append(f"{what} below the lower threshold ({fmt_bound(bounds.lower)})")
    if bounds.upper is not None and value > bounds.upper:
        out.append(f"{what} above the upper threshold ({fmt_bound(bounds.upper)})")
    return out


def evaluate(
    values: AlertValues[Any],
    node: Message,
    result: results_pb2.InsightResult | None,
    condition: ConditionType | str,
    threshold: Threshold,
    config: Mapping[str, Any],
) -> Evaluation:
    """Evaluates the result of `values.query(node, ...)` against the threshold (§7.4-7.5).

    Raises EvaluationError for an invalid configuration (§7.2) or a missing result.
    """
    problems = config_problems(values, node, condition, threshold, config)
    if problems:
        raise EvaluationError("; ".join(f"{f}: {m}" for f, m in problems))
    if result is None:
        raise EvaluationError("the insight query returned no result")
    ask = ask_of(condition, threshold, config)
    try:
        lines = values.watched(node, result, ask)
    except AlertValueError as exc:
        raise EvaluationError(str(exc)) from exc
    return compare(lines, condition, threshold, subject=values.subject(node, ask), unit=values.unit(ask))


def compare(
    lines: list[Watched],
    condition: ConditionType | str,
    threshold: Threshold,
    *,
    subject: str = "The trend value",
    unit: str = "",
) -> Evaluation:
    """Compares each watched line's checked point (or its change) with the threshold's bounds."""
    cond = ConditionType(condition)
    ttype = ThresholdType(threshold.type)
    if not lines:
        lines = [Watched("empty result", None, (0.0,), anchor_back=1)]
    evaluated: list[ItemValue] = []
    for line in lines:
        previous: float | None = None
        anchor = _point(line.points, line.anchor_back)
        if cond == ConditionType.ABSOLUTE_VALUE:
            value = anchor
        else:
            previous = _point(line.points, line.anchor_back + 1)
            value = _delta(cond, ttype, anchor, previous)
        msgs = breach_messages(
            label=line.label,
            cond=cond,
            ttype=ttype,
            bounds=threshold.bounds,
            value=value,
            anchor=anchor,
            previous=previous,
            subject=subject,
            unit=unit,
        )
        evaluated.append(ItemValue(line.label, line.breakdown_value, value, anchor, previous, tuple(msgs)))

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
