"""Hand-computed cases that pin the trends oracle to docs/engine-semantics.md.

Every expected value below was worked out by hand from the contract (the arithmetic is in the
comments); none comes from running the oracle. The same cases are the named edge-rule tests the
engine is checked against.
"""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from typing import Any

import pytest

from tests.oracle import (
    NULL_LABEL,
    OTHER_LABEL,
    Event,
    FailedPrecondition,
    InvalidArgument,
    compute_trends,
    previous_date_range,
    resolve_date_range,
)

# Monday 15 January 2024, 12:00 UTC.
NOW = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
_ids = count()


def ts(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ev(
    when: datetime,
    event: str = "$pageview",
    person: str = "p1",
    props: dict[str, Any] | None = None,
    person_props: dict[str, Any] | None = None,
) -> Event:
    n = next(_ids)
    return Event(
        uuid=f"00000000-0000-0000-0000-{n:012d}",
        event=event,
        distinct_id=f"d-{person}",
        person_id=person,
        timestamp=when,
        properties=props or {},
        person_properties=person_props or {},
    )


def trends(**fields: Any) -> dict[str, Any]:
    query: dict[str, Any] = {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}]}
    query.update(fields)
    return query


def run(
    events: list[Event],
    query: dict[str, Any],
    *,
    tz: str = "UTC",
    week_start_day: int = 0,
    now: datetime = NOW,
    test_account_filters: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    out = compute_trends(
        events,
        query,
        timezone=tz,
        week_start_day=week_start_day,
        now=now,
        test_account_filters=test_account_filters,
    )
    return out.results, out.has_more


def only(results: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(results) == 1, results
    return results[0]


# --------------------------------------------------------------------------------------------------
# Date range

DAYS_8 = [f"2024-01-{d:02d}" for d in range(8, 16)]


def test_last_7_days_covers_8_day_buckets() -> None:
    # -7d at Mon 15 Jan 12:00 → 00:00 Mon 8 Jan .. 23:59:59.999999 Mon 15 Jan: 8 day buckets.
    events = [
        ev(datetime(2024, 1, 7, 23, 59, 59, 999999, tzinfo=UTC)),  # just before: out
        ev(ts(2024, 1, 8, 0, 0)),  # first instant: bucket 0
        ev(ts(2024, 1, 12, 9, 0)),  # bucket 4
        ev(ts(2024, 1, 15, 23, 59, 59)),  # later than now but inside date_to: bucket 7
        ev(ts(2024, 1, 16, 0, 0)),  # out
    ]
    item = only(run(events, trends(dateRange={"date_from": "-7d"}))[0])
    assert item["days"] == DAYS_8
    assert item["labels"] == [f"{d}-Jan-2024" for d in range(8, 16)]
    assert item["data"] == [1, 0, 0, 0, 1, 0, 0, 1]
    assert item["count"] == 3
    assert item["label"] == "$pageview"
    assert item["order"] == 0
    assert "breakdown_value" not in item and "compare" not in item and "aggregated_value" not in item


def test_default_date_range_is_minus_7d() -> None:
    item = only(run([ev(ts(2024, 1, 8, 1))], trends())[0])
    assert item["days"] == DAYS_8
    assert item["data"] == [1, 0, 0, 0, 0, 0, 0, 0]


def test_relative_grammar() -> None:
    def bounds(date_from: str, date_to: str | None = None, interval: str = "day") -> tuple[str, str]:
        rng = resolve_date_range(
            {"date_from": date_from, "date_to": date_to},
            interval,
            timezone="UTC",
            week_start_day=0,
            now=NOW,
        )
        return rng.date_from.isoformat(), rng.date_to.isoformat()

    end_15 = "2024-01-15T23:59:59.999999+00:00"
    assert bounds("-1mStart") == ("2023-12-01T00:00:00+00:00", end_15)
    assert bounds("mStart") == ("2024-01-01T00:00:00+00:00", end_15)
    assert bounds("yStart") == ("2024-01-01T00:00:00+00:00", end_15)
    assert bounds("dStart") == ("2024-01-15T00:00:00+00:00", end_15)
    assert bounds("-2w") == ("2024-01-01T00:00:00+00:00", end_15)
    assert bounds("-1q") == ("2023-10-16T00:00:00+00:00", end_15)  # 13 weeks = 91 days back
    assert bounds("-1y") == ("2023-01-15T00:00:00+00:00", end_15)
    # -1mEnd as date_to: 15 Dec, day=31 → 31 Dec, then end of day.
    assert bounds("-1mStart", "-1mEnd") == ("2023-12-01T00:00:00+00:00", "2023-12-31T23:59:59.999999+00:00")
    # Absolute, non-padded.
    assert bounds("2024-1-3", "2024-01-04") == (
        "2024-01-03T00:00:00+00:00",
        "2024-01-04T23:59:59.999999+00:00",
    )
    # -48h with day interval: truncated to the hour, not the day; the events lower bound is not truncated.
    rng = resolve_date_range({"date_from": "-48h"}, "day", timezone="UTC", week_start_day=0, now=NOW)
    assert rng.date_from == ts(2024, 1, 13, 12)
    assert rng.lower == ts(2024, 1, 13, 12)
    assert rng.days[0] == "2024-01-13"
    with pytest.raises(InvalidArgument):
        bounds("-7x")
    with pytest.raises(InvalidArgument):
        bounds("yesterday")


def test_week_start_sunday_vs_monday() -> None:
    now = ts(2024, 1, 17, 12)  # Wednesday
    # -14d → Wed 3 Jan .. Wed 17 Jan; the first week is partial (events from 3 Jan).
    events = [
        ev(ts(2024, 1, 2, 10)),  # Tue: before date_from, out in both
        ev(ts(2024, 1, 3, 10)),  # Wed
        ev(ts(2024, 1, 7, 10)),  # Sun
        ev(ts(2024, 1, 14, 10)),  # Sun
        ev(ts(2024, 1, 15, 10)),  # Mon
    ]
    query = trends(interval="week", dateRange={"date_from": "-14d"})
    sunday = only(run(events, query, week_start_day=0, now=now)[0])
    # Weeks Sun 31 Dec, Sun 7 Jan, Sun 14 Jan: {3 Jan}, {7 Jan}, {14, 15 Jan}.
    assert sunday["days"] == ["2023-12-31", "2024-01-07", "2024-01-14"]
    assert sunday["data"] == [1, 1, 2]
    assert sunday["labels"] == ["3–6 Jan", "7–13 Jan", "14–17 Jan"]  # clipped to the range
    monday = only(run(events, query, week_start_day=1, now=now)[0])
    # Weeks Mon 1 Jan, Mon 8 Jan, Mon 15 Jan: {3, 7 Jan}, {14 Jan}, {15 Jan}.
    assert monday["days"] == ["2024-01-01", "2024-01-08", "2024-01-15"]
    assert monday["data"] == [2, 1, 1]
    assert monday["labels"] == ["3–7 Jan", "8–14 Jan", "15–17 Jan"]


def test_week_labels_cross_month_year_and_single_day() -> None:
    def labels(now: datetime) -> list[str]:
        query = trends(interval="week", dateRange={"date_from": "-14d"})
        return only(run([], query, now=now)[0])["labels"]

    # 8 Jan 2025 (Wed) -14d → 25 Dec 2024; Sunday weeks 22 Dec, 29 Dec, 5 Jan.
    assert labels(ts(2025, 1, 8)) == ["25–28 Dec", "29-Dec-2024 – 4-Jan-2025", "5–8 Jan"]
    # 7 Feb 2024 (Wed) -14d → 24 Jan; Sunday weeks 21 Jan, 28 Jan, 4 Feb.
    assert labels(ts(2024, 2, 7)) == ["24–27 Jan", "28-Jan – 3-Feb", "4–7 Feb"]
    # 14 Jan 2024 is a Sunday: the last week clips to one day.
    assert labels(ts(2024, 1, 14))[-1] == "14-Jan-2024"


def test_month_interval_counts_the_whole_first_month() -> None:
    events = [
        ev(ts(2024, 1, 2)),  # before date_from's day but in its month: counted
        ev(ts(2024, 2, 10, 23, 59)),  # date_to ends at 23:59:59.999999
        ev(ts(2024, 2, 11)),  # out
    ]
    query = trends(interval="month", dateRange={"date_from": "2024-01-15", "date_to": "2024-02-10"})
    item = only(run(events, query)[0])
    assert item["days"] == ["2024-01-01", "2024-02-01"]
    assert item["labels"] == ["Jan 2024", "Feb 2024"]
    assert item["data"] == [1, 1]


def test_explicit_date_uses_exact_bounds() -> None:
    events = [
        ev(ts(2024, 1, 10, 11)),
        ev(ts(2024, 1, 10, 13)),
        ev(ts(2024, 1, 11, 5)),
        ev(ts(2024, 1, 11, 7)),
    ]
    date_range = {"date_from": "2024-01-10T12:00:00", "date_to": "2024-01-11T06:00:00"}
    explicit = only(run(events, trends(dateRange={**date_range, "explicitDate": True}))[0])
    assert explicit["days"] == ["2024-01-10", "2024-01-11"]
    assert explicit["data"] == [1, 1]  # 13:00 and 05:00 only
    rounded = only(run(events, trends(dateRange=date_range))[0])
    assert rounded["data"] == [2, 2]  # 00:00 10 Jan .. 23:59:59.999999 11 Jan


def test_hour_interval_last_24_hours() -> None:
    now = ts(2024, 1, 15, 12, 34)
    # -24h → 12:00 14 Jan (truncated to the hour) .. 12:59:59.999999 15 Jan: 25 hour buckets.
    events = [ev(ts(2024, 1, 14, 11, 59)), ev(ts(2024, 1, 14, 12, 0)), ev(ts(2024, 1, 15, 12, 50))]
    item = only(run(events, trends(interval="hour", dateRange={"date_from": "-24h"}), now=now)[0])
    assert len(item["data"]) == 25
    assert item["days"][0] == "2024-01-14 12:00:00"
    assert item["days"][-1] == "2024-01-15 12:00:00"
    assert item["labels"][0] == "14-Jan 12:00"
    assert item["data"][0] == 1 and item["data"][-1] == 1 and item["count"] == 2


def test_bold_number_uses_the_exact_range() -> None:
    events = [
        ev(ts(2024, 1, 8, 11, 59)),
        ev(ts(2024, 1, 8, 12, 0)),
        ev(ts(2024, 1, 15, 11, 0)),
        ev(ts(2024, 1, 15, 12, 0, 1)),
    ]
    bold = only(
        run(events, trends(dateRange={"date_from": "-7d"}, trendsFilter={"display": "BoldNumber"}))[0]
    )
    # Exactly [now - 7×24h, now].
    assert bold["aggregated_value"] == 2
    assert bold["data"] == [] and bold["days"] == [] and bold["labels"] == [] and bold["count"] == 0
    pie = only(run(events, trends(dateRange={"date_from": "-7d"}, trendsFilter={"display": "ActionsPie"}))[0])
    assert pie["aggregated_value"] == 4  # day start .. day end


def test_too_many_buckets_is_invalid() -> None:
    # Minute interval: -7d is not truncated → 7×1440 + 1 = 10081 buckets.
    with pytest.raises(InvalidArgument):
        run([], trends(interval="minute", dateRange={"date_from": "-7d"}))
    # -6d → 6×1440 + 1 = 8641 buckets: fine.
    assert len(only(run([], trends(interval="minute", dateRange={"date_from": "-6d"}))[0])["data"]) == 8641


def test_date_from_all_starts_at_the_first_event() -> None:
    events = [ev(ts(2024, 1, 12, 15)), ev(ts(2024, 1, 13, 1)), ev(ts(2024, 1, 13, 2))]
    item = only(run(events, trends(dateRange={"date_from": "all"}))[0])
    assert item["days"] == ["2024-01-12", "2024-01-13", "2024-01-14", "2024-01-15"]
    assert item["data"] == [1, 2, 0, 0]


# --------------------------------------------------------------------------------------------------
# Time zones and DST


def test_dst_spring_forward_new_york_day_buckets() -> None:
    # 10 Mar 2024 02:00 EST → 03:00 EDT. now 12 Mar 12:00 EDT (16:00Z); -3d → 9 .. 12 Mar (local).
    events = [
        ev(ts(2024, 3, 9, 4, 59)),  # 8 Mar 23:59 EST: out
        ev(ts(2024, 3, 10, 4, 30)),  # 9 Mar 23:30 EST → 9 Mar
        ev(ts(2024, 3, 10, 5, 15)),  # 10 Mar 00:15 EST → 10 Mar
        ev(ts(2024, 3, 11, 4, 30)),  # 11 Mar 00:30 EDT → 11 Mar (with a stale EST offset it would be 10 Mar)
    ]
    item = only(
        run(events, trends(dateRange={"date_from": "-3d"}), tz="America/New_York", now=ts(2024, 3, 12, 16))[0]
    )
    assert item["days"] == ["2024-03-09", "2024-03-10", "2024-03-11", "2024-03-12"]
    assert item["data"] == [1, 1, 1, 0]


def test_dst_fall_back_berlin_day_buckets() -> None:
    # 27 Oct 2024 03:00 CEST → 02:00 CET (a 25-hour day). now 28 Oct 12:00Z; -2d → 26 .. 28 Oct.
    events = [
        ev(ts(2024, 10, 25, 21, 59, 59)),  # 25 Oct 23:59:59 CEST: out
        ev(ts(2024, 10, 26, 21, 59)),  # 26 Oct 23:59 CEST → 26 Oct
        ev(ts(2024, 10, 26, 22, 30)),  # 27 Oct 00:30 CEST → 27 Oct
        ev(ts(2024, 10, 27, 22, 59)),  # 27 Oct 23:59 CET → 27 Oct
        ev(ts(2024, 10, 27, 23, 30)),  # 28 Oct 00:30 CET → 28 Oct
    ]
    item = only(
        run(events, trends(dateRange={"date_from": "-2d"}), tz="Europe/Berlin", now=ts(2024, 10, 28, 12))[0]
    )
    assert item["days"] == ["2024-10-26", "2024-10-27", "2024-10-28"]
    assert item["data"] == [1, 2, 1]


def test_dst_fall_back_new_york_hour_buckets() -> None:
    # 3 Nov 2024 02:00 EDT → 01:00 EST. Absolute hour range 00:00 EDT (04Z) .. 03:00 EST (08Z):
    # buckets 04Z 05Z 06Z 07Z 08Z = 00:00 EDT, 01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST.
    events = [ev(ts(2024, 11, 3, 5, 30)), ev(ts(2024, 11, 3, 6, 30)), ev(ts(2024, 11, 3, 8, 0))]
    query = trends(
        interval="hour", dateRange={"date_from": "2024-11-03T00:00:00", "date_to": "2024-11-03T03:00:00"}
    )
    item = only(run(events, query, tz="America/New_York", now=ts(2024, 11, 4))[0])
    assert item["days"] == [
        "2024-11-03 00:00:00",
        "2024-11-03 01:00:00",
        "2024-11-03 01:00:00",
        "2024-11-03 02:00:00",
        "2024-11-03 03:00:00",
    ]
    assert item["data"] == [0, 1, 1, 0, 1]


# --------------------------------------------------------------------------------------------------
# Empty results


def test_empty_without_breakdown_is_one_zero_series() -> None:
    results, has_more = run([], trends())
    item = only(results)
    assert item["data"] == [0] * 8 and item["count"] == 0 and item["label"] == "$pageview"
    assert has_more is False
    bold = only(run([], trends(trendsFilter={"display": "BoldNumber"}))[0])
    assert bold["aggregated_value"] == 0


def test_empty_with_breakdown_is_no_series() -> None:
    out_of_range = [ev(ts(2024, 1, 1), props={"browser": "Chrome"})]
    query = trends(breakdownFilter={"breakdown": "browser"})
    assert run([], query) == ([], False)
    assert run(out_of_range, query) == ([], False)


# --------------------------------------------------------------------------------------------------
# Breakdowns


def _browser_events() -> list[Event]:
    d14, d15 = ts(2024, 1, 14, 9), ts(2024, 1, 15, 9)
    return [
        ev(d14, props={"browser": "Chrome"}),
        ev(d14, props={"browser": "Chrome"}),
        ev(d15, props={"browser": "Chrome"}),  # Chrome [2, 1] = 3
        ev(d14, props={"browser": "Firefox"}),
        ev(d15, props={"browser": "Firefox"}),  # Firefox [1, 1] = 2
        ev(d15, props={"browser": "Safari"}),
        ev(d15, props={"browser": "Safari"}),  # Safari [0, 2] = 2
        ev(d14, props={}),
        ev(d14, props={"browser": ""}),
        ev(d15, props={"browser": None}),  # null [2, 1] = 3
    ]


def test_breakdown_null_other_and_has_more() -> None:
    base = {"dateRange": {"date_from": "-1d"}}
    # Ranking: Chrome 3, Firefox 2, Safari 2 (tie → value ascending), then null (after all real
    # values despite its 3). Limit 2 keeps Chrome, Firefox; Other = Safari + null = [2, 3].
    results, has_more = run(
        _browser_events(), trends(**base, breakdownFilter={"breakdown": "browser", "breakdown_limit": 2})
    )
    assert [r["breakdown_value"] for r in results] == ["Chrome", "Firefox", OTHER_LABEL]
    assert [r["label"] for r in results] == ["Chrome", "Firefox", OTHER_LABEL]
    assert [r["data"] for r in results] == [[2, 1], [1, 1], [2, 3]]
    assert [r["count"] for r in results] == [3, 2, 5]
    assert has_more is True

    results, has_more = run(
        _browser_events(), trends(**base, breakdownFilter={"breakdown": "browser", "breakdown_limit": 4})
    )
    assert [r["breakdown_value"] for r in results] == ["Chrome", "Firefox", "Safari", NULL_LABEL]
    assert results[-1]["data"] == [2, 1]
    assert has_more is False

    hidden = {"breakdown": "browser", "breakdown_limit": 2, "breakdown_hide_other_aggregation": True}
    results, has_more = run(_browser_events(), trends(**base, breakdownFilter=hidden))
    assert [r["breakdown_value"] for r in results] == ["Chrome", "Firefox"]
    assert has_more is True


def test_breakdown_default_limit_is_25() -> None:
    events = [ev(ts(2024, 1, 15, 1), props={"n": f"v{i:02d}"}) for i in range(26)]
    results, has_more = run(events, trends(breakdownFilter={"breakdown": "n"}))
    # All tie at 1 → ascending: v00..v24 kept, v25 → Other.
    assert [r["breakdown_value"] for r in results[:25]] == [f"v{i:02d}" for i in range(25)]
    assert results[25]["breakdown_value"] == OTHER_LABEL and results[25]["count"] == 1
    assert has_more is True


def test_breakdown_other_is_recomputed_for_dau() -> None:
    day = ts(2024, 1, 15, 1)
    events = [
        ev(day, person="p1", props={"b": "A"}),
        ev(day, person="p2", props={"b": "A"}),
        ev(day, person="p1", props={"b": "B"}),
        ev(day, person="p1", props={"b": "C"}),
    ]
    series = [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}]
    results, _ = run(events, trends(series=series, breakdownFilter={"breakdown": "b", "breakdown_limit": 1}))
    assert [r["breakdown_value"] for r in results] == ["A", OTHER_LABEL]
    assert results[0]["data"][-1] == 2
    assert results[1]["data"][-1] == 1  # distinct {p1} over B and C, not 1 + 1


def test_breakdown_labels_with_several_series_and_person_breakdown() -> None:
    day = ts(2024, 1, 15, 1)
    events = [
        ev(day, person_props={"plan": "pro"}),
        ev(day, event="signup", person_props={"plan": "free"}),
    ]
    series = [
        {"kind": "EventsNode", "event": "$pageview"},
        {"kind": "EventsNode", "event": "signup", "custom_name": "Signups"},
    ]
    results, _ = run(
        events, trends(series=series, breakdownFilter={"breakdown": "plan", "breakdown_type": "person"})
    )
    assert [(r["label"], r["order"], r["breakdown_value"]) for r in results] == [
        ("$pageview - pro", 0, "pro"),
        ("Signups - free", 1, "free"),
    ]


def test_multiple_breakdowns() -> None:
    day = ts(2024, 1, 15, 1)
    events = [
        ev(day, props={"browser": "Chrome"}, person_props={"plan": "pro"}),
        ev(day, props={"browser": "Chrome"}, person_props={"plan": "pro"}),
        ev(day, props={"browser": "Chrome"}),
    ]
    breakdown = {
        "breakdowns": [{"property": "browser", "type": "event"}, {"property": "plan", "type": "person"}]
    }
    results, _ = run(events, trends(breakdownFilter=breakdown))
    assert [r["breakdown_value"] for r in results] == [["Chrome", "pro"], ["Chrome", NULL_LABEL]]
    assert [r["label"] for r in results] == ["Chrome::pro", f"Chrome::{NULL_LABEL}"]
    assert [r["count"] for r in results] == [2, 1]
    results, has_more = run(events, trends(breakdownFilter={**breakdown, "breakdown_limit": 1}))
    assert results[-1]["breakdown_value"] == [OTHER_LABEL, OTHER_LABEL] and has_more


def test_total_value_breakdown_ranks_by_aggregated_value() -> None:
    results, has_more = run(
        _browser_events(),
        trends(
            dateRange={"date_from": "-1d"},
            trendsFilter={"display": "ActionsTable"},
            breakdownFilter={"breakdown": "browser", "breakdown_limit": 1},
        ),
    )
    assert [(r["breakdown_value"], r["aggregated_value"]) for r in results] == [
        ("Chrome", 3),
        (OTHER_LABEL, 7),
    ]
    assert has_more


# --------------------------------------------------------------------------------------------------
# Compare


def test_compare_previous_period_alignment_and_kludge() -> None:
    # -7d: current 8..15 Jan. diff = 7d 23:59:59.999999; prev_from = 31 Dec (clock 00:00) + 1 day
    # (kludge: -7d, no date_to) = 1 Jan; prev_to = 1 Jan + diff = 8 Jan 23:59:59.999999.
    events = [
        ev(ts(2024, 1, 1, 5)),
        ev(ts(2024, 1, 8, 5)),
        ev(ts(2024, 1, 15, 5)),
        ev(ts(2024, 1, 3, 5), "signup"),
    ]
    series = [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}]
    results, _ = run(
        events, trends(series=series, dateRange={"date_from": "-7d"}, compareFilter={"compare": True})
    )
    assert [(r["compare_label"], r["order"]) for r in results] == [
        ("current", 0),
        ("current", 1),
        ("previous", 0),
        ("previous", 1),
    ]
    assert all(r["compare"] is True for r in results)
    assert all(r["labels"] == [f"day {i}" for i in range(8)] for r in results)
    assert results[0]["days"] == DAYS_8
    assert results[2]["days"] == [f"2024-01-{d:02d}" for d in range(1, 9)]
    assert results[0]["data"] == [1, 0, 0, 0, 0, 0, 0, 1]
    assert results[2]["data"] == [1, 0, 0, 0, 0, 0, 0, 1]  # 1 Jan = day 0, 8 Jan = day 7
    assert results[3]["data"] == [0, 0, 1, 0, 0, 0, 0, 0]


