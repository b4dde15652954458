"""The stickiness, lifecycle, funnel-trends and time-to-convert analyzers on generated results
against a pure-Python oracle built from per-actor data (not from the result the analyzer reads)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import results_pb2 as rpb
from server.domain.analysis import funnel_views, lifecycle, stickiness


def _close(a: float, b: float) -> bool:
    return abs(a - b) < 1e-9


def _stickiness_item(
    active: list[int], intervals: int, cumulative: bool, label: str = ""
) -> rpb.StickinessSeries:
    """The item the engine answers for actors active in active[i] intervals each."""
    exact = [sum(1 for k in active if k == n) for n in range(1, intervals + 1)]
    data = [sum(exact[i:]) for i in range(intervals)] if cumulative else exact
    return rpb.StickinessSeries(
        label="s",
        data=data,
        days=range(1, intervals + 1),
        labels=[f"{n} day{'' if n == 1 else 's'}" for n in range(1, intervals + 1)],
        count=len(active),
        compare=bool(label),
        compare_label=label,
    )


@given(
    st.integers(1, 12).flatmap(
        lambda n: st.tuples(st.just(n), st.lists(st.integers(1, n), min_size=1, max_size=40))
    ),
    st.booleans(),
)
def test_stickiness_shares_match_the_actors(drawn: tuple[int, list[int]], cumulative: bool) -> None:
    intervals, active = drawn
    found = stickiness.findings(
        rpb.StickinessResult(series=[_stickiness_item(active, intervals, cumulative)]), cumulative
    )
    (f,) = found.series
    most = [k for k in active if k > intervals / 2]
    counts = Counter(active)
    typical = min(k for k in counts if counts[k] == max(counts.values()))
    assert (f.actors, f.intervals, f.most_actors) == (len(active), intervals, len(most))
    assert f.most_threshold == min(k for k in range(1, intervals + 1) if k > intervals / 2)
    assert _close(f.most_percent, len(most) * 100 / len(active))
    assert _close(f.average_intervals, sum(active) / len(active))
    assert f.typical_intervals == typical


def test_stickiness_compare_and_text() -> None:
    current = _stickiness_item([1, 1, 2, 3, 3, 3], 3, False, "current")
    previous = _stickiness_item([1, 2, 2], 3, False, "previous")
    result = rpb.StickinessResult(series=[current, previous])
    found = stickiness.findings(result, False)
    assert len(found.series) == 1
    (c,) = found.compare
    assert (c.current_total, c.previous_total, c.change_percent) == (6, 3, 100.0)
    assert stickiness.markdown(found, result) == "\n".join(
        [
            "**s**: 6 actors; 4 (66.7%) were active on most days (at least 2 of 3).",
            "- Active on 2.17 days on average; the most common count is 3.",
            "**s against the previous period**: 6 actors vs 3 (+100.0%).",
        ]
    )


_STATUSES = (
    qpb.LIFECYCLE_TOGGLE_NEW,
    qpb.LIFECYCLE_TOGGLE_RETURNING,
    qpb.LIFECYCLE_TOGGLE_RESURRECTING,
    qpb.LIFECYCLE_TOGGLE_DORMANT,
)


@given(
    st.lists(
        st.tuples(st.integers(1, 30), st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)),
        min_size=2,
        max_size=20,
    )
)
def test_lifecycle_balance_matches_the_oracle(periods: list[tuple[int, int, int, int]]) -> None:
    days = [f"2024-01-{i + 1:02}" for i in range(len(periods))]
    result = rpb.LifecycleResult(
        series=[
            rpb.LifecycleSeries(
                label=f"e - {s}",
                status=status,
                days=days,
                data=[-p[s] if status == qpb.LIFECYCLE_TOGGLE_DORMANT else p[s] for p in periods],
            )
            for s, status in enumerate(_STATUSES)
        ]
    )
    found = lifecycle.findings(result)
    new, returning, resurrecting, dormant = (sum(p[s] for p in periods) for s in range(4))
    assert (found.new_total, found.returning_total, found.resurrecting_total, found.dormant_total) == (
        new,
        returning,
        resurrecting,
        dormant,
    )
    assert found.net_growth == new + resurrecting - dormant
    net = new + resurrecting - dormant
    assert found.balance == (
        apb.DIRECTION_UP if net > 0 else apb.DIRECTION_DOWN if net < 0 else apb.DIRECTION_FLAT
    )
    if dormant:
        assert _close(found.quick_ratio, (new + resurrecting) / dormant)
    else:
        assert not found.HasField("quick_ratio")
    # Each status is analysed over time: the dormant one on its negative values.
    dormant_finding = found.statuses[3]
    assert (dormant_finding.first_value, dormant_finding.last_value) == (-periods[0][3], -periods[-1][3])
    assert found.statuses[0].change == periods[-1][0] - periods[0][0]


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=2, max_size=15))
def test_funnel_conversion_trend_matches_the_oracle(periods: list[tuple[int, int]]) -> None:
    periods = [(entered, min(converted, entered)) for entered, converted in periods]
    days = [f"2024-01-{i + 1:02}" for i in range(len(periods))]
    rates = [round(c * 100 / e, 2) if e else 0.0 for e, c in periods]
    series = rpb.FunnelTrendsSeries(
        count=len(periods),
        data=rates,
        days=days,
        reached_from_step_count=[e for e, _ in periods],
        reached_to_step_count=[c for _, c in periods],
    )
    found = funnel_views.trends_findings(rpb.FunnelTrendsResult(series=[series]))
    entered = [(d, r) for d, r, (e, _) in zip(days, rates, periods, strict=True) if e]
    if not entered:
        assert not found.series
        return
    (f,) = found.series
    c = f.conversion
    assert c.label == "Conversion"
    assert (c.first_value, c.last_value) == (entered[0][1], entered[-1][1])
    assert _close(c.average, sum(r for _, r in entered) / len(entered))
    total_in, total_out = sum(e for e, _ in periods), sum(c for _, c in periods)
    assert (f.entered, f.converted) == (total_in, total_out)
    assert _close(f.conversion_percent, total_out * 100 / total_in)
    steps = [(entered[i][1] - entered[i - 1][1], entered[i][0]) for i in range(1, len(entered))]
    rises = [s for s in steps if s[0] > 0]
    if rises:
        best = max(s[0] for s in rises)
        assert (c.largest_rise.change, c.largest_rise.to_day) == next(s for s in rises if s[0] == best)


@given(st.lists(st.integers(0, 500), min_size=1, max_size=60), st.integers(1, 8))
def test_time_to_convert_median_and_mode_bins_match_the_actors(seconds: list[int], bins: int) -> None:
    low, high = min(seconds), max(seconds) + 1
    width = -(-(high - low) // bins)
    counts = Counter((s - low) // width for s in seconds)
    result = rpb.FunnelTimeToConvertResult(
        bins=[
            rpb.FunnelTimeToConvertBin(bin_start_seconds=low + i * width, count=counts[i])
            for i in range(bins + 1)
        ],
        average_conversion_time=round(sum(seconds) / len(seconds), 2),
    )
    found = funnel_views.time_to_convert_findings(result)
    ordered = sorted(seconds)
    median = ordered[(len(ordered) + 1) // 2 - 1]
    fullest = max(counts.values())
    assert (found.converted, found.bin_width_seconds) == (len(seconds), width)
    assert found.median_bin_start_seconds == low + (median - low) // width * width
    assert found.mode_bin_count == fullest
    assert found.mode_bin_start_seconds == low + min(i for i in counts if counts[i] == fullest) * width
    assert found.average_seconds == round(sum(seconds) / len(seconds), 2)


def test_time_to_convert_text_names_the_median_and_fullest_bins() -> None:
    result = rpb.FunnelTimeToConvertResult(
        bins=[
            rpb.FunnelTimeToConvertBin(bin_start_seconds=60 + 60 * i, count=c)
            for i, c in enumerate([1, 4, 2, 0])
        ],
        average_conversion_time=150.0,
    )
    found = funnel_views.time_to_convert_findings(result)
    assert funnel_views.time_to_convert_markdown(found) == "\n".join(
        [
            "**Time to convert**: 7 actors converted, 2.5m on average; the median converter took 2m to 3m.",
            "- Most converted in 2m to 3m (4 actors, 57.1%).",
        ]
    )
    empty = funnel_views.time_to_convert_findings(
        rpb.FunnelTimeToConvertResult(bins=[rpb.FunnelTimeToConvertBin(bin_start_seconds=0, count=0)] * 2)
    )
    assert not empty.HasField("median_bin_start_seconds")
    assert (
        funnel_views.time_to_convert_markdown(empty) == "**Time to convert**: nobody converted in the range."
    )
