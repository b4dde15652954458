"""Date handling of insight queries: the reference's date strings, `QueryDateRange` and compare periods.

Pure functions: no database, no clock (`now` is always passed in). See the reference notes
§2.1-2.4, §2.7, §3.2, §3.9 and §10, and docs/engine-semantics.md ("Date range").

Conventions:
- Every datetime returned is aware, in the environment time zone (`ZoneInfo`), with `fold` set for
  the repeated hour of a DST fall-back. Python compares two datetimes that share a `tzinfo` by their
  wall clock, ignoring `fold`, so compare instants with `.astimezone(datetime.UTC)` (or `bucket_index`)
  when an hour or minute grid may cross a fall-back.
- Naive datetimes given as instants (`now`, `earliest`, the `ts` of `bucket_start`) are UTC. Naive
  date *strings* ("2024-01-10 14:00") are wall-clock times in the environment time zone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from dateutil.relativedelta import relativedelta

from server.queries.common.errors import QueryError
from server.utc import as_utc

INTERVALS = ("minute", "hour", "day", "week", "month")
MAX_BUCKETS = 10_000
DEFAULT_DATE_FROM_DAYS = 7

TOO_MANY_BUCKETS = (
    f"too many buckets: interval/date combinations that would make more than {MAX_BUCKETS:,} buckets "
    "are not allowed; use a longer interval or a shorter date range"
)

_UTC = dt.UTC
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_EN_DASH = "\u2013"

# The reference grammar (§2.1): an optional "-", an optional count, a unit, an optional Start/End.
# It is always subtracted. "M" is minutes; the other upper-case units are aliases of the lower-case ones.
_REFERENCE_RELATIVE = re.compile(r"-?(?P<count>\d+)?(?P<unit>[hdwmqysHDWMQY])(?P<position>Start|End)?")
# ISO date or date-time, also non-padded ("2021-1-1"); an optional offset ("Z", "+02:00", "-0500", "+02").
_ISO = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{1,2})-(?P<day>\d{1,2})"
    r"(?:[T ](?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?)?"
    r"\s*(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)


# --------------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class _Relative:
    count: int | None  # None when the string has no number ("mStart", "d")
    unit: str  # one of h d w m q y s M
    position: str | None  # "Start", "End" or None


@dataclass(frozen=True)
class _Point:
    moment: dt.datetime  # aware, in the environment time zone
    relative: _Relative | None  # None for an absolute (ISO) input


def _zone(timezone: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {timezone!r}") from None


def _local(moment: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant in `tz` (naive = UTC), with `fold` set in a repeated hour."""
    return as_utc(moment).astimezone(tz)