def test_compare_without_kludge() -> None:
    # -3d: current 12..15 Jan; prev_from = 12 Jan - (3d 23:59:59.999999) → 8 Jan (clock 00:00);
    # prev_to = 11 Jan 23:59:59.999999.
    rng = previous_date_range({"date_from": "-3d"}, "day", timezone="UTC", week_start_day=0, now=NOW)
    assert rng.days == ("2024-01-08", "2024-01-09", "2024-01-10", "2024-01-11")
    # -7d with an explicit date_to: no kludge → 31 Dec .. 7 Jan.
    rng = previous_date_range(
        {"date_from": "-7d", "date_to": "2024-01-15"}, "day", timezone="UTC", week_start_day=0, now=NOW
    )
    assert rng.days[0] == "2023-12-31" and rng.days[-1] == "2024-01-07"
    assert rng.upper == datetime(2024, 1, 7, 23, 59, 59, 999999, tzinfo=UTC)


def test_compare_to_shifts_both_bounds() -> None:
    events = [ev(ts(2023, 12, 8, 5)), ev(ts(2023, 12, 15, 23))]
    results, _ = run(
        events, trends(dateRange={"date_from": "-7d"}, compareFilter={"compare": True, "compare_to": "-1m"})
    )
    previous = results[1]
    assert previous["compare_label"] == "previous"
    assert previous["days"] == [f"2023-12-{d:02d}" for d in range(8, 16)]
    assert previous["data"] == [1, 0, 0, 0, 0, 0, 0, 1]


