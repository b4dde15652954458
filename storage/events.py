"""The event store: ClickHouse through clickhouse-connect, embedded (chDB) or a server."""

from __future__ import annotations

import datetime as dt
import queue
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.exceptions import Error as ClickHouseConnectError
from opentelemetry.trace import Span

from server import tracing
from storage import enginereads
from storage import persons as person_upkeep
from storage.elements import ELEMENTS_COLUMNS
from storage.event_dedup import (
    EXISTING_SQL,
    STORED_DAYS_SQL,
    Existing,
    InsertOutcome,
    StoredDays,
    TeamLocks,
    new_positions,
    utc_day,
    uuid_number,
)

# A cluster name goes into DDL as an identifier, and identifiers cannot be bound parameters.
_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A server-side placeholder: {name:Type}.
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^{}]+\}")
# Rows per INSERT: large enough for few parts, small enough for bounded memory.
INSERT_BATCH = 100_000
# Every events INSERT returns only once the rows are written where readers find them: never
# buffered by the server (async_insert) nor queued by a Distributed table for later sending, so an
# acknowledgement sent after it covers stored rows and the next duplicate look-up sees them.
_INSERT_SETTINGS = {"async_insert": 0, "insert_distributed_sync": 1}
# A run id tags an engine query through the `log_comment` setting. Besides being bound as a
# parameter by progress() and kill(), it lands in the query's SETTINGS clause (the chDB backend of
# clickhouse-connect formats settings into the SQL text), so only a plain token is accepted.
_RUN_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# The engine's code for a query stopped by KILL QUERY (QUERY_WAS_CANCELLED).
QUERY_WAS_CANCELLED = 394

# Progress of every initial statement tagged with the run id (several statements may share one
# tag: their rows and bytes add up, the oldest gives the elapsed time). `is_initial_query` keeps
# the sub-queries a Distributed table sends to shards on the same node from being counted twice.
_PROGRESS_SQL = (
    "SELECT count(), sum(read_rows), sum(total_rows_approx), sum(read_bytes), max(elapsed)\n"
    "FROM system.processes\n"
    "WHERE Settings['log_comment'] = {run_id:String} AND is_initial_query"
)
_KILL_SQL = "KILL QUERY WHERE Settings['log_comment'] = {run_id:String} SYNC"


class EventRow(NamedTuple):
    """One row of `events`, in column order (a tuple, so it is inserted as is)."""

    team_id: int
    uuid: uuid.UUID
    event: str
    distinct_id: str
    person_id: uuid.UUID
    timestamp: dt.datetime  # aware
    properties: str  # JSON object text
    person_properties: str  # JSON object text
    elements_chain: str = ""  # autocapture elements, the reference's text form (see storage/elements.py)


class PersonRow(NamedTuple):
    """One row of `persons`, in column order."""

    team_id: int
    id: uuid.UUID
    properties: str  # JSON object text
    created_at: dt.datetime  # aware


EVENT_COLUMNS = EventRow._fields
PERSON_COLUMNS = PersonRow._fields


def check_run_id(run_id: str) -> str:
    """The run id when it is a plain token (letters, digits, `_.:-`, at most 128); ValueError otherwise."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}: use 1-128 letters, digits, '_', '.', ':' or '-'")
    return run_id


class QueryCancelled(Exception):
    """The engine stopped the query because it was killed (KILL QUERY: code 394,
    QUERY_WAS_CANCELLED). `run_id` is the tag the query ran under, when it had one."""

    def __init__(self, message: str, run_id: str | None = None):
        super().__init__(message)
        self.run_id = run_id


@dataclass(frozen=True)
class EngineProgress:
    """The engine's own counters for a running query (from `system.processes`)."""

    read_rows: int
    total_rows_approx: int  # 0 while the engine does not know yet
    read_bytes: int
    elapsed_seconds: float


