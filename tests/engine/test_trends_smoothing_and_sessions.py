"""trendsFilter.smoothingIntervals and maths on $session_duration, through the SQL engine on chDB.

Every expected value is worked out by hand in the comments (none comes from the oracle).
"""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.test_trends_rules import at, ev, run, trends
from tests.oracle import OTHER_LABEL, Event

# NOW is Monday 15 January 2024, 12:00 UTC: "-3d" is the day buckets 12, 13, 14 and 15 January.
FOUR_DAYS = {"date_from": "-3d"}


def _daily(counts: list[int], event: str = "$pageview") -> list[Event]:
    """`counts[i]` events on 12 + i January."""
    return [
        ev(at(2024, 1, 12 + day, 9, n), event=event) for day, count in enumerate(counts) for n in range(count)
    ]


def _smoothed(k: int | None, **fields: Any) -> dict[str, Any]:
    query = trends(dateRange=FOUR_DAYS, **fields)
    query.setdefault("trendsFilter", {})
    if k is not None:
        query["trendsFilter"]["smoothingIntervals"] = k
    return query


# --- smoothing -------------------------------------------------------------------------------------


def test_smoothing_is_the_floored_trailing_average(store: EventStore) -> None:
    events = _daily([3, 0, 6, 9])
    # k = 3 over [3, 0, 6, 9]: 3/1 = 3, 3/2 = 1.5 → 1, 9/3 = 3, 15/3 = 5.
    [item] = run(store, events, _smoothed(3)).results
    assert item["data"] == [3, 1, 3, 5]
    assert item["raw_data"] == [3, 0, 6, 9]
    assert item["count"] == 12  # the sum of the shown (smoothed) values
    # 1 (the default) and unset leave the line as computed, without raw data.
    for k in (None, 1):
        [item] = run(store, events, _smoothed(k)).results
        assert item["data"] == [3, 0, 6, 9] and "raw_data" not in item
    # Total-value displays have no line: their number is unchanged.
    [row] = run(store, events, _smoothed(7, trendsFilter={"display": "ActionsTable"})).results
    assert row["aggregated_value"] == 18 and "raw_data" not in row


def test_smoothing_floors_towards_minus_infinity(store: EventStore) -> None:
    # Sums of `amount` per day: 2.5, 0, -1.25, 0. k = 2: 2.5 → 2; 1.25 → 1; -0.625 → -1; -0.625 → -1.
    events = [
        ev(at(2024, 1, 12, 9), props={"amount": 2.5}),
        ev(at(2024, 1, 14, 9), props={"amount": -1.25}),
    ]
    series = [{"kind": "EventsNode", "event": "$pageview", "math": "sum", "math_property": "amount"}]
    [item] = run(store, events, _smoothed(2, series=series)).results
    assert item["data"] == [2, 1, -1, -1]
    assert item["raw_data"] == [2.5, 0, -1.25, 0]


def test_a_window_longer_than_the_line_is_the_running_average(store: EventStore) -> None:
    # k = 7 over 4 buckets: 3, 3/2 → 1, 9/3 = 3, 18/4 = 4.5 → 4.
    [item] = run(store, _daily([3, 0, 6, 9]), _smoothed(7)).results
    assert item["data"] == [3, 1, 3, 4]


def test_cumulative_smooths_the_running_total(store: EventStore) -> None:
    # Running total [3, 3, 9, 18]; k = 2: 3, 3, 6, 13.5 → 13. count is the last shown value.
    query = _smoothed(2, trendsFilter={"display": "ActionsLineGraphCumulative"})
    [item] = run(store, _daily([3, 0, 6, 9]), query).results
    assert item["data"] == [3, 3, 6, 13]
    assert item["raw_data"] == [3, 3, 9, 18]
    assert item["count"] == 13


def test_formulas_run_on_the_smoothed_series(store: EventStore) -> None:
    # A = [3, 0, 6, 9] → k = 2 → [3, 1, 3, 7]; B = [1, 0, 0, 0] → [1, 0, 0, 0]. A+B = [4, 1, 3, 7]
    # (smoothing A+B's raw [4, 0, 6, 9] would give [4, 2, 3, 7]). The formula line has no raw data.
    events = _daily([3, 0, 6, 9]) + _daily([1, 0, 0, 0], event="signup")
    series = [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}]
    query = _smoothed(2, series=series, trendsFilter={"formula": "A+B"})
    [item] = run(store, events, query).results
    assert item["data"] == [4, 1, 3, 7]
    assert "raw_data" not in item