# --------------------------------------------------------------------------------------------------
# Cumulative


def test_cumulative_total_and_dau() -> None:
    window = {"date_from": "-3d"}  # 12..15 Jan
    events = [
        ev(ts(2024, 1, 12, 1), person="p1"),
        ev(ts(2024, 1, 13, 1), person="p1"),
        ev(ts(2024, 1, 13, 2), person="p2"),
        ev(ts(2024, 1, 15, 1), person="p1"),
    ]
    display = {"display": "ActionsLineGraphCumulative"}
    total = only(run(events, trends(dateRange=window, trendsFilter=display))[0])
    assert total["data"] == [1, 3, 3, 4] and total["count"] == 4  # count = last value
    dau_series = [{"kind": "EventsNode", "event": "$pageview", "math": "dau"}]
    dau = only(run(events, trends(series=dau_series, dateRange=window, trendsFilter=display))[0])
    # p1 first on 12 Jan, p2 first on 13 Jan → increments [1, 1, 0, 0].
    assert dau["data"] == [1, 2, 2, 2] and dau["count"] == 2


# --------------------------------------------------------------------------------------------------
# Formulas


def _two_series_events() -> list[Event]:
    # Over -1d (14, 15 Jan): A = $pageview [2, 1], B = signup [1, 0].
    return [
        ev(ts(2024, 1, 14, 1)),
        ev(ts(2024, 1, 14, 2)),
        ev(ts(2024, 1, 15, 1)),
        ev(ts(2024, 1, 14, 3), "signup"),
    ]