def is_cancellation(error: BaseException) -> bool:
    """True when a clickhouse-connect error reports a killed query (code 394), on chDB or HTTP."""
    if getattr(error, "code", None) == QUERY_WAS_CANCELLED:
        return True
    text = str(error)
    return "QUERY_WAS_CANCELLED" in text or f"Code: {QUERY_WAS_CANCELLED}." in text


# Engine errors caused by the query's own values (a regular expression RE2 cannot compile, text that
# cannot be parsed as asked): the caller can fix them, so they are not internal errors.
USER_ERROR_CODES = {
    427: "CANNOT_COMPILE_REGEXP",
    6: "CANNOT_PARSE_TEXT",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
}


def user_error(error: BaseException) -> str | None:
    """The engine's name for an error the query's values caused, or None for any other error."""
    code = getattr(error, "code", None)
    if code in USER_ERROR_CODES:
        return USER_ERROR_CODES[code]
    text = str(error)
    return next((name for name in USER_ERROR_CODES.values() if f"({name})" in text), None)


def _kill_reported(names: Sequence[str], rows: Sequence[Sequence[Any]]) -> bool:
    """Whether a KILL QUERY result names a query that it stopped.

    The result has one row per matching query, `kill_status` first ('finished' once a SYNC kill
    is done, 'cant_cancel' when it cannot be). With no match the chDB backend returns a summary
    row instead (read_rows, read_bytes, elapsed_ns), so rows are not simply counted.
    """
    column = list(names).index("kill_status") if "kill_status" in names else 0
    return any(len(row) > column and str(row[column]) == "finished" for row in rows)


def check_cluster_name(cluster: str) -> str:
    """The cluster name when it is a plain identifier; ValueError otherwise."""
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"invalid ClickHouse cluster name {cluster!r}: use letters, digits and _")
    return cluster


_EVENTS_COLUMNS_DDL = (
    """(
    team_id Int64,
    uuid UUID,
    event String,
    distinct_id String,
    person_id UUID,
    timestamp DateTime64(6, 'UTC'),
    properties String,
    person_properties String,
    elements_chain String,
    created_at DateTime64(6, 'UTC') DEFAULT now64(6),
    `$session_id` String MATERIALIZED JSONExtractString(properties, '$session_id'),
    """
    + ",\n    ".join(f"{name} {definition}" for name, definition in ELEMENTS_COLUMNS)
    + """
)"""
)
# The reference's layout: the sorting key ends with the event's uuid, so that the replacing engine
# folds copies of one event together when it merges parts. That is only a backstop (merges happen
# when they happen, and queries do not read FINAL): insert_new_events keeps copies out in the first
# place. Stores created before the key held the uuid keep their plain MergeTree table (a sorting
# key cannot be extended with an existing column in place); the insert-time rule covers them too.
_EVENTS_LAYOUT = (
    "PARTITION BY toYYYYMM(timestamp)\n"
    "ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))\n"
    "SAMPLE BY cityHash64(distinct_id)"
)
# A person row is a full state; `version` rises with each change ingestion makes (see
# storage/persons.py) and `property_times` holds, per property, the rank of the update that set it,
# so that a late event is folded in as if it had come in time order.
_PERSON_ADDED_COLUMNS = (
    ("version", "UInt64 DEFAULT 0"),
    ("property_times", "Map(String, Int64)"),
)
_PERSONS_COLUMNS_DDL = (
    """(
    team_id Int64,
    id UUID,
    properties String,
    created_at DateTime64(6, 'UTC'),
    """
    + ",\n    ".join(f"{name} {definition}" for name, definition in _PERSON_ADDED_COLUMNS)
    + """
)"""
)
# Merges keep the highest version. Stores created before persons had versions keep their
# ReplacingMergeTree without one (an engine parameter cannot be added in place): merges there keep
# the last row inserted, which is also the highest version because one process writes an
# environment's persons under its lock; readers take argMax(…, version) anyway.
_PERSONS_LAYOUT = "ORDER BY (team_id, id)"


