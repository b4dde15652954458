"""Tests of query date ranges: the reference's date strings, bucket grids, labels, DST and compare periods."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from server.queries.dates import (
    INTERVALS,
    MAX_BUCKETS,
    QueryDateRange,
    compare_range,
    parse_point,
    resolve_date_range,
)
from server.queries.errors import QueryError
from tests.hypothesis_profiles import examples

UTC = dt.UTC
BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
# Wednesday 2024-01-17, 14:23:45.5 in Berlin.
NOW = dt.datetime(2024, 1, 17, 13, 23, 45, 500000, tzinfo=UTC)


def resolve(
    date_from: str | None = None,
    date_to: str | None = None,
    *,
    interval: str = "day",
    tz: str = BERLIN,
    week_start_day: int = 0,
    explicit_date: bool = False,
    now: dt.datetime = NOW,
    **kwargs: Any,
) -> QueryDateRange:
    return resolve_date_range(
        date_from,
        date_to,
        explicit_date=explicit_date,
        interval=interval,
        timezone=tz,
        week_start_day=week_start_day,
        now=now,
        **kwargs,
    )


def local(tz: str, *fields: int, fold: int = 0) -> dt.datetime:
    """A wall-clock time in `tz`: local(tz, year, month, day[, hour, minute, second, microsecond])."""
    padded = (*fields, 0, 0, 0, 0)[:7]
    year, month, day, hour, minute, second, micro = padded
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=zoneinfo.ZoneInfo(tz), fold=fold)


def instant(moment: dt.datetime) -> dt.datetime:
    """Compare instants, not wall clocks (same-tzinfo comparisons in Python ignore `fold`)."""
    return moment.astimezone(UTC)


def hours_between(a: dt.datetime, b: dt.datetime) -> float:
    return (instant(b) - instant(a)).total_seconds() / 3600


# --------------------------------------------------------------------------------------------------
# Defaults and "last N days"


def test_last_7_days_covers_8_day_buckets() -> None:
    r = resolve("-7d")
    assert r.date_from == local(BERLIN, 2024, 1, 10)
    assert r.date_to == local(BERLIN, 2024, 1, 17, 23, 59, 59, 999999)
    assert r.events_from == r.date_from
    assert r.bucket_count() == 8
    assert r.days() == [f"2024-01-{d:02d}" for d in range(10, 18)]
    assert r.labels()[0] == "10-Jan-2024" and r.labels()[-1] == "17-Jan-2024"
    assert r.sql_bounds() == ("2024-01-10 00:00:00.000000", "2024-01-17 23:59:59.999999")


def test_missing_date_from_defaults_to_today_minus_7_days() -> None:
    assert resolve(None) == resolve("-7d")
    assert resolve("") == resolve("-7d")
    assert resolve(None, interval="hour").date_from == local(BERLIN, 2024, 1, 10)


def test_date_is_resolved_in_the_environment_timezone() -> None:
    # 13:23 UTC on the 17th is already the 18th in Tokyo and still the 17th in Los Angeles.
    assert resolve("dStart", tz="Asia/Tokyo").days() == ["2024-01-17"]
    late = dt.datetime(2024, 1, 17, 23, 30, tzinfo=UTC)
    assert resolve("dStart", tz="Asia/Tokyo", now=late).days() == ["2024-01-18"]
    assert resolve("dStart", tz="America/Los_Angeles", now=late).days() == ["2024-01-17"]


def test_naive_now_is_utc() -> None:
    assert resolve("-7d", now=NOW.replace(tzinfo=None)) == resolve("-7d")


# --------------------------------------------------------------------------------------------------
# Hour and minute


def test_hour_interval_minus_24h_truncates_to_the_hour() -> None:
    r = resolve("-24h", interval="hour")
    assert r.date_from == local(BERLIN, 2024, 1, 16, 14)
    assert r.date_to == local(BERLIN, 2024, 1, 17, 14, 59, 59, 999999)
    assert r.events_from == r.date_from
    assert r.bucket_count() == 25
    assert r.days()[0] == "2024-01-16 14:00:00" and r.days()[-1] == "2024-01-17 14:00:00"
    assert r.labels()[0] == "16-Jan 14:00"


def test_hour_interval_minus_7d_starts_at_midnight() -> None:
    r = resolve("-7d", interval="hour")
    assert r.date_from == local(BERLIN, 2024, 1, 10)
    assert r.bucket_count() == 7 * 24 + 15


def test_hour_interval_absolute_date_to_is_not_extended() -> None:
    r = resolve("2024-01-10", "2024-01-10 05:30", interval="hour")
    assert r.date_to == local(BERLIN, 2024, 1, 10, 5, 30)
    assert r.bucket_count() == 6
    relative = resolve("2024-01-10", "-1d", interval="hour")
    assert relative.date_to == local(BERLIN, 2024, 1, 16, 14, 59, 59, 999999)


def test_minute_interval_keeps_the_exact_relative_start() -> None:
    r = resolve("-1h", interval="minute")
    assert r.date_from == local(BERLIN, 2024, 1, 17, 13, 23, 45, 500000)
    assert r.events_from == r.date_from  # relative: not truncated
    assert r.date_to == local(BERLIN, 2024, 1, 17, 14, 23, 59, 999999)
    assert r.bucket_count() == 61
    assert r.days()[0] == "2024-01-17 13:23:00"
    assert r.labels()[0] == "17-Jan 13:23"


def test_minute_interval_absolute_start_is_truncated_to_the_minute() -> None:
    r = resolve("2024-01-17 14:00:30", interval="minute")
    assert r.events_from == local(BERLIN, 2024, 1, 17, 14, 0)
    assert r.date_from == local(BERLIN, 2024, 1, 17, 14, 0, 30)


def test_day_interval_with_an_hours_delta_is_not_truncated_to_the_day() -> None:
    r = resolve("-48h")
    assert r.date_from == local(BERLIN, 2024, 1, 15, 14)
    assert r.events_from == r.date_from
    assert r.days() == ["2024-01-15", "2024-01-16", "2024-01-17"]


# --------------------------------------------------------------------------------------------------
# Week and month


def test_week_buckets_with_sunday_start_and_a_partial_first_week() -> None:
    r = resolve("-14d", interval="week", week_start_day=0)
    assert r.date_from == local(BERLIN, 2024, 1, 3)
    assert r.events_from == local(BERLIN, 2024, 1, 3)  # the start of the day, not of the week
    assert r.days() == ["2023-12-31", "2024-01-07", "2024-01-14"]
    assert r.labels() == ["3\u20136 Jan", "7\u201313 Jan", "14\u201317 Jan"]


def test_week_buckets_with_monday_start() -> None:
    r = resolve("-14d", interval="week", week_start_day=1)
    assert r.days() == ["2024-01-01", "2024-01-08", "2024-01-15"]
    assert r.labels() == ["3\u20137 Jan", "8\u201314 Jan", "15\u201317 Jan"]


def test_week_absolute_mid_week_start_counts_events_from_that_day() -> None:
    r = resolve("2024-01-10 15:00", "2024-01-20", interval="week")
    assert r.date_from == local(BERLIN, 2024, 1, 10, 15)
    assert r.events_from == local(BERLIN, 2024, 1, 10)
    assert r.bucket_start(local(BERLIN, 2024, 1, 13, 23)) == local(BERLIN, 2024, 1, 7)
    assert r.bucket_start(local(BERLIN, 2024, 1, 14, 0)) == local(BERLIN, 2024, 1, 14)


def test_week_labels_cross_month_and_year_and_clip_to_a_single_day() -> None:
    across_month = resolve("2024-01-20", "2024-02-10", interval="week")
    assert across_month.labels() == ["20-Jan-2024", "21\u201327 Jan", "28-Jan \u2013 3-Feb", "4\u201310 Feb"]
    across_year = resolve("2024-12-25", "2025-01-10", interval="week")
    assert across_year.labels() == ["25\u201328 Dec", "29-Dec-2024 \u2013 4-Jan-2025", "5\u201310 Jan"]
    assert across_year.days() == ["2024-12-22", "2024-12-29", "2025-01-05"]
    monday = resolve("2024-12-25", "2025-01-06", interval="week", week_start_day=1)
    assert monday.labels() == ["25\u201329 Dec", "30-Dec-2024 \u2013 5-Jan-2025", "6-Jan-2025"]


def test_month_buckets_count_the_whole_first_month() -> None:
    r = resolve("-2m", interval="month")
    assert r.date_from == local(BERLIN, 2023, 11, 17)
    assert r.events_from == local(BERLIN, 2023, 11, 1)
    assert r.days() == ["2023-11-01", "2023-12-01", "2024-01-01"]
    assert r.labels() == ["Nov 2023", "Dec 2023", "Jan 2024"]
    assert r.sql_bounds()[0] == "2023-11-01 00:00:00.000000"


def test_month_absolute_start_is_truncated_to_the_first() -> None:
    r = resolve("2023-06-20", "2023-08-05", interval="month")
    assert r.events_from == local(BERLIN, 2023, 6, 1)
    assert r.labels() == ["Jun 2023", "Jul 2023", "Aug 2023"]


# --------------------------------------------------------------------------------------------------
# Relative grammar and absolute dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mStart", (2024, 1, 1)),
        ("-1mStart", (2023, 12, 1)),
        ("-2mStart", (2023, 11, 1)),
        ("yStart", (2024, 1, 1)),
        ("-1yStart", (2023, 1, 1)),
        ("dStart", (2024, 1, 17)),
        ("-1dStart", (2024, 1, 16)),
        ("-1dEnd", (2024, 1, 16)),  # truncated: always_truncate
        ("-1w", (2024, 1, 10)),
        ("-2w", (2024, 1, 3)),
        ("-1q", (2023, 10, 18)),
        ("-1y", (2023, 1, 17)),
        ("-1m", (2023, 12, 17)),
        ("-7D", (2024, 1, 10)),  # upper-case units are aliases, except M (minutes)
        ("7d", (2024, 1, 10)),  # always subtracted
    ],
)
def test_relative_date_from(text: str, expected: tuple[int, int, int]) -> None:
    assert resolve(text).date_from == local(BERLIN, *expected)


def test_month_end_is_clamped_and_start_end_only_set_their_fields() -> None:
    march_31 = dt.datetime(2024, 3, 31, 10, tzinfo=UTC)
    assert resolve("-1m", now=march_31).date_from == local(BERLIN, 2024, 2, 29)
    # With the exact range (BoldNumber) nothing is truncated: Start sets only the day (and month).
    exact = resolve("-1mStart", exact_timerange=True)
    assert exact.date_from == local(BERLIN, 2023, 12, 1, 14, 23, 45, 500000)
    assert resolve("-1dEnd", exact_timerange=True).date_from == local(BERLIN, 2024, 1, 16, 23, 59, 59, 999999)
    assert resolve("-3hStart", exact_timerange=True).date_from == local(BERLIN, 2024, 1, 17, 11)


def test_minutes_and_seconds_units() -> None:
    assert resolve("-30M", interval="minute").date_from == local(BERLIN, 2024, 1, 17, 13, 53, 45, 500000)
    assert resolve("-90s", interval="minute").date_from == local(BERLIN, 2024, 1, 17, 14, 22, 15, 500000)
    # always_truncate without an hours delta: midnight.
    assert resolve("-30M", interval="hour").date_from == local(BERLIN, 2024, 1, 17)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-05", (2024, 1, 5)),
        ("2021-1-1", (2021, 1, 1)),
        ("2024-01-05T10:30", (2024, 1, 5, 10, 30)),
        ("2024-01-05 10:30:15", (2024, 1, 5, 10, 30, 15)),
        ("2024-01-05T10:30:15.25", (2024, 1, 5, 10, 30, 15, 250000)),
        ("2024-01-05T10:30:00Z", (2024, 1, 5, 11, 30)),
        ("2024-01-05T10:30:00+05:00", (2024, 1, 5, 6, 30)),
        ("2024-01-05T23:30:00-05:00", (2024, 1, 6, 5, 30)),
    ],
)
def test_absolute_dates_naive_are_local_and_offsets_are_converted(
    text: str, expected: tuple[int, ...]
) -> None:
    r = resolve(text, "2024-01-17")
    assert r.date_from == local(BERLIN, *expected)
    assert r.date_from.tzinfo == zoneinfo.ZoneInfo(BERLIN)
    assert r.events_from == local(BERLIN, *expected[:3])


def test_absolute_date_to_ends_at_the_end_of_its_day() -> None:
    r = resolve("2024-01-01", "2024-01-05")
    assert r.date_to == local(BERLIN, 2024, 1, 5, 23, 59, 59, 999999)
    assert r.bucket_count() == 5
    offset = resolve("2024-01-01", "2024-01-05T23:30:00Z")  # 00:30 on the 6th in Berlin
    assert offset.date_to == local(BERLIN, 2024, 1, 6, 23, 59, 59, 999999)


def test_explicit_date_uses_the_exact_datetimes() -> None:
    r = resolve("2024-01-10 10:15", "2024-01-12 08:00", explicit_date=True)
    assert r.date_from == r.events_from == local(BERLIN, 2024, 1, 10, 10, 15)
    assert r.date_to == local(BERLIN, 2024, 1, 12, 8)
    assert r.days() == ["2024-01-10", "2024-01-11", "2024-01-12"]
    assert r.sql_bounds() == ("2024-01-10 10:15:00.000000", "2024-01-12 08:00:00.000000")
    month = resolve("2024-01-10", "2024-03-01", interval="month", explicit_date=True)
    assert month.events_from == local(BERLIN, 2024, 1, 10)  # not the first of the month
    relative = resolve("-7d", explicit_date=True)
    assert relative.date_to == local(BERLIN, 2024, 1, 17, 14, 23, 45, 500000)


def test_bold_number_exact_range() -> None:
    r = resolve("-7d", exact_timerange=True)
    assert r.date_from == r.events_from == local(BERLIN, 2024, 1, 10, 14, 23, 45, 500000)
    assert r.date_to == local(BERLIN, 2024, 1, 17, 14, 23, 45, 500000)
    assert instant(r.date_to) - instant(r.date_from) == dt.timedelta(days=7)
    # The other total-value displays: day start to day end.
    assert resolve("-7d").sql_bounds() == ("2024-01-10 00:00:00.000000", "2024-01-17 23:59:59.999999")
    # With a date_to, the exact range still ends that day.
    with_to = resolve("-7d", "-1d", exact_timerange=True)
    assert with_to.date_to == local(BERLIN, 2024, 1, 16, 23, 59, 59, 999999)


def test_all_starts_at_the_earliest_event() -> None:
    earliest = dt.datetime(2023, 12, 25, 22, 30, tzinfo=UTC)  # 23:30 in Berlin
    r = resolve("all", earliest=earliest)
    assert r.date_from == local(BERLIN, 2023, 12, 25, 23, 30)
    assert r.events_from == local(BERLIN, 2023, 12, 25)
    assert r.days()[0] == "2023-12-25" and r.bucket_count() == 24
    assert resolve("all", interval="hour", earliest=earliest).events_from == local(BERLIN, 2023, 12, 25, 23)


def test_all_without_events_starts_now() -> None:
    r = resolve("all")
    assert r.date_from == local(BERLIN, 2024, 1, 17, 14, 23, 45, 500000)
    assert r.days() == ["2024-01-17"]


def test_list_filter_parse_point_still_works() -> None:
    assert parse_point("-7d", BERLIN, NOW) == NOW - dt.timedelta(days=7)
    assert parse_point("+1d", BERLIN, NOW) == NOW + dt.timedelta(days=1)
    assert parse_point("-1wStart", BERLIN, NOW) == local(BERLIN, 2024, 1, 7)
    assert parse_point("-1wStart", BERLIN, NOW, week_start_day=1) == local(BERLIN, 2024, 1, 8)
    assert parse_point("dEnd", BERLIN, NOW) == local(BERLIN, 2024, 1, 17, 23, 59, 59, 999999)
    assert parse_point("2024-01-05", BERLIN, NOW) == local(BERLIN, 2024, 1, 5)
    assert parse_point("2021-1-1", BERLIN, NOW) == local(BERLIN, 2021, 1, 1)
    assert parse_point("2024-01-05T10:00:00Z", BERLIN, NOW) == dt.datetime(2024, 1, 5, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a date"):
        parse_point("yesterday", BERLIN, NOW)


# --------------------------------------------------------------------------------------------------
# DST


def test_dst_day_buckets_are_local_midnights_with_a_23_and_a_25_hour_day() -> None:
    spring = resolve("2024-03-30", "2024-04-01")
    assert spring.bucket_starts() == [local(BERLIN, 2024, 3, d) for d in (30, 31)] + [
        local(BERLIN, 2024, 4, 1)
    ]
    starts = spring.bucket_starts()
    assert [hours_between(a, b) for a, b in pairwise(starts)] == [24, 23]
    autumn = resolve("2024-10-26", "2024-10-28")
    starts = autumn.bucket_starts()
    assert [s.hour for s in starts] == [0, 0, 0]
    assert [hours_between(a, b) for a, b in pairwise(starts)] == [24, 25]
    assert autumn.days() == ["2024-10-26", "2024-10-27", "2024-10-28"]
    assert autumn.sql_bounds() == ("2024-10-26 00:00:00.000000", "2024-10-28 23:59:59.999999")


def test_dst_new_york_day_and_week_buckets() -> None:
    days = resolve("2024-03-09", "2024-03-11", tz=NEW_YORK)
    assert [s.hour for s in days.bucket_starts()] == [0, 0, 0]
    starts = days.bucket_starts()
    assert hours_between(starts[1], starts[2]) == 23
    weeks = resolve("2024-10-27", "2024-11-16", tz=NEW_YORK, interval="week")
    assert weeks.days() == ["2024-10-27", "2024-11-03", "2024-11-10"]
    assert all(s.hour == 0 for s in weeks.bucket_starts())
    months = resolve("2024-02-15", "2024-04-15", tz=NEW_YORK, interval="month")
    assert [instant(s) for s in months.bucket_starts()] == [
        dt.datetime(2024, 2, 1, 5, tzinfo=UTC),
        dt.datetime(2024, 3, 1, 5, tzinfo=UTC),
        dt.datetime(2024, 4, 1, 4, tzinfo=UTC),
    ]


def test_dst_hourly_grid_skips_the_missing_hour() -> None:
    r = resolve("2024-03-31", "2024-03-31 05:00", interval="hour", explicit_date=True)
    assert r.days() == [f"2024-03-31 {h:02d}:00:00" for h in (0, 1, 3, 4, 5)]
    starts = r.bucket_starts()
    assert all(hours_between(a, b) == 1 for a, b in pairwise(starts))


def test_dst_hourly_grid_repeats_the_fall_back_hour() -> None:
    r = resolve("2024-10-27", "2024-10-27 04:00", interval="hour", explicit_date=True)
    assert r.days() == [f"2024-10-27 {h:02d}:00:00" for h in (0, 1, 2, 2, 3, 4)]
    assert r.labels()[2:4] == ["27-Oct 02:00", "27-Oct 02:00"]
    starts = r.bucket_starts()
    assert [s.fold for s in starts] == [0, 0, 0, 1, 0, 0]
    assert all(hours_between(a, b) == 1 for a, b in pairwise(starts))
    first_two = dt.datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second_two = dt.datetime(2024, 10, 27, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert r.bucket_index(first_two) == 2
    assert r.bucket_index(second_two) == 3
    assert instant(r.bucket_start(second_two)) == dt.datetime(2024, 10, 27, 1, tzinfo=UTC)


def test_dst_relative_arithmetic_is_wall_clock_as_the_reference() -> None:
    after_spring = dt.datetime(2024, 3, 31, 12, tzinfo=UTC)  # 14:00 CEST
    assert resolve("-1d", interval="minute", now=after_spring).date_from == local(BERLIN, 2024, 3, 30, 14)
    minus_24h = resolve("-24h", interval="minute", now=after_spring).date_from
    assert minus_24h == local(BERLIN, 2024, 3, 30, 14)
    assert hours_between(minus_24h, after_spring) == 23
    after_fall = dt.datetime(2024, 10, 27, 13, tzinfo=UTC)  # 14:00 CET
    minus_24h = resolve("-24h", interval="hour", now=after_fall).date_from
    assert minus_24h == local(BERLIN, 2024, 10, 26, 14)
    assert hours_between(minus_24h, after_fall) == 25
    # A wall-clock result inside the gap moves past it (02:30 does not exist on 2024-03-31).
    in_gap = resolve("-1d", interval="minute", now=dt.datetime(2024, 4, 1, 0, 30, tzinfo=UTC)).date_from
    assert (in_gap.hour, in_gap.minute) == (3, 30)


def test_bucket_start_of_a_midnight_that_does_not_exist() -> None:
    # Sao Paulo started DST at midnight on 2018-11-04: that day starts at 01:00.
    r = resolve("2018-11-03", "2018-11-05", tz="America/Sao_Paulo")
    assert r.days() == ["2018-11-03", "2018-11-04", "2018-11-05"]
    assert [b.hour for b in r.bucket_starts()] == [0, 1, 0]
    assert r.bucket_index(dt.datetime(2018, 11, 4, 3, 0, tzinfo=UTC)) == 1  # 01:00 local
    # Pacific/Apia skipped 2011-12-30 altogether: no bucket for it.
    apia = resolve("2011-12-28", "2012-01-01", tz="Pacific/Apia")
    assert apia.days() == ["2011-12-28", "2011-12-29", "2011-12-31", "2012-01-01"]


# --------------------------------------------------------------------------------------------------
# Compare to previous period


def previous(
    date_from: str | None,
    date_to: str | None = None,
    *,
    compare_to: str | None = None,
    **kwargs: Any,
) -> tuple[QueryDateRange, QueryDateRange]:
    current = resolve(date_from, date_to, **kwargs)
    return current, compare_range(
        current, date_from=date_from, date_to=date_to, compare_to=compare_to, now=NOW
    )


def test_compare_plain_previous_period() -> None:
    current, prev = previous("2024-01-10", "2024-01-16")
    assert prev.date_from == prev.events_from == local(BERLIN, 2024, 1, 3)
    assert prev.date_to == local(BERLIN, 2024, 1, 9, 23, 59, 59, 999999)
    assert prev.bucket_count() == current.bucket_count() == 7


def test_compare_minus_7d_kludge_lines_up_week_over_week() -> None:
    current, prev = previous("-7d")
    assert prev.date_from == local(BERLIN, 2024, 1, 3)  # the same weekday as current's first day
    assert prev.date_to == local(BERLIN, 2024, 1, 10, 23, 59, 59, 999999)
    assert prev.bucket_count() == current.bucket_count() == 8
    # The default date_from is -7d: the same kludge.
    assert previous(None)[1] == prev


def test_compare_minus_14d_kludge_and_no_kludge_cases() -> None:
    current, prev = previous("-14d")
    assert prev.date_from == local(BERLIN, 2023, 12, 20)
    assert prev.date_to == local(BERLIN, 2024, 1, 3, 23, 59, 59, 999999)
    assert prev.bucket_count() == current.bucket_count() == 15
    # Not a multiple of 7: no kludge.
    _, prev = previous("-3d")
    assert prev.date_from == local(BERLIN, 2024, 1, 10)
    assert prev.date_to == local(BERLIN, 2024, 1, 13, 23, 59, 59, 999999)
    # With a date_to: no kludge.
    _, prev = previous("-7d", "-1d")
    assert prev.date_from == local(BERLIN, 2024, 1, 3)
    assert prev.date_to == local(BERLIN, 2024, 1, 9, 23, 59, 59, 999999)
    # Week interval: no kludge.
    _, prev = previous("-7d", interval="week")
    assert prev.date_from == local(BERLIN, 2024, 1, 2)


def test_compare_to_minus_1y_shifts_both_bounds() -> None:
    current, prev = previous("-7d", compare_to="-1y")
    assert prev.date_from == local(BERLIN, 2023, 1, 10)
    assert prev.date_to == local(BERLIN, 2023, 1, 17, 23, 59, 59, 999999)
    assert prev.bucket_count() == current.bucket_count()
    _, week_ago = previous("-7d", compare_to="-1w")
    assert week_ago.days()[0] == "2024-01-03"


def test_compare_month_keeps_the_whole_first_month_and_bucket_count() -> None:
    current, prev = previous("-2m", interval="month")
    assert prev.events_from == local(BERLIN, 2023, 9, 1)
    assert prev.labels() == ["Sep 2023", "Oct 2023", "Nov 2023"]
    assert prev.bucket_count() == current.bucket_count()


def test_compare_hour_interval_aligns_the_time_of_day() -> None:
    current, prev = previous("-24h", interval="hour")
    assert prev.date_from == prev.events_from == local(BERLIN, 2024, 1, 15, 14)
    assert prev.date_to == local(BERLIN, 2024, 1, 16, 14, 59, 59, 999999)
    assert prev.bucket_count() == current.bucket_count() == 25
    current, prev = previous("-6h", interval="hour")  # shorter than a day: the preceding hours
    assert current.days()[0] == "2024-01-17 08:00:00"
    assert prev.days() == [f"2024-01-17 {h:02d}:00:00" for h in range(1, 8)]


def test_compare_across_dst_keeps_local_midnights() -> None:
    now = dt.datetime(2024, 4, 3, 10, tzinfo=UTC)
    current = resolve("-7d", now=now)
    prev = compare_range(current, date_from="-7d", date_to=None, compare_to=None, now=now)
    assert prev.days()[0] == "2024-03-20" and prev.days()[-1] == "2024-03-27"
    assert all(s.hour == 0 for s in prev.bucket_starts())
    assert prev.bucket_count() == current.bucket_count()


def test_compare_to_must_be_relative() -> None:
    current = resolve("-7d")
    with pytest.raises(QueryError) as info:
        compare_range(current, date_from="-7d", date_to=None, compare_to="last year", now=NOW)
    assert info.value.path == "compareFilter.compare_to"


# --------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("date_from", "date_to", "interval", "path"),
    [
        ("yesterday", None, "day", "dateRange.date_from"),
        ("2024-02-30", None, "day", "dateRange.date_from"),
        ("+7d", None, "day", "dateRange.date_from"),
        ("-7x", None, "day", "dateRange.date_from"),
        ("-7d", "soon", "day", "dateRange.date_to"),
        ("-7d", "all", "day", "dateRange.date_to"),
        ("-7d", None, "fortnight", "interval"),
        ("-7d", None, "Day", "interval"),
        ("2024-01-10", "2024-01-05", "day", "dateRange.date_from"),
        ("dStart", "-1d", "day", "dateRange.date_from"),
    ],
)
def test_errors_name_the_field(date_from: str, date_to: str | None, interval: str, path: str) -> None:
    with pytest.raises(QueryError) as info:
        resolve(date_from, date_to, interval=interval)
    assert info.value.path == path
    assert info.value.message


def test_more_than_10000_buckets_is_rejected() -> None:
    with pytest.raises(QueryError) as info:
        resolve("-30d", interval="minute")
    assert info.value.path == "interval"
    assert "interval/date combinations that would make more than 10,000 buckets" in info.value.message
    with pytest.raises(QueryError):
        resolve("2000-01-01", interval="hour")
    with pytest.raises(QueryError):
        resolve("all", interval="minute", earliest=dt.datetime(2015, 1, 1, tzinfo=UTC))
    # Just under the limit: 10,000 minute buckets.
    ok = resolve("2024-01-10 00:00", "2024-01-16 22:39", interval="minute")
    assert ok.bucket_count() == MAX_BUCKETS
    with pytest.raises(QueryError):
        resolve("2024-01-10 00:00", "2024-01-16 22:40", interval="minute")


# --------------------------------------------------------------------------------------------------
# Properties

TIMEZONES = [
    "UTC",
    BERLIN,
    NEW_YORK,
    "America/Sao_Paulo",
    "America/Santiago",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Apia",
    "Asia/Tehran",
]
RELATIVE = [
    "-7d",
    "-14d",
    "-1d",
    "-24h",
    "-48h",
    "-3h",
    "-30M",
    "dStart",
    "mStart",
    "-1mStart",
    "yStart",
    "-1w",
]
SPAN_DAYS = {"minute": 5, "hour": 200, "day": 800, "week": 800, "month": 2000}


@st.composite
def resolved_ranges(draw: st.DrawFn) -> tuple[QueryDateRange, str | None, str | None]:
    """A valid resolved range with the date_from and date_to strings it came from."""
    interval = draw(st.sampled_from(INTERVALS))
    tz = draw(st.sampled_from(TIMEZONES))
    now = draw(st.datetimes(dt.datetime(1995, 1, 1), dt.datetime(2035, 1, 1))).replace(tzinfo=UTC)
    explicit = draw(st.booleans())
    exact = draw(st.booleans())
    start_kind = draw(st.sampled_from(["relative", "absolute", "all", "default"]))
    date_from: str | None
    earliest: dt.datetime | None = None
    if start_kind == "relative":
        date_from = draw(st.sampled_from(RELATIVE))
    elif start_kind == "absolute":
        back = draw(st.integers(0, SPAN_DAYS[interval] * 24 * 60))
        date_from = (now - dt.timedelta(minutes=back)).strftime("%Y-%m-%d %H:%M")
    elif start_kind == "all":
        date_from = "all"
        earliest = now - dt.timedelta(minutes=draw(st.integers(0, SPAN_DAYS[interval] * 24 * 60)))
    else:
        date_from = None
    date_to = draw(st.sampled_from([None, None, "-1d", "dEnd", "-1h", "absolute"]))
    if date_to == "absolute":
        date_to = (now - dt.timedelta(minutes=draw(st.integers(0, 600)))).strftime("%Y-%m-%dT%H:%M:%S")
    try:
        resolved = resolve(
            date_from,
            date_to,
            interval=interval,
            tz=tz,
            week_start_day=draw(st.sampled_from([0, 1])),
            explicit_date=explicit,
            now=now,
            exact_timerange=exact,
            earliest=earliest,
        )
    except QueryError as exc:
        assume(False)
        raise AssertionError from exc  # unreachable
    return resolved, date_from, date_to


def date_ranges() -> st.SearchStrategy[QueryDateRange]:
    return resolved_ranges().map(lambda drawn: drawn[0])


@settings(max_examples=examples(300))
@given(date_ranges())
def test_bucket_grid_properties(r: QueryDateRange) -> None:
    starts = [instant(b) for b in r.bucket_starts()]
    assert starts, "a valid range has at least one bucket"
    assert all(a < b for a, b in pairwise(starts))
    for b in r.bucket_starts():
        assert instant(r.bucket_start(b)) == instant(b)
        assert b.tzinfo == zoneinfo.ZoneInfo(r.timezone)
    assert instant(r.bucket_start(r.date_from)) == starts[0]
    assert instant(r.bucket_start(r.date_to)) == starts[-1]
    assert starts[0] <= instant(r.events_from) <= instant(r.date_from) <= instant(r.date_to)
    assert len(r.days()) == len(r.labels()) == r.bucket_count() == len(starts) <= MAX_BUCKETS
    assert r.bucket_index(r.date_from) == 0 and r.bucket_index(r.date_to) == len(starts) - 1
    low, high = r.sql_bounds()
    assert low <= high or r.interval in ("minute", "hour")  # a fall-back hour can reorder wall clocks


@settings(max_examples=examples(150))
@given(resolved_ranges(), st.sampled_from([None, None, "-1w", "-1y", "-1m", "-1d"]))
def test_compare_range_properties(
    drawn: tuple[QueryDateRange, str | None, str | None], compare_to: str | None
) -> None:
    current, date_from, date_to = drawn
    assume(current.bucket_count() < 2000)
    prev = compare_range(current, date_from=date_from, date_to=date_to, compare_to=compare_to, now=NOW)
    assert prev.bucket_count() == current.bucket_count()
    assert instant(prev.events_from) <= instant(prev.date_from) <= instant(prev.date_to)
    assert instant(prev.date_from) < instant(current.date_from)