SERIES_AB = [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}]


def test_formulas_and_division_by_zero() -> None:
    query = trends(
        series=SERIES_AB,
        dateRange={"date_from": "-1d"},
        trendsFilter={
            "formulaNodes": [
                {"formula": "A/B*100"},  # [200, 1/0 = 0 → 0]
                {"formula": "-(A - B) * 2", "custom_name": "neg"},  # [-2, -2]
                {"formula": "(B - B) / (A - A) + 0.5"},  # 0/0 = 0 → [0.5, 0.5]
            ]
        },
    )
    results, _ = run(_two_series_events(), query)
    assert [(r["label"], r["order"], r["data"], r["count"]) for r in results] == [
        ("Formula (A/B*100)", 0, [200, 0], 200),
        ("neg", 1, [-2, -2], -4),
        ("Formula ((B - B) / (A - A) + 0.5)", 2, [0.5, 0.5], 1),
    ]
    assert results[0]["days"] == ["2024-01-14", "2024-01-15"]
    legacy = only(
        run(
            _two_series_events(),
            trends(series=SERIES_AB, dateRange={"date_from": "-1d"}, trendsFilter={"formula": "A+B"}),
        )[0]
    )
    assert legacy["data"] == [3, 1] and legacy["label"] == "Formula (A+B)"