def ddl_statements(cluster: str | None = None) -> list[str]:
    """CREATE statements for `events` and `persons`, idempotent (IF NOT EXISTS).

    Without a cluster: plain tables. With one: replicated `*_local` tables on every
    node and Distributed `events`/`persons` over them, so readers and writers use the same names.
    """
    if not cluster:
        return [
            f"CREATE TABLE IF NOT EXISTS events {_EVENTS_COLUMNS_DDL}\n"
            f"ENGINE = ReplacingMergeTree\n{_EVENTS_LAYOUT}",
            f"CREATE TABLE IF NOT EXISTS persons {_PERSONS_COLUMNS_DDL}\n"
            f"ENGINE = ReplacingMergeTree(version)\n{_PERSONS_LAYOUT}",
        ]
    name = check_cluster_name(cluster)
    on = f"ON CLUSTER {name}"
    return [
        f"CREATE TABLE IF NOT EXISTS events_local {on} {_EVENTS_COLUMNS_DDL}\n"
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/events_local', '{replica}')\n"
        f"{_EVENTS_LAYOUT}",
        f"CREATE TABLE IF NOT EXISTS events {on} AS events_local\n"
        f"ENGINE = Distributed({name}, currentDatabase(), events_local, cityHash64(distinct_id))",
        f"CREATE TABLE IF NOT EXISTS persons_local {on} {_PERSONS_COLUMNS_DDL}\n"
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/persons_local', '{replica}', version)\n"
        f"{_PERSONS_LAYOUT}",
        f"CREATE TABLE IF NOT EXISTS persons {on} AS persons_local\n"
        f"ENGINE = Distributed({name}, currentDatabase(), persons_local, cityHash64(id))",
    ]


def upgrade_statements(cluster: str | None = None) -> list[str]:
    """ALTERs that bring tables created by earlier versions to today's columns, in place and
    idempotent (ADD COLUMN IF NOT EXISTS: nothing happens on a table that has them).

    Events get `elements_chain` (existing rows read '') and its derived columns (computed on read
    for parts written before, on insert after); persons get `version` (existing rows 0) and
    `property_times`. On a cluster the local tables get the definitions and the Distributed tables
    plain columns of the same types, which they read from the local tables by name.
    """
    events: list[tuple[str, str]] = [("elements_chain", "String AFTER person_properties"), *ELEMENTS_COLUMNS]
    if not cluster:
        return [
            "ALTER TABLE events " + ", ".join(f"ADD COLUMN IF NOT EXISTS {n} {d}" for n, d in events),
            "ALTER TABLE persons "
            + ", ".join(f"ADD COLUMN IF NOT EXISTS {n} {d}" for n, d in _PERSON_ADDED_COLUMNS),
        ]
    on = f"ON CLUSTER {check_cluster_name(cluster)}"

    def plain(definition: str) -> str:
        return definition.split(" MATERIALIZED ")[0].split(" DEFAULT ")[0].split(" AFTER ")[0]

    statements = []
    for local, table, columns in (
        ("events_local", "events", events),
        ("persons_local", "persons", _PERSON_ADDED_COLUMNS),
    ):
        statements.append(
            f"ALTER TABLE {local} {on} " + ", ".join(f"ADD COLUMN IF NOT EXISTS {n} {d}" for n, d in columns)
        )
        statements.append(
            f"ALTER TABLE {table} {on} "
            + ", ".join(f"ADD COLUMN IF NOT EXISTS {n} {plain(d)}" for n, d in columns)
        )
    return statements


# Event property keys read often enough to be stored as columns of their own (as the reference's
# mat_* columns): a breakdown or filter on them reads that column instead of parsing JSON per row.
DEFAULT_MATERIALIZED = (
    "$browser",
    "$os",
    "$current_url",
    "$pathname",
    "$geoip_country_code",
    "$device_type",
    "$host",
    "$referring_domain",
)
# Keys come from configuration and end up in DDL text (DDL takes no bound parameters), so only
# plain characters are allowed.
_MATERIALIZABLE = re.compile(r"^[$A-Za-z0-9_.-]{1,64}$")


