"""When an alert is checked next, and whether it is due now (reference §7.1 and §7.6).

Pure functions: `now` is always passed in (aware; a naive datetime is taken as UTC) and every
datetime returned is aware UTC. Local wall-clock times are computed in the environment's time zone
with `zoneinfo` and converted back to UTC, so the grids follow DST: a daily check stays at 01:xx
local on both sides of a change. A wall time that does not exist (spring-forward gap) resolves to
the instant after the gap (zoneinfo's fold=0 rule, e.g. 02:30 Berlin on the last Sunday of March is
03:30 CEST); an ambiguous one (fall-back) to its first occurrence.

Grids (`next_check_at`):
- hourly: the previous next_check_at + 1 h (or now + 1 h when unset), floored to the full hour
  (UTC hour grid); if that is not after `now` (the scheduler fell behind) the next full hour after now;
- daily: tomorrow (local) at 01:MM; weekly: the next Monday (strictly after today, local) at 03:MM;
  monthly: the 1st of next month at 04:MM;
- every_15_minutes: the next quarter hour after now; real_time: now + 1 minute.
MM is a deterministic spread in [0, 59] from the alert id: the first 4 bytes of SHA-256(alert id)
modulo 60 (`minute_spread`), so alerts of one environment do not all run at the same minute but a
given alert always runs at the same minute. Without an id MM is 0.

The candidate is then pushed out of the blocked windows (to the end of the window containing it,
the next unblocked instant) and, with skip_weekend, off Saturday/Sunday (to the same wall-clock
time on the following Monday), repeating until neither applies.

Blocked windows are "HH:MM"-"HH:MM" local, half-open [start, end); start > end wraps midnight
(e.g. 22:00-06:00); start == end is malformed (`window_problems`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from zoneinfo import ZoneInfo

from server.utc import as_utc

UTC = dt.UTC


class CalculationInterval(StrEnum):
    REAL_TIME = "real_time"
    EVERY_15_MINUTES = "every_15_minutes"
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


DUE_ORDER = {
    CalculationInterval.REAL_TIME: 0,
    CalculationInterval.EVERY_15_MINUTES: 0,
    CalculationInterval.HOURLY: 0,
    CalculationInterval.DAILY: 1,
    CalculationInterval.WEEKLY: 2,
    CalculationInterval.MONTHLY: 2,
}


# The rank of an interval DUE_ORDER does not name (none today).
LATER = 2


def due_order(interval: CalculationInterval | str) -> int:
    """Sort key of due alerts: hourly (and faster) first, then daily, then the rest.

    The scheduler's claim ranks rows in SQL by the same table (scheduler.due_rank)."""
    return DUE_ORDER.get(CalculationInterval(interval), LATER)


@dataclass(frozen=True)
class BlockedWindow:
    start: str  # "HH:MM" local
    end: str  # "HH:MM" local, exclusive


def _minutes(hhmm: str) -> int:
    """Minutes after midnight of "HH:MM"; ValueError when malformed."""
    parts = hhmm.split(":")
    if len(parts) != 2 or not all(len(p) == 2 and p.isdigit() for p in parts):
        raise ValueError(f"{hhmm!r} is not HH:MM")
    h, m = int(parts[0]), int(parts[1])
    if h > 23 or m > 59:
        raise ValueError(f"{hhmm!r} is not a time of day")
    return h * 60 + m


def window_problems(
    windows: Sequence[BlockedWindow], path: str = "schedule_restriction.blocked_windows"
) -> list[tuple[str, str]]:
    """(field, message) for each malformed window; empty when all are valid."""
    problems = []
    for i, w in enumerate(windows):
        try:
            start, end = _minutes(w.start), _minutes(w.end)
        except ValueError as err:
            problems.append((f"{path}[{i}]", str(err)))
            continue
        if start == end:
            problems.append((f"{path}[{i}]", "start and end must differ"))
    return problems


def _zone(timezone: str | dt.tzinfo) -> dt.tzinfo:
    return ZoneInfo(timezone) if isinstance(timezone, str) else timezone


def _at(day: dt.date, hour: int, minute: int, tz: dt.tzinfo) -> dt.datetime:
    """The UTC instant of a local wall-clock time (gaps resolve forward, ambiguity to the first)."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).astimezone(UTC)


def minute_spread(alert_id: str | None) -> int:
    if not alert_id:
        return 0
    return int.from_bytes(hashlib.sha256(str(alert_id).encode()).digest()[:4], "big") % 60


def is_weekend(moment: dt.datetime, timezone: str | dt.tzinfo) -> bool:
    """Saturday or Sunday in the environment's time zone."""
    return as_utc(moment).astimezone(_zone(timezone)).weekday() >= 5