@pytest.mark.parametrize("formula", ["A+C", "A+", "A B", "(A", "A % B", "2 ** 3", "A1"])
def test_bad_formulas_are_invalid(formula: str) -> None:
    with pytest.raises(InvalidArgument):
        run([], trends(series=SERIES_AB, trendsFilter={"formula": formula}))


def test_formula_with_breakdown_and_total_value() -> None:
    day = ts(2024, 1, 15, 1)
    events = [
        ev(day, props={"b": "x"}),
        ev(day, props={"b": "x"}),
        ev(day, props={"b": "y"}),
        ev(day, "signup", props={"b": "x"}),
        ev(day, "signup", props={"b": "z"}),
    ]
    # A: x=2, y=1; B: x=1, z=1. A-B per value: x=1, y=1, z=-1 (missing pairs are zero).
    # Sorted descending by (group, total, count, data, repr(value)): ties x/y → repr 'y' > 'x'.
    query = trends(
        series=SERIES_AB,
        dateRange={"date_from": "dStart"},
        trendsFilter={"formula": "A-B", "display": "BoldNumber"},
        breakdownFilter={"breakdown": "b"},
    )
    results, _ = run(events, query, now=ts(2024, 1, 15, 12))
    assert [(r["breakdown_value"], r["aggregated_value"], r["label"]) for r in results] == [
        ("y", 1, "Formula (A-B)"),
        ("x", 1, "Formula (A-B)"),
        ("z", -1, "Formula (A-B)"),
    ]