def materialized_columns(keys: Iterable[str]) -> dict[str, str]:
    """Property key → column name (`mat_` + the key with other characters as '_'); refuses bad keys."""
    columns: dict[str, str] = {}
    for key in keys:
        if not _MATERIALIZABLE.match(key):
            raise ValueError(f"cannot materialize property {key!r}: use letters, digits, '$', '_', '.', '-'")
        column = "mat_" + re.sub(r"[^A-Za-z0-9_]", "_", key)
        if column in columns.values():
            raise ValueError(f"materialized properties {key!r} and another map to the same column {column}")
        columns[key] = column
    return columns


def materialized_ddl(columns: Mapping[str, str], table: str = "events", on: str = "") -> list[str]:
    """ALTERs adding each materialized property column (the same text expression the engine uses)."""
    statements = []
    for key, column in columns.items():
        expression = f"nullIf(JSONExtract(properties, '{key}', 'Nullable(String)'), '')"
        statements.append(
            f"ALTER TABLE {table}{' ' + on if on else ''} ADD COLUMN IF NOT EXISTS {column} Nullable(String) "
            f"MATERIALIZED {expression}"
        )
    return statements


def unbound_parameters(sql: str, parameters: Mapping[str, Any]) -> list[str]:
    """Parameter names that no {name:Type} placeholder of `sql` binds (they would be formatted
    into the text client-side, which we never allow)."""
    bound = set(_PLACEHOLDER.findall(sql))
    return sorted(k for k in parameters if k not in bound)


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def parse_dsn(dsn: str) -> tuple[str, str]:
    """Splits a DSN into ("chdb", absolute path) or ("http", the URL itself)."""
    if dsn.startswith("chdb://"):
        location = dsn.removeprefix("chdb://")
        if not location:
            raise ValueError("chdb DSN needs a path, e.g. chdb://./var/events")
        return "chdb", str(Path(location).resolve())
    scheme = urlparse(dsn).scheme
    if scheme in ("http", "https"):
        return "http", dsn
    raise ValueError(f"unsupported events DSN {dsn!r}: use chdb://PATH or http(s)://host:port")


