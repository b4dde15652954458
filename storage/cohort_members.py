"""Static cohort members in the event store, where membership queries join them to events and persons.

One row per (team_id, cohort_id, person_id): a ReplacingMergeTree folds a member added twice into
one row when it merges parts, and readers use DISTINCT until then. Members are only ever added.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from typing import TypeVar

from storage.events import EventStore, check_cluster_name

TABLE = "cohort_static_members"
# Person ids per look-up or INSERT: bounded statements and bounded bound-parameter arrays.
CHUNK = 50_000

_COLUMNS_DDL = """(
    team_id Int64,
    cohort_id Int64,
    person_id UUID,
    added_at DateTime64(6, 'UTC')
)"""
_LAYOUT = "ORDER BY (team_id, cohort_id, person_id)"

_EXISTING_SQL = (
    f"SELECT DISTINCT person_id FROM {TABLE} "
    "WHERE team_id = {team_id:Int64} AND cohort_id = {cohort_id:Int64} AND has({ids:Array(UUID)}, person_id)"
)
_COUNT_SQL = f"SELECT uniqExact(person_id) FROM {TABLE} WHERE team_id = {{team_id:Int64}} AND cohort_id = {{cohort_id:Int64}}"
# The person of each distinct id: the one its latest event names.
_PERSONS_OF_SQL = (
    "SELECT distinct_id, argMax(person_id, timestamp) FROM events "
    "WHERE team_id = {team_id:Int64} AND has({ids:Array(String)}, distinct_id) GROUP BY distinct_id"
)


def ddl_statements(cluster: str | None = None) -> list[str]:
    """CREATE statements for the members table (idempotent); with a cluster, replicated local tables
    under a Distributed table of the same name, as the events table."""
    if not cluster:
        return [f"CREATE TABLE IF NOT EXISTS {TABLE} {_COLUMNS_DDL}\nENGINE = ReplacingMergeTree\n{_LAYOUT}"]
    name = check_cluster_name(cluster)
    on = f"ON CLUSTER {name}"
    return [
        f"CREATE TABLE IF NOT EXISTS {TABLE}_local {on} {_COLUMNS_DDL}\n"
        f"ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{{shard}}/{TABLE}_local', '{{replica}}')\n"
        f"{_LAYOUT}",
        f"CREATE TABLE IF NOT EXISTS {TABLE} {on} AS {TABLE}_local\n"
        f"ENGINE = Distributed({name}, currentDatabase(), {TABLE}_local, cityHash64(person_id))",
    ]


T = TypeVar("T")


def _chunks(items: Sequence[T]) -> Iterable[list[T]]:
    for start in range(0, len(items), CHUNK):
        yield list(items[start : start + CHUNK])


class CohortMembers:
    """Reads and adds the static members of cohorts (blocking calls: run them through `Blocking`)."""

    def __init__(self, store: EventStore):
        self.store = store

    def ensure_schema(self) -> None:
        """Creates the members table when it does not exist (safe on every start)."""
        with self.store.client() as client:
            for statement in ddl_statements(self.store.cluster or None):
                client.command(statement)

    def persons_of(self, team_id: int, distinct_ids: Sequence[str]) -> dict[str, uuid.UUID]:
        """The person each distinct id's latest event names, for the distinct ids that have events."""
        found: dict[str, uuid.UUID] = {}
        for chunk in _chunks(distinct_ids):
            rows = self.store.query(_PERSONS_OF_SQL, {"team_id": team_id, "ids": chunk})
            found.update({str(distinct): _as_uuid(person) for distinct, person in rows})
        return found

    def add(self, team_id: int, cohort_id: int, person_ids: Sequence[uuid.UUID], at: dt.datetime) -> int:
        """Adds the persons that are not members yet; returns how many were added."""
        added = 0
        unique = list(dict.fromkeys(person_ids))
        for chunk in _chunks(unique):
            rows = self.store.query(_EXISTING_SQL, {"team_id": team_id, "cohort_id": cohort_id, "ids": chunk})
            existing = {_as_uuid(row[0]) for row in rows}
            new = [person for person in chunk if person not in existing]
            if new:
                with self.store.client() as client:
                    client.insert(
                        TABLE,
                        [(team_id, cohort_id, person, at) for person in new],
                        column_names=["team_id", "cohort_id", "person_id", "added_at"],
                        settings={"async_insert": 0, "insert_distributed_sync": 1},
                    )
                added += len(new)
        return added

    def count(self, team_id: int, cohort_id: int) -> int:
        """Number of members of a static cohort."""
        rows = self.store.query(_COUNT_SQL, {"team_id": team_id, "cohort_id": cohort_id})
        return int(rows[0][0]) if rows else 0


def _as_uuid(value: object) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