def _attach(naive: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """A wall-clock time in `tz`; in a repeated hour the first occurrence, in a DST gap the gap's start."""
    return naive.replace(tzinfo=tz, fold=0)


def _normalize(moment: dt.datetime, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The same instant with a wall clock that exists (a time inside a DST gap moves past the gap)."""
    return _local(moment, tz)


def _midnight(day: dt.date, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return _attach(dt.datetime.combine(day, dt.time()), tz)


def _parse_relative(text: str) -> _Relative | None:
    match = _REFERENCE_RELATIVE.fullmatch(text)
    if match is None:
        return None
    unit = match["unit"]
    if unit != "M":
        unit = unit.lower()
    count = int(match["count"]) if match["count"] is not None else None
    return _Relative(count=count, unit=unit, position=match["position"])


def _apply_relative(local_now: dt.datetime, rel: _Relative, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """`local_now` minus the delta, with the absolute fields of Start/End set (reference §2.1 table).

    As the reference (Python arithmetic on an aware datetime), every unit is wall-clock arithmetic in
    the time zone: "-1d" keeps the clock time across a DST change and "-24h" is 24 wall-clock hours
    (23 or 25 elapsed hours across a change). A result inside a DST gap moves past the gap.
    """
    n = rel.count or 0
    delta: relativedelta
    if rel.unit == "h":
        delta = relativedelta(hours=n)
        if rel.position == "Start":
            delta += relativedelta(minute=0, second=0, microsecond=0)
        elif rel.position == "End":
            delta += relativedelta(minute=59, second=59, microsecond=999999)
    elif rel.unit == "M":
        delta = relativedelta(minutes=n)
    elif rel.unit == "s":
        delta = relativedelta(seconds=n)
    elif rel.unit == "d":
        delta = relativedelta(days=n)
        if rel.position == "Start":
            delta += relativedelta(hour=0, minute=0, second=0, microsecond=0)
        elif rel.position == "End":
            delta += relativedelta(hour=23, minute=59, second=59, microsecond=999999)
    elif rel.unit == "w":
        delta = relativedelta(weeks=n)
    elif rel.unit == "m":
        delta = relativedelta(months=n)
        if rel.position == "Start":
            delta += relativedelta(day=1)
        elif rel.position == "End":
            delta += relativedelta(day=31)  # clamped to the month's last day
    elif rel.unit == "q":
        delta = relativedelta(weeks=13 * n)
    else:  # "y"
        delta = relativedelta(years=n)
        if rel.position == "Start":
            delta += relativedelta(month=1, day=1)
        elif rel.position == "End":
            delta += relativedelta(day=31)  # as the reference: the day only, not December
    if n == 0 and rel.position is None:
        return local_now  # nothing to subtract: keep the instant (and its fold)
    shifted: dt.datetime = local_now.replace(tzinfo=None) - delta
    return _normalize(_attach(shifted, tz), tz)


def _parse_absolute(text: str, tz: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """An ISO date or date-time as an aware datetime in `tz`: naive = wall clock in `tz`, offset = converted."""
    match = _ISO.fullmatch(text)
    try:
        if match is not None:
            fraction = (match["fraction"] or "")[:6].ljust(6, "0")
            parsed = dt.datetime(
                int(match["year"]),
                int(match["month"]),
                int(match["day"]),
                int(match["hour"] or 0),
                int(match["minute"] or 0),
                int(match["second"] or 0),
                int(fraction),
            )
            offset = match["offset"]
            if offset:
                parsed = parsed.replace(tzinfo=_parse_offset(offset))
        else:
            parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return _normalize(_attach(parsed, tz), tz)
    return _local(parsed, tz)


def _parse_offset(text: str) -> dt.tzinfo:
    if text in ("Z", "z"):
        return _UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad offset {text!r}")
    return dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes))


def _truncate(moment: dt.datetime, unit: str, tz: zoneinfo.ZoneInfo, week_start_day: int = 0) -> dt.datetime:
    """The start of the `unit` (minute, hour, day, week, month) containing `moment`, in `tz`."""
    local = _local(moment, tz)
    if unit == "minute":
        return _normalize(local.replace(second=0, microsecond=0), tz)
    if unit == "hour":
        return _normalize(local.replace(minute=0, second=0, microsecond=0), tz)
    day = local.date()
    if unit == "week":
        # Sunday start: isoweekday() % 7 days back; Monday start: weekday() days back.
        back = day.isoweekday() % 7 if week_start_day == 0 else day.weekday()
        day -= dt.timedelta(days=back)
    elif unit == "month":
        day = day.replace(day=1)
    return _normalize(_midnight(day, tz), tz)


def _parse_reference_point(
    text: str, tz: zoneinfo.ZoneInfo, local_now: dt.datetime, *, always_truncate: bool
) -> _Point | None:
    """A reference date string (§2.1), or None when it is not one."""
    absolute = _parse_absolute(text, tz)
    if absolute is not None:
        return _Point(absolute, None)
    rel = _parse_relative(text)
    if rel is None:
        return None
    try:
        moment = _apply_relative(local_now, rel, tz)
    except (ValueError, OverflowError):
        return None
    if always_truncate:
        moment = _truncate(moment, "hour" if rel.unit == "h" else "day", tz)
    return _Point(moment, rel)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


# --------------------------------------------------------------------------------------------------
# QueryDateRange


@dataclass(frozen=True)
class QueryDateRange:
    """A resolved date range and its bucket grid (reference §2.2-2.4).

    `date_from` is the range start as the reference resolves it (not aligned to the interval);
    `date_to` is the inclusive end; `events_from` is the events lower bound (the reference's
    `date_from_with_adjusted_start_of_interval`). Events are counted for
    `events_from <= timestamp <= date_to`. `events_from_adjusted` records whether `events_from` was
    truncated from `date_from` (a compare period follows the same rule).
    """

    date_from: dt.datetime
    date_to: dt.datetime
    events_from: dt.datetime
    interval: str
    timezone: str
    week_start_day: int
    events_from_adjusted: bool = True

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return _zone(self.timezone)

    def bucket_start(self, ts: dt.datetime) -> dt.datetime:
        """The start of the bucket containing the instant `ts` (naive = UTC), aware in the time zone."""
        return _truncate(ts, self.interval, self.tz, self.week_start_day)

    def _starts(self) -> Iterator[dt.datetime]:
        """Bucket starts from the bucket of `date_from` onwards, unbounded, strictly increasing."""
        tz = self.tz
        first = self.bucket_start(self.date_from)
        if self.interval in ("minute", "hour"):
            # Elapsed steps, re-aligned: skips the missing hour of a spring-forward and yields the
            # repeated hour of a fall-back twice (two instants, fold 0 and 1).
            step = dt.timedelta(minutes=1) if self.interval == "minute" else dt.timedelta(hours=1)
            current = first
            while True:
                yield current
                k = 1
                while True:
                    candidate = self.bucket_start(as_utc(current) + k * step)
                    if as_utc(candidate) > as_utc(current):
                        break
                    k += 1
                current = candidate
        else:
            # Wall-clock steps from the first local midnight, with the zone attached to each.
            first_day = first.date()
            previous: dt.datetime | None = None
            i = 0
            while True:
                if self.interval == "day":
                    day = first_day + dt.timedelta(days=i)
                elif self.interval == "week":
                    day = first_day + dt.timedelta(weeks=i)
                else:
                    day = first_day + relativedelta(months=i)
                i += 1
                start = _normalize(_midnight(day, tz), tz)
                if self.interval == "day" and start.date() != day:
                    continue  # a calendar day that the zone skipped (Pacific/Apia, 2011-12-30)
                if previous is not None and as_utc(start) <= as_utc(previous):
                    continue
                previous = start
                yield start

    def _grid(self, limit: int | None = None) -> list[dt.datetime]:
        end = as_utc(self.date_to)
        out: list[dt.datetime] = []
        for start in self._starts():
            if as_utc(start) > end or (limit is not None and len(out) >= limit):
                break
            out.append(start)
        return out

    @cached_property
    def _all_values(self) -> tuple[dt.datetime, ...]:
        return tuple(self._grid())

    def bucket_starts(self) -> list[dt.datetime]:
        """The reference's `all_values`: from the aligned `date_from` while start <= `date_to`."""
        return list(self._all_values)

    def bucket_count(self) -> int:
        return len(self._all_values)

    def bucket_index(self, ts: dt.datetime) -> int | None:
        """The index in `bucket_starts()` of the bucket containing the instant `ts`, or None when outside."""
        if as_utc(ts) > as_utc(self.date_to):
            return None
        return self._index_by_instant.get(as_utc(self.bucket_start(ts)))

    @cached_property
    def _index_by_instant(self) -> dict[dt.datetime, int]:
        return {as_utc(start): index for index, start in enumerate(self._all_values)}

    def days(self) -> list[str]:
        """`YYYY-MM-DD`, or `YYYY-MM-DD HH:MM:SS` for hour and minute buckets (local wall clock)."""
        if self.interval in ("minute", "hour"):
            return [_format_datetime(b)[:19] for b in self._all_values]
        return [_format_datetime(b)[:10] for b in self._all_values]

    def labels(self) -> list[str]:
        """The reference's `format_label_date` of each bucket (§2.4)."""
        if self.interval == "week":
            first = _local(self.date_from, self.tz).date()
            last = _local(self.date_to, self.tz).date()
            return [
                _week_label(max(b.date(), first), min(b.date() + dt.timedelta(days=6), last))
                for b in self._all_values
            ]
        if self.interval == "month":
            return [f"{_MONTHS[b.month - 1]} {b.year}" for b in self._all_values]
        if self.interval == "day":
            return [f"{b.day}-{_MONTHS[b.month - 1]}-{b.year}" for b in self._all_values]
        return [f"{b.day}-{_MONTHS[b.month - 1]} {b.hour:02d}:{b.minute:02d}" for b in self._all_values]

    def sql_bounds(self) -> tuple[str, str]:
        """`events_from` and `date_to` as 'YYYY-MM-DD HH:MM:SS.ffffff' in the time zone (DateTime64(6, tz))."""
        tz = self.tz
        return _format_datetime(_local(self.events_from, tz)), _format_datetime(_local(self.date_to, tz))


def _format_datetime(moment: dt.datetime) -> str:
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}"
    )


