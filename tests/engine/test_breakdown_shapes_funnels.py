"""Histogram and URL-normalising funnel breakdowns (query-engine-semantics §3.6 with §4.4's
attribution) on chDB, against hand-worked values (none from the oracle or the engine's code)."""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.test_funnels_rules import at, counts, ev, funnel, run, values
from tests.engine.test_funnels_trends import trends, week

DAY = {"dateRange": {"date_from": "2024-01-10", "date_to": "2024-01-14"}}


def by_value(store: EventStore, events: list[Any], bf: dict[str, Any], **fields: Any) -> dict[Any, list[int]]:
    result = run(store, events, funnel("a", "b", breakdownFilter=bf, **DAY, **fields))
    return {tuple(v): c for v, c in zip(values(result), counts(result), strict=True)}


def test_histogram_buckets_are_attributed_first_touch(store: EventStore) -> None:
    # Step events' amounts: 0, 10 (p1: a at 0 then b at 10), 4 (p2), 10 (p3, no b), and a "c"
    # event with 1000 (no step: not in the bounds). min 0, max 10, 2 bins: [0,5) [5,10.01).
    events = [
        ev(at(10, 1), "a", "p1", amount=0),
        ev(at(10, 2), "b", "p1", amount=10),
        ev(at(10, 1), "a", "p2", amount=4),
        ev(at(10, 2), "b", "p2"),
        ev(at(10, 1), "a", "p3", amount=10),
        ev(at(10, 1), "c", "p3", amount=1000),
    ]
    got = by_value(store, events, {"breakdown": "amount", "breakdown_histogram_bin_count": 2})
    # First touch: p1's first value 0 and p2's 4 → [0,5); p3's 10 → [5,10.01).
    assert got == {("[0.0,5.0]",): [2, 2], ("[5.0,10.01]",): [1, 0]}


def test_histogram_last_touch_and_non_numbers(store: EventStore) -> None:
    # p1: a with "x" (no number: no value), b with 10 → last touch 10. p2: only "y" → no value.
    events = [
        ev(at(10, 1), "a", "p1", amount="x"),
        ev(at(10, 2), "b", "p1", amount=10),
        ev(at(10, 1), "a", "p2", amount="y"),
        ev(at(10, 1), "a", "p3", amount=2),
    ]
    bf = {"breakdown": "amount", "breakdown_histogram_bin_count": 1}
    got = by_value(store, events, bf, funnelsFilter={"breakdownAttributionType": "last_touch"})
    # One bin over [2, 10]: [2.0, 10.01). The funnels' no-value label is ''.
    assert got == {("[2.0,10.01]",): [2, 1], ("",): [1, 0]}


def test_histogram_all_equal_values(store: EventStore) -> None:
    events = [ev(at(10, 1), "a", "p1", amount=7), ev(at(10, 2), "b", "p1", amount=7)]
    got = by_value(store, events, {"breakdown": "amount", "breakdown_histogram_bin_count": 4})
    assert got == {("[7.0,7.01]",): [1, 1]}


def test_normalize_url_merges_the_ways_of_writing_a_page(store: EventStore) -> None:
    events = [
        ev(at(10, 1), "a", "p1", **{"$current_url": "https://x.com/a/?#"}),
        ev(at(10, 2), "b", "p1"),
        ev(at(10, 1), "a", "p2", **{"$current_url": "https://x.com/a"}),
        ev(at(10, 1), "a", "p3", **{"$current_url": "/"}),
        ev(at(10, 1), "a", "p4", **{"$current_url": ""}),
    ]
    got = by_value(store, events, {"breakdown": "$current_url", "breakdown_normalize_url": True})
    assert got == {("https://x.com/a",): [2, 1], ("/",): [1, 0], ("",): [1, 0]}


def test_shapes_in_a_multiple_breakdown(store: EventStore) -> None:
    events = [
        ev(at(10, 1), "a", "p1", amount=0, **{"$current_url": "/a/"}),
        ev(at(10, 1), "a", "p2", amount=10, **{"$current_url": "/a"}),
    ]
    bf = {
        "breakdowns": [
            {"property": "$current_url", "normalize_url": True},
            {"property": "amount", "histogram_bin_count": 2},
        ]
    }
    assert by_value(store, events, bf) == {("/a", "[0.0,5.0]"): [1, 0], ("/a", "[5.0,10.01]"): [1, 0]}


@pytest.mark.parametrize(
    ("bf", "field"),
    [
        (
            {"breakdown": "amount", "breakdown_histogram_bin_count": 0},
            "breakdownFilter.breakdown_histogram_bin_count",
        ),
        (
            {"breakdowns": [{"property": "amount", "histogram_bin_count": 2, "normalize_url": True}]},
            "breakdownFilter.breakdowns[0].normalize_url",
        ),
        ({"breakdown_normalize_url": True}, "breakdownFilter.breakdown_normalize_url"),
        (
            {"breakdown_type": "cohort", "breakdown": 0, "breakdown_histogram_bin_count": 3},
            "breakdownFilter.breakdown_histogram_bin_count",
        ),
    ],
)
def test_invalid_shapes_name_the_field(store: EventStore, bf: dict[str, Any], field: str) -> None:
    with pytest.raises(QueryError) as exc:
        run(store, [ev(at(10, 1), "a")], funnel("a", "b", breakdownFilter=bf))
    assert exc.value.path == field


def test_histogram_in_the_trends_visualisation(store: EventStore) -> None:
    # Amounts 0 (p1, converts on the 10th) and 10 (p2, enters on the 11th, does not convert):
    # 2 bins [0,5) [5,10.01); one line per bucket, ordered by entries then value descending.
    events = [
        ev(at(10, 9), "a", "p1", amount=0),
        ev(at(10, 10), "b", "p1"),
        ev(at(11, 9), "a", "p2", amount=10),
    ]
    query = week("a", "b", breakdownFilter={"breakdown": "amount", "breakdown_histogram_bin_count": 2})
    series, _ = trends(store, events, query)
    assert [s["breakdown_value"] for s in series] == [["[5.0,10.01]"], ["[0.0,5.0]"]]
    # 8-15 Jan: index 2 is the 10th, index 3 the 11th.
    assert series[1]["data"][2] == 100.0 and series[0]["data"][3] == 0.0


def test_histogram_of_a_hogql_dimension(store: EventStore) -> None:
    # The expression doubles the amount: 0, 8, 20 → 2 bins over [0, 20]: [0,10) [10,20.01).
    events = [
        ev(at(10, 1), "a", "p1", amount=0),
        ev(at(10, 1), "a", "p2", amount=4),
        ev(at(10, 1), "a", "p3", amount=10),
    ]
    bf = {"breakdowns": [{"property": "toFloat64OrNull(properties.amount) * 2", "type": "hogql", "histogram_bin_count": 2}]}
    assert by_value(store, events, bf) == {("[0.0,10.0]",): [2, 0], ("[10.0,20.01]",): [1, 0]}
