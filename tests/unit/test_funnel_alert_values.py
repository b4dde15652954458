"""How an alert reads a funnel (server.queries.funnels.alert), against funnels computed by hand."""

from __future__ import annotations

from typing import Any

import pytest

from generated.insights.v1 import alerts_pb2, query_pb2, results_pb2
from server.domain.alerts import evaluate
from server.domain.alerts.evaluate import AlertState, Bounds, Threshold
from server.queries.alerting import AlertAsk, AlertValueError
from server.queries.funnels.alert import FunnelsAlertValues, step_value
from server.queries.registry import ALERT_CONFIG_FIELDS, ALERTS, alerting_of

FUNNELS = FunnelsAlertValues()
M = query_pb2


def funnel(*events: str, breakdown: bool = False, viz: int | None = None) -> query_pb2.FunnelsQuery:
    q = query_pb2.FunnelsQuery()
    for e in events or ("view", "signup", "buy"):
        q.series.add().events_node.event = e
    if breakdown:
        q.breakdown_filter.breakdown.string_value = "$browser"
    if viz is not None:
        q.funnels_filter.funnel_viz_type = viz  # type: ignore[assignment]
    return q


def steps_result(*groups: tuple[list[int], str | None]) -> results_pb2.InsightResult:
    """A steps result: one list of step counts per breakdown value (None: no breakdown)."""
    out = results_pb2.InsightResult()
    out.funnels.steps.SetInParent()
    for counts, value in groups:
        group = out.funnels.steps.breakdowns.add()
        for k, count in enumerate(counts):
            step = group.steps.add(order=k, count=count)
            if value is not None:
                step.breakdown_value.list_value.values.add().string_value = value
    return out


def config(metric: str = "conversion_from_start", step: int | None = None) -> dict[str, Any]:
    return {"type": "FunnelsAlertConfig", "metric": metric, "funnel_step": step}


def ask(condition: str = "absolute_value", **kw: Any) -> AlertAsk:
    detector = kw.pop("detector", False)
    return AlertAsk(condition=condition, config=config(**kw), detector=detector)


# ------------------------------------------------------------------------------ the value


# A funnel of 10 → 6 → 3 actors, by hand: from the start 100 %, 60 %, 30 %; from the previous step
# 60 % then 50 %; counts as they are.
@pytest.mark.parametrize(
    ("metric", "step", "expected"),
    [
        ("conversion_from_start", 2, 30.0),
        ("conversion_from_start", 1, 60.0),
        ("conversion_from_start", 0, 100.0),
        ("conversion_from_previous", 2, 50.0),
        ("conversion_from_previous", 1, 60.0),
        ("step_count", 0, 10.0),
        ("step_count", 2, 3.0),
    ],
)
def test_step_value_by_hand(metric: str, step: int, expected: float) -> None:
    assert step_value([10, 6, 3], step, metric) == pytest.approx(expected)


def test_a_rate_over_nobody_is_zero() -> None:
    assert step_value([0, 0, 0], 2, "conversion_from_start") == 0.0
    assert step_value([5, 0, 0], 2, "conversion_from_previous") == 0.0


def test_watched_defaults_to_the_last_steps_conversion_from_the_start() -> None:
    q = funnel()
    lines = FUNNELS.watched(q, steps_result(([8, 4, 2], None)), ask())
    assert [(w.label, w.breakdown_value, w.points) for w in lines] == [("", None, (25.0,))]


def test_watched_one_line_per_breakdown_value() -> None:
    q = funnel("view", "signup", breakdown=True)
    result = steps_result(([4, 3], "Chrome"), ([2, 0], "Safari"), ([0, 0], "Other"))
    lines = FUNNELS.watched(q, result, ask())
    assert [(w.label, w.breakdown_value, w.points) for w in lines] == [
        ("Chrome", ("Chrome",), (75.0,)),
        ("Safari", ("Safari",), (0.0,)),
        ("Other", ("Other",), (0.0,)),
    ]


def test_watched_reads_steps_by_their_order() -> None:
    # The steps of a group in another order than their index: `order` says which is which.
    result = steps_result(([10, 5], None))
    group = result.funnels.steps.breakdowns[0]
    copies = [results_pb2.FunnelStep() for _ in group.steps]
    for copy, step in zip(copies, group.steps, strict=True):
        copy.CopyFrom(step)
    del group.steps[:]
    group.steps.extend(reversed(copies))
    assert group.steps[0].order == 1
    assert FUNNELS.watched(funnel("a", "b"), result, ask())[0].points == (50.0,)


def test_at_most_25_breakdown_values_are_watched() -> None:
    result = steps_result(*[([2, 1], f"v{i}") for i in range(30)])
    assert len(FUNNELS.watched(funnel("a", "b", breakdown=True), result, ask())) == 25


def test_a_result_of_another_shape_is_an_error() -> None:
    with pytest.raises(AlertValueError):
        FUNNELS.watched(funnel(), results_pb2.InsightResult(), ask())
    with pytest.raises(AlertValueError):
        FUNNELS.watched(funnel(), steps_result(([1, 1], None)), ask())  # 2 steps for a 3-step funnel


# ------------------------------------------------------------------------------ evaluation