def _week_label(first: dt.date, last: dt.date) -> str:
    if first == last:
        return f"{first.day}-{_MONTHS[first.month - 1]}-{first.year}"
    if first.year != last.year:
        return (
            f"{first.day}-{_MONTHS[first.month - 1]}-{first.year} {_EN_DASH} "
            f"{last.day}-{_MONTHS[last.month - 1]}-{last.year}"
        )
    if first.month != last.month:
        return f"{first.day}-{_MONTHS[first.month - 1]} {_EN_DASH} {last.day}-{_MONTHS[last.month - 1]}"
    return f"{first.day}{_EN_DASH}{last.day} {_MONTHS[first.month - 1]}"


def _check_bucket_count(date_range: QueryDateRange) -> None:
    if len(date_range._grid(limit=MAX_BUCKETS + 1)) > MAX_BUCKETS:
        raise QueryError(TOO_MANY_BUCKETS, "interval")


# --------------------------------------------------------------------------------------------------
# Resolution


def resolve_date_range(
    date_from: str | None,
    date_to: str | None,
    *,
    explicit_date: bool,
    interval: str,
    timezone: str,
    week_start_day: int,
    now: dt.datetime,
    exact_timerange: bool = False,
    earliest: dt.datetime | None = None,
) -> QueryDateRange:
    """Resolve a query's `dateRange` as the reference's `QueryDateRange` (§2.1-2.2, §3.2).

    `exact_timerange` is BoldNumber's: the relative `date_from` is not truncated and a missing
    `date_to` is exactly `now`. `earliest` is the environment's first event, for `date_from="all"`
    (now when None). Raises QueryError with path "dateRange.date_from", "dateRange.date_to" or
    "interval".
    """
    if interval not in INTERVALS:
        raise QueryError(f"unknown interval {interval!r}; expected one of {', '.join(INTERVALS)}", "interval")
    if week_start_day not in (0, 1):
        raise ValueError(f"week_start_day must be 0 (Sunday) or 1 (Monday), not {week_start_day!r}")
    tz = _zone(timezone)
    local_now = _local(now, tz)
    from_text = _blank_to_none(date_from)
    to_text = _blank_to_none(date_to)

    # date_to: now by default; a given one is parsed without truncation.
    to_relative = True
    end = local_now
    if to_text is not None:
        point = _parse_reference_point(to_text, tz, local_now, always_truncate=False)
        if point is None:
            raise QueryError(_unparsable(to_text), "dateRange.date_to")
        end, to_relative = point.moment, point.relative is not None
    if not (exact_timerange and to_text is None) and not explicit_date:
        if interval not in ("hour", "minute"):
            end = _normalize(end.replace(hour=23, minute=59, second=59, microsecond=999999), tz)
        elif to_relative and interval == "hour":
            end = end.replace(minute=59, second=59, microsecond=999999)
        elif to_relative:
            end = end.replace(second=59, microsecond=999999)

    # date_from.
    from_rel: _Relative | None
    if from_text == "all":
        start = _local(earliest, tz) if earliest is not None else local_now
        if as_utc(start) > as_utc(end):
            start = end  # events after the range's end (or a date_to before the first event): one bucket
        from_rel = None
    elif from_text is None:
        start = _midnight(local_now.date() - dt.timedelta(days=DEFAULT_DATE_FROM_DAYS), tz)
        from_rel = _Relative(DEFAULT_DATE_FROM_DAYS, "d", None)
    else:
        always_truncate = not (interval == "minute" or exact_timerange)
        point = _parse_reference_point(from_text, tz, local_now, always_truncate=always_truncate)
        if point is None:
            raise QueryError(_unparsable(from_text, allow_all=True), "dateRange.date_from")
        start, from_rel = point.moment, point.relative
    start = _normalize(start, tz)
    if as_utc(start) > as_utc(end):
        raise QueryError(
            f"date_from ({_format_datetime(start)[:19]}) is after date_to ({_format_datetime(end)[:19]})",
            "dateRange.date_from",
        )

    # The events lower bound (`date_from_with_adjusted_start_of_interval`).
    adjusted = not (
        exact_timerange
        or explicit_date
        or (interval in ("hour", "minute") and from_rel is not None)
        or (interval == "day" and from_rel is not None and from_rel.unit == "h")
    )
    result = QueryDateRange(
        date_from=start,
        date_to=end,
        events_from=_events_from(start, interval, tz) if adjusted else start,
        interval=interval,
        timezone=timezone,
        week_start_day=week_start_day,
        events_from_adjusted=adjusted,
    )
    _check_bucket_count(result)
    return result


