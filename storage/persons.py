"""Persons kept current by ingestion: a person row appears with its first event, and each event's
`$set` / `$set_once` / `$unset` reach its properties as if applied in event-time order, whatever
order the events arrive in. Also the one query shape that reads the current persons."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Persons of the current state, one row each: (id, properties JSON text, created_at). Rows are full
# states with a rising `version`, so the latest is argMax(..., version); created_at only ever goes
# down, so min() over all rows is the same value and stays right even if two writers raced. Merges of
# the replacing table may or may not have folded old versions yet: this shape reads the same either way
# (no FINAL needed). Embed it as a subquery; `{team_id:Int64}` is its one parameter.
CURRENT_PERSONS_SQL = (
    "SELECT id, argMax(properties, version) AS properties, min(created_at) AS created_at\n"
    "FROM persons WHERE team_id = {team_id:Int64} GROUP BY id"
)

# What an ingested batch needs to know of its persons first: whether they exist, their version and
# when they were created. Cheap columns only: most batches change nothing else.
_STATE_SQL = (
    "SELECT toUInt128(id), max(version), toUnixTimestamp64Micro(min(created_at)) FROM persons\n"
    "WHERE team_id = {team_id:Int64} AND toUInt128(id) IN {ids:Array(UInt128)} GROUP BY id"
)
# The full state of the persons a batch changes.
_FULL_SQL = (
    "SELECT toUInt128(id), argMax(properties, version), argMax(property_times, version) FROM persons\n"
    "WHERE team_id = {team_id:Int64} AND toUInt128(id) IN {ids:Array(UInt128)} GROUP BY id"
)
PERSON_WRITE_COLUMNS = ("team_id", "id", "properties", "created_at", "version", "property_times")
# Person ids per look-up statement (bound as one array parameter).
LOOKUP_CHUNK = 10_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
# A stored key without a recorded time (rows loaded as snapshots, e.g. by the demo): as if `$set`
# at the epoch, so any event's `$set` replaces it and no `$set_once` does.
UNTIMED = 0
# The value of a key an `$unset` removed: ranked like a `$set` (so an older `$set` arriving late
# cannot bring the key back) and left out of the properties text. Not valid JSON, so no value is it.
REMOVED = ""
# Keys whose presence makes a properties text worth parsing (a JSON key may also spell `$` as an
# escape, hence the last).
_UPDATE_MARKS = ("$set", "$unset", "\\u")


def set_rank(timestamp_us: int) -> int:
    """The rank of a `$set` at that time: later beats earlier, and any `$set` beats any `$set_once`."""
    return timestamp_us


def set_once_rank(timestamp_us: int) -> int:
    """The rank of a `$set_once` at that time: earlier beats later, and below every `$set` (negative)."""
    return -1 - timestamp_us


# Applying updates in event-time order gives, per key: the latest `$set` when there is one (a
# `$set_once` never replaces a present key, and a later `$set` replaces anything), else the earliest
# `$set_once`. So each key keeps the update of highest rank, and folding is a maximum: the same
# result in any arrival order, and applying an event twice changes nothing. Equal ranks (two events
# at the same microsecond) are settled by the larger value text, so the result is still one answer.
# An `$unset` is a `$set` of REMOVED. So a `$set_once` later than an `$unset` of its key does not set
# it again, where the reference (applying events one by one) would: keeping that case exact would
# mean storing every `$set_once` per key; docs/decisions.md, "Persons: $unset".
Register = tuple[int, str]  # (rank, the value as JSON text)


@dataclass
class PersonChange:
    """What a batch of events says about one person: its earliest event and its property updates."""

    created_us: int
    registers: dict[str, Register] = field(default_factory=dict)

    def add(self, timestamp_us: int, updates: tuple[dict[str, str], dict[str, str]] | None) -> None:
        """Folds in one event (its time, and its `$set_once` and `$set` values)."""
        self.created_us = min(self.created_us, timestamp_us)
        if updates is None:
            return
        once, sets = updates
        for key, value in once.items():
            _keep_higher(self.registers, key, (set_once_rank(timestamp_us), value))
        for key, value in sets.items():
            _keep_higher(self.registers, key, (set_rank(timestamp_us), value))


def _keep_higher(registers: dict[str, Register], key: str, candidate: Register) -> bool:
    current = registers.get(key)
    if current is None or candidate > current:
        registers[key] = candidate
        return True
    return False


def _value_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def may_update(properties: str) -> bool:
    """Whether a properties text can hold `$set`, `$set_once` or `$unset` (cheap: no parsing)."""
    return any(mark in properties for mark in _UPDATE_MARKS)


def _unset_keys(value: Any) -> list[str]:
    """The keys an `$unset` names: a list of names (the reference's form) or an object's keys."""
    if isinstance(value, dict):
        return list(value)
    if isinstance(value, list):
        return [key for key in value if isinstance(key, str)]
    return []


def event_updates(properties: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """The `$set_once` and `$set` objects of an event's properties text (values as JSON text), or None;
    keys of its `$unset` join the second as REMOVED (applied after `$set`, as the reference does).

    A `$set` that is not a JSON object is ignored, as the reference ignores it. Only texts that can
    hold the keys are parsed."""
    if not may_update(properties):
        return None
    try:
        parsed = json.loads(properties)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    found: list[dict[str, str]] = []
    for name in ("$set_once", "$set"):
        value = parsed.get(name)
        found.append({k: _value_text(v) for k, v in value.items()} if isinstance(value, dict) else {})
    for key in _unset_keys(parsed.get("$unset")):
        found[1][key] = REMOVED
    if not found[0] and not found[1]:
        return None
    return found[0], found[1]


def timestamp_us(value: Any) -> int:
    """Microseconds since the epoch of a datetime (naive = UTC) or of microseconds already."""
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return (aware - _EPOCH) // _US
    return int(value)


def _person_number(value: Any) -> int:
    if isinstance(value, uuid.UUID):
        return value.int
    if isinstance(value, int):
        return value
    return uuid.UUID(str(value)).int


def batch_changes(
    teams: Sequence[int], persons: Sequence[Any], timestamps: Sequence[Any], properties: Sequence[str]
) -> dict[tuple[int, int], PersonChange]:
    """Per (team, person id as a number): what these events (columns of one batch) change."""
    # The hot loop of every insert: plain dict work per event, parsing only texts that may update.
    earliest: dict[tuple[int, int], int] = {}
    updating: list[tuple[tuple[int, int], int, str]] = []
    for team, person, stamp, text in zip(teams, persons, timestamps, properties, strict=True):
        at = stamp if type(stamp) is int else timestamp_us(stamp)
        key = (team, person if type(person) is int else _person_number(person))
        known = earliest.get(key)
        if known is None or at < known:
            earliest[key] = at
        if may_update(text):
            updating.append((key, at, text))
    changes = {key: PersonChange(at) for key, at in earliest.items()}
    for key, at, text in updating:
        changes[key].add(at, event_updates(text))
    return changes


@dataclass(frozen=True)
class StoredPerson:
    """A person's current row: what a merge needs of it."""

    version: int
    created_us: int
    properties: dict[str, str] | None = None  # key -> value JSON text; None until fetched
    times: dict[str, int] | None = None  # key -> rank of the update that set it


def merge(stored: StoredPerson | None, change: PersonChange) -> tuple[int, dict[str, Register]] | None:
    """The person's new (created_us, registers) after the change, or None when nothing changes.

    `stored` must carry its properties and times when the change has registers or lowers created_at
    (the new row is a full state)."""
    if stored is None:
        return change.created_us, dict(change.registers)
    lowered = change.created_us < stored.created_us
    if not lowered and not change.registers:
        return None
    assert stored.properties is not None and stored.times is not None
    registers: dict[str, Register] = {
        key: (stored.times.get(key, UNTIMED), value) for key, value in stored.properties.items()
    }
    # Keys with a time but no value were removed: the removal keeps its rank.
    for key, rank in stored.times.items():
        registers.setdefault(key, (rank, REMOVED))
    changed = lowered
    for key, candidate in change.registers.items():
        changed = _keep_higher(registers, key, candidate) or changed
    if not changed:
        return None
    return min(change.created_us, stored.created_us), registers


def needs_full_state(stored: StoredPerson | None, change: PersonChange) -> bool:
    """Whether merging the change into this stored person needs its properties."""
    return stored is not None and (bool(change.registers) or change.created_us < stored.created_us)


def properties_text(registers: Mapping[str, Register]) -> str:
    """The properties JSON object text, keys sorted (the same text whatever the arrival order);
    removed keys left out."""
    members = (f"{_value_text(key)}:{registers[key][1]}" for key in sorted(registers) if registers[key][1] != REMOVED)
    return "{" + ",".join(members) + "}"


def parse_properties(text: str) -> dict[str, str]:
    """A stored properties text as key -> value JSON text ({} when it is not a JSON object)."""
    try:
        parsed = json.loads(text) if text else {}
    except ValueError:
        return {}
    return {k: _value_text(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}


# (sql, parameters) -> rows: a query on the client that holds the environment's lock.
Query = Callable[[str, dict[str, Any]], Sequence[Sequence[Any]]]


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def stored_states(query: Query, team: int, ids: list[int]) -> dict[int, StoredPerson]:
    """version and created_at of those of `ids` (person numbers) that the team has."""
    found: dict[int, StoredPerson] = {}
    for chunk in _chunks(ids, LOOKUP_CHUNK):
        rows = query(_STATE_SQL, {"team_id": team, "ids": chunk})
        for number, version, created in rows:
            found[int(number)] = StoredPerson(int(version), int(created))
    return found


def with_full_states(query: Query, team: int, states: dict[int, StoredPerson], ids: list[int]) -> None:
    """Adds properties and times to the states of `ids`."""
    for chunk in _chunks(ids, LOOKUP_CHUNK):
        rows = query(_FULL_SQL, {"team_id": team, "ids": chunk})
        for number, properties, times in rows:
            state = states[int(number)]
            states[int(number)] = StoredPerson(
                state.version, state.created_us, parse_properties(properties), dict(times)
            )


class KnownPersons:
    """When this process last saw each person created, so that most batches need no look-up.

    A stored created_at only ever goes down (another process may lower it, nothing raises it), so a
    value read from the store or written to it stays an upper bound. Events of a person no earlier
    than that bound and without updates cannot change the person: they are skipped unread. Bounded;
    the oldest entries are forgotten first (a forgotten person is looked up again)."""

    def __init__(self, limit: int = 100_000):
        self._limit = limit
        self._created: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def unchanged(self, key: tuple[int, int], change: PersonChange) -> bool:
        """Whether the change certainly leaves the stored person as it is."""
        if change.registers:
            return False
        with self._lock:
            known = self._created.get(key)
        return known is not None and change.created_us >= known

    def remember(self, seen: Iterable[tuple[tuple[int, int], int]]) -> None:
        """Records created_at values (µs) read from the store or written to it."""
        with self._lock:
            for key, created_us in seen:
                if key not in self._created and len(self._created) >= self._limit:
                    del self._created[next(iter(self._created))]
                self._created[key] = created_us


def person_rows(
    query: Query, changes: Mapping[tuple[int, int], PersonChange], known: KnownPersons | None = None
) -> list[list[Any]]:
    """The rows (PERSON_WRITE_COLUMNS order) that bring the changed persons up to date: the first
    row of a new person, a new version of one whose state changes; nothing for the others.

    `known` skips persons the batch cannot change, and learns what the look-ups read; the caller
    tells it about the rows once they are written (see written())."""
    rows: list[list[Any]] = []
    by_team: dict[int, list[int]] = {}
    for key, change in changes.items():
        if known is None or not known.unchanged(key, change):
            by_team.setdefault(key[0], []).append(key[1])
    for team, numbers in by_team.items():
        states = stored_states(query, team, numbers)
        if known is not None:
            known.remember(((team, n), state.created_us) for n, state in states.items())
        fetch = [n for n in numbers if needs_full_state(states.get(n), changes[(team, n)])]
        with_full_states(query, team, states, fetch)
        for number in numbers:
            stored = states.get(number)
            merged = merge(stored, changes[(team, number)])
            if merged is None:
                continue
            created_us, registers = merged
            rows.append(
                [
                    team,
                    uuid.UUID(int=number),
                    properties_text(registers),
                    _EPOCH + dt.timedelta(microseconds=created_us),
                    (stored.version + 1) if stored is not None else 1,
                    {key: rank for key, (rank, _) in registers.items()},
                ]
            )
    return rows


def written(rows: Iterable[Sequence[Any]]) -> Iterable[tuple[tuple[int, int], int]]:
    """What KnownPersons.remember needs of stored rows (PERSON_WRITE_COLUMNS order)."""
    return (((int(r[0]), r[1].int), timestamp_us(r[3])) for r in rows)
