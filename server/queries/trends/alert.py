"""What an alert reads of a trends insight: the series it watches, the query a check runs (§7.2-7.4).

Decisions (the reference leaves them open):
- Time-series displays: the items of `series_index` are the result items whose `order` equals it
  (every breakdown value of that series; with formulas `order` is the formula index). Items of the
  "previous" compare period are ignored: only the current period is evaluated.
- The checked point is the last one with `check_ongoing_interval`, else the second-to-last (the last
  complete interval).
- Total-value displays use `aggregated_value`; their date range is not narrowed (the aggregate is
  over the insight's whole range, as the reference's code does) and only `absolute_value` applies.
"""

from __future__ import annotations

import copy
from typing import Any

from generated.insights.v1 import alerts_pb2, query_pb2, results_pb2
from server.queries.alerting import (
    ABSOLUTE_VALUE,
    MAX_BREAKDOWN_VALUES,
    RELATIVE_DECREASE,
    AlertAsk,
    AlertValueError,
    AlertValues,
    BreakdownValue,
    Problem,
    Watched,
)
from server.queries.trends.compute import TOTAL_VALUE_DISPLAYS

CONFIG_TYPE = "TrendsAlertConfig"
_INTERVAL_UNITS: dict[int, str] = {
    query_pb2.INTERVAL_TYPE_UNSPECIFIED: "d",  # trends default to day
    query_pb2.INTERVAL_TYPE_DAY: "d",
    query_pb2.INTERVAL_TYPE_WEEK: "w",
    query_pb2.INTERVAL_TYPE_MONTH: "m",
}
_INTERVAL_NAMES = {"day": "d", "week": "w", "month": "m"}


def lookback(condition: str, interval: int | str) -> str:
    """The narrowed `date_from`: 2 intervals back for absolute conditions, 3 for relative ones.

    `interval` is an `IntervalType` value or its name; hour and anything finer use hours (as the
    reference), unset means day.
    """
    n = 2 if condition == ABSOLUTE_VALUE else 3
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


def rewrite_query(trends: query_pb2.TrendsQuery, condition: str) -> query_pb2.TrendsQuery:
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


def item_label(item: results_pb2.TrendsSeries) -> str:
    bv = breakdown_value_of(item)
    if bv is None or item.label.endswith(f" - {bv}") or item.label == str(bv):
        return item.label
    shown = ", ".join(bv) if isinstance(bv, tuple) else str(bv)
    return f"{item.label} - {shown}" if item.label else shown


def _series_index(ask: AlertAsk) -> int:
    return int(ask.config.get("series_index", 0) or 0)


def _ongoing(ask: AlertAsk) -> bool:
    return bool(ask.config.get("check_ongoing_interval", False))


class TrendsAlertValues(AlertValues[query_pb2.TrendsQuery]):
    """Alerts on trends: one series (every breakdown value of it), its last complete interval."""

    config_type = CONFIG_TYPE
    config_field = "config"

    def config_json(self, alert: alerts_pb2.Alert) -> dict[str, Any]:
        config: dict[str, Any] = {"type": CONFIG_TYPE, "series_index": alert.config.series_index}
        if alert.config.HasField("check_ongoing_interval"):
            config["check_ongoing_interval"] = alert.config.check_ongoing_interval
        return config

    def problems(self, node: query_pb2.TrendsQuery, ask: AlertAsk) -> list[Problem]:
        stored = ask.config.get("type", CONFIG_TYPE)
        if stored != CONFIG_TYPE:
            # Only a stored alert whose insight became a trends insight gets here.
            return [
                Problem("config", f"the insight is a trends insight now, the alert's config is a {stored}")
            ]
        out: list[Problem] = []
        if not 0 <= _series_index(ask) < series_count(node):
            out.append(
                Problem(
                    "config.series_index",
                    f"series_index {_series_index(ask)} is out of range "
                    f"(the insight has {series_count(node)} series)",
                )
            )
        # A partial interval only grows, so only "exceeds the upper bound" makes sense for it.
        if _ongoing(ask) and ask.condition != RELATIVE_DECREASE and not ask.has_upper:
            out.append(
                Problem(
                    "config.check_ongoing_interval",
                    f"check_ongoing_interval is only supported for {ask.condition} with an upper threshold",
                )
            )
        if ask.condition != ABSOLUTE_VALUE and is_total_value(node):
            out.append(
                Problem("condition.type", "Relative alerts are not supported for total-value displays")
            )
        return out

    def query(
        self, node: query_pb2.TrendsQuery, ask: AlertAsk, history: int | None = None
    ) -> query_pb2.TrendsQuery:
        out = rewrite_query(node, ask.condition)
        if history is not None and not is_total_value(node):
            unit = lookback(ask.condition, node.interval)[-1]
            out.date_range.date_from = f"-{history + 2}{unit}"
        return out

    def watched(
        self, node: query_pb2.TrendsQuery, result: results_pb2.InsightResult, ask: AlertAsk
    ) -> list[Watched]:
        if result.WhichOneof("result") != "trends":
            raise AlertValueError("the insight query returned no trends result")
        back = 1 if _ongoing(ask) else 2
        total = is_total_value(node) and not ask.detector
        out = []
        for item in select_items(result.trends, _series_index(ask)):
            if total:
                value = item.aggregated_value if item.HasField("aggregated_value") else item.count
                points: tuple[float, ...] = (value,)
            else:
                points = tuple(item.data)
            out.append(
                Watched(
                    label=item_label(item),
                    breakdown_value=breakdown_value_of(item),
                    points=points,
                    days=tuple(item.days),
                    anchor_back=1 if total else back,
                )
            )
        return out

    def subject(self, node: query_pb2.TrendsQuery, ask: AlertAsk) -> str:
        return "The trend value"
