"""Histogram and URL-normalising trends breakdowns (query-engine-semantics §3.6) on chDB, against
hand-worked values (none comes from the oracle or the engine's code)."""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.hostile import HOSTILE, assert_events_table_intact, assert_only_placeholders
from tests.engine.test_trends_rules import at, ev, run, trends
from tests.oracle import NULL_LABEL, Event

TABLE = {"display": "ActionsTable"}


def totals(store: EventStore, events: list[Event], bf: dict[str, Any], **fields: Any) -> dict[Any, float]:
    out = run(store, events, trends(breakdownFilter=bf, trendsFilter=TABLE, **fields))
    return {
        (tuple(i["breakdown_value"]) if isinstance(i["breakdown_value"], list) else i["breakdown_value"]): i[
            "aggregated_value"
        ]
        for i in out.results
    }


def amounts(*values: Any) -> list[Event]:
    return [ev(at(2024, 1, 14, 10), props={"amount": v}) for v in values]


# --- histogram -------------------------------------------------------------------------------------


def test_histogram_buckets_of_equal_width_edges_go_up(store: EventStore) -> None:
    # min 0, max 10, 4 bins: w = 2.5 → [0,2.5) [2.5,5) [5,7.5) [7.5,10.01). 2.5 and 5 sit on an
    # edge and go to the bucket they start; 10, the maximum, is in the last bucket.
    got = totals(
        store,
        amounts(0, 2.5, 2.4, 5, 7.4, 10, 9.99),
        {"breakdown": "amount", "breakdown_histogram_bin_count": 4},
    )
    assert got == {"[0.0,2.5]": 2, "[2.5,5.0]": 1, "[5.0,7.5]": 2, "[7.5,10.01]": 2}


def test_histogram_all_equal_values_fall_in_the_last_bucket(store: EventStore) -> None:
    # min = max = 3: w = 0, buckets 0..2 are [3,3) (empty), the last [3, 3.01).
    got = totals(store, amounts(3, 3, 3), {"breakdown": "amount", "breakdown_histogram_bin_count": 3})
    assert got == {"[3.0,3.01]": 3}


def test_histogram_non_numbers_take_the_null_label(store: EventStore) -> None:
    # "x", true, a missing value and "inf" hold no finite number; "4" (text) is the number 4.
    events = [*amounts(1, "4", "x", True, "inf"), ev(at(2024, 1, 14, 11))]
    got = totals(store, events, {"breakdown": "amount", "breakdown_histogram_bin_count": 1})
    # One bin over [1, 4]: [1.0, 4.01).
    assert got == {"[1.0,4.01]": 2, NULL_LABEL: 4}


def test_histogram_bounds_come_from_the_filtered_events_only(store: EventStore) -> None:
    # The 100 is a $pageleave: not in the series, so the range is [1, 3], 2 bins of 1.
    events = [*amounts(1, 2, 3), ev(at(2024, 1, 14, 10), props={"amount": 100}, event="$pageleave")]
    got = totals(store, events, {"breakdown": "amount", "breakdown_histogram_bin_count": 2})
    assert got == {"[1.0,2.0]": 1, "[2.0,3.01]": 2}


def test_histogram_in_a_multiple_breakdown(store: EventStore) -> None:
    events = [
        ev(at(2024, 1, 14, 10), props={"amount": 0, "browser": "Chrome"}),
        ev(at(2024, 1, 14, 10), props={"amount": 10, "browser": "Chrome"}),
        ev(at(2024, 1, 14, 10), props={"amount": 10, "browser": "Safari"}),
    ]
    bf = {"breakdowns": [{"property": "browser"}, {"property": "amount", "histogram_bin_count": 2}]}
    got = totals(store, events, bf)
    assert got == {("Chrome", "[0.0,5.0]"): 1, ("Chrome", "[5.0,10.01]"): 1, ("Safari", "[5.0,10.01]"): 1}


def test_histogram_without_numbers_puts_everything_under_null(store: EventStore) -> None:
    got = totals(store, amounts("a", "b"), {"breakdown": "amount", "breakdown_histogram_bin_count": 5})
    assert got == {NULL_LABEL: 2}


def test_histogram_time_series_labels_lines_by_bucket(store: EventStore) -> None:
    events = [ev(at(2024, 1, 13, 10), props={"amount": 1}), ev(at(2024, 1, 14, 10), props={"amount": 3})]
    bf = {"breakdown": "amount", "breakdown_histogram_bin_count": 2}
    out = run(store, events, trends(breakdownFilter=bf, dateRange={"date_from": "-2d"}))
    # -2d from 15 Jan: 13, 14, 15 Jan. [1,2) has the 13th's event, [2,3.01) the 14th's.
    assert {i["breakdown_value"]: i["data"] for i in out.results} == {
        "[1.0,2.0]": [1, 0, 0],
        "[2.0,3.01]": [0, 1, 0],
    }


