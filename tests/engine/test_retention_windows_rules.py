"""Retention with `timeWindowMode: 24_hour_windows` (docs/decisions.md, "Retention: 24-hour
windows"), through the SQL engine on chDB, against hand-worked counts (none comes from the oracle)."""

from __future__ import annotations

import datetime as dt

from storage.events import EventStore
from tests.engine.retention_harness import counts
from tests.engine.test_retention_rules import at, ev, retention, run

WINDOWS = {"timeWindowMode": "24_hour_windows"}


def test_day_windows_are_24_hours_from_the_first_start_event_not_calendar_days(store: EventStore) -> None:
    """p1 starts on 4 January at 20:00: a return 14 hours later (5 January) is still window 0; one
    25 hours later is window 1, and one 49 hours later window 2. Calendar days count days 1 and 2."""
    events = [ev(at(4, 20)), ev(at(5, 10)), ev(at(5, 21)), ev(at(6, 21))]
    assert counts(run(store, events, retention(**WINDOWS)).results)[0][:4] == [1, 1, 1, 0]
    assert counts(run(store, events, retention()).results)[0][:4] == [1, 1, 1, 0]
    early = [ev(at(4, 20)), ev(at(5, 10)), ev(at(6, 19, 59))]  # 14 h and 47:59 h later: windows 0 and 1
    assert counts(run(store, early, retention(**WINDOWS)).results)[0][:4] == [1, 1, 0, 0]
    assert counts(run(store, early, retention()).results)[0][:4] == [1, 1, 1, 0]


def test_a_person_is_in_one_cohort_its_first_start_event(store: EventStore) -> None:
    """Recurring retention puts p1 in the cohorts of the 4th and the 6th by calendar days; with
    24-hour windows only in the 4th's, its later start events being returns."""
    events = [ev(at(4, 12)), ev(at(6, 12))]
    calendar = counts(run(store, events, retention()).results)
    assert calendar[0][:3] == [1, 0, 1] and calendar[2][0] == 1
    windows = counts(run(store, events, retention(**WINDOWS)).results)
    assert windows[0][:3] == [1, 0, 1] and windows[2][0] == 0


def test_week_and_month_windows_are_7_and_30_days(store: EventStore) -> None:
    """Week: 6 days 23 hours after the start is window 0, 7 days window 1. Month: 29 days 23
    hours is window 0 (calendar months: month 1), 30 days window 1."""
    week = retention(period="Week", totalIntervals=3, dateRange={"date_from": "2023-12-31"}, **WINDOWS)
    assert counts(run(store, [ev(at(1, 12)), ev(at(8, 11))], week).results)[0] == [1, 0, 0]
    assert counts(run(store, [ev(at(1, 12)), ev(at(8, 12))], week).results)[0] == [1, 1, 0]
    month = {"period": "Month", "totalIntervals": 3, "dateRange": {"date_from": "2023-10-01"}}
    early = [ev(dt.datetime(2023, 11, 1, 12, tzinfo=dt.UTC)), ev(dt.datetime(2023, 12, 1, 11, tzinfo=dt.UTC))]
    assert counts(run(store, early, retention(**month, **WINDOWS)).results)[1] == [1, 0, 0]
    assert counts(run(store, early, retention(**month)).results)[1] == [1, 1, 0]
    late = [ev(dt.datetime(2023, 11, 1, 12, tzinfo=dt.UTC)), ev(dt.datetime(2023, 12, 1, 12, tzinfo=dt.UTC))]
    assert counts(run(store, late, retention(**month, **WINDOWS)).results)[1] == [1, 1, 0]


def test_minimum_occurrences_count_the_returning_events_of_one_window(store: EventStore) -> None:
    events = [ev(at(4, 20)), ev(at(5, 21)), ev(at(6, 10)), ev(at(6, 21)), ev(at(7, 10))]
    # Window 1 (5th 20:00 to 6th 20:00): two returns; window 2: two; with at least two each.
    query = retention(minimumOccurrences=2, **WINDOWS)
    assert counts(run(store, events, query).results)[0][:4] == [1, 1, 1, 0]
    query = retention(minimumOccurrences=3, **WINDOWS)
    assert counts(run(store, events, query).results)[0][:4] == [1, 0, 0, 0]
