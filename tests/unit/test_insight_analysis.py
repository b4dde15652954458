"""The analyzers on generated results against a pure-Python oracle: trends' changes and averages,
the two-of-three anomaly rule, funnel conversion and drop-off, retention's period-1 figures."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import results_pb2 as rpb
from server.domain.alerts.detectors import detect
from server.domain.analysis import funnels, retention, trends

_values = st.lists(st.integers(min_value=1, max_value=60), min_size=2, max_size=45)


def _series(data: list[int]) -> rpb.TrendsSeries:
    return rpb.TrendsSeries(label="s", data=data, days=[f"d{i:02}" for i in range(len(data))])


@given(_values)
def test_trend_changes_and_average_match_the_oracle(data: list[int]) -> None:
    found = trends.series_finding(_series(data))
    assert (found.first_value, found.last_value, found.change) == (data[0], data[-1], data[-1] - data[0])
    assert abs(found.average - sum(data) / len(data)) < 1e-9
    assert abs(found.change_percent - (data[-1] - data[0]) * 100 / data[0]) < 1e-9
    diffs = [data[i] - data[i - 1] for i in range(1, len(data))]
    if max(diffs) > 0:
        i = diffs.index(max(diffs)) + 1
        assert (found.largest_rise.change, found.largest_rise.to_day) == (max(diffs), f"d{i:02}")
    else:
        assert not found.HasField("largest_rise")
    if min(diffs) < 0:
        i = diffs.index(min(diffs)) + 1
        assert (found.largest_fall.change, found.largest_fall.from_day) == (min(diffs), f"d{i - 1:02}")
    else:
        assert not found.HasField("largest_fall")
    # A point is anomalous exactly when two or three of the detectors flag it.
    votes = [0] * len(data)
    for config in trends.DETECTORS:
        for index in detect(data, config).triggered_points:
            votes[index] += 1
    assert [p.day for p in found.anomalies] == [f"d{i:02}" for i, v in enumerate(votes) if v >= 2]
    assert found.anomalies_checked == (len(data) >= 31)


def test_a_lone_spike_in_a_steady_series_is_named_in_the_text() -> None:
    data = [5] * 40
    data[35] = 30
    out = rpb.TrendsResult(series=[_series(data)])
    text = trends.markdown(trends.findings(out))
    assert "- Anomalies: d35 (30; zscore, mad, iqr)." in text
    assert text.startswith("**s**: flat from 5 to 5 (+0.0%).")


@given(st.lists(st.integers(min_value=0, max_value=30), min_size=2, max_size=6))
def test_funnel_conversion_and_drop_off_match_the_oracle(losses: list[int]) -> None:
    counts = [100]
    for lost in losses:
        counts.append(max(counts[-1] - lost, 0))
    steps = [rpb.FunnelStep(name=f"s{i}", count=c) for i, c in enumerate(counts)]
    found = funnels.findings(rpb.FunnelStepsResult(breakdowns=[rpb.FunnelSteps(steps=steps)]))
    assert [s.count for s in found.steps] == counts
    assert found.overall_conversion_percent == counts[-1] * 100 / 100
    rates = {i: counts[i] * 100 / counts[i - 1] for i in range(1, len(counts)) if counts[i - 1]}
    worst = min(rates, key=lambda i: (rates[i], i))
    assert found.biggest_drop_off_step == worst
    assert found.biggest_drop_off_lost == counts[worst - 1] - counts[worst]


@given(st.lists(st.tuples(st.integers(1, 40), st.integers(0, 40)), min_size=2, max_size=8))
def test_retention_period_1_figures_match_the_oracle(cohorts: list[tuple[int, int]]) -> None:
    cohorts = [(size, min(back, size)) for size, back in cohorts]
    result = rpb.RetentionResult(
        cohorts=[
            rpb.RetentionCohort(
                date=f"2024-01-{i + 1:02}",
                values=[rpb.RetentionValue(count=size, label="Day 0"), rpb.RetentionValue(count=back, label="Day 1")],
            )
            for i, (size, back) in enumerate(cohorts)
        ]
    )
    found = retention.findings(result)
    observed = cohorts[:-1]  # the last cohort has not reached day 1
    assert [(c.size, c.period_1_count) for c in found.cohorts] == observed
    assert abs(found.period_1_percent - sum(b for _, b in observed) * 100 / sum(s for s, _ in observed)) < 1e-9
    if len(observed) >= 2:
        first, last = observed[0][1] * 100 / observed[0][0], observed[-1][1] * 100 / observed[-1][0]
        assert abs(found.trend_points - (last - first)) < 1e-9
        assert found.trend == (
            apb.DIRECTION_UP if last > first else apb.DIRECTION_DOWN if last < first else apb.DIRECTION_FLAT
        )
    assert retention.period_name(result) == "Day 1"
