"""Naive datetimes mean UTC; aware ones keep their instant."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from server import utc


def test_naive_is_taken_as_utc_and_aware_keeps_its_instant() -> None:
    naive = dt.datetime(2024, 3, 31, 1, 30)
    assert utc.as_utc(naive) == dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC)
    berlin = dt.datetime(2024, 3, 31, 3, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # just after the DST jump
    assert utc.as_utc(berlin) == dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC)
    assert utc.as_utc(berlin).tzinfo is dt.UTC
    assert utc.as_utc_or_none(None) is None
    assert utc.now().tzinfo is dt.UTC