class EventStore:
    """A small pool of clickhouse-connect clients on one DSN.

    One client runs one query at a time, while several clients on the same chDB path run in
    parallel, so blocking calls borrow a client from the pool for their duration.

    Beside the pool, a dedicated control client (opened on first use) serves progress() and
    kill(): they must answer while every pooled client is busy with the queries they observe.
    """

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 4,
        cluster: str = "",
        materialized: Iterable[str] = DEFAULT_MATERIALIZED,
    ):
        self.dsn = dsn
        self.kind, self.target = parse_dsn(dsn)
        self.cluster = check_cluster_name(cluster) if cluster else ""
        # Property key → column: the engine reads these columns instead of the JSON text.
        self.materialized = materialized_columns(materialized)
        self._pool_size = pool_size
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._control: Any = None
        # One client runs one statement at a time: progress and kill calls take turns on it
        # (each is short; a SYNC kill waits only for the engine to stop the query).
        self._control_lock = threading.Lock()
        # Duplicate look-up and insert run alone per environment (see insert_new_events).
        self._team_locks = TeamLocks()
        # Persons whose rows a batch of later events cannot change (see storage/persons.py).
        self._known_persons = person_upkeep.KnownPersons()

    def _connect(self, *, send_receive_timeout: int = 300) -> Any:
        if self.kind == "chdb":
            Path(self.target).mkdir(parents=True, exist_ok=True)
            enginereads.install()
            return clickhouse_connect.get_client(interface="chdb", path=self.target)
        return clickhouse_connect.get_client(
            dsn=self.target, connect_timeout=3, send_receive_timeout=send_receive_timeout
        )

    @contextmanager
    def _control_client(self) -> Iterator[Any]:
        """The control client (never one of the pool's), held for one statement."""
        with self._control_lock:
            if self._closed:
                raise ConnectionError("event store is closed")
            if self._control is None:
                self._control = self._connect(send_receive_timeout=30)
            yield self._control

    @contextmanager
    def client(self) -> Iterator[Any]:
        """Borrows a client, opening one while fewer than pool_size exist."""
        if self._closed:
            raise ConnectionError("event store is closed")
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = len(self._all) < self._pool_size
                if grow:
                    client = self._connect()
                    self._all.append(client)
            if not grow:
                client = self._idle.get()
        try:
            yield client
        finally:
            self._idle.put(client)

    def ping(self) -> None:
        """Raises unless the engine answers a trivial query."""
        with self.client() as client:
            client.query("SELECT 1")

    def ensure_schema(self) -> None:
        """Creates the tables that do not exist yet (safe to call on every start)."""
        if self.cluster:
            on = f"ON CLUSTER {self.cluster}"
            extra = materialized_ddl(self.materialized, "events_local", on) + [
                # The Distributed table reads the local tables' stored columns by name.
                f"ALTER TABLE events {on} ADD COLUMN IF NOT EXISTS {column} Nullable(String)"
                for column in self.materialized.values()
            ]
        else:
            extra = materialized_ddl(self.materialized)
        with self.client() as client:
            for statement in [
                *ddl_statements(self.cluster or None),
                *upgrade_statements(self.cluster),
                *extra,
            ]:
                client.command(statement)

    def insert_events(self, rows: Iterable[EventRow | Sequence[Any]], batch_size: int = INSERT_BATCH) -> int:
        """Inserts rows (EventRow or tuples in EVENT_COLUMNS order) in batches, skipping duplicates
        (see insert_new_events); returns the number stored."""
        return sum(self.insert_new_events(batch).inserted for batch in _batches(rows, batch_size))

    def insert_new_events(self, rows: Sequence[EventRow | Sequence[Any]]) -> InsertOutcome:
        """Stores the rows whose (team_id, uuid) the store does not hold yet, as one INSERT.

        Duplicates are a uuid repeated within `rows` (the first copy is kept) or already stored for
        the team on the same UTC day (the stored copy wins). When this returns, the engine has
        written the rows (a synchronous insert), so a caller may acknowledge them.
        """
        if not rows:
            return InsertOutcome(0, 0)
        teams = [int(row[0]) for row in rows]
        uuids = [uuid_number(row[1]) for row in rows]
        days = [utc_day(row[5]) for row in rows]
        # Environment locks first, then a client: a lock holder never waits on a client held by a
        # thread that waits for the same lock.
        with self._team_locks.hold(teams), self.client() as client:
            keep = new_positions(teams, uuids, days, *self._lookups_on(client))
            if keep:
                kept = rows if len(keep) == len(rows) else [rows[p] for p in keep]
                changes = person_upkeep.batch_changes(
                    teams=[teams[p] for p in keep],
                    persons=[row[4] for row in kept],
                    timestamps=[row[5] for row in kept],
                    properties=[row[6] for row in kept],
                )
                self._keep_persons_current(client, changes)
                client.insert("events", kept, column_names=list(EVENT_COLUMNS), settings=_INSERT_SETTINGS)
        return InsertOutcome(len(keep), len(rows) - len(keep))

    def insert_event_columns(self, columns: Sequence[Sequence[Any]]) -> int:
        """Inserts one batch given as columns in EVENT_COLUMNS order (UUIDs may be ints and
        timestamps microseconds since the epoch): the bulk path, with no per-row objects.
        Duplicates are skipped as by insert_new_events; returns the number stored."""
        if len(columns) != len(EVENT_COLUMNS):
            raise ValueError(f"expected {len(EVENT_COLUMNS)} columns, got {len(columns)}")
        count = len(columns[0])
        if not count:
            return 0
        teams = [int(team) for team in columns[0]]
        uuids = [uuid_number(value) for value in columns[1]]
        days = [utc_day(value) for value in columns[5]]
        with self._team_locks.hold(teams), self.client() as client:
            keep = new_positions(teams, uuids, days, *self._lookups_on(client))
            if keep:
                kept = columns if len(keep) == count else [[column[p] for p in keep] for column in columns]
                changes = person_upkeep.batch_changes(kept[0], kept[4], kept[5], kept[6])
                self._keep_persons_current(client, changes)
                client.insert(
                    "events",
                    list(kept),
                    column_names=list(EVENT_COLUMNS),
                    column_oriented=True,
                    settings=_INSERT_SETTINGS,
                )
        return len(keep)

    def _keep_persons_current(
        self, client: Any, changes: Mapping[tuple[int, int], person_upkeep.PersonChange]
    ) -> None:
        """Writes the person rows the batch's new events call for (see storage/persons.py).

        Runs under the environments' locks, before the events' own INSERT: a crash in between
        leaves the events unstored, so the batch is sent again, and folding its changes in once
        more changes nothing. Synchronous like the events' INSERT, for the same reason."""

        def query(sql: str, parameters: dict[str, Any]) -> Sequence[Sequence[Any]]:
            rows: Sequence[Sequence[Any]] = client.query(sql, parameters=parameters).result_rows
            return rows

        known = self._known_persons
        rows = person_upkeep.person_rows(query, changes, known)
        if rows:
            client.insert(
                "persons",
                rows,
                column_names=list(person_upkeep.PERSON_WRITE_COLUMNS),
                settings=_INSERT_SETTINGS,
            )
            known.remember(person_upkeep.written(rows))

    @staticmethod
    def _lookups_on(client: Any) -> tuple[Existing, StoredDays]:
        """The look-ups of stored uuids and of days holding events, on the client that will insert."""

        def existing(team_id: int, days: list[dt.date], uuids: list[int]) -> set[int]:
            parameters = {"team_id": team_id, "days": days, "uuids": uuids}
            result = client.query(EXISTING_SQL, parameters=parameters)
            return {int(row[0]) for row in result.result_rows}

        def stored_days(team_id: int, days: list[dt.date]) -> set[dt.date]:
            result = client.query(STORED_DAYS_SQL, parameters={"team_id": team_id, "days": days})
            return {row[0] for row in result.result_rows}

        return existing, stored_days

    def insert_persons(
        self, rows: Iterable[PersonRow | Sequence[Any]], batch_size: int = INSERT_BATCH
    ) -> int:
        """Inserts rows (PersonRow or tuples in PERSON_COLUMNS order) in batches; returns the count."""
        return self._insert("persons", PERSON_COLUMNS, rows, batch_size)

    def _insert(self, table: str, columns: Sequence[str], rows: Iterable[Any], batch_size: int) -> int:
        count = 0
        with self.client() as client:
            for batch in _batches(rows, batch_size):
                client.insert(table, batch, column_names=list(columns))
                count += len(batch)
        return count

    def query(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        read: Callable[[int], None] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Runs a query (blocking) and returns its rows; `read` is told the rows the engine read
        (when the engine says: see storage/enginereads.py).

        Every value must be bound server-side through a `{name:Type}` placeholder; a parameter
        without one is refused rather than formatted into the SQL text.

        With a `run_id` (see check_run_id) the engine query is tagged `log_comment=run_id`, so
        progress(run_id) observes it and kill(run_id) stops it; a killed query raises
        QueryCancelled.
        """
        params = dict(parameters or {})
        unbound = unbound_parameters(sql, params)
        if unbound:
            raise ValueError(f"parameters without a {{name:Type}} placeholder: {unbound}")
        engine_settings = dict(settings or {})
        if run_id is not None:
            check_run_id(run_id)
            tagged = engine_settings.setdefault("log_comment", run_id)
            if tagged != run_id:
                raise ValueError("settings['log_comment'] conflicts with run_id: pass one of them")
        with self.client() as client, self._span(sql) as span:
            try:
                result = client.query(sql, parameters=params or None, settings=engine_settings or None)
            except ClickHouseConnectError as exc:
                if is_cancellation(exc):
                    raise QueryCancelled(f"engine query was cancelled: {exc}", run_id) from exc
                raise
            if span is not None:
                span.set_attribute("db.response.returned_rows", len(result.result_rows))
            if read is not None:
                found = enginereads.rows_read(getattr(result, "summary", None), embedded=self.kind == "chdb")
                if found is not None:
                    read(found)
            return [tuple(row) for row in result.result_rows]

    @contextmanager
    def _span(self, sql: str) -> Iterator[Span | None]:
        """A CLIENT span around an engine statement while tracing is on: its text (placeholders;
        the values are bound apart and never tagged); an engine error marks it failed."""
        if not tracing.enabled():
            yield None
            return
        with tracing.tracer().start_as_current_span(
            "engine.query",
            kind=tracing.trace.SpanKind.CLIENT,
            attributes={"db.system": "clickhouse", "db.statement": tracing.statement(sql)},
        ) as span:
            yield span

    def progress(self, run_id: str) -> EngineProgress | None:
        """The engine's counters for the query tagged `run_id`, or None when none is running.

        Several statements under one tag: rows and bytes are summed, the largest elapsed wins.
        Reads `system.processes` on the control client (the same SQL on chDB and on a server).
        """
        check_run_id(run_id)
        with self._control_client() as client:
            rows = client.query(_PROGRESS_SQL, parameters={"run_id": run_id}).result_rows
        if not rows or not int(rows[0][0]):
            return None
        _, read_rows, total_rows, read_bytes, elapsed = rows[0]
        return EngineProgress(
            read_rows=int(read_rows or 0),
            total_rows_approx=int(total_rows or 0),
            read_bytes=int(read_bytes or 0),
            elapsed_seconds=float(elapsed or 0.0),
        )

    def kill(self, run_id: str) -> bool:
        """Stops the queries tagged `run_id` (KILL QUERY ... SYNC on the control client): True
        when a running query was killed, False when none was running (or it could not be
        cancelled). The killed query's caller gets QueryCancelled."""
        check_run_id(run_id)
        with self._control_client() as client:
            result = client.query(_KILL_SQL, parameters={"run_id": run_id})
            return _kill_reported(result.column_names, result.result_rows)

    def earliest_timestamp(self, team_id: int) -> dt.datetime | None:
        """The environment's first event time (UTC), or None when it has no events."""
        rows = self.query(
            "SELECT minOrNull(timestamp) FROM events WHERE team_id = {team_id:Int64}", {"team_id": team_id}
        )
        found: dt.datetime | None = rows[0][0] if rows else None
        if found is None:
            return None
        return found if found.tzinfo else found.replace(tzinfo=dt.UTC)

    def current_persons(self, team_id: int) -> dict[uuid.UUID, tuple[str, dt.datetime]]:
        """The environment's persons as readers see them: id -> (properties JSON text, created_at)."""
        rows = self.query(
            f"SELECT id, properties, created_at FROM ({person_upkeep.CURRENT_PERSONS_SQL})",
            {"team_id": team_id},
        )
        return {row[0]: (row[1], row[2] if row[2].tzinfo else row[2].replace(tzinfo=dt.UTC)) for row in rows}

    def count_persons(self, team_id: int) -> int:
        """Number of persons of the environment."""
        rows = self.query(f"SELECT count() FROM ({person_upkeep.CURRENT_PERSONS_SQL})", {"team_id": team_id})
        return int(rows[0][0])

    def count_events(self, team_id: int) -> int:
        """Number of events stored for the environment."""
        rows = self.query("SELECT count() FROM events WHERE team_id = {team_id:Int64}", {"team_id": team_id})
        return int(rows[0][0])

    def close(self) -> None:
        """Closes every client; an unclosed chDB connection can crash the interpreter at exit."""
        self._closed = True
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()
        with self._control_lock:
            if self._control is not None:
                self._control.close()
                self._control = None
