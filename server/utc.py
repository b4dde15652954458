"""UTC instants: the service's clock, and the one rule for naive datetimes (they mean UTC)."""

from __future__ import annotations

import datetime as dt


def now() -> dt.datetime:
    """The current instant, aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """The instant in UTC. A naive datetime (SQLite hands them back) is taken as UTC already."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def as_utc_or_none(moment: dt.datetime | None) -> dt.datetime | None:
    """as_utc of an optional column."""
    return None if moment is None else as_utc(moment)
