"""Pure-function tests of the alert schedule: grids, DST, blocked windows, weekends, due-ness (§7.1, §7.6)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.domain.alerts.schedule import (
    AlertFacts,
    BlockedWindow,
    CalculationInterval,
    DueStatus,
    due_order,
    due_status,
    in_blocked_window,
    is_due,
    is_weekend,
    minute_spread,
    next_check_at,
    unblocked_after,
    window_problems,
)

UTC = dt.UTC
BERLIN = "Europe/Berlin"
B = ZoneInfo(BERLIN)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(*args: int) -> dt.datetime:
    """A Berlin wall-clock time as a UTC instant."""
    return dt.datetime(*args, tzinfo=B).astimezone(UTC)  # type: ignore[misc]


# --------------------------------------------------------------------------------- hourly


def test_hourly_from_previous_next_check() -> None:
    assert next_check_at("hourly", utc(2025, 5, 1, 10, 2), utc(2025, 5, 1, 10, 0), BERLIN) == utc(
        2025, 5, 1, 11
    )


def test_hourly_without_previous_uses_now_on_the_hour_grid() -> None:
    assert next_check_at("hourly", utc(2025, 5, 1, 10, 17, 33), None, BERLIN) == utc(2025, 5, 1, 11)


def test_hourly_catches_up_when_behind() -> None:
    assert next_check_at("hourly", utc(2025, 5, 1, 10, 17), utc(2025, 5, 1, 3, 0), BERLIN) == utc(
        2025, 5, 1, 11
    )


def test_hourly_across_spring_forward_is_one_real_hour() -> None:
    # 01:00 UTC on 30 March 2025 is 02:00 CET -> 03:00 CEST
    prev = utc(2025, 3, 30, 0)
    nxt = next_check_at("hourly", utc(2025, 3, 30, 0, 5), prev, BERLIN)
    assert nxt == utc(2025, 3, 30, 1)
    assert nxt.astimezone(B).hour == 3


def test_hourly_across_fall_back_is_one_real_hour() -> None:
    prev = utc(2025, 10, 26, 0)  # 02:00 CEST (first)
    nxt = next_check_at("hourly", utc(2025, 10, 26, 0, 1), prev, BERLIN)
    assert nxt == utc(2025, 10, 26, 1)  # 02:00 CET (second)
    assert nxt - prev == dt.timedelta(hours=1)


# --------------------------------------------------------------------------------- daily


def test_daily_tomorrow_at_one_local() -> None:
    assert next_check_at("daily", utc(2025, 5, 1, 12), None, BERLIN) == local(2025, 5, 2, 1, 0)
    assert next_check_at("daily", utc(2025, 5, 1, 12), None, "UTC") == utc(2025, 5, 2, 1)


def test_daily_uses_the_local_date() -> None:
    # 23:30 UTC on 1 May is already 2 May in Berlin
    assert next_check_at("daily", utc(2025, 5, 1, 23, 30), None, BERLIN) == local(2025, 5, 3, 1, 0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # the day before spring forward: 30 March 01:00 CET = 00:00 UTC
        (utc(2025, 3, 29, 12), utc(2025, 3, 30, 0)),
        # spring-forward day: 31 March 01:00 CEST = 30 March 23:00 UTC
        (utc(2025, 3, 30, 12), utc(2025, 3, 30, 23)),
        # the day before fall back: 26 October 01:00 CEST = 25 October 23:00 UTC
        (utc(2025, 10, 25, 12), utc(2025, 10, 25, 23)),
        # fall-back day: 27 October 01:00 CET = 00:00 UTC
        (utc(2025, 10, 26, 12), utc(2025, 10, 27, 0)),
    ],
)
def test_daily_keeps_local_one_oclock_across_dst(now: dt.datetime, expected: dt.datetime) -> None:
    nxt = next_check_at("daily", now, None, BERLIN)
    assert nxt == expected
    assert (nxt.astimezone(B).hour, nxt.astimezone(B).minute) == (1, 0)


def test_minute_spread_is_deterministic_and_applied() -> None:
    spread = minute_spread("alert-42")
    assert spread == minute_spread("alert-42") and 0 <= spread < 60
    assert len({minute_spread(f"alert-{i}") for i in range(200)}) > 30
    assert minute_spread(None) == 0
    nxt = next_check_at("daily", utc(2025, 5, 1, 12), None, BERLIN, alert_id="alert-42")
    assert nxt == local(2025, 5, 2, 1, spread)
    nxt = next_check_at("weekly", utc(2025, 5, 1, 12), None, BERLIN, alert_id="alert-42")
    assert nxt.astimezone(B).minute == spread


# --------------------------------------------------------------------------------- weekly / monthly


def test_weekly_next_monday_three_local() -> None:
    # Wednesday 26 March -> Monday 31 March 03:00 CEST (after spring forward) = 01:00 UTC
    assert next_check_at("weekly", utc(2025, 3, 26, 12), None, BERLIN) == utc(2025, 3, 31, 1)
    # Monday itself -> the following Monday
    assert next_check_at("weekly", utc(2025, 3, 31, 10), None, BERLIN) == local(2025, 4, 7, 3, 0)
    # Sunday 26 October (fall back) -> Monday 27 October 03:00 CET = 02:00 UTC
    assert next_check_at("weekly", utc(2025, 10, 26, 12), None, BERLIN) == utc(2025, 10, 27, 2)


def test_monthly_first_of_next_month_four_local() -> None:
    assert next_check_at("monthly", utc(2025, 3, 15, 12), None, BERLIN) == utc(2025, 4, 1, 2)  # CEST
    assert next_check_at("monthly", utc(2025, 10, 15, 12), None, BERLIN) == utc(2025, 11, 1, 3)  # CET
    assert next_check_at("monthly", utc(2025, 12, 31, 12), None, BERLIN) == local(2026, 1, 1, 4, 0)
    assert next_check_at("monthly", utc(2025, 1, 31, 12), None, BERLIN) == local(2025, 2, 1, 4, 0)
    # 31 January 23:30 UTC is already 1 February in Berlin -> 1 March
    assert next_check_at("monthly", utc(2025, 1, 31, 23, 30), None, BERLIN) == local(2025, 3, 1, 4, 0)


def test_fast_cadences() -> None:
    assert next_check_at("every_15_minutes", utc(2025, 5, 1, 10, 7), None, BERLIN) == utc(2025, 5, 1, 10, 15)
    assert next_check_at("every_15_minutes", utc(2025, 5, 1, 10, 45), None, BERLIN) == utc(2025, 5, 1, 11)
    assert next_check_at("real_time", utc(2025, 5, 1, 10, 7), None, BERLIN) == utc(2025, 5, 1, 10, 8)


def test_due_order() -> None:
    order = sorted(["monthly", "daily", "hourly", "weekly"], key=due_order)
    assert order[:2] == ["hourly", "daily"]


# --------------------------------------------------------------------------------- blocked windows


NIGHT = BlockedWindow("22:00", "06:00")
LUNCH = BlockedWindow("12:00", "13:30")


@pytest.mark.parametrize(
    ("hour", "minute", "blocked"),
    [
        (21, 59, False),
        (22, 0, True),
        (23, 30, True),
        (0, 0, True),
        (5, 59, True),
        (6, 0, False),
        (11, 59, False),
        (12, 0, True),
        (13, 29, True),
        (13, 30, False),
    ],
)
def test_in_blocked_window_half_open_and_wrapping(hour: int, minute: int, blocked: bool) -> None:
    assert in_blocked_window(local(2025, 5, 1, hour, minute), BERLIN, [NIGHT, LUNCH]) is blocked


def test_blocked_window_uses_local_time() -> None:
    # 21:30 UTC is 23:30 CEST: blocked in Berlin, not in UTC
    assert in_blocked_window(utc(2025, 5, 1, 21, 30), BERLIN, [NIGHT])
    assert not in_blocked_window(utc(2025, 5, 1, 21, 30), "UTC", [NIGHT])


def test_next_check_pushed_to_window_end() -> None:
    # daily 01:00 local falls in the night window -> 06:00 local
    assert next_check_at("daily", utc(2025, 5, 1, 12), None, BERLIN, blocked_windows=[NIGHT]) == local(
        2025, 5, 2, 6, 0
    )
    # hourly at 12:00 local falls in lunch -> 13:30 local
    nxt = next_check_at("hourly", local(2025, 5, 1, 11, 10), None, BERLIN, blocked_windows=[LUNCH])
    assert nxt == local(2025, 5, 1, 13, 30)


def test_wrapping_window_before_midnight_ends_next_day() -> None:
    assert unblocked_after(local(2025, 5, 1, 23, 0), BERLIN, blocked_windows=[NIGHT]) == local(
        2025, 5, 2, 6, 0
    )
    assert unblocked_after(local(2025, 5, 2, 3, 0), BERLIN, blocked_windows=[NIGHT]) == local(
        2025, 5, 2, 6, 0
    )


def test_chained_windows() -> None:
    windows = [BlockedWindow("00:00", "02:00"), BlockedWindow("02:00", "04:15")]
    nxt = next_check_at("daily", utc(2025, 5, 1, 12), None, BERLIN, blocked_windows=windows)
    assert nxt == local(2025, 5, 2, 4, 15)


def test_window_ending_in_the_spring_forward_gap() -> None:
    # 02:30 does not exist on 30 March 2025 in Berlin: the window ends at 03:30 CEST (01:30 UTC)
    window = BlockedWindow("00:30", "02:30")
    nxt = next_check_at("daily", utc(2025, 3, 29, 12), None, BERLIN, blocked_windows=[window])
    assert nxt == utc(2025, 3, 30, 1, 30)
    assert not in_blocked_window(nxt, BERLIN, [window])


def test_window_problems() -> None:
    assert window_problems([NIGHT, LUNCH]) == []
    bad = [
        BlockedWindow("25:00", "01:00"),
        BlockedWindow("9:00", "10:00"),
        BlockedWindow("10:00", "10:00"),
        BlockedWindow("10:60", "11:00"),
    ]
    assert [f for f, _ in window_problems(bad)] == [
        f"schedule_restriction.blocked_windows[{i}]" for i in range(4)
    ]


# --------------------------------------------------------------------------------- weekends


def test_is_weekend_in_local_time() -> None:
    # Friday 23:30 UTC is Saturday 01:30 in Berlin
    assert is_weekend(utc(2025, 5, 2, 23, 30), BERLIN)
    assert not is_weekend(utc(2025, 5, 2, 23, 30), "UTC")
    assert is_weekend(local(2025, 5, 4, 23, 59), BERLIN)
    assert not is_weekend(local(2025, 5, 5, 0, 0), BERLIN)


def test_skip_weekend_moves_to_monday_same_wall_time() -> None:
    # Friday -> Saturday 01:00 -> Monday 01:00
    nxt = next_check_at("daily", local(2025, 5, 2, 12, 0), None, BERLIN, skip_weekend=True)
    assert nxt == local(2025, 5, 5, 1, 0)
    # without skip_weekend: Saturday
    assert next_check_at("daily", local(2025, 5, 2, 12, 0), None, BERLIN) == local(2025, 5, 3, 1, 0)
    # hourly on Saturday afternoon -> Monday, same wall time
    nxt = next_check_at("hourly", local(2025, 5, 3, 15, 20), None, BERLIN, skip_weekend=True)
    assert nxt == local(2025, 5, 5, 16, 0)


def test_skip_weekend_across_the_fall_back_weekend() -> None:
    # Friday 24 Oct -> Sat 25 (CEST) -> Monday 27 Oct 01:00 CET = 00:00 UTC
    nxt = next_check_at("daily", local(2025, 10, 24, 12, 0), None, BERLIN, skip_weekend=True)
    assert nxt == utc(2025, 10, 27, 0)


def test_weekend_and_window_together() -> None:
    window = BlockedWindow("00:00", "03:00")
    nxt = next_check_at(
        "daily", local(2025, 5, 2, 12, 0), None, BERLIN, skip_weekend=True, blocked_windows=[window]
    )
    assert nxt == local(2025, 5, 5, 3, 0)
    # a window wrapping into Saturday from Friday night ends on Saturday -> pushed on to Monday
    late = BlockedWindow("23:00", "02:00")
    nxt = unblocked_after(local(2025, 5, 2, 23, 30), BERLIN, skip_weekend=True, blocked_windows=[late])
    assert nxt == local(2025, 5, 5, 2, 0)


# --------------------------------------------------------------------------------- is_due


NOW = local(2025, 5, 1, 12, 0)  # a Thursday


def facts(**kw: object) -> AlertFacts:
    base: dict[str, object] = {
        "enabled": True,
        "next_check_at": NOW - dt.timedelta(minutes=1),
        "timezone": BERLIN,
    }
    base.update(kw)
    return AlertFacts(**base)  # type: ignore[arg-type]


def test_is_due_rules() -> None:
    assert is_due(facts(), NOW)
    assert is_due(facts(next_check_at=None), NOW)
    assert is_due(facts(next_check_at=NOW), NOW)
    assert due_status(facts(next_check_at=NOW + dt.timedelta(seconds=1)), NOW) == DueStatus.NOT_YET
    assert due_status(facts(enabled=False), NOW) == DueStatus.DISABLED
    assert due_status(facts(insight_deleted=True), NOW) == DueStatus.DISABLED
    assert due_status(facts(snoozed_until=NOW + dt.timedelta(hours=1)), NOW) == DueStatus.SNOOZED
    assert is_due(facts(snoozed_until=NOW), NOW)  # snooze expired
    assert is_due(facts(snoozed_until=NOW - dt.timedelta(hours=1)), NOW)
    assert due_status(facts(blocked_windows=(LUNCH,)), NOW) == DueStatus.BLOCKED_WINDOW
    assert is_due(facts(blocked_windows=(NIGHT,)), NOW)
    saturday = local(2025, 5, 3, 12, 0)
    assert due_status(facts(skip_weekend=True, next_check_at=None), saturday) == DueStatus.WEEKEND
    assert is_due(facts(skip_weekend=False, next_check_at=None), saturday)
    assert is_due(facts(skip_weekend=True), NOW)


def test_the_claims_sql_ranks_every_interval_as_due_order(tmp_path: Any) -> None:
    """The scheduler claims in SQL: its ranking is the one tested here, evaluated by a real database."""
    import sqlalchemy as sa

    from server.domain.alerts.scheduler import due_rank

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'rank.db'}")
    column = sa.column("interval", sa.String)
    try:
        with engine.connect() as connection:
            for interval in CalculationInterval:
                ranked = connection.execute(
                    sa.select(due_rank(column)).select_from(
                        sa.select(sa.literal(interval.value).label("interval")).subquery()
                    )
                ).scalar_one()
                assert ranked == due_order(interval), interval
    finally:
        engine.dispose()
