"""Pure-function tests of the alert threshold evaluation (reference §7.2-7.5)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pytest

from generated.insights.v1 import query_pb2, results_pb2
from server.domain.alerts import evaluate
from server.domain.alerts.evaluate import AlertState, Bounds, EvaluationError, Threshold
from server.queries.trends.alert import TrendsAlertValues, lookback, rewrite_query

M = query_pb2
TRENDS = TrendsAlertValues()


@dataclass(frozen=True)
class TrendsAlertConfig:
    """The stored TrendsAlertConfig, built like the tests read best."""

    series_index: int = 0
    check_ongoing_interval: bool = False

    def json(self) -> dict[str, Any]:
        return {
            "type": "TrendsAlertConfig",
            "series_index": self.series_index,
            "check_ongoing_interval": self.check_ongoing_interval,
        }


def evaluate_trends(
    q: query_pb2.TrendsQuery,
    r: results_pb2.TrendsResult | None,
    condition: str,
    threshold: Threshold,
    config: TrendsAlertConfig,
) -> evaluate.Evaluation:
    """The domain's evaluation of a trends result, through the trends kind's alert values."""
    if r is None:
        return evaluate.evaluate(TRENDS, q, None, condition, threshold, config.json())
    wrapped = results_pb2.InsightResult()
    wrapped.trends.CopyFrom(r)
    wrapped.trends.SetInParent()
    return evaluate.evaluate(TRENDS, q, wrapped, condition, threshold, config.json())


def config_problems(
    q: query_pb2.TrendsQuery, condition: str, threshold: Threshold, config: TrendsAlertConfig
) -> list[tuple[str, str]]:
    return evaluate.config_problems(TRENDS, q, condition, threshold, config.json())


def trends(
    *,
    interval: int = M.INTERVAL_TYPE_DAY,
    display: int | None = None,
    n_series: int = 1,
    breakdown: bool = False,
) -> query_pb2.TrendsQuery:
    q = query_pb2.TrendsQuery(interval=interval)
    for i in range(n_series):
        q.series.add().events_node.event = f"e{i}"
    q.date_range.date_from = "-30d"
    q.date_range.date_to = "-1d"
    if display is not None:
        q.trends_filter.display = display  # type: ignore[assignment]
    if breakdown:
        q.breakdown_filter.breakdown.string_value = "$browser"
    return q


def item(
    data: list[float],
    *,
    order: int = 0,
    label: str = "e0",
    breakdown: str | None = None,
    compare_label: str = "",
) -> results_pb2.TrendsSeries:
    s = results_pb2.TrendsSeries(data=data, label=label, order=order, count=sum(data))
    if breakdown is not None:
        s.breakdown_value.string_value = breakdown
    if compare_label:
        s.compare = True
        s.compare_label = compare_label
    return s


def total(value: float, *, order: int = 0, breakdown: str | None = None) -> results_pb2.TrendsSeries:
    s = results_pb2.TrendsSeries(label="e0", order=order, aggregated_value=value)
    if breakdown is not None:
        s.breakdown_value.string_value = breakdown
    return s


def result(*items: results_pb2.TrendsSeries) -> results_pb2.TrendsResult:
    return results_pb2.TrendsResult(series=list(items))


ABS = "absolute"
PCT = "percentage"


def run(
    data: list[float],
    condition: str,
    ttype: str,
    lower: float | None = None,
    upper: float | None = None,
    ongoing: bool = False,
):
    return evaluate_trends(
        trends(),
        result(item(data)),
        condition,
        Threshold(ttype, Bounds(lower, upper)),
        TrendsAlertConfig(0, ongoing),
    )


# ------------------------------------------------------------------------------ lookback / rewrite


@pytest.mark.parametrize(
    ("condition", "interval", "expected"),
    [
        ("absolute_value", M.INTERVAL_TYPE_DAY, "-2d"),
        ("absolute_value", M.INTERVAL_TYPE_HOUR, "-2h"),
        ("absolute_value", M.INTERVAL_TYPE_WEEK, "-2w"),
        ("absolute_value", M.INTERVAL_TYPE_MONTH, "-2m"),
        ("relative_increase", M.INTERVAL_TYPE_HOUR, "-3h"),
        ("relative_decrease", M.INTERVAL_TYPE_DAY, "-3d"),
        ("relative_increase", M.INTERVAL_TYPE_MONTH, "-3m"),
        ("relative_increase", M.INTERVAL_TYPE_UNSPECIFIED, "-3d"),
        ("absolute_value", M.INTERVAL_TYPE_MINUTE, "-2h"),
        ("absolute_value", "week", "-2w"),
        ("relative_increase", "hour", "-3h"),
    ],
)
def test_lookback(condition: str, interval: int | str, expected: str) -> None:
    assert lookback(condition, interval) == expected


def test_rewrite_narrows_and_keeps_the_rest() -> None:
    q = trends(interval=M.INTERVAL_TYPE_HOUR, breakdown=True)
    q.compare_filter.compare = True
    q.trends_filter.formula = "A*2"
    q.trends_filter.display = M.CHART_DISPLAY_TYPE_ACTIONS_BAR
    q.breakdown_filter.breakdown_limit = 100
    out = rewrite_query(q, "relative_increase")
    assert out.date_range.date_from == "-3h"
    assert not out.date_range.HasField("date_to")
    assert out.breakdown_filter.breakdown_limit == 25
    assert out.compare_filter.compare
    assert out.trends_filter.formula == "A*2"
    assert out.trends_filter.display == M.CHART_DISPLAY_TYPE_ACTIONS_BAR
    # the original is untouched
    assert q.date_range.date_from == "-30d" and q.breakdown_filter.breakdown_limit == 100


def test_rewrite_keeps_a_smaller_breakdown_limit_and_sets_the_default() -> None:
    q = trends(breakdown=True)
    q.breakdown_filter.breakdown_limit = 10
    assert rewrite_query(q, "absolute_value").breakdown_filter.breakdown_limit == 10
    assert rewrite_query(trends(breakdown=True), "absolute_value").breakdown_filter.breakdown_limit == 25
    assert not rewrite_query(trends(), "absolute_value").HasField("breakdown_filter")


def test_rewrite_keeps_the_range_of_a_total_value_display() -> None:
    q = trends(display=M.CHART_DISPLAY_TYPE_BOLD_NUMBER)
    out = rewrite_query(q, "absolute_value")
    assert out.date_range.date_from == "-30d" and out.date_range.date_to == "-1d"


# ------------------------------------------------------------------------------ absolute_value


def test_absolute_upper_breach_uses_last_complete_interval() -> None:
    ev = run([1, 120, 5], "absolute_value", ABS, upper=100)
    assert ev.state == AlertState.FIRING
    assert ev.value == 120
    assert ev.breaches == ["The trend value for e0 (120) is above the upper threshold (100)"]


def test_absolute_lower_breach() -> None:
    ev = run([50, 3, 500], "absolute_value", ABS, lower=10)
    assert ev.firing and ev.value == 3
    assert "below the lower threshold (10)" in ev.breaches[0]


def test_absolute_inside_bounds_not_firing() -> None:
    ev = run([0, 50, 999], "absolute_value", ABS, lower=10, upper=100)
    assert ev.state == AlertState.NOT_FIRING and ev.value == 50 and ev.breaches == []


@pytest.mark.parametrize(("value", "lower", "upper"), [(100, None, 100), (10, 10, None), (10, 10, 10)])
def test_equality_does_not_breach(value: float, lower: float | None, upper: float | None) -> None:
    assert not run([0, value, 0], "absolute_value", ABS, lower=lower, upper=upper).firing


def test_ongoing_interval_anchors_on_last_point() -> None:
    assert run([0, 5, 150], "absolute_value", ABS, upper=100, ongoing=True).value == 150
    assert run([0, 5, 150], "absolute_value", ABS, upper=100, ongoing=False).value == 5


def test_short_series_counts_missing_points_as_zero() -> None:
    ev = run([7], "absolute_value", ABS, lower=1)
    assert ev.value == 0 and ev.firing


# ------------------------------------------------------------------------------ relative conditions


def test_increase_absolute_threshold() -> None:
    ev = run([80, 100, 0], "relative_increase", ABS, upper=10)
    assert ev.firing and ev.value == 20
    assert ev.breaches == [
        "The trend value for e0 increased by 20 (from 80 to 100), which is above the upper threshold (10)"
    ]


def test_increase_percentage_threshold() -> None:
    ev = run([80, 100, 0], "relative_increase", PCT, upper=0.2)
    assert ev.firing and ev.value == pytest.approx(0.25)
    assert "increased by 25.0% (from 80 to 100)" in ev.breaches[0]
    assert "above the upper threshold (20.0%)" in ev.breaches[0]


def test_increase_percentage_equal_to_bound_does_not_breach() -> None:
    assert not run([80, 100, 0], "relative_increase", PCT, upper=0.25).firing


def test_increase_below_lower_bound_fires() -> None:
    ev = run([100, 90, 0], "relative_increase", ABS, lower=0)
    assert ev.firing and ev.value == -10 and "below the lower threshold (0)" in ev.breaches[0]


def test_decrease_absolute_threshold() -> None:
    ev = run([100, 60, 1000], "relative_decrease", ABS, upper=30)
    assert ev.firing and ev.value == 40
    assert "decreased by 40 (from 100 to 60)" in ev.breaches[0]


def test_decrease_percentage_threshold() -> None:
    ev = run([100, 60, 0], "relative_decrease", PCT, upper=0.5)
    assert not ev.firing and ev.value == pytest.approx(0.4)
    ev = run([100, 40, 0], "relative_decrease", PCT, upper=0.5)
    assert ev.firing and ev.value == pytest.approx(0.6) and "decreased by 60.0%" in ev.breaches[0]


def test_relative_ongoing_interval_compares_last_with_second_to_last() -> None:
    ev = run([0, 10, 30], "relative_increase", ABS, upper=15, ongoing=True)
    assert ev.firing and ev.value == 20


def test_percentage_zero_over_zero_is_zero() -> None:
    ev = run([0, 0, 5], "relative_increase", PCT, upper=0.0)
    assert ev.value == 0 and not ev.firing
    assert run([0, 0, 5], "relative_increase", PCT, lower=0.0).value == 0


def test_percentage_x_over_zero_is_infinite() -> None:
    ev = run([0, 5, 0], "relative_increase", PCT, upper=10.0)
    assert ev.value == math.inf and ev.firing
    assert "increased by ∞% (from 0 to 5)" in ev.breaches[0]


def test_percentage_decrease_from_zero_is_infinite() -> None:
    # previous 0, anchor -3 (e.g. a formula): delta 3 over 0
    ev = run([0, -3, 0], "relative_decrease", PCT, upper=1.0)
    assert ev.value == math.inf and ev.firing


# ------------------------------------------------------------------------------ empty / total value


@pytest.mark.parametrize("condition", ["absolute_value", "relative_increase", "relative_decrease"])
def test_empty_result_counts_as_zero(condition: str) -> None:
    ttype = ABS
    ev = evaluate_trends(
        trends(), result(), condition, Threshold(ttype, Bounds(lower=1)), TrendsAlertConfig()
    )
    assert ev.firing and ev.value == 0
    assert "empty result" in ev.breaches[0]
    ev = evaluate_trends(
        trends(), result(), condition, Threshold(ttype, Bounds(upper=1)), TrendsAlertConfig()
    )
    assert not ev.firing and ev.value == 0


def test_no_result_is_an_error() -> None:
    with pytest.raises(EvaluationError):
        evaluate_trends(
            trends(), None, "absolute_value", Threshold(ABS, Bounds(upper=1)), TrendsAlertConfig()
        )


def test_total_value_display_uses_aggregated_value() -> None:
    q = trends(display=M.CHART_DISPLAY_TYPE_BOLD_NUMBER)
    ev = evaluate_trends(
        q, result(total(500)), "absolute_value", Threshold(ABS, Bounds(upper=400)), TrendsAlertConfig()
    )
    assert ev.firing and ev.value == 500
    ev = evaluate_trends(
        q, result(total(400)), "absolute_value", Threshold(ABS, Bounds(upper=400)), TrendsAlertConfig()
    )
    assert not ev.firing and ev.value == 400


def test_total_value_display_rejects_relative_conditions() -> None:
    q = trends(display=M.CHART_DISPLAY_TYPE_ACTIONS_PIE)
    with pytest.raises(EvaluationError, match=r"condition\.type"):
        evaluate_trends(
            q, result(total(1)), "relative_increase", Threshold(ABS, Bounds(upper=1)), TrendsAlertConfig()
        )


# ------------------------------------------------------------------------------ series / breakdowns


def test_series_index_selects_items_by_order() -> None:
    q = trends(n_series=2)
    r = result(item([0, 1, 0], order=0, label="a"), item([0, 200, 0], order=1, label="b"))
    cfg = Threshold(ABS, Bounds(upper=100))
    assert not evaluate_trends(q, r, "absolute_value", cfg, TrendsAlertConfig(0)).firing
    ev = evaluate_trends(q, r, "absolute_value", cfg, TrendsAlertConfig(1))
    assert ev.firing and ev.value == 200 and "for b" in ev.breaches[0]


def test_any_breakdown_value_breaching_fires() -> None:
    q = trends(breakdown=True)
    r = result(
        item([0, 10, 0], label="Chrome", breakdown="Chrome"),
        item([0, 300, 0], label="Safari", breakdown="Safari"),
        item([0, 400, 0], label="Firefox", breakdown="Firefox"),
    )
    ev = evaluate_trends(q, r, "absolute_value", Threshold(ABS, Bounds(upper=100)), TrendsAlertConfig())
    assert ev.firing
    assert ev.triggered_breakdown_values == ["Safari", "Firefox"]
    assert ev.value == 300  # the first breaching value
    assert len(ev.breaches) == 2 and len(ev.items) == 3


def test_breakdown_without_breach_has_no_single_value() -> None:
    q = trends(breakdown=True)
    r = result(item([0, 10, 0], breakdown="a"), item([0, 20, 0], breakdown="b"))
    ev = evaluate_trends(q, r, "absolute_value", Threshold(ABS, Bounds(upper=100)), TrendsAlertConfig())
    assert not ev.firing and ev.value is None and [i.value for i in ev.items] == [10, 20]


def test_previous_compare_period_is_ignored() -> None:
    r = result(item([0, 10, 0], compare_label="current"), item([0, 999, 0], compare_label="previous"))
    ev = evaluate_trends(
        trends(), r, "absolute_value", Threshold(ABS, Bounds(upper=100)), TrendsAlertConfig()
    )
    assert not ev.firing and ev.value == 10


# ------------------------------------------------------------------------------ config validity


def test_config_problems() -> None:
    q = trends()
    ok = config_problems(q, "absolute_value", Threshold(ABS, Bounds(upper=1)), TrendsAlertConfig())
    assert ok == []
    fields = [
        f for f, _ in config_problems(q, "absolute_value", Threshold(PCT, Bounds(5, 1)), TrendsAlertConfig(3))
    ]
    assert fields == ["threshold.configuration.bounds", "config.series_index", "threshold.configuration.type"]
    fields = [
        f
        for f, _ in config_problems(
            q, "relative_increase", Threshold(ABS, Bounds(lower=1)), TrendsAlertConfig(0, True)
        )
    ]
    assert fields == ["config.check_ongoing_interval"]
    # ongoing with an upper bound is fine for increase; decrease has no such rule
    assert (
        config_problems(q, "relative_increase", Threshold(PCT, Bounds(upper=1)), TrendsAlertConfig(0, True))
        == []
    )
    q.trends_filter.formulas.extend(["A", "A*2"])
    assert config_problems(q, "absolute_value", Threshold(ABS, Bounds(upper=1)), TrendsAlertConfig(1)) == []