@pytest.mark.parametrize(
    ("bf", "field"),
    [
        (
            {"breakdown": "amount", "breakdown_histogram_bin_count": 0},
            "breakdownFilter.breakdown_histogram_bin_count",
        ),
        (
            {"breakdown": "amount", "breakdown_histogram_bin_count": 101},
            "breakdownFilter.breakdown_histogram_bin_count",
        ),
        (
            {"breakdown": "amount", "breakdown_histogram_bin_count": 2, "breakdown_normalize_url": True},
            "breakdownFilter.breakdown_normalize_url",
        ),
        ({"breakdown_histogram_bin_count": 2}, "breakdownFilter.breakdown_histogram_bin_count"),
        (
            {"breakdowns": [{"property": "amount", "histogram_bin_count": -1}]},
            "breakdownFilter.breakdowns[0].histogram_bin_count",
        ),
        (
            {"breakdowns": [{"property": "amount"}], "breakdown_normalize_url": True},
            "breakdownFilter.breakdown_normalize_url",
        ),
        (
            {"breakdown_type": "cohort", "breakdown": [1], "breakdown_histogram_bin_count": 2},
            "breakdownFilter.breakdown_histogram_bin_count",
        ),
    ],
)
def test_invalid_shapes_name_the_field(store: EventStore, bf: dict[str, Any], field: str) -> None:
    with pytest.raises(QueryError) as exc:
        run(store, amounts(1), trends(breakdownFilter=bf))
    assert exc.value.path == field


# --- normalize_url ---------------------------------------------------------------------------------


def test_normalize_url_strips_trailing_slash_query_and_hash_marks(store: EventStore) -> None:
    urls = ["https://x.com/a/?#", "https://x.com/a", "https://x.com/a//", "/", "/?#", "https://x.com/a?b=1"]
    events = [ev(at(2024, 1, 14, 10), props={"$current_url": u}) for u in urls]
    events += [ev(at(2024, 1, 14, 10), props={"$current_url": ""}), ev(at(2024, 1, 14, 10))]
    got = totals(store, events, {"breakdown": "$current_url", "breakdown_normalize_url": True})
    # Only trailing '/', '?', '#' go; '/' alone (and '/?#') becomes '/'; the query string inside
    # "a?b=1" stays; '' and a missing URL have no value (docs/decisions.md).
    assert got == {"https://x.com/a": 3, "/": 2, "https://x.com/a?b=1": 1, NULL_LABEL: 2}


def test_normalize_url_per_breakdowns_item(store: EventStore) -> None:
    events = [
        ev(at(2024, 1, 14, 10), props={"$current_url": "/a/", "$pathname": "/b/"}),
        ev(at(2024, 1, 14, 10), props={"$current_url": "/a", "$pathname": "/b"}),
    ]
    bf = {"breakdowns": [{"property": "$current_url", "normalize_url": True}, {"property": "$pathname"}]}
    got = totals(store, events, bf)
    assert got == {("/a", "/b/"): 1, ("/a", "/b"): 1}


def test_deprecated_trends_filter_bin_count_is_the_bin_count(store: EventStore) -> None:
    # Saved with the old field: 2 bins over [0, 10] → [0,5) [5,10.01).
    out = run(
        store,
        amounts(0, 10),
        trends(
            breakdownFilter={"breakdown": "amount"},
            trendsFilter={**TABLE, "breakdown_histogram_bin_count": 2},
        ),
    )
    assert {i["breakdown_value"]: i["aggregated_value"] for i in out.results} == {
        "[0.0,5.0]": 1,
        "[5.0,10.01]": 1,
    }


def test_deprecated_trends_filter_bin_count_without_a_breakdown_is_refused(store: EventStore) -> None:
    with pytest.raises(QueryError) as exc:
        run(store, amounts(1), trends(trendsFilter={"breakdown_histogram_bin_count": 2}))
    assert exc.value.path == "trendsFilter.breakdown_histogram_bin_count"


@pytest.mark.parametrize("key", HOSTILE)
def test_hostile_keys_and_values_stay_bound(store: EventStore, key: str) -> None:
    # The key and its values (a number and a URL) reach the SQL of both statements (bounds and
    # series) as bound parameters only, and the labels hold the values as text.
    events = [
        ev(at(2024, 1, 14, 10), props={key: 1, "$current_url": key + "/"}),
        ev(at(2024, 1, 14, 10), props={key: 3}),
    ]
    bf = {
        "breakdowns": [
            {"property": key, "histogram_bin_count": 1},
            {"property": "$current_url", "normalize_url": True},
        ]
    }
    out = run(store, events, trends(breakdownFilter=bf, trendsFilter=TABLE))
    assert sorted((tuple(i["breakdown_value"]), i["aggregated_value"]) for i in out.results) == [
        (("[1.0,3.01]", NULL_LABEL), 1),
        (("[1.0,3.01]", key), 1),
    ]
    assert out.outcome.sql.count(";\n") == 1  # the bounds query, then the series
    assert_only_placeholders(out.outcome.sql, key)
    assert_events_table_intact(store)