@pytest.mark.parametrize(("lower", "firing"), [(30.0, True), (25.0, False), (20.0, False)])
def test_fires_strictly_below_the_lower_bound(lower: float, firing: bool) -> None:
    ev = evaluate.evaluate(
        FUNNELS,
        funnel(),
        steps_result(([8, 4, 2], None)),
        "absolute_value",
        Threshold("absolute", Bounds(lower)),
        config(),
    )
    assert ev.firing is firing and ev.value == 25.0
    if firing:
        assert ev.breaches == ["The funnel conversion rate (25%) is below the lower threshold (30%)"]


def test_any_breaching_breakdown_value_fires() -> None:
    q = funnel("view", "signup", breakdown=True)
    result = steps_result(([4, 3], "Chrome"), ([2, 0], "Safari"))
    ev = evaluate.evaluate(
        FUNNELS, q, result, "absolute_value", Threshold("absolute", Bounds(lower=50)), config()
    )
    assert ev.state == AlertState.FIRING and ev.value == 0.0
    assert ev.triggered_breakdown_values == [("Safari",)]


def test_an_empty_breakdown_result_is_one_zero() -> None:
    q = funnel("view", "signup", breakdown=True)
    ev = evaluate.evaluate(
        FUNNELS, q, steps_result(), "absolute_value", Threshold("absolute", Bounds(lower=1)), config()
    )
    assert ev.firing and ev.value == 0.0


# ------------------------------------------------------------------------------ validity


def fields(q: query_pb2.FunnelsQuery, a: AlertAsk) -> list[str]:
    return [p.field for p in FUNNELS.problems(q, a)]


def test_a_valid_config_has_no_problem() -> None:
    assert fields(funnel(), ask()) == []
    assert fields(funnel(), ask(step=0)) == []
    assert fields(funnel(), ask(metric="conversion_from_previous", step=1)) == []
    assert fields(funnel(viz=M.FUNNEL_VIZ_TYPE_STEPS), ask(metric="step_count", step=2)) == []


@pytest.mark.parametrize("step", [3, 7, -1])
def test_a_step_beyond_the_funnel(step: int) -> None:
    (problem,) = FUNNELS.problems(funnel(), ask(step=step))
    assert problem.field == "funnels_config.funnel_step" and "the funnel has 3 steps" in problem.message


def test_other_problems_name_their_field() -> None:
    assert fields(funnel(), ask(metric="conversion_from_previous", step=0)) == ["funnels_config.funnel_step"]
    assert fields(funnel(), ask("relative_increase")) == ["condition.type"]
    assert fields(funnel(), ask(detector=True)) == ["detector_config"]
    assert fields(funnel(), ask(metric="median")) == ["funnels_config.metric"]
    assert fields(funnel(viz=M.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT), ask()) == ["insight"]
    (later,) = FUNNELS.problems(funnel(viz=M.FUNNEL_VIZ_TYPE_TRENDS), ask())
    assert later.field == "insight" and later.unimplemented
    stale = AlertAsk("absolute_value", {"type": "TrendsAlertConfig", "series_index": 0})
    assert fields(funnel(), stale) == ["funnels_config"]


def test_the_domain_adds_the_threshold_rules() -> None:
    found = evaluate.config_problems(
        FUNNELS, funnel(), "absolute_value", Threshold("percentage", Bounds(5, 1)), config(step=4)
    )
    assert [f for f, _ in found] == [
        "threshold.configuration.bounds",
        "funnels_config.funnel_step",
        "threshold.configuration.type",
    ]


# ------------------------------------------------------------------------------ query and config


def test_the_check_runs_the_insights_funnel_with_at_most_25_breakdown_values() -> None:
    q = funnel()
    q.date_range.date_from = "-30d"
    assert FUNNELS.query(q, ask()) == q
    wide = funnel(breakdown=True)
    wide.breakdown_filter.breakdown_limit = 100
    assert FUNNELS.query(wide, ask()).breakdown_filter.breakdown_limit == 25
    assert wide.breakdown_filter.breakdown_limit == 100  # the insight's query is untouched
    narrow = funnel(breakdown=True)
    narrow.breakdown_filter.breakdown_limit = 5
    assert FUNNELS.query(narrow, ask()).breakdown_filter.breakdown_limit == 5


def test_config_json_applies_the_defaults() -> None:
    alert = alerts_pb2.Alert()
    assert FUNNELS.config_json(alert) == config()
    alert.funnels_config.metric = alerts_pb2.FUNNEL_ALERT_METRIC_STEP_COUNT
    alert.funnels_config.funnel_step = 0
    assert FUNNELS.config_json(alert) == config("step_count", 0)


def test_the_registry_knows_the_alertable_kinds() -> None:
    assert set(ALERTS) == {"trends_query", "funnels_query", "hogql_query", "data_visualization_node"}
    assert ALERT_CONFIG_FIELDS == {
        "TrendsAlertConfig": "config",
        "FunnelsAlertConfig": "funnels_config",
        "HogQLAlertConfig": "hogql_config",
    }
    node = query_pb2.QueryNode()
    node.insight_viz_node.source.funnels_query.CopyFrom(funnel())
    found = alerting_of(node)
    assert found is not None and found[1] is ALERTS["funnels_query"]
    assert alerting_of(query_pb2.QueryNode(retention_query=query_pb2.RetentionQuery())) is None