# --------------------------------------------------------------------------------------------------
# Maths


def test_weekly_and_monthly_active_windows() -> None:
    # Day buckets 13, 14, 15 Jan. WAU at day D = actors active on D-6 .. D.
    events = [
        ev(ts(2024, 1, 7, 10), person="p1"),  # in window of 13 Jan (7..13) only
        ev(ts(2024, 1, 8, 10), person="p2"),  # windows of 13 and 14 Jan
        ev(ts(2024, 1, 15, 10), person="p3"),
        ev(ts(2024, 1, 16, 10), person="p4"),  # after date_to
        ev(ts(2023, 12, 17, 10), person="p5"),  # MAU: in (14 Dec, 13 Jan] only
    ]
    window = {"date_from": "-2d"}
    wau = [{"kind": "EventsNode", "event": "$pageview", "math": "weekly_active"}]
    assert only(run(events, trends(series=wau, dateRange=window))[0])["data"] == [2, 1, 1]
    mau = [{"kind": "EventsNode", "event": "$pageview", "math": "monthly_active"}]
    # 13 Jan: (14 Dec, 13 Jan] → p5, p1, p2; 14 Jan: (15 Dec, 14 Jan] → p5, p1, p2; 15 Jan: (16 Dec, 15 Jan] → all but p4.
    assert only(run(events, trends(series=mau, dateRange=window))[0])["data"] == [3, 3, 4]
    # Total value: actors in (date_to - 7 days, date_to] = (8 Jan 23:59:59.999999, 15 Jan 23:59:59.999999] → p3.
    pie = only(run(events, trends(series=wau, dateRange=window, trendsFilter={"display": "ActionsPie"}))[0])
    assert pie["aggregated_value"] == 1
    # Week buckets: weekly_active is dau.
    weekly = only(run(events, trends(series=wau, interval="week", dateRange={"date_from": "-14d"}))[0])
    # -14d → 1 Jan; Sunday weeks 31 Dec, 7 Jan, 14 Jan: {}, {p1, p2}, {p3}.
    assert weekly["data"] == [0, 2, 1]


def test_monthly_active_with_week_buckets_uses_the_window_ending_at_the_week_start() -> None:
    now = ts(2024, 1, 17, 12)  # Wed; -7d → Wed 10 Jan; Sunday weeks 7 Jan, 14 Jan
    events = [
        ev(ts(2023, 12, 9, 10), person="p1"),  # in (8 Dec, 7 Jan]; not in (15 Dec, 14 Jan]
        ev(ts(2024, 1, 14, 10), person="p2"),  # in (15 Dec, 14 Jan]
        ev(ts(2024, 1, 15, 10), person="p3"),  # after both week starts: never counted
    ]
    mau = [{"kind": "EventsNode", "event": "$pageview", "math": "monthly_active"}]
    item = only(run(events, trends(series=mau, interval="week", dateRange={"date_from": "-7d"}), now=now)[0])
    assert item["days"] == ["2024-01-07", "2024-01-14"]
    assert item["data"] == [1, 1]


def test_first_time_for_user_and_first_matching_event() -> None:
    chrome = {"browser": "Chrome"}
    events = [
        ev(ts(2024, 1, 1, 1), person="p1", props=chrome),  # p1's first ever: before the range
        ev(ts(2024, 1, 10, 1), person="p1", props=chrome),
        ev(ts(2024, 1, 9, 1), person="p2", props={"browser": "Safari"}),  # p2's first: not Chrome
        ev(ts(2024, 1, 10, 1), person="p2", props=chrome),  # p2's first Chrome
        ev(ts(2024, 1, 11, 1), person="p3", props=chrome),  # p3 first, Chrome
        ev(ts(2024, 1, 2, 1), event="signup", person="p4"),  # another event name: ignored
        ev(ts(2024, 1, 12, 1), person="p4", props=chrome),  # p4's first $pageview
    ]
    props = [{"key": "browser", "value": "Chrome", "type": "event"}]

    def data(math: str) -> list[float]:
        series = [{"kind": "EventsNode", "event": "$pageview", "math": math, "properties": props}]
        return only(run(events, trends(series=series))[0])["data"]

    # Buckets 8..15 Jan: index 2 = 10 Jan, 3 = 11 Jan, 4 = 12 Jan.
    assert data("first_time_for_user") == [0, 0, 0, 1, 1, 0, 0, 0]  # p3, p4
    assert data("first_matching_event_for_user") == [0, 0, 1, 1, 1, 0, 0, 0]  # p2, p3, p4


