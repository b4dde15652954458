"""The date range of a retention query (query-engine-semantics §5.2): whole periods, exclusive end.

`date_to` is the start of the period after the (resolved) end, so the last cohort is the period
holding the end; `date_from` is the start of the period holding the given start, or `totalIntervals`
periods before `date_to` when none is given. The cohorts are the periods in between.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from dateutil.relativedelta import relativedelta

from generated.insights.v1 import query_pb2
from server.queries.common.dates import MAX_BUCKETS, TOO_MANY_BUCKETS, QueryDateRange, resolve_date_range
from server.queries.common.errors import QueryError
from server.utc import as_utc

# The engine's dates (Date32, DateTime64) hold 1900-2299.
MIN_YEAR, MAX_YEAR = 1900, 2299
_OUT_OF_RANGE = f"retention periods must fall between {MIN_YEAR} and {MAX_YEAR}"


@dataclass(frozen=True)
class RetentionRange:
    """The resolved window: events count for `date_from <= timestamp < date_to` (aware, local)."""

    date_from: dt.datetime
    date_to: dt.datetime
    grid: QueryDateRange  # its buckets are the cohorts' periods

    def starts(self) -> list[dt.datetime]:
        """The start of each cohort's period (aware, local), oldest first."""
        return self.grid.bucket_starts()


def _text(date_range: query_pb2.DateRange, name: str) -> str | None:
    if not date_range.HasField(name):  # type: ignore[arg-type]
        return None
    value = str(getattr(date_range, name)).strip()
    return value or None


def _shift(moment: dt.datetime, period: str, n: int) -> dt.datetime:
    """`moment` moved by `n` periods: elapsed hours, or calendar days, weeks and months (wall clock)."""
    tz = moment.tzinfo
    assert tz is not None
    if period == "hour":
        return (as_utc(moment) + dt.timedelta(hours=n)).astimezone(tz)
    step = {"day": relativedelta(days=n), "week": relativedelta(weeks=n), "month": relativedelta(months=n)}[
        period
    ]
    wall = moment.replace(tzinfo=None) + step
    return as_utc(wall.replace(tzinfo=tz, fold=0)).astimezone(tz)


def retention_range(
    date_range: query_pb2.DateRange,
    *,
    period: str,
    total_intervals: int,
    timezone: str,
    week_start_day: int,
    now: dt.datetime,
    earliest: dt.datetime | None,
) -> RetentionRange:
    """Resolves a retention query's dateRange. QueryError naming dateRange.date_from / date_to."""
    date_from = _text(date_range, "date_from")
    date_to = _text(date_range, "date_to")
    # The ends are parsed as every other kind parses them (§2.1-2.2). Without a date_from the start
    # follows from the end, so the end stands in for it (a default start could fall after a past end).
    base = resolve_date_range(
        date_from if date_from is not None else date_to,
        date_to,
        explicit_date=date_range.explicit_date,
        interval=period,
        timezone=timezone,
        week_start_day=week_start_day,
        now=now,
        earliest=earliest if date_from == "all" else None,
    )
    if base.date_from.year < MIN_YEAR or base.date_to.year > MAX_YEAR:
        raise QueryError(_OUT_OF_RANGE, "dateRange")
    end = base.bucket_start(_shift(base.date_to, period, 1))
    if date_from is None:
        start = base.bucket_start(_shift(end, period, -total_intervals))
    else:
        start = base.bucket_start(base.date_from)
    if start.year < MIN_YEAR or end.year > MAX_YEAR:
        raise QueryError(_OUT_OF_RANGE, "dateRange")
    last = (as_utc(end) - dt.timedelta(microseconds=1)).astimezone(end.tzinfo)
    grid = QueryDateRange(
        date_from=start,
        date_to=last,
        events_from=start,
        interval=period,
        timezone=timezone,
        week_start_day=week_start_day,
    )
    if grid.bucket_count() > MAX_BUCKETS:
        raise QueryError(TOO_MANY_BUCKETS, "retentionFilter.period")
    return RetentionRange(start, end, grid)


def epoch_us(moment: dt.datetime) -> int:
    """The instant in microseconds since the epoch (unambiguous, unlike a wall-clock time in a DST fold)."""
    return (as_utc(moment) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
