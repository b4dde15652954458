"""What an alert reads of a funnels insight: one number per breakdown value of a steps funnel.

Decisions (docs/decisions.md, "Funnel alerts"):
- The value is the conversion rate (0-100, as the reference shows it) of `funnel_step` (unset: the
  last step) from the first step, or from the previous step, or that step's actor count. A rate
  over nobody (no one entered, or no one reached the previous step) is 0.
- Only the steps visualisation: time_to_convert has no conversion rate (refused); the trends
  visualisation is not computed by this service yet (UNIMPLEMENTED).
- A steps result is one snapshot with no previous interval: absolute_value only, and no detector.
- The check computes the insight's own funnel (its date range is not narrowed); a breakdown limit
  above 25 is capped at 25 (the rest merges into "Other"), and at most 25 breakdown values are
  evaluated, as trends alerts do. Any breaching value fires the alert.
"""

from __future__ import annotations

import copy
from typing import Any

from generated.insights.v1 import alerts_pb2, query_pb2, results_pb2
from server.queries.alerting import (
    ABSOLUTE_VALUE,
    MAX_BREAKDOWN_VALUES,
    AlertAsk,
    AlertValueError,
    AlertValues,
    BreakdownValue,
    Problem,
    Watched,
)

CONFIG_TYPE = "FunnelsAlertConfig"
FROM_START = "conversion_from_start"
FROM_PREVIOUS = "conversion_from_previous"
STEP_COUNT = "step_count"
METRIC_NAMES = {
    alerts_pb2.FUNNEL_ALERT_METRIC_UNSPECIFIED: FROM_START,
    alerts_pb2.FUNNEL_ALERT_METRIC_CONVERSION_FROM_START: FROM_START,
    alerts_pb2.FUNNEL_ALERT_METRIC_CONVERSION_FROM_PREVIOUS: FROM_PREVIOUS,
    alerts_pb2.FUNNEL_ALERT_METRIC_STEP_COUNT: STEP_COUNT,
}
_SUBJECTS = {
    FROM_START: "The funnel conversion rate",
    FROM_PREVIOUS: "The funnel conversion rate from the previous step",
    STEP_COUNT: "The funnel step count",
}


def metric_of(ask: AlertAsk) -> str:
    return str(ask.config.get("metric") or FROM_START)


def step_of(ask: AlertAsk, steps: int) -> int:
    """The checked step (from 0): `funnel_step`, or the last one when it is unset."""
    step = ask.config.get("funnel_step")
    return steps - 1 if step is None else int(step)


def step_value(counts: list[int], step: int, metric: str) -> float:
    """The compared value of one step list (counts by step order)."""
    if metric == STEP_COUNT:
        return float(counts[step])
    base = counts[0] if metric == FROM_START else counts[step - 1]
    return counts[step] / base * 100 if base else 0.0


def _breakdown_value(step: results_pb2.FunnelStep) -> BreakdownValue:
    if not step.HasField("breakdown_value"):
        return None
    bv = step.breakdown_value
    kind = bv.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "list_value":
        return tuple(str(getattr(s, s.WhichOneof("kind") or "string_value")) for s in bv.list_value.values)
    value: str | int = getattr(bv, kind)
    return value


def _label(step: results_pb2.FunnelStep, value: BreakdownValue) -> str:
    """How a breach names the value: a cohort breakdown's by the cohort's name (its shown
    `breakdown`; the value is its id), other values as they are."""
    if step.breakdown.WhichOneof("kind") == "string_value":
        return step.breakdown.string_value
    if value is None:
        return ""
    return ", ".join(value) if isinstance(value, tuple) else str(value)