def test_property_maths_and_quantiles() -> None:
    day = ts(2024, 1, 15, 1)
    values: list[Any] = [1, 2, 3, 4, "5", 10.0]
    events = [ev(day, props={"v": v}) for v in values]
    events += [ev(day, props={"v": "abc"}), ev(day, props={}), ev(day, props={"v": True})]  # ignored
    # Sorted [1, 2, 3, 4, 5, 10], n = 6, R7: h = 5p.
    expected = {
        "sum": 25.0,
        "avg": 25 / 6,
        "min": 1.0,
        "max": 10.0,
        "median": 3.5,  # h 2.5 → 3 + .5(4 - 3)
        "p75": 4.75,  # h 3.75 → 4 + .75(5 - 4)
        "p90": 7.5,  # h 4.5 → 5 + .5(10 - 5)
        "p95": 8.75,  # h 4.75
        "p99": 9.75,  # h 4.95
    }
    for math_name, value in expected.items():
        series = [{"kind": "EventsNode", "event": "$pageview", "math": math_name, "math_property": "v"}]
        item = only(run(events, trends(series=series, dateRange={"date_from": "-1d"}))[0])
        assert item["data"] == pytest.approx([0, value]), math_name  # an empty bucket is 0
    doubled = [
        {
            "kind": "EventsNode",
            "event": "$pageview",
            "math": "median",
            "math_property": "v",
            "math_multiplier": 2,
        }
    ]
    assert only(run(events, trends(series=doubled, dateRange={"date_from": "dStart"}))[0])["data"] == [7.0]


def test_count_per_actor_dau_and_unique_session() -> None:
    day = ts(2024, 1, 15, 1)
    events = [
        ev(day, person="p1", props={"$session_id": "s1"}),
        ev(day, person="p1", props={"$session_id": "s1"}),
        ev(day, person="p1", props={"$session_id": "s2"}),
        ev(day, person="p2", props={}),
        ev(day, person="p3", props={"$session_id": ""}),
        ev(day, person="p3", props={"$session_id": "s2"}),
    ]
    # Events per actor: p1 3, p2 1, p3 2 → sorted [1, 2, 3].
    expected = {
        "avg_count_per_actor": 2.0,
        "min_count_per_actor": 1.0,
        "max_count_per_actor": 3.0,
        "median_count_per_actor": 2.0,
        "p75_count_per_actor": 2.5,  # h 1.5
        "p90_count_per_actor": 2.8,  # h 1.8
        "dau": 3.0,
        "unique_session": 3.0,  # {"s1", "s2", ""}
        "total": 6.0,
    }
    for math_name, value in expected.items():
        series = [{"kind": "EventsNode", "event": "$pageview", "math": math_name}]
        item = only(run(events, trends(series=series, dateRange={"date_from": "dStart"}))[0])
        assert item["data"] == pytest.approx([value]), math_name
    empty = [{"kind": "EventsNode", "event": "$pageview", "math": "avg_count_per_actor"}]
    assert only(run([], trends(series=empty, dateRange={"date_from": "dStart"}))[0])["data"] == [0]


# --------------------------------------------------------------------------------------------------
# Property filters on missing / null / '' values


def _filter_events() -> list[Event]:
    day = ts(2024, 1, 15, 1)
    cases: dict[str, dict[str, Any]] = {
        "missing": {},
        "null": {"x": None},
        "empty": {"x": ""},
        "hello": {"x": "Hello World"},
        "five": {"x": 5},
        "fivehalf": {"x": 5.5},
        "ten_str": {"x": "10"},
        "true": {"x": True},
        "pct": {"x": "a%b"},
        "axb": {"x": "axb"},
    }
    return [ev(day, props={"name": name, **props}) for name, props in cases.items()]


ALL_NAMES = {"missing", "null", "empty", "hello", "five", "fivehalf", "ten_str", "true", "pct", "axb"}
NULLS = {"missing", "null", "empty"}


def matching(events: list[Event], properties: Any) -> set[str]:
    """The `name` of each event the filters keep (read back through a breakdown on `name`)."""
    query = trends(
        dateRange={"date_from": "dStart"},
        properties=properties,
        breakdownFilter={"breakdown": "name", "breakdown_limit": 100},
    )
    return {r["breakdown_value"] for r in run(events, query)[0]}


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("exact", "Hello World", {"hello"}),
        ("exact", 5, {"five"}),
        ("exact", 5.5, {"fivehalf"}),
        ("exact", 10, {"ten_str"}),
        ("exact", True, {"true"}),
        ("is_not", "Hello World", ALL_NAMES - {"hello"}),
        ("icontains", "WORLD", {"hello"}),
        ("icontains", "a%b", {"pct"}),  # literal: no wildcards
        ("not_icontains", "world", ALL_NAMES - {"hello"}),
        ("regex", "^Hel", {"hello"}),
        ("regex", r"^\d+$", {"five", "ten_str"}),
        ("not_regex", "^Hel", ALL_NAMES - {"hello"}),
        ("gt", 5, {"fivehalf", "ten_str"}),  # numeric: "10" > 5
        ("gte", 5, {"five", "fivehalf", "ten_str"}),
        ("lt", "10", {"five", "fivehalf"}),  # numeric string → numeric
        ("lte", 10, {"five", "fivehalf", "ten_str"}),
        ("min", 5.5, {"fivehalf", "ten_str"}),
        ("max", 5, {"five"}),
        ("gt", "Hello", {"hello", "true", "pct", "axb"}),  # lexicographic: digits < 'H' < 'a', 't'
        ("between", [5, 6], {"five", "fivehalf"}),
        ("not_between", [5, 6], {"ten_str"}),
        ("is_set", None, ALL_NAMES - NULLS),
        ("is_not_set", None, NULLS),
        ("in", ["Hello World", 5], {"hello", "five"}),
        ("not_in", ["Hello World", 5], ALL_NAMES - {"hello", "five"}),
        ("exact", ["Hello World", "10"], {"hello", "ten_str"}),
        ("is_not", ["Hello World", "10"], ALL_NAMES - {"hello", "ten_str"}),
        ("icontains", ["world", "10"], {"hello", "ten_str"}),  # OR
        ("not_icontains", ["world", "10"], ALL_NAMES - {"hello", "ten_str"}),  # AND
        ("regex", ["^a", "^5"], {"pct", "axb", "five", "fivehalf"}),
        ("exact", [], ALL_NAMES),  # an empty list matches everything
        ("exact", ["axb"], {"axb"}),
    ],
)
def test_filter_operators_on_missing_null_and_empty(operator: str, value: Any, expected: set[str]) -> None:
    prop = {"key": "x", "value": value, "operator": operator, "type": "event"}
    assert matching(_filter_events(), [prop]) == expected