def _containing_window_end(
    moment: dt.datetime, tz: dt.tzinfo, windows: Sequence[BlockedWindow]
) -> dt.datetime | None:
    """The end (UTC) of a blocked window containing `moment`, or None when it is in none."""
    local = as_utc(moment).astimezone(tz)
    t = local.hour * 60 + local.minute
    today = local.date()
    for w in windows:
        start, end = _minutes(w.start), _minutes(w.end)
        if start == end:
            continue
        if start < end:
            if start <= t < end:
                return _at(today, end // 60, end % 60, tz)
        elif t >= start:
            return _at(today + dt.timedelta(days=1), end // 60, end % 60, tz)
        elif t < end:
            return _at(today, end // 60, end % 60, tz)
    return None


def in_blocked_window(
    moment: dt.datetime, timezone: str | dt.tzinfo, windows: Sequence[BlockedWindow]
) -> bool:
    return _containing_window_end(moment, _zone(timezone), windows) is not None


def unblocked_after(
    moment: dt.datetime,
    timezone: str | dt.tzinfo,
    *,
    skip_weekend: bool = False,
    blocked_windows: Sequence[BlockedWindow] = (),
) -> dt.datetime:
    """The first instant ≥ `moment` outside the blocked windows and (with skip_weekend) weekends."""
    tz = _zone(timezone)
    current = as_utc(moment).astimezone(UTC)
    for _ in range(64):  # windows and weekends settle in a few steps; the bound guards odd input
        end = _containing_window_end(current, tz, blocked_windows)
        if end is not None and end > current:
            current = end
            continue
        local = current.astimezone(tz)
        if skip_weekend and local.weekday() >= 5:
            monday = local.date() + dt.timedelta(days=7 - local.weekday())
            current = _at(monday, local.hour, local.minute, tz)
            continue
        return current
    return current


def _floor_hour(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def grid_next(
    interval: CalculationInterval | str,
    now: dt.datetime,
    previous_next: dt.datetime | None,
    timezone: str | dt.tzinfo,
    *,
    alert_id: str | None = None,
) -> dt.datetime:
    """The next check on the interval's grid, before blocked windows and weekends apply."""
    tz = _zone(timezone)
    now = as_utc(now).astimezone(UTC)
    kind = CalculationInterval(interval)
    spread = minute_spread(alert_id)
    local_today = now.astimezone(tz).date()
    if kind == CalculationInterval.HOURLY:
        base = as_utc(previous_next) if previous_next is not None else now
        candidate = _floor_hour(base + dt.timedelta(hours=1))
        if candidate <= now:
            candidate = _floor_hour(now) + dt.timedelta(hours=1)
        return candidate
    if kind == CalculationInterval.DAILY:
        return _at(local_today + dt.timedelta(days=1), 1, spread, tz)
    if kind == CalculationInterval.WEEKLY:
        return _at(local_today + dt.timedelta(days=7 - local_today.weekday()), 3, spread, tz)
    if kind == CalculationInterval.MONTHLY:
        first = (local_today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        return _at(first, 4, spread, tz)
    if kind == CalculationInterval.EVERY_15_MINUTES:
        floored = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
        return floored + dt.timedelta(minutes=15)
    return now + dt.timedelta(minutes=1)  # real_time


def next_check_at(
    interval: CalculationInterval | str,
    now: dt.datetime,
    previous_next: dt.datetime | None,
    timezone: str | dt.tzinfo,
    *,
    skip_weekend: bool = False,
    blocked_windows: Sequence[BlockedWindow] = (),
    alert_id: str | None = None,
) -> dt.datetime:
    """The alert's next check (UTC): the interval's grid, then out of blocked windows and weekends."""
    candidate = grid_next(interval, now, previous_next, timezone, alert_id=alert_id)
    return unblocked_after(candidate, timezone, skip_weekend=skip_weekend, blocked_windows=blocked_windows)


class DueStatus(StrEnum):
    DUE = "due"
    DISABLED = "disabled"
    NOT_YET = "not_yet"
    SNOOZED = "snoozed"
    WEEKEND = "weekend"  # reschedule with next_check_at
    BLOCKED_WINDOW = "blocked_window"  # reschedule to the end of the window (unblocked_after)


@dataclass(frozen=True)
class AlertFacts:
    enabled: bool
    next_check_at: dt.datetime | None
    timezone: str = "UTC"
    snoozed_until: dt.datetime | None = None
    skip_weekend: bool = False
    blocked_windows: Sequence[BlockedWindow] = field(default_factory=tuple)
    insight_deleted: bool = False


def due_status(facts: AlertFacts, now: dt.datetime) -> DueStatus:
    """Why an alert is or is not checked at `now` (§7.1); an expired snooze counts as due."""
    now = as_utc(now)
    if not facts.enabled or facts.insight_deleted:
        return DueStatus.DISABLED
    if facts.next_check_at is not None and as_utc(facts.next_check_at) > now:
        return DueStatus.NOT_YET
    if facts.snoozed_until is not None and as_utc(facts.snoozed_until) > now:
        return DueStatus.SNOOZED
    if facts.skip_weekend and is_weekend(now, facts.timezone):
        return DueStatus.WEEKEND
    if in_blocked_window(now, facts.timezone, facts.blocked_windows):
        return DueStatus.BLOCKED_WINDOW
    return DueStatus.DUE


def is_due(facts: AlertFacts, now: dt.datetime) -> bool:
    return due_status(facts, now) == DueStatus.DUE
