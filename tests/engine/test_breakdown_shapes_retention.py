"""Histogram and URL-normalising retention breakdowns (query-engine-semantics §3.6, §5.3) on chDB,
against hand-worked values (none from the oracle or the engine's code)."""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.retention_harness import counts
from tests.engine.test_retention_rules import at, ev, retention, run
from tests.oracle import NULL_LABEL

RANGE = {"totalIntervals": 2, "dateRange": {"date_from": "2024-01-04", "date_to": "2024-01-05"}}


def by_value(store: EventStore, events: list[Any], bf: dict[str, Any]) -> dict[str, list[list[int]]]:
    out = run(store, events, retention(breakdownFilter=bf, **RANGE))
    got: dict[str, list[list[int]]] = {}
    for cohort in out.results:
        got.setdefault(cohort["breakdown_value"], []).append(counts([cohort])[0])
    return got


def test_histogram_buckets_split_the_cohorts(store: EventStore) -> None:
    # Window 4-5 Jan: amounts 0, 5, 10 → 2 bins of 5: [0,5) [5,10.01). p1 (0) returns on the
    # 5th with 1 (same bucket); p2 has 5, p3 10, both in the last bucket. An amount of 99 on the
    # 7th is outside the window: not in the bounds.
    events = [
        ev(at(4), person="p1", amount=0),
        ev(at(5), person="p1", amount=1),
        ev(at(4), person="p2", amount=5),
        ev(at(4), person="p3", amount=10),
        ev(at(7), person="p3", amount=99),
    ]
    got = by_value(store, events, {"breakdown": "amount", "breakdown_histogram_bin_count": 2})
    # [0,5): p1 starts on the 4th and 5th (recurring) and returns on the 5th.
    assert got == {"[0.0,5.0]": [[1, 1], [1, 0]], "[5.0,10.01]": [[2, 0], [0, 0]]}


def test_histogram_non_numbers_and_equal_values(store: EventStore) -> None:
    events = [ev(at(4), person="p1", amount=3), ev(at(4), person="p2", amount="x"), ev(at(4), person="p3")]
    got = by_value(store, events, {"breakdown": "amount", "breakdown_histogram_bin_count": 3})
    # One number, 3: w = 0, everything in the last bucket [3, 3.01).
    assert got == {"[3.0,3.01]": [[1, 0], [0, 0]], NULL_LABEL: [[2, 0], [0, 0]]}


def test_normalize_url(store: EventStore) -> None:
    events = [
        ev(at(4), person="p1", **{"$current_url": "https://x.com/a/?#"}),
        ev(at(5), person="p1", **{"$current_url": "https://x.com/a"}),
        ev(at(4), person="p2", **{"$current_url": "/"}),
        ev(at(4), person="p3", **{"$current_url": ""}),
    ]
    got = by_value(store, events, {"breakdowns": [{"property": "$current_url", "normalize_url": True}]})
    # p1's two URLs are one page: a cohort on the 4th who returns on the 5th (and one on the 5th).
    assert got == {"https://x.com/a": [[1, 1], [1, 0]], "/": [[1, 0], [0, 0]], NULL_LABEL: [[1, 0], [0, 0]]}


@pytest.mark.parametrize(
    ("bf", "field"),
    [
        (
            {"breakdown": "amount", "breakdown_histogram_bin_count": 1000},
            "breakdownFilter.breakdown_histogram_bin_count",
        ),
        ({"breakdown_histogram_bin_count": 3}, "breakdownFilter.breakdown_histogram_bin_count"),
        (
            {"breakdowns": [{"property": "amount", "histogram_bin_count": 0}]},
            "breakdownFilter.breakdowns[0].histogram_bin_count",
        ),
    ],
)
def test_invalid_shapes_name_the_field(store: EventStore, bf: dict[str, Any], field: str) -> None:
    with pytest.raises(QueryError) as exc:
        run(store, [ev(at(4))], retention(breakdownFilter=bf))
    assert exc.value.path == field