class FunnelsAlertValues(AlertValues[query_pb2.FunnelsQuery]):
    """Alerts on funnels: a step's conversion rate (or count), per breakdown value."""

    config_type = CONFIG_TYPE
    config_field = "funnels_config"

    def config_json(self, alert: alerts_pb2.Alert) -> dict[str, Any]:
        config = alert.funnels_config
        return {
            "type": CONFIG_TYPE,
            "metric": METRIC_NAMES.get(config.metric, FROM_START),
            # An explicit null, as the reference stores it: the last step, whatever the funnel becomes.
            "funnel_step": config.funnel_step if config.HasField("funnel_step") else None,
        }

    def problems(self, node: query_pb2.FunnelsQuery, ask: AlertAsk) -> list[Problem]:
        stored = ask.config.get("type", CONFIG_TYPE)
        if stored != CONFIG_TYPE:
            # Only a stored alert whose insight became a funnel gets here.
            return [
                Problem("funnels_config", f"the insight is a funnel now, the alert's config is a {stored}")
            ]
        out: list[Problem] = []
        viz = node.funnels_filter.funnel_viz_type
        if viz == query_pb2.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT:
            out.append(
                Problem(
                    "insight",
                    "funnel alerts need the steps visualisation: time_to_convert has no conversion rate",
                )
            )
        elif viz == query_pb2.FUNNEL_VIZ_TYPE_TRENDS:
            out.append(
                Problem(
                    "insight", "alerts on the trends visualisation of funnels are not implemented yet", True
                )
            )
        metric = metric_of(ask)
        if metric not in _SUBJECTS:
            out.append(Problem("funnels_config.metric", f"unknown metric {metric!r}"))
        n = len(node.series)
        step = step_of(ask, n)
        if not 0 <= step < n:
            out.append(
                Problem(
                    "funnels_config.funnel_step",
                    f"funnel_step {step} is out of range (the funnel has {n} steps: 0 to {n - 1})",
                )
            )
        elif metric == FROM_PREVIOUS and step == 0:
            out.append(
                Problem(
                    "funnels_config.funnel_step",
                    "conversion_from_previous needs a step after the first (funnel_step 0 has no previous step)",
                )
            )
        if ask.condition != ABSOLUTE_VALUE:
            out.append(
                Problem(
                    "condition.type",
                    "funnel alerts compare the value itself (absolute_value): a steps funnel has no previous interval",
                )
            )
        if ask.detector:
            out.append(
                Problem(
                    "detector_config",
                    "anomaly detectors need a time series: funnel alerts compare with bounds",
                )
            )
        return out

    def query(
        self, node: query_pb2.FunnelsQuery, ask: AlertAsk, history: int | None = None
    ) -> query_pb2.FunnelsQuery:
        out = copy.deepcopy(node)
        bf = out.breakdown_filter
        if out.HasField("breakdown_filter") and bf.HasField("breakdown_limit"):
            bf.breakdown_limit = min(bf.breakdown_limit, MAX_BREAKDOWN_VALUES)
        return out

    def watched(
        self, node: query_pb2.FunnelsQuery, result: results_pb2.InsightResult, ask: AlertAsk
    ) -> list[Watched]:
        if result.WhichOneof("result") != "funnels" or not result.funnels.HasField("steps"):
            raise AlertValueError("the insight query returned no funnel steps")
        n = len(node.series)
        step, metric = step_of(ask, n), metric_of(ask)
        out = []
        for group in result.funnels.steps.breakdowns[:MAX_BREAKDOWN_VALUES]:
            ordered = sorted(group.steps, key=lambda s: s.order)
            if len(ordered) != n:
                raise AlertValueError(f"the funnel result has {len(ordered)} steps, the funnel {n}")
            value = step_value([s.count for s in ordered], step, metric)
            breakdown = _breakdown_value(ordered[0])
            out.append(Watched(label=_label(ordered[0], breakdown), breakdown_value=breakdown, points=(value,)))
        return out

    def subject(self, node: query_pb2.FunnelsQuery, ask: AlertAsk) -> str:
        return _SUBJECTS.get(metric_of(ask), _SUBJECTS[FROM_START])

    def unit(self, ask: AlertAsk) -> str:
        return "" if metric_of(ask) == STEP_COUNT else "%"
