"""Event ingestion rules: what makes an event valid, and appending valid ones to the store in batches
(each event once: the store skips a uuid the environment already holds)."""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from server import utc
from server.errors import InvalidArgument
from server.meter import Counts
from server.principal import Principal
from storage.elements import MAX_ELEMENTS_CHAIN_BYTES
from storage.events import EventRow, EventStore

# Limits on the identifying texts of an event (the reference's event and distinct_id limits).
MAX_TEXT = 200
EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# Clocks drift: an event up to a day ahead of ours is accepted.
FUTURE_SLACK = dt.timedelta(days=1)
# How many rejections a response lists (the counts are always complete).
MAX_REJECTIONS = 1000
# Valid events buffered before one INSERT: bounds memory while keeping parts large.
BATCH_SIZE = 10_000
# Events in one acknowledged batch (IngestEventBatches): one batch is one INSERT.
MAX_BATCH_EVENTS = 10_000
# person_id = uuid5(PERSON_NAMESPACE, "<environment_id>:<distinct_id>") when a caller gives none.
PERSON_NAMESPACE = uuid.UUID("6f1c3b8e-8f0e-5f2a-9d3c-7a1e2b4c5d60")


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """An event as a caller sent it, before validation (texts as given, empty = absent)."""

    event: str
    distinct_id: str
    timestamp: dt.datetime | None
    properties: str = ""
    uuid: str = ""
    person_id: str = ""
    person_properties: str = ""
    elements_chain: str = ""


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event that was not stored: its position in the stream (or file line) and why."""

    index: int
    reason: str


class Rejected(ValueError):
    """Raised by `validate` with the reason an event cannot be stored."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def person_id_for(environment_id: int, distinct_id: str) -> uuid.UUID:
    """The person of a distinct_id when the caller names none: stable per environment."""
    return uuid.uuid5(PERSON_NAMESPACE, f"{environment_id}:{distinct_id}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _text(value: str, name: str) -> str:
    if not value or not value.strip():
        raise Rejected(f"{name} is required")
    if len(value) > MAX_TEXT:
        raise Rejected(f"{name} is longer than {MAX_TEXT} characters")
    _utf8(value, name)
    return value


def _utf8(value: str, name: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected(f"{name} is not valid UTF-8 text") from None


# One decoder for every event: json.loads with parse_constant builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def _object_problem(text: str) -> str | None:
    """Why a text is not a JSON object, or None when it is one."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text"
    try:
        value = _DECODER.decode(text)
    except ValueError as exc:
        return f"is not valid JSON: {exc}"
    return None if isinstance(value, dict) else "must be a JSON object"


# Every event of a person carries the same person_properties text: check each text once.
_person_object_problem = functools.lru_cache(maxsize=4096)(_object_problem)


def _json_object(text: str, name: str) -> str:
    """The text itself when it is a JSON object ("{}" when empty): kept verbatim so numbers stay exact."""
    if not text or not text.strip():
        return "{}"
    problem = _person_object_problem(text) if name == "person_properties" else _object_problem(text)
    if problem is not None:
        raise Rejected(f"{name} {problem}")
    return text


def _elements_chain(text: str) -> str:
    """The chain as given (not parsed: the engine reads it), when it is UTF-8 and within the bound."""
    if not text:
        return ""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise Rejected("elements_chain is not valid UTF-8 text") from None
    if size > MAX_ELEMENTS_CHAIN_BYTES:
        raise Rejected(f"elements_chain is {size} bytes, more than the {MAX_ELEMENTS_CHAIN_BYTES} allowed")
    return text


def _uuid(text: str, name: str) -> uuid.UUID | None:
    if not text:
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise Rejected(f"{name} is not a valid UUID: {text[:60]!r}") from None


def validate(environment_id: int, event: IncomingEvent, now: dt.datetime) -> EventRow:
    """The row to store for a valid event; raises Rejected with the reason otherwise."""
    name = _text(event.event, "event")
    distinct_id = _text(event.distinct_id, "distinct_id")
    ts = event.timestamp
    if ts is None:
        raise Rejected("timestamp is required")
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.UTC)
    if ts < EARLIEST:
        raise Rejected(f"timestamp {ts.isoformat()} is before {EARLIEST.date().isoformat()}")
    if ts > now + FUTURE_SLACK:
        raise Rejected(f"timestamp {ts.isoformat()} is more than a day in the future")
    properties = _json_object(event.properties, "properties")
    person_properties = _json_object(event.person_properties, "person_properties")
    elements_chain = _elements_chain(event.elements_chain)
    event_uuid = _uuid(event.uuid, "uuid") or uuid.uuid4()
    person_id = _uuid(event.person_id, "person_id") or person_id_for(environment_id, distinct_id)
    return EventRow(
        team_id=environment_id,
        uuid=event_uuid,
        event=name,
        distinct_id=distinct_id,
        person_id=person_id,
        timestamp=ts.astimezone(dt.UTC),
        properties=properties,
        person_properties=person_properties,
        elements_chain=elements_chain,
    )


def validate_all(
    environment_id: int, events: Iterable[tuple[int, IncomingEvent]], now: dt.datetime | None = None
) -> tuple[list[EventRow], list[Rejection]]:
    """Valid rows and (index, reason) rejections of numbered events."""
    now = now or utc.now()
    rows: list[EventRow] = []
    rejections: list[Rejection] = []
    for index, event in events:
        try:
            rows.append(validate(environment_id, event, now))
        except Rejected as exc:
            rejections.append(Rejection(index, exc.reason))
    return rows, rejections


def _check_same_environment(environment_id: int, first: int) -> None:
    """A stream carries one environment: INVALID_ARGUMENT when a later message names another."""
    if environment_id != first:
        raise InvalidArgument(
            f"environment_id {environment_id} differs from the stream's first message "
            f"({first}): one stream carries one environment",
            field="environment_id",
        )


@dataclass
class IngestRun:
    """One ingestion (an IngestEvents stream, a file load): numbers events from 0, validates them
    and stores the valid ones in batches. Its methods block: call them through `Blocking`."""

    store: EventStore
    environment_id: int
    batch_size: int = BATCH_SIZE
    clock: Callable[[], dt.datetime] = utc.now
    accepted: int = 0
    rejected: int = 0
    # Valid events not stored because the environment already held their uuid (or the stream
    # repeated it).
    duplicates: int = 0
    rejections: list[Rejection] = field(default_factory=list)
    # The service's events by outcome (accepted, duplicate, rejected), beside this run's own numbers.
    counts: Counts | None = None
    _pending: list[EventRow] = field(default_factory=list)
    _next_index: int = 0

    def check_environment(self, environment_id: int) -> None:
        """A stream carries one environment: INVALID_ARGUMENT when a later message names another."""
        _check_same_environment(environment_id, self.environment_id)

    def add(self, events: Iterable[IncomingEvent]) -> None:
        """Validates events (numbered after the previous ones); stores full batches."""
        start = self._next_index
        numbered = list(enumerate(events, start))
        self._next_index = start + len(numbered)
        rows, rejections = validate_all(self.environment_id, numbered, self.clock())
        self.reject(rejections)
        self._pending.extend(rows)
        if len(self._pending) >= self.batch_size:
            self.flush()

    def reject(self, rejections: Iterable[Rejection]) -> None:
        """Records rejections decided outside `add` (e.g. a line a file reader could not parse)."""
        before = self.rejected
        for rejection in rejections:
            self.rejected += 1
            if len(self.rejections) < MAX_REJECTIONS:
                self.rejections.append(rejection)
        if self.counts is not None and self.rejected > before:
            self.counts.add(("rejected",), self.rejected - before)

    def flush(self) -> None:
        """Stores the buffered valid events."""
        pending, self._pending = self._pending, []
        if pending:
            outcome = self.store.insert_new_events(pending)
            self.accepted += outcome.inserted
            self.duplicates += outcome.duplicates
            _count(self.counts, outcome.inserted, outcome.duplicates, 0)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """The acknowledgement of one batch: stored, skipped as duplicates, rejected (index in the batch)."""

    accepted: int
    duplicates: int
    rejections: list[Rejection]


@dataclass
class BatchStream:
    """One IngestEventBatches stream: each batch is validated and stored on its own, and its
    outcome returns only once the store has written it. Its methods block: call them through
    `Blocking`."""

    store: EventStore
    environment_id: int
    clock: Callable[[], dt.datetime] = utc.now
    counts: Counts | None = None

    def check_environment(self, environment_id: int) -> None:
        """A stream carries one environment: INVALID_ARGUMENT when a later message names another."""
        _check_same_environment(environment_id, self.environment_id)

    def ingest(self, events: Sequence[IncomingEvent]) -> BatchOutcome:
        """Validates and stores one batch (as one INSERT); INVALID_ARGUMENT when it is too large."""
        if len(events) > MAX_BATCH_EVENTS:
            raise InvalidArgument(
                f"events: a batch holds at most {MAX_BATCH_EVENTS} events, this one {len(events)}",
                field="events",
            )
        rows, rejections = validate_all(self.environment_id, enumerate(events), self.clock())
        outcome = self.store.insert_new_events(rows)
        _count(self.counts, outcome.inserted, outcome.duplicates, len(rejections))
        return BatchOutcome(outcome.inserted, outcome.duplicates, rejections)


def _count(counts: Counts | None, accepted: int, duplicates: int, rejected: int) -> None:
    if counts is None:
        return
    for outcome, number in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
        if number:
            counts.add((outcome,), number)


class Ingestion:
    """Starts ingestion runs for callers allowed to reach the environment."""

    def __init__(self, store: EventStore, batch_size: int = BATCH_SIZE):
        self.store = store
        self.batch_size = batch_size
        # Events of every run and stream by outcome: accepted, duplicate (already stored), rejected.
        self.counts = Counts()

    def start(self, principal: Principal, environment_id: int) -> IngestRun:
        """A run for the environment; PERMISSION_DENIED when the caller's key cannot reach it."""
        env = principal.environment(environment_id)
        return IngestRun(self.store, env.id, batch_size=self.batch_size, counts=self.counts)

    def start_batches(self, principal: Principal, environment_id: int) -> BatchStream:
        """A batch stream for the environment; PERMISSION_DENIED as `start`."""
        env = principal.environment(environment_id)
        return BatchStream(self.store, env.id, counts=self.counts)