def test_date_filter_operators() -> None:
    # Environment Europe/Berlin (+01:00 in January).
    day = ts(2024, 1, 15, 1)
    cases = {
        "d_day": "2024-01-10",  # day 10 Jan; instant 9 Jan 23:00Z
        "d_late": "2024-01-10T23:30:00",  # naive = Berlin: 22:30Z, day 10 Jan
        "d_utc": "2024-01-10T23:30:00Z",  # 11 Jan 00:30 Berlin
        "d_offset": "2024-01-11T00:30:00+01:00",  # 23:30Z, day 11 Jan
        "d_bad": "yesterday",
        "d_missing": None,
    }
    events = [ev(day, props={"name": name, "d": value}) for name, value in cases.items()]

    def dates(operator: str, value: str) -> set[str]:
        prop = {"key": "d", "value": value, "operator": operator, "type": "event"}
        query = trends(
            dateRange={"date_from": "dStart"}, properties=[prop], breakdownFilter={"breakdown": "name"}
        )
        return {r["breakdown_value"] for r in run(events, query, tz="Europe/Berlin")[0]}

    assert dates("is_date_exact", "2024-01-10") == {"d_day", "d_late"}
    assert dates("is_date_before", "2024-01-11") == {"d_day", "d_late"}
    assert dates("is_date_after", "2024-01-10") == {"d_utc", "d_offset"}
    assert dates("is_date_after", "2024-01-10T23:00:00") == {"d_late", "d_utc", "d_offset"}  # > 22:00Z
    assert dates("is_date_exact", "2024-01-10T23:30:00Z") == {"d_utc", "d_offset"}
    assert dates("is_date_before", "2024-01-10T23:30:00Z") == {"d_day", "d_late"}


def test_flat_keys_person_filters_groups_and_test_accounts() -> None:
    day = ts(2024, 1, 15, 1)
    events = [
        ev(
            day,
            person="p1",
            props={"name": "a", "a.b": "dot", "a": {"b": "nested"}},
            person_props={"email": "x@corp.com"},
        ),
        ev(day, person="p2", props={"name": "b", "a": {"b": "dot"}}, person_props={"email": "y@test.com"}),
        ev(day, person="p3", props={"name": "c", "n": 3}, person_props={}),
    ]
    # "a.b" is one flat key, never a path.
    assert matching(events, [{"key": "a.b", "value": "dot"}]) == {"a"}
    assert matching(
        events, [{"key": "email", "value": "@test.com", "operator": "icontains", "type": "person"}]
    ) == {"b"}
    group = {
        "type": "OR",
        "values": [
            {
                "type": "AND",
                "values": [{"key": "n", "value": 2, "operator": "gt"}, {"key": "n", "operator": "is_set"}],
            },
            {"type": "AND", "values": [{"key": "name", "value": "a"}]},
        ],
    }
    assert matching(events, group) == {"a", "c"}
    assert matching(events, {"type": "AND", "values": []}) == {"a", "b", "c"}
    test_filters = [{"key": "email", "value": "@test.com", "operator": "not_icontains", "type": "person"}]
    query = trends(
        dateRange={"date_from": "dStart"}, filterTestAccounts=True, breakdownFilter={"breakdown": "name"}
    )
    names = {r["breakdown_value"] for r in run(events, query, test_account_filters=test_filters)[0]}
    assert names == {"a", "c"}  # p3 has no email: not_icontains on NULL is true
    query["filterTestAccounts"] = False
    assert {r["breakdown_value"] for r in run(events, query, test_account_filters=test_filters)[0]} == {
        "a",
        "b",
        "c",
    }


@pytest.mark.parametrize(
    "prop",
    [
        {"key": "x", "value": "(", "operator": "regex"},
        {"key": "x", "value": [6, 5], "operator": "between"},
        {"key": "x", "value": ["a", 5], "operator": "between"},
        {"key": "x", "value": 1, "operator": "bogus"},
        {"key": "id", "value": 0, "type": "cohort"},
        {"key": "id", "value": 1, "type": "cohort", "operator": "icontains"},
        {"key": "x", "value": 1, "operator": "exact", "negation": True},
        {"key": "x", "value": 1, "type": "hogql"},
    ],
)
def test_invalid_filters(prop: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        run([], trends(properties=[prop]))


def test_a_cohort_filter_naming_an_unknown_cohort_is_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition):
        run([], trends(properties=[{"key": "id", "value": 7, "type": "cohort"}]))


# --------------------------------------------------------------------------------------------------
# Series


def test_group_node_labels_and_actions() -> None:
    day = ts(2024, 1, 15, 1)
    events = [
        ev(day, "a", props={"k": "1"}),
        ev(day, "a", props={"k": "2"}),  # node a needs k=1
        ev(day, "b", props={"k": "2"}),
        ev(day, "b", props={"k": "2", "drop": "yes"}),  # group property drop is_not_set
        ev(day, "c"),
    ]
    group = {
        "kind": "GroupNode",
        "nodes": [
            {"kind": "EventsNode", "event": "a", "properties": [{"key": "k", "value": "1"}]},
            {"kind": "EventsNode", "event": "b"},
        ],
        "properties": [{"key": "drop", "operator": "is_not_set"}],
    }
    all_events = {"kind": "EventsNode", "event": None}
    results, _ = run(events, trends(series=[group, all_events], dateRange={"date_from": "dStart"}))
    assert [(r["label"], r["data"]) for r in results] == [("a, b", [2]), ("All events", [5])]
    with pytest.raises(FailedPrecondition):
        run([], trends(series=[{"kind": "ActionsNode", "id": 1}]))