def _events_from(start: dt.datetime, interval: str, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    """The truncated events lower bound: week → the start of the *day* (the first week is partial)."""
    return _normalize(_truncate(start, "day" if interval == "week" else interval, tz), tz)


def _unparsable(text: str, *, allow_all: bool = False) -> str:
    also = ', or "all"' if allow_all else ""
    return (
        f"not a date: {text!r} (use an ISO date or date-time such as 2024-01-31 or 2024-01-31T14:00:00, "
        f"or a relative date such as -7d, -24h, -1mStart, dStart{also})"
    )


# --------------------------------------------------------------------------------------------------
# Compare to previous period


def compare_range(
    current: QueryDateRange,
    *,
    date_from: str | None,
    date_to: str | None,
    compare_to: str | None,
    now: dt.datetime,
) -> QueryDateRange:
    """The range of a `compareFilter` (§2.7): the previous period, or `current` shifted by `compare_to`.

    `date_from`/`date_to` are the query's strings (they decide the -Nd kludge). The result has the
    same number of buckets as `current`: when the shifted period would have another count, its
    `date_to` is moved to the end of its bucket number `current.bucket_count()`. `now` is accepted for
    symmetry with `resolve_date_range`; the previous period depends only on `current`.
    """
    del now  # the previous period is derived from the resolved current range
    tz = current.tz
    shift_text = _blank_to_none(compare_to)
    if shift_text is not None:
        rel = _parse_relative(shift_text)
        if rel is None:
            raise QueryError(
                f"not a relative date: {shift_text!r} (use e.g. -1d, -1w, -1m, -1y)",
                "compareFilter.compare_to",
            )
        try:
            prev_from = _apply_relative(_local(current.date_from, tz), rel, tz)
            prev_to = _apply_relative(_local(current.date_to, tz), rel, tz)
        except (ValueError, OverflowError):
            raise QueryError(
                f"compare_to {shift_text!r} is out of range", "compareFilter.compare_to"
            ) from None
    else:
        prev_from, prev_to = _previous_period(current, _blank_to_none(date_from), _blank_to_none(date_to))
    previous = dataclasses.replace(
        current,
        date_from=prev_from,
        date_to=prev_to,
        events_from=_events_from(prev_from, current.interval, tz)
        if current.events_from_adjusted
        else prev_from,
    )
    return _with_bucket_count(previous, current.bucket_count())


def _previous_period(
    current: QueryDateRange, date_from: str | None, date_to: str | None
) -> tuple[dt.datetime, dt.datetime]:
    """`get_compare_period_dates`: prev_from = date_from - diff, prev_to = prev_from + diff, clock-aligned."""
    tz = current.tz
    start, end = _local(current.date_from, tz), _local(current.date_to, tz)
    if current.interval == "minute" or (
        current.interval == "hour" and as_utc(end) - as_utc(start) < dt.timedelta(days=1)
    ):
        # Sub-day ranges: the immediately preceding span of elapsed time (hour: from the start of its hour).
        elapsed = as_utc(end) - as_utc(start)
        prev_from = _local(as_utc(start) - elapsed, tz)
        if as_utc(current.bucket_start(prev_from)) >= as_utc(current.bucket_start(start)):
            # A range within one bucket: the previous period starts one interval earlier.
            step = dt.timedelta(minutes=1) if current.interval == "minute" else dt.timedelta(hours=1)
            prev_from = _local(as_utc(start) - step, tz)
        if current.interval == "hour":
            prev_from = _truncate(prev_from, "hour", tz)
        return _normalize(prev_from, tz), _local(as_utc(prev_from) + elapsed, tz)
    # Day, week, month (and hour over a day or more): wall-clock arithmetic, keeping the clock times
    # of the current bounds, so a DST change in either period does not shift the buckets.
    from_wall, to_wall = start.replace(tzinfo=None), end.replace(tzinfo=None)
    diff = to_wall - from_wall
    prev_from_wall = dt.datetime.combine((from_wall - diff).date(), from_wall.time())
    if prev_from_wall >= from_wall:  # an explicit range shorter than a day
        prev_from_wall -= dt.timedelta(days=1)
    rel = (
        _parse_relative(date_from) if date_from is not None else _Relative(DEFAULT_DATE_FROM_DAYS, "d", None)
    )
    if (
        current.interval == "day"
        and date_to is None
        and rel is not None
        and rel.unit == "d"
        and rel.count
        and rel.count % 7 == 0
    ):
        # The reference's kludge: "-7d" spans 8 days, so week-over-week starts one day later.
        prev_from_wall += dt.timedelta(days=1)
    prev_to_wall = prev_from_wall + diff
    return _normalize(_attach(prev_from_wall, tz), tz), _normalize(_attach(prev_to_wall, tz), tz)


def _with_bucket_count(date_range: QueryDateRange, count: int) -> QueryDateRange:
    """`date_range` with `count` buckets: else its date_to moves to the end of bucket number `count`."""
    in_order = as_utc(date_range.date_from) <= as_utc(date_range.date_to)
    if count < 1 or (in_order and len(date_range._grid(limit=count + 1)) == count):
        return date_range
    starts: list[dt.datetime] = []
    for start in date_range._starts():
        starts.append(start)
        if len(starts) > count:
            break
    new_to = _local(as_utc(starts[count]) - dt.timedelta(microseconds=1), date_range.tz)
    return dataclasses.replace(date_range, date_to=new_to)


# --------------------------------------------------------------------------------------------------
# Instants outside a date range


def parse_point(value: str, timezone: str, now: dt.datetime) -> dt.datetime:
    """The instant a date string names, as an aware datetime. Raises ValueError.

    The grammar of query date ranges (§2.1), so that "-1q" or "-1mStart" means the same in a query,
    an insight list filter and an alert check filter: a relative string is always subtracted from
    `now` in the time zone ("+1d" is not a date), "Start"/"End" snap as in a range, nothing is
    truncated further. A bare ISO date means its midnight in the time zone; a naive date-time is a
    wall-clock time there; non-padded dates ("2021-1-1") are accepted.
    """
    tz = _zone(timezone)
    point = _parse_reference_point(value.strip(), tz, _local(now, tz), always_truncate=False)
    if point is None:
        raise ValueError(f"not a date: {value!r} (use ISO 8601 or a relative date such as -7d)")
    return point.moment