def test_each_compared_period_is_smoothed_on_its_own(store: EventStore) -> None:
    # Previous period: 8-11 January, raw [0, 0, 0, 9] → k = 2 → [0, 0, 0, 4]. Current: raw
    # [0, 2, 0, 0] → [0, 1, 1, 0]: its first bucket does not average in 11 January's 9.
    events = [ev(at(2024, 1, 11, 9, n)) for n in range(9)] + [ev(at(2024, 1, 13, 9, n)) for n in range(2)]
    out = run(store, events, _smoothed(2, compareFilter={"compare": True})).results
    assert [(i["compare_label"], i["data"], i["raw_data"]) for i in out] == [
        ("current", [0, 1, 1, 0], [0, 2, 0, 0]),
        ("previous", [0, 0, 0, 4], [0, 0, 0, 9]),
    ]


def test_each_breakdown_line_is_smoothed(store: EventStore) -> None:
    # Chrome [2, 0, 0, 0] → k = 2 → [2, 1, 0, 0]; Firefox [0, 0, 0, 1] → [0, 0, 0, 0] (0.5 → 0).
    events = [ev(at(2024, 1, 12, 9, n), props={"browser": "Chrome"}) for n in range(2)]
    events.append(ev(at(2024, 1, 15, 9), props={"browser": "Firefox"}))
    query = _smoothed(2, breakdownFilter={"breakdown": "browser"})
    out = run(store, events, query).results
    assert [(i["breakdown_value"], i["data"], i["raw_data"]) for i in out] == [
        ("Chrome", [2, 1, 0, 0], [2, 0, 0, 0]),
        ("Firefox", [0, 0, 0, 0], [0, 0, 0, 1]),
    ]


@pytest.mark.parametrize("k", [0, -1, 10_001, 2**31 - 1])
def test_smoothing_out_of_range_is_invalid(store: EventStore, k: int) -> None:
    with pytest.raises(QueryError) as raised:
        run(store, [], _smoothed(k))
    assert raised.value.path == "trendsFilter.smoothingIntervals"
    assert "10,000" in raised.value.message


def test_the_longest_window_is_accepted(store: EventStore) -> None:
    [item] = run(store, _daily([3, 0, 6, 9]), _smoothed(10_000)).results
    assert item["data"] == [3, 1, 3, 4]


# --- $session_duration -----------------------------------------------------------------------------


def _in(session: str, when: Any, event: str = "$pageview", **props: Any) -> Event:
    return ev(when, event=event, props={"$session_id": session, **props})


def _sessions() -> list[Event]:
    return [
        # s1: 10:00 → 10:20 on 15 Jan = 1200 s; its last event is a signup, which the series does
        # not match, yet it bounds the session.
        _in("s1", at(2024, 1, 15, 10, 0)),
        _in("s1", at(2024, 1, 15, 10, 5)),
        _in("s1", at(2024, 1, 15, 10, 20), event="signup"),
        # s2: 11:00:00.9 → 11:00:01.1 = 1 s (one second boundary crossed, as the reference's dateDiff).
        _in("s2", at(2024, 1, 15, 11, 0, 0).replace(microsecond=900_000)),
        _in("s2", at(2024, 1, 15, 11, 0, 1).replace(microsecond=100_000)),
        # s3: 14 Jan 23:59:30 → 15 Jan 00:00:30 = 60 s, in both day buckets.
        _in("s3", at(2024, 1, 14, 23, 59, 30)),
        _in("s3", at(2024, 1, 15, 0, 0, 30)),
        # s4: 3 Jan 09:00 (before the range) → 14 Jan 09:00 = 11 days = 950400 s, in 14 Jan only.
        _in("s4", at(2024, 1, 3, 9)),
        _in("s4", at(2024, 1, 14, 9)),
        # No session: counts nothing.
        ev(at(2024, 1, 15, 11, 30)),
        _in("", at(2024, 1, 15, 11, 40)),
    ]


