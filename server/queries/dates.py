"""Date strings of the reference: relative ("-7d", "-1mStart", "dStart") or ISO, in a time zone."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

from dateutil.relativedelta import relativedelta

# "-7d", "+2w", "-1mStart", "dStart", "-24h", "-30M" (minutes); the sign and count are optional.
_RELATIVE = re.compile(r"^(?P<sign>[-+]?)(?P<count>\d*)(?P<unit>[hdwmqyM])(?P<start>Start|End)?$")


def parse_point(value: str, timezone: str, now: dt.datetime, *, week_start_day: int = 0) -> dt.datetime:
    """The instant a date string names, as an aware datetime. Raises ValueError when unparsable.

    Relative strings shift `now` (in the time zone) by count units; "Start"/"End" snap to the
    start or end of that unit. A bare ISO date means its midnight in the time zone.
    """
    tz = zoneinfo.ZoneInfo(timezone)
    local_now = now.astimezone(tz)
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        count = int(match["count"] or (0 if match["start"] else 1))
        sign = -1 if match["sign"] == "-" else 1
        unit = match["unit"]
        shifted: dt.datetime = local_now + sign * _delta(unit, count)
        if match["start"] == "Start":
            return _start_of(shifted, unit, week_start_day)
        if match["start"] == "End":
            end: dt.datetime = _start_of(shifted, unit, week_start_day) + _delta(unit, 1)
            return end - dt.timedelta(microseconds=1)
        return shifted
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a date: {value!r} (use ISO 8601 or a relative date such as -7d)") from None
    return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else parsed


def _delta(unit: str, count: int) -> relativedelta:
    return {
        "M": relativedelta(minutes=count),
        "h": relativedelta(hours=count),
        "d": relativedelta(days=count),
        "w": relativedelta(weeks=count),
        "m": relativedelta(months=count),
        "q": relativedelta(months=3 * count),
        "y": relativedelta(years=count),
    }[unit]


def _start_of(moment: dt.datetime, unit: str, week_start_day: int) -> dt.datetime:
    tz = moment.tzinfo
    if unit == "M":
        naive = moment.replace(tzinfo=None, second=0, microsecond=0)
    elif unit == "h":
        naive = moment.replace(tzinfo=None, minute=0, second=0, microsecond=0)
    else:
        day = moment.replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
        if unit == "d":
            naive = day
        elif unit == "w":
            # Python weekday(): Monday=0; week_start_day: 0=Sunday, 1=Monday.
            offset = (day.weekday() + 1) % 7 if week_start_day == 0 else day.weekday()
            naive = day - dt.timedelta(days=offset)
        elif unit == "m":
            naive = day.replace(day=1)
        elif unit == "q":
            naive = day.replace(day=1, month=3 * ((day.month - 1) // 3) + 1)
        else:
            naive = day.replace(day=1, month=1)
    return naive.replace(tzinfo=tz)
