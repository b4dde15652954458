"""Deduplication of events by (team_id, uuid) at insert time: which rows of a batch are new."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

# Stored copies of a batch's uuids are looked for among the events of the batch's own UTC days:
# `toDate(timestamp)` is the second column of the sorting key, so the engine reads only those days
# of the environment. A retry carries the same timestamp, hence the same day.
# UUIDs travel as their 128-bit numbers: the client library formats an Array(UInt128) parameter
# twice as fast as the same UUIDs as text, and no UUID objects are built for the column path.
EXISTING_SQL = (
    "SELECT DISTINCT toUInt128(uuid) FROM events\n"
    "WHERE team_id = {team_id:Int64} AND toDate(timestamp) IN {days:Array(Date)}\n"
    "  AND toUInt128(uuid) IN {uuids:Array(UInt128)}"
)
# Which of a batch's days hold any event of the environment: uuids of the other days need no look-up
# (a first load, a backfill into new days). Only asked for batches where binding the uuids costs more
# than this extra statement.
STORED_DAYS_SQL = (
    "SELECT DISTINCT toDate(timestamp) FROM events\n"
    "WHERE team_id = {team_id:Int64} AND toDate(timestamp) IN {days:Array(Date)}"
)
STORED_DAYS_FROM = 2_000
# UUIDs per look-up: keeps each statement's bound parameters small (~40 bytes per UUID).
LOOKUP_CHUNK = 10_000
_EPOCH_DAY = dt.date(1970, 1, 1)
_US_PER_DAY = 86_400_000_000

# (team_id, days, uuids as numbers) -> the numbers among them already stored on those days.
Existing = Callable[[int, list[dt.date], list[int]], set[int]]
# (team_id, days) -> the days among them on which the environment has events.
StoredDays = Callable[[int, list[dt.date]], set[dt.date]]


@dataclass(frozen=True, slots=True)
class InsertOutcome:
    """What a deduplicating insert did: rows stored, and rows skipped as already stored or repeated."""

    inserted: int
    duplicates: int


def uuid_number(value: Any) -> int:
    """The 128-bit number of a UUID given as a UUID, its number or its text (the forms inserts take)."""
    if isinstance(value, uuid.UUID):
        return value.int
    if isinstance(value, int):
        return value
    return uuid.UUID(str(value)).int


def utc_day(value: Any) -> dt.date:
    """The UTC day of a timestamp given as a datetime (naive = UTC) or microseconds since the epoch."""
    if isinstance(value, dt.datetime):
        aware = value.astimezone(dt.UTC) if value.tzinfo is not None else value
        return aware.date()
    return _EPOCH_DAY + dt.timedelta(days=int(value) // _US_PER_DAY)


def new_positions(
    teams: Sequence[int],
    uuids: Sequence[int],
    days: Sequence[dt.date],
    existing: Existing,
    stored_days: StoredDays | None = None,
) -> list[int]:
    """Positions of the rows to store: the first row of each (team, uuid) in the batch, unless the
    store already holds that uuid for the team (first write wins: later copies are dropped)."""
    first: dict[tuple[int, int], int] = {}
    for position, key in enumerate(zip(teams, uuids, strict=True)):
        first.setdefault(key, position)
    by_team: dict[int, list[int]] = {}
    for (team, _), position in first.items():
        by_team.setdefault(team, []).append(position)
    stored: set[tuple[int, int]] = set()
    for team, positions in by_team.items():
        if stored_days is not None and len(positions) >= STORED_DAYS_FROM:
            busy = stored_days(team, sorted({days[p] for p in positions}))
            positions = [p for p in positions if days[p] in busy]
        # Sorted by day, so that each look-up chunk covers few days.
        positions.sort(key=lambda p: days[p])
        for start in range(0, len(positions), LOOKUP_CHUNK):
            chunk = positions[start : start + LOOKUP_CHUNK]
            chunk_days = sorted({days[p] for p in chunk})
            found = existing(team, chunk_days, [uuids[p] for p in chunk])
            stored.update((team, u) for u in found)
    return sorted(p for key, p in first.items() if key not in stored)


class TeamLocks:
    """One lock per environment: a look-up and the insert that follows it run alone for their
    environments, so two streams carrying the same uuids cannot both find them absent."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}

    @contextmanager
    def hold(self, teams: Sequence[int]) -> Iterator[None]:
        """Holds the locks of `teams`, taken in ascending order so that two batches never deadlock."""
        with ExitStack() as stack:
            for team in sorted(set(teams)):
                with self._guard:
                    lock = self._locks.setdefault(team, threading.Lock())
                stack.enter_context(lock)
            yield
