"""The reference's trends edge rules, through the SQL engine on chDB, against hand-worked values.

Every expected value is worked out by hand in the comments (none comes from the oracle).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from storage.events import EventStore
from tests.engine.harness import EngineRun, run_engine
from tests.oracle import NULL_LABEL, OTHER_LABEL, Event

# Monday 15 January 2024, 12:00 UTC.
NOW = dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


def at(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)  # type: ignore[misc]


def ev(
    when: dt.datetime,
    person: str = "p1",
    props: dict[str, Any] | None = None,
    event: str = "$pageview",
    distinct_id: str | None = None,
) -> Event:
    n = next(_ids)
    return Event(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        event=event,
        distinct_id=distinct_id or f"d-{person}",
        person_id=person,
        timestamp=when,
        properties=props or {},
        person_properties={},
    )


def trends(**fields: Any) -> dict[str, Any]:
    query: dict[str, Any] = {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}]}
    query.update(fields)
    return query


def run(
    store: EventStore,
    events: list[Event],
    query: dict[str, Any],
    *,
    tz: str = "UTC",
    week_start_day: int = 0,
    now: dt.datetime = NOW,
) -> EngineRun:
    return run_engine(store, events, query, timezone=tz, week_start_day=week_start_day, now=now)


def days_of(first: dt.date, count: int) -> list[str]:
    return [(first + dt.timedelta(days=i)).isoformat() for i in range(count)]


# --- date range ------------------------------------------------------------------------------------


def test_last_7_days_covers_8_day_buckets(store: EventStore) -> None:
    # -7d from Monday 15 Jan: 00:00 on 8 Jan through 23:59:59.999999 on 15 Jan, 8 day buckets.
    events = [
        ev(at(2024, 1, 7, 23, 59)),
        ev(at(2024, 1, 8, 0, 30)),
        ev(at(2024, 1, 15, 10)),
        ev(at(2024, 1, 16)),
    ]
    out = run(store, events, trends(dateRange={"date_from": "-7d"}))
    [item] = out.results
    assert item["days"] == days_of(dt.date(2024, 1, 8), 8)
    assert item["labels"] == [f"{d}-Jan-2024" for d in range(8, 16)]
    assert item["data"] == [1, 0, 0, 0, 0, 0, 0, 1]
    assert item["count"] == 2
    assert item["label"] == "$pageview"
    # The default range is the same.
    assert run(store, events, trends()).results[0]["data"] == item["data"]


@pytest.mark.parametrize(
    ("week_start_day", "days", "labels", "data"),
    [
        # Sunday weeks: 31 Dec (clipped to 1-6 Jan), 7-13 Jan, 14-20 Jan (clipped to 14-15 Jan).
        (0, ["2023-12-31", "2024-01-07", "2024-01-14"], ["1–6 Jan", "7–13 Jan", "14–15 Jan"], [0, 2, 2]),
        # Monday weeks: 1-7 Jan, 8-14 Jan, 15 Jan alone.
        (1, ["2024-01-01", "2024-01-08", "2024-01-15"], ["1–7 Jan", "8–14 Jan", "15-Jan-2024"], [1, 2, 1]),
    ],
)
def test_sunday_and_monday_week_start(
    store: EventStore, week_start_day: int, days: list[str], labels: list[str], data: list[float]
) -> None:
    # -14d: from Monday 1 Jan. Events on Sun 7, Mon 8, Sun 14 and Mon 15 Jan.
    events = [ev(at(2024, 1, d, 10)) for d in (7, 8, 14, 15)]
    out = run(
        store, events, trends(interval="week", dateRange={"date_from": "-14d"}), week_start_day=week_start_day
    )
    [item] = out.results
    assert (item["days"], item["labels"], item["data"]) == (days, labels, data)


def test_day_buckets_are_local_midnights_across_spring_forward(store: EventStore) -> None:
    # New York springs forward on 10 March 2024 at 02:00 EST (07:00 UTC).
    now = at(2024, 3, 12, 16)
    events = [
        ev(at(2024, 3, 10, 4, 30)),  # 9 Mar 23:30 EST
        ev(at(2024, 3, 10, 5, 30)),  # 10 Mar 00:30 EST
        ev(at(2024, 3, 11, 3, 30)),  # 10 Mar 23:30 EDT
        ev(at(2024, 3, 11, 4, 30)),  # 11 Mar 00:30 EDT
    ]
    out = run(store, events, trends(dateRange={"date_from": "-3d"}), tz="America/New_York", now=now)
    [item] = out.results
    assert item["days"] == ["2024-03-09", "2024-03-10", "2024-03-11", "2024-03-12"]
    assert item["data"] == [1, 2, 1, 0]


def test_hour_buckets_keep_both_one_oclocks_of_the_fall_back_night(store: EventStore) -> None:
    # New York falls back on 3 November 2024: 01:00 EDT is 05:00 UTC, 01:00 EST is 06:00 UTC.
    events = [ev(at(2024, 11, 3, 5, 10)), ev(at(2024, 11, 3, 5, 20)), ev(at(2024, 11, 3, 6, 30))]
    query = trends(
        interval="hour", dateRange={"date_from": "2024-11-03 00:00", "date_to": "2024-11-03 03:00"}
    )
    out = run(store, events, query, tz="America/New_York", now=at(2024, 11, 4))
    [item] = out.results
    assert item["days"] == [
        "2024-11-03 00:00:00",
        "2024-11-03 01:00:00",
        "2024-11-03 01:00:00",
        "2024-11-03 02:00:00",
        "2024-11-03 03:00:00",
    ]
    assert item["labels"] == ["3-Nov 00:00", "3-Nov 01:00", "3-Nov 01:00", "3-Nov 02:00", "3-Nov 03:00"]
    assert item["data"] == [0, 2, 1, 0, 0]


def test_date_from_after_date_to_is_invalid(store: EventStore) -> None:
    from server.queries.errors import QueryError

    with pytest.raises(QueryError) as raised:
        run(store, [], trends(dateRange={"date_from": "-1d", "date_to": "-3d"}))
    assert raised.value.path == "dateRange.date_from"


# --- empty results, null and Other -----------------------------------------------------------------


def test_empty_result_is_one_zero_series_and_no_series_with_a_breakdown(store: EventStore) -> None:
    out = run(store, [], trends())
    [item] = out.results
    assert item["data"] == [0] * 8 and item["count"] == 0 and item["label"] == "$pageview"
    out = run(store, [], trends(breakdownFilter={"breakdown": "browser"}))
    assert out.results == [] and not out.has_more


BROWSERS = ["Chrome"] * 3 + ["Firefox"] * 2 + ["Safari"] + [None] * 2


def _browser_events() -> list[Event]:
    return [
        ev(at(2024, 1, 10, 10, i), person=f"p{i}", props={} if b is None else {"browser": b})
        for i, b in enumerate(BROWSERS)
    ]


def _by_value(out: EngineRun) -> list[tuple[str, float]]:
    return [(i["breakdown_value"], i["count"]) for i in out.results]


def test_null_bucket_comes_after_the_real_values(store: EventStore) -> None:
    out = run(
        store, _browser_events(), trends(breakdownFilter={"breakdown": "browser", "breakdown_limit": 4})
    )
    assert _by_value(out) == [("Chrome", 3), ("Firefox", 2), ("Safari", 1), (NULL_LABEL, 2)]
    assert [i["label"] for i in out.results] == ["Chrome", "Firefox", "Safari", NULL_LABEL]
    assert not out.has_more


def test_other_bucket_sums_the_cut_values_and_sets_has_more(store: EventStore) -> None:
    # Ranked Chrome 3, Firefox 2, Safari 1, then null 2; limit 2 cuts Safari and null: Other = 3.
    out = run(
        store, _browser_events(), trends(breakdownFilter={"breakdown": "browser", "breakdown_limit": 2})
    )
    assert _by_value(out) == [("Chrome", 3), ("Firefox", 2), (OTHER_LABEL, 3)]
    assert out.has_more
    # Other of a distinct count is recomputed, not summed: on 10 Jan p5 is in Safari and (with a
    # second event without browser) in null with p6 and p7: Safari 1 + null 3 would be 4, but the
    # distinct persons of the cut values are 3 (p5, p6, p7).
    query = trends(breakdownFilter={"breakdown": "browser", "breakdown_limit": 2})
    query["series"][0]["math"] = "dau"
    out = run(store, [*_browser_events(), ev(at(2024, 1, 10, 12), person="p5")], query)
    assert _by_value(out) == [("Chrome", 3), ("Firefox", 2), (OTHER_LABEL, 3)]
    assert out.results[2]["data"] == [0, 0, 3, 0, 0, 0, 0, 0]


def test_hide_other_drops_the_other_bucket_but_keeps_has_more(store: EventStore) -> None:
    bf = {"breakdown": "browser", "breakdown_limit": 2, "breakdown_hide_other_aggregation": True}
    out = run(store, _browser_events(), trends(breakdownFilter=bf))
    assert _by_value(out) == [("Chrome", 3), ("Firefox", 2)]
    assert out.has_more


def test_two_series_label_their_breakdown_values(store: EventStore) -> None:
    query = trends(
        series=[
            {"kind": "EventsNode", "event": "$pageview"},
            {"kind": "EventsNode", "event": "$pageview", "custom_name": "B"},
        ],
        breakdownFilter={"breakdown": "browser", "breakdown_limit": 1},
    )
    out = run(store, _browser_events(), query)
    assert [i["label"] for i in out.results] == [
        "$pageview - Chrome",
        f"$pageview - {OTHER_LABEL}",
        "B - Chrome",
        f"B - {OTHER_LABEL}",
    ]


# --- compare ---------------------------------------------------------------------------------------


def test_compare_previous_week_aligns_bucket_for_bucket(store: EventStore) -> None:
    # Current: 8-15 Jan. Previous: 8 Jan - (7 d 23:59:59.999999) = 31 Dec, +1 day (the -7d kludge)
    # = 1 Jan 00:00 to 8 Jan 23:59:59.999999: also 8 buckets, and 8 Jan is in both.
    events = [ev(at(2024, 1, 1, 10)), ev(at(2024, 1, 8, 10)), ev(at(2024, 1, 15, 10))]
    out = run(store, events, trends(dateRange={"date_from": "-7d"}, compareFilter={"compare": True}))
    current, previous = out.results
    assert (current["compare_label"], previous["compare_label"]) == ("current", "previous")
    assert current["compare"] and previous["compare"]
    assert current["labels"] == previous["labels"] == [f"day {i}" for i in range(8)]
    assert current["days"] == days_of(dt.date(2024, 1, 8), 8)
    assert previous["days"] == days_of(dt.date(2024, 1, 1), 8)
    assert current["data"] == [1, 0, 0, 0, 0, 0, 0, 1]
    assert previous["data"] == [1, 0, 0, 0, 0, 0, 0, 1]


def test_compare_of_an_hour_range_under_a_day_is_the_preceding_span(store: EventStore) -> None:
    # -6h at 12:00: 06:00 to 12:59:59.999999 (7 hours). The preceding span starts 6:59:59.999999
    # earlier, at 23:00:00.000001 on 14 Jan, truncated to 23:00: buckets 23:00 ... 05:00.
    events = [ev(at(2024, 1, 14, 22, 30)), ev(at(2024, 1, 15, 5, 30)), ev(at(2024, 1, 15, 6, 30))]
    out = run(
        store,
        events,
        trends(interval="hour", dateRange={"date_from": "-6h"}, compareFilter={"compare": True}),
    )
    current, previous = out.results
    assert current["days"][0] == "2024-01-15 06:00:00" and len(current["days"]) == 7
    assert previous["days"] == ["2024-01-14 23:00:00"] + [f"2024-01-15 0{h}:00:00" for h in range(6)]
    assert current["data"] == [1, 0, 0, 0, 0, 0, 0]
    assert previous["data"] == [0, 0, 0, 0, 0, 0, 1]


def test_compare_to_shifts_both_bounds(store: EventStore) -> None:
    # compare_to -1w: 1-8 Jan (no kludge: it applies to the previous period only).
    events = [ev(at(2024, 1, 1, 10)), ev(at(2024, 1, 7, 10))]
    query = trends(dateRange={"date_from": "-7d"}, compareFilter={"compare": True, "compare_to": "-1w"})
    _, previous = run(store, events, query).results
    assert previous["days"] == days_of(dt.date(2024, 1, 1), 8)
    assert previous["data"] == [1, 0, 0, 0, 0, 0, 1, 0]


# --- cumulative ------------------------------------------------------------------------------------


def test_cumulative_total_is_a_running_sum(store: EventStore) -> None:
    events = [ev(at(2024, 1, 9, 1)), ev(at(2024, 1, 9, 2)), ev(at(2024, 1, 11, 3))]
    out = run(store, events, trends(trendsFilter={"display": "ActionsLineGraphCumulative"}))
    [item] = out.results
    assert item["data"] == [0, 2, 2, 3, 3, 3, 3, 3]
    assert item["count"] == 3  # the last value


def test_cumulative_dau_counts_each_actor_once(store: EventStore) -> None:
    # p1 on 8 and 9 Jan, p2 on 9 Jan: daily dau [1, 2, ...], cumulative unique actors [1, 2, 2, ...].
    events = [ev(at(2024, 1, 8, 1)), ev(at(2024, 1, 9, 1)), ev(at(2024, 1, 9, 2), person="p2")]
    query = trends(trendsFilter={"display": "ActionsLineGraphCumulative"})
    query["series"][0]["math"] = "dau"
    [item] = run(store, events, query).results
    assert item["data"] == [1, 2, 2, 2, 2, 2, 2, 2]
    assert item["count"] == 2


# --- formulas --------------------------------------------------------------------------------------


def test_formula_divides_with_zero_for_division_by_zero(store: EventStore) -> None:
    # A = pageviews per day, B = signups per day; A/B = 0 where B is 0.
    events = [
        ev(at(2024, 1, 8, 1)),
        ev(at(2024, 1, 8, 2)),
        ev(at(2024, 1, 8, 3), event="signup"),
        ev(at(2024, 1, 9, 1)),
        ev(at(2024, 1, 10, 1), event="signup"),
    ]
    query = trends(
        series=[{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}],
        trendsFilter={"formulaNodes": [{"formula": "A / B"}, {"formula": "A + 2 * B", "custom_name": "Mix"}]},
    )
    ratio, mix = run(store, events, query).results
    assert ratio["label"] == "Formula (A / B)" and ratio["order"] == 0
    assert ratio["data"] == [2, 0, 0, 0, 0, 0, 0, 0]
    assert mix["label"] == "Mix" and mix["order"] == 1
    assert mix["data"] == [4, 1, 2, 0, 0, 0, 0, 0] and mix["count"] == 7


def test_formula_with_a_breakdown_runs_per_value(store: EventStore) -> None:
    # Chrome: A = 2, B = 1 → A - B = 1; Firefox: A = 3, B = 0 → 3; null: A = 1 → 1.
    events = [
        ev(at(2024, 1, 9), props={"browser": "Chrome"}),
        ev(at(2024, 1, 9), props={"browser": "Chrome"}),
        ev(at(2024, 1, 9), props={"browser": "Chrome"}, event="signup"),
        *[ev(at(2024, 1, 10), props={"browser": "Firefox"}) for _ in range(3)],
        ev(at(2024, 1, 10)),
    ]
    query = trends(
        series=[{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}],
        breakdownFilter={"breakdown": "browser"},
        trendsFilter={"formula": "A - B", "display": "ActionsTable"},
    )
    out = run(store, events, query)
    # Sorted descending: normal values by total (Firefox 3, Chrome 1), then the null bucket.
    assert [(i["breakdown_value"], i["aggregated_value"]) for i in out.results] == [
        ("Firefox", 3),
        ("Chrome", 1),
        (NULL_LABEL, 1),
    ]
    assert {i["label"] for i in out.results} == {"Formula (A - B)"}


# --- maths -----------------------------------------------------------------------------------------


def test_weekly_active_counts_the_7_day_window(store: EventStore) -> None:
    # p1 active on 2 Jan (before the range): counted for days in (d - 7, d], so on 8 Jan only.
    # p2 active on 10 Jan: counted from 10 Jan on.
    events = [ev(at(2024, 1, 2, 9)), ev(at(2024, 1, 10, 9), person="p2")]
    query = trends()
    query["series"][0]["math"] = "weekly_active"
    [item] = run(store, events, query).results
    assert item["data"] == [1, 0, 1, 1, 1, 1, 1, 1]


def test_first_time_for_user_counts_the_first_ever_event_only(store: EventStore) -> None:
    events = [
        ev(at(2024, 1, 5), person="p1", props={"browser": "Chrome"}),  # first ever, before the range
        ev(at(2024, 1, 10), person="p1", props={"browser": "Chrome"}),
        ev(at(2024, 1, 9), person="p2", props={"browser": "Chrome"}),  # first ever, in range: counts
        ev(at(2024, 1, 11), person="p3", props={"browser": "Firefox"}),  # first ever does not match
        ev(at(2024, 1, 12), person="p3", props={"browser": "Chrome"}),
    ]
    query = trends()
    query["series"][0].update(
        math="first_time_for_user", properties=[{"key": "browser", "value": "Chrome", "type": "event"}]
    )
    [item] = run(store, events, query).results
    assert item["data"] == [0, 1, 0, 0, 0, 0, 0, 0]


def test_property_quantiles_interpolate(store: EventStore) -> None:
    # amounts 1, 2, 3, 4, 10 (and a non-numeric one, ignored): median 3; p90: h = 4 * 0.9 = 3.6 →
    # 4 + 0.6 * (10 - 4) = 7.6; avg = 4.
    events = [ev(at(2024, 1, 10, h), props={"amount": a}) for h, a in enumerate([1, 2, 3, 4, 10, "n/a"])]
    series = [
        {"kind": "EventsNode", "event": "$pageview", "math": m, "math_property": "amount"}
        for m in ("median", "p90", "avg", "max")
    ]
    out = run(store, events, trends(series=series, trendsFilter={"display": "ActionsTable"}))
    assert [i["aggregated_value"] for i in out.results] == pytest.approx([3, 7.6, 4, 10])
    assert all(i["data"] == [] and i["count"] == 0 for i in out.results)


# --- sampling ---------------------------------------------------------------------------------------


def test_sampling(store: EventStore) -> None:
    # 2000 events of 400 distinct ids: factor 1 equals no sampling; 0.5 keeps about half the ids
    # (cityHash64 of distinct_id) and scales every count by 2.
    events = [
        ev(at(2024, 1, 8 + i % 8, i % 24), person=f"p{i % 400}", distinct_id=f"user-{i % 400}")
        for i in range(2000)
    ]
    unsampled = run(store, events, trends())
    team = _last_team()
    whole = run_engine(
        store, [], trends(samplingFactor=1), timezone="UTC", week_start_day=0, now=NOW, team_id=team
    )
    assert whole.results == unsampled.results
    half = run_engine(
        store, [], trends(samplingFactor=0.5), timezone="UTC", week_start_day=0, now=NOW, team_id=team
    )
    [item] = half.results
    assert 0.7 * 2000 <= item["count"] <= 1.3 * 2000
    assert all(v % 2 == 0 for v in item["data"])


def _last_team() -> int:
    from tests.engine import harness

    return harness.last_team_id()


def test_a_query_whose_answer_could_exceed_the_points_bound_runs_nothing() -> None:
    from generated.insights.v1 import query_pb2 as qpb
    from server.queries.base import QueryContext
    from server.queries.errors import QueryError
    from server.queries.trends.compute import MAX_POINTS, run_trends

    def execute(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        raise AssertionError("the engine must not be asked")

    query = qpb.TrendsQuery(
        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event=f"e{i}")) for i in range(100)],
        interval=qpb.INTERVAL_TYPE_HOUR,
        date_range=qpb.DateRange(date_from="-30d"),
    )
    query.breakdown_filter.breakdown.string_value = "$browser"
    context = QueryContext(team_id=1, timezone="UTC", week_start_day=0, now=dt.datetime(2024, 1, 15, tzinfo=dt.UTC))
    with pytest.raises(QueryError) as raised:
        run_trends(query, context, execute)
    assert raised.value.path == "dateRange" and f"{MAX_POINTS:,}" in raised.value.message
    # The same lines over a day fit, and reach the engine.
    query.date_range.date_from = "-1d"
    with pytest.raises(AssertionError, match="must not be asked"):
        run_trends(query, context, execute)