def _session_math(math: str, **node: Any) -> dict[str, Any]:
    node = {"math": math, "math_property": "$session_duration", **node}
    return {"kind": "EventsNode", "event": "$pageview", **node}


@pytest.mark.parametrize(
    ("math", "per_day", "total"),
    [
        # 14 Jan: s3 (60), s4 (950400). 15 Jan: s1 (1200), s2 (1), s3 (60). Range: each once.
        ("sum", [950460, 1261], 951661),
        ("avg", [475230, 1261 / 3], 951661 / 4),
        ("min", [60, 1], 1),
        ("max", [950400, 1200], 950400),
        ("median", [475230, 60], 630),  # range: [1, 60, 1200, 950400] → (60 + 1200) / 2
    ],
)
def test_session_duration_maths_aggregate_one_value_per_session(
    store: EventStore, math: str, per_day: list[float], total: float
) -> None:
    events = _sessions()
    line = trends(dateRange={"date_from": "-1d"}, series=[_session_math(math)])
    [item] = run(store, events, line).results
    assert item["data"] == pytest.approx(per_day, rel=1e-12)
    table = dict(line, trendsFilter={"display": "ActionsTable"})
    [row] = run(store, events, table).results
    assert row["aggregated_value"] == pytest.approx(total, rel=1e-12)


def test_session_properties_type_and_multiplier(store: EventStore) -> None:
    # The reference's own spelling (math_property_type session_properties); × 0.5: 1261 / 2.
    node = _session_math("sum", math_property_type="session_properties", math_multiplier=0.5)
    [item] = run(store, _sessions(), trends(dateRange={"date_from": "-1d"}, series=[node])).results
    assert item["data"] == [950460 / 2, 1261 / 2]


def test_a_session_counts_once_per_breakdown_value_and_once_in_other(store: EventStore) -> None:
    # s1 (10:00 → 10:10 = 600 s) has Chrome, Firefox and Safari events; s2 (11:00 → 11:01 = 60 s)
    # Chrome only. Sums: Chrome 660, Firefox 600, Safari 600. Limit 1 keeps Chrome; Other is
    # counted again over Firefox's and Safari's events: s1 once, 600 (not 600 + 600).
    events = [
        _in("s1", at(2024, 1, 15, 10, 0), browser="Chrome"),
        _in("s1", at(2024, 1, 15, 10, 5), browser="Firefox"),
        _in("s1", at(2024, 1, 15, 10, 10), browser="Safari"),
        _in("s2", at(2024, 1, 15, 11, 0), browser="Chrome"),
        _in("s2", at(2024, 1, 15, 11, 1), browser="Chrome"),
    ]
    query = trends(
        series=[_session_math("sum")],
        trendsFilter={"display": "ActionsTable"},
        breakdownFilter={"breakdown": "browser", "breakdown_limit": 1},
    )
    out = run(store, events, query)
    assert [(i["breakdown_value"], i["aggregated_value"]) for i in out.results] == [
        ("Chrome", 660),
        (OTHER_LABEL, 600),
    ]
    assert out.has_more


def test_events_without_a_session_list_their_breakdown_value_with_zero(store: EventStore) -> None:
    events = [
        _in("s1", at(2024, 1, 15, 10, 0), browser="Chrome"),
        _in("s1", at(2024, 1, 15, 10, 1), browser="Chrome"),
        ev(at(2024, 1, 15, 10, 2), props={"browser": "Edge"}),
    ]
    query = trends(
        series=[_session_math("avg")],
        trendsFilter={"display": "ActionsTable"},
        breakdownFilter={"breakdown": "browser"},
    )
    out = run(store, events, query).results
    assert [(i["breakdown_value"], i["aggregated_value"]) for i in out] == [("Chrome", 60), ("Edge", 0)]


def test_other_session_properties_are_invalid(store: EventStore) -> None:
    node = {"math_property": "$entry_current_url", "math_property_type": "session_properties"}
    query = trends(series=[{"kind": "EventsNode", "math": "avg", **node}])
    with pytest.raises(QueryError) as raised:
        run(store, [], query)
    assert raised.value.path == "series[0].math_property"
    assert "$session_duration" in raised.value.message
