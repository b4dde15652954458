"""Loading event files (JSON Lines, CSV) into an environment: through a running server's
IngestEventBatches, or straight into the event store when no server answers."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from generated.insights.v1 import events_pb2
from server.cli.batch_sender import BatchSender, OutgoingBatch, SendFailed
from server.domain.ingest import MAX_BATCH_EVENTS, MAX_REJECTIONS, IncomingEvent, Rejection, validate_all
from server.transport import ClientTransport
from storage.chdb_holder import holder_of
from storage.events import EventRow, EventStore, parse_dsn

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
REQUIRED_CSV_COLUMNS = ("event", "distinct_id", "timestamp")
DEFAULT_BATCH = 10_000
# How much of the file is read to decide whether it can be parsed at all.
_HEAD_BYTES = 64 * 1024
# One IngestEventBatches message (one acknowledged batch) stays well under gRPC's default 4 MB
# message limit and within the server's events-per-batch limit.
_MESSAGE_BYTES = 2 << 20
_MESSAGE_EVENTS = MAX_BATCH_EVENTS
_BOM = "\ufeff"
# A row without a uuid gets uuid5(LINE_NAMESPACE, its line number and content): loading the same
# file again (or after lines were appended) then stores nothing twice.
LINE_NAMESPACE = uuid.UUID("0b9d7a52-3c1e-5d4f-8a6b-2e7f9c1d3a50")


class FileFormatError(ValueError):
    """The file cannot be parsed at all (binary, not JSON Lines, CSV without the header): nothing is loaded."""


class TransportError(RuntimeError):
    """The server refused or failed the stream; the message says how."""


@dataclass
class LoadSummary:
    """What a load did: counts, and the first rejections with their line numbers."""

    format: str
    loaded: int = 0
    rejected: int = 0
    duplicates: int = 0  # valid rows not stored: the environment already held their uuid
    rejections: list[Rejection] = field(default_factory=list)  # index = line number
    parsed: int = 0  # rows that parsed (valid or not)

    def reject(self, items: Iterable[Rejection]) -> None:
        for item in items:
            self.rejected += 1
            if len(self.rejections) < MAX_REJECTIONS:
                self.rejections.append(item)


# ---------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    """jsonl or csv, by extension, else by sniffing; FileFormatError when the file is unusable."""
    with path.open("rb") as f:
        head = f.read(_HEAD_BYTES)
    if b"\x00" in head:
        raise FileFormatError(f"{path} looks binary (NUL bytes): expected JSON Lines or CSV")
    text = _decode_head(head, path)
    fmt = _EXTENSIONS.get(path.suffix.lower())
    first = text.lstrip()[:1]
    if fmt is None:
        fmt = "jsonl" if first in ("{", "[") else "csv"
    if not text.strip():
        return fmt
    if fmt == "jsonl":
        _check_jsonl_head(text, path)
    else:
        _check_csv_header(text, path)
    return fmt


def _decode_head(head: bytes, path: Path) -> str:
    """The head as text. Its first line must be UTF-8 (a later bad line is only a bad row)."""
    first = next((line for line in head.splitlines() if line.strip()), b"")
    try:
        first.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The read may cut a multi-byte character in two at the end of the head.
        cut = exc.reason == "unexpected end of data" and len(first) == len(head.rstrip())
        if not cut:
            raise FileFormatError(f"{path} is not UTF-8 text: expected JSON Lines or CSV") from None
    return head.decode("utf-8", errors="replace")


def _check_jsonl_head(text: str, path: Path) -> None:
    first = next((line for line in text.lstrip(_BOM).splitlines() if line.strip()), "")
    if first.lstrip().startswith("["):
        raise FileFormatError(f"{path} holds a JSON array: expected JSON Lines (one event object per line)")
    try:
        value = json.loads(first)
    except ValueError:
        raise FileFormatError(f"{path} is not JSON Lines: its first line is not JSON") from None
    if not isinstance(value, dict):
        raise FileFormatError(f"{path} is not JSON Lines: its first line is not a JSON object")


def _check_csv_header(text: str, path: Path) -> None:
    header = next(csv.reader(text.lstrip(_BOM).splitlines()[:1]), [])
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in [h.strip() for h in header]]
    if missing:
        raise FileFormatError(
            f"{path} is not an events CSV: its header lacks {', '.join(missing)} "
            f"(needs {', '.join(REQUIRED_CSV_COLUMNS)}; optional properties, uuid, person_id, person_properties, elements_chain)"
        )


Parsed = tuple[int, IncomingEvent | str]  # (line number, the event or why the line cannot be read)


def read_events(path: Path, fmt: str, progress: Callable[[int], None] | None = None) -> Iterator[Parsed]:
    """Every record of the file with its (first) line number; `progress` gets bytes read."""
    with path.open("rb") as f:
        if fmt == "jsonl":
            yield from _read_jsonl(f, progress)
        else:
            yield from _read_csv(f, progress)


def _read_jsonl(f: IO[bytes], progress: Callable[[int], None] | None) -> Iterator[Parsed]:
    for number, raw in enumerate(f, 1):
        if progress:
            progress(len(raw))
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, "line is not valid UTF-8"
            continue
        if number == 1:
            line = line.lstrip(_BOM)
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            yield number, f"not valid JSON: {exc}"
            continue
        if not isinstance(value, dict):
            yield number, "not a JSON object"
            continue
        yield number, _from_record(value, json_values=True)


def _read_csv(f: IO[bytes], progress: Callable[[int], None] | None) -> Iterator[Parsed]:
    def lines() -> Iterator[str]:
        for raw in f:
            if progress:
                progress(len(raw))
            # Undecodable bytes survive as surrogates; the row holding them is rejected below.
            yield raw.decode("utf-8", errors="surrogateescape")

    reader = csv.reader(lines())
    header = [h.strip().lstrip(_BOM) for h in next(reader, [])]
    if header:
        header[0] = header[0].lstrip(_BOM)
    consumed = reader.line_num
    while True:
        start = consumed + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            consumed = reader.line_num
            yield start, f"not valid CSV: {exc}"
            continue
        consumed = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield start, f"has {len(row)} columns, the header has {len(header)}"
            continue
        try:
            for cell in row:
                cell.encode("utf-8")
        except UnicodeEncodeError:
            yield start, "line is not valid UTF-8"
            continue
        yield start, _from_record(dict(zip(header, row, strict=True)), json_values=False)


def _from_record(record: dict[str, Any], *, json_values: bool) -> IncomingEvent | str:
    """An IncomingEvent from a JSON object or a CSV row, or why the record cannot be one."""
    texts: dict[str, str] = {}
    for key in ("event", "distinct_id", "uuid", "person_id", "elements_chain"):
        value = record.get(key)
        if value is None:
            texts[key] = ""
        elif isinstance(value, str):
            texts[key] = value
        elif key == "distinct_id" and isinstance(value, int) and not isinstance(value, bool):
            texts[key] = str(value)
        else:
            return f"{key} must be a string"
    blobs: dict[str, str] = {}
    for key in ("properties", "person_properties"):
        value = record.get(key)
        if value is None or value == "":
            blobs[key] = ""
        elif isinstance(value, str):
            blobs[key] = value
        elif json_values and isinstance(value, dict):
            blobs[key] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        else:
            return f"{key} must be a JSON object"
    timestamp = parse_timestamp(record.get("timestamp"))
    if isinstance(timestamp, str):
        return timestamp
    return IncomingEvent(
        event=texts["event"],
        distinct_id=texts["distinct_id"],
        timestamp=timestamp,
        properties=blobs["properties"],
        uuid=texts["uuid"],
        person_id=texts["person_id"],
        person_properties=blobs["person_properties"],
        elements_chain=texts["elements_chain"],
    )


def parse_timestamp(value: Any) -> dt.datetime | str | None:
    """An aware datetime from ISO 8601 text (naive = UTC), None when absent, or the reason it is bad."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        return "timestamp must be an ISO 8601 date-time text"
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return f"timestamp is not an ISO 8601 date-time: {value[:60]!r}"
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _batched(items: Iterable[Parsed], size: int) -> Iterator[list[Parsed]]:
    batch: list[Parsed] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def line_uuid(number: int, event: IncomingEvent) -> uuid.UUID:
    """The uuid of a file row that has none: from its line number and every field it carries."""
    stamp = event.timestamp.isoformat() if event.timestamp is not None else ""
    fields = (str(number), event.event, event.distinct_id, stamp, event.properties, event.person_id)
    # A chain joins in only when present: rows without one keep the ids earlier loads gave them.
    chain = (event.elements_chain,) if event.elements_chain else ()
    return uuid.uuid5(LINE_NAMESPACE, "\x1f".join((*fields, event.person_properties, *chain)))


def with_line_uuid(number: int, event: IncomingEvent) -> IncomingEvent:
    """The event, given its line's uuid when it has none (so that a reload is recognised)."""
    if event.uuid:
        return event
    return dataclasses.replace(event, uuid=str(line_uuid(number, event)))


def validated_batches(
    parsed: Iterable[Parsed], environment_id: int, summary: LoadSummary, batch_size: int
) -> Iterator[list[tuple[int, EventRow]]]:
    """Valid rows (with line numbers) batch by batch; the rest go to the summary's rejections.

    The rules are server.domain.ingest's, so a file loads the same way directly or through a server.
    """
    for batch in _batched(parsed, batch_size):
        events: list[tuple[int, IncomingEvent]] = []
        for number, item in batch:
            if isinstance(item, str):
                summary.reject([Rejection(number, item)])
            else:
                events.append((number, with_line_uuid(number, item)))
        summary.parsed += len(events)
        rows, rejections = validate_all(environment_id, events)
        summary.reject(rejections)
        # validate_all keeps the order of valid events: pair them back with their lines.
        refused = {r.index for r in rejections}
        valid_numbers = [n for n, _ in events if n not in refused]
        yield list(zip(valid_numbers, rows, strict=True))


# ---------------------------------------------------------------------------
# Transports
# ---------------------------------------------------------------------------


def client_target(listen: str) -> str:
    """Where a client reaches a server listening on `listen` (wildcard hosts mean loopback)."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def server_answers(target: str, timeout: float = 1.0, transport: ClientTransport | None = None) -> bool:
    """Whether a gRPC server answers a health check at `target` within `timeout` seconds.

    TransportError when something accepts connections there but the handshake fails (TLS spoken
    to a plaintext server or the other way round, or a refused client certificate): loading
    around such a server would be wrong.
    """
    transport = transport or ClientTransport.from_env()
    with transport.channel(target) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return True
            if _accepts_connections(target, timeout):
                raise TransportError(
                    f"something listens at {target} but does not answer gRPC over "
                    f"{transport.describe(target)} ({exc.details()}): for a TLS server give --tls-ca "
                    "(and --tls-cert/--tls-key when it requires client certificates), for a plaintext "
                    "one --plaintext"
                ) from None
            return False
    return True


def _accepts_connections(target: str, timeout: float) -> bool:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def to_proto(row: EventRow) -> events_pb2.Event:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(row.timestamp)
    return events_pb2.Event(
        event=row.event,
        distinct_id=row.distinct_id,
        timestamp=ts,
        properties=row.properties,
        uuid=str(row.uuid),
        person_id=str(row.person_id),
        person_properties=row.person_properties,
        elements_chain=row.elements_chain,
    )


def messages_of(
    batches: Iterable[list[tuple[int, EventRow]]],
) -> Iterator[list[tuple[int, events_pb2.Event]]]:
    """Each batch as the events of one IngestEventBatches message, split where it would exceed the
    message bounds (count and bytes): a batch is the unit a caller sees acknowledged."""
    for batch in batches:
        message: list[tuple[int, events_pb2.Event]] = []
        size = 0
        for number, row in batch:
            event = to_proto(row)
            message.append((number, event))
            size += event.ByteSize()
            if size >= _MESSAGE_BYTES or len(message) >= _MESSAGE_EVENTS:
                yield message
                message, size = [], 0
        if message:
            yield message


def ingest_over_grpc(
    target: str,
    api_key: str,
    environment_id: int,
    batches: Iterable[list[tuple[int, EventRow]]],
    summary: LoadSummary,
    transport: ClientTransport | None = None,
    **sender_options: Any,
) -> None:
    """Streams numbered rows through IngestEventBatches; each acknowledged batch is counted (its
    rejections numbered back), and a dropped stream is resumed from the first unacknowledged batch.
    TransportError when the server refuses, or stays unreachable past the retries."""

    def acknowledged(batch: OutgoingBatch, ack: events_pb2.IngestEventBatchesResponse) -> None:
        summary.loaded += ack.accepted
        summary.duplicates += ack.duplicates
        summary.reject(Rejection(batch.numbers[r.index], r.reason) for r in ack.rejections)
        summary.rejected += ack.rejected - len(ack.rejections)

    with (transport or ClientTransport.from_env()).channel(target) as channel:
        sender = BatchSender(
            channel,
            (("authorization", f"Bearer {api_key}"),),
            environment_id,
            messages_of(batches),
            acknowledged,
            **sender_options,
        )
        try:
            sender.send()
        except SendFailed as exc:
            if not exc.acked:
                raise TransportError(f"the server at {target} refused the events: {exc}") from None
            raise TransportError(
                f"the server at {target} stopped taking events: {exc}; the {exc.acked} batches it "
                f"acknowledged are stored ({summary.loaded} new events): loading again stores the rest, "
                "each event once"
            ) from None


def ingest_direct(
    store: EventStore, batches: Iterable[list[tuple[int, EventRow]]], summary: LoadSummary
) -> None:
    """Inserts numbered rows into the store, batch by batch (rows it already holds are skipped)."""
    for batch in batches:
        outcome = store.insert_new_events([row for _, row in batch])
        summary.loaded += outcome.inserted
        summary.duplicates += outcome.duplicates


# ---------------------------------------------------------------------------
# The whole load
# ---------------------------------------------------------------------------


def load_file(
    path: Path,
    environment_id: int,
    *,
    store: EventStore | None = None,
    target: str | None = None,
    api_key: str = "",
    batch_size: int = DEFAULT_BATCH,
    progress: bool = True,
    transport: ClientTransport | None = None,
) -> LoadSummary:
    """Loads a file through the server at `target`, or into `store` when target is None.

    FileFormatError (nothing loaded) when the file cannot be parsed at all.
    """
    if batch_size < 1:
        raise ValueError("batch size must be >= 1")
    fmt = detect_format(path)
    summary = LoadSummary(format=fmt)
    from tqdm import tqdm  # type: ignore[import-untyped]

    with tqdm(
        total=os.path.getsize(path),
        unit="B",
        unit_scale=True,
        desc=f"loading {path.name}",
        disable=not progress,
    ) as bar:
        parsed = read_events(path, fmt, bar.update)
        batches = validated_batches(parsed, environment_id, summary, batch_size)
        if target is not None:
            ingest_over_grpc(target, api_key, environment_id, batches, summary, transport)
        else:
            if store is None:
                raise ValueError("give a store or a target")
            ingest_direct(store, batches, summary)
    return summary


def summary_lines(summary: LoadSummary, path: Path, where: str) -> list[str]:
    """The human summary of a load."""
    lines = [f"{path}: {summary.format}, loaded {summary.loaded} events {where}, rejected {summary.rejected}"]
    if summary.duplicates:
        lines.append(f"  {summary.duplicates} events were already stored (same uuid): skipped")
    for rejection in summary.rejections:
        lines.append(f"  line {rejection.index}: {rejection.reason}")
    hidden = summary.rejected - len(summary.rejections)
    if hidden > 0:
        lines.append(f"  ... and {hidden} more")
    return lines


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def resolve_environment(database_url: str, environment_id: int | None) -> tuple[int, int]:
    """(user id, environment id): the given environment (which must exist) or the first one,
    bootstrapping a demo organization when there is none."""
    from sqlalchemy import select

    from server.domain import accounts
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import Environment, Membership

    upgrade(database_url)
    db = Database(database_url)
    try:
        if environment_id is None:
            return accounts.bootstrap(db)
        with db.session() as session:
            env = session.get(Environment, environment_id)
            if env is None:
                raise LookupError(f"environment {environment_id} does not exist")
            user_id = session.scalars(
                select(Membership.user_id).where(Membership.organization_id == env.organization_id)
            ).first()
            return int(user_id or 0), environment_id
    finally:
        db.close()


def store_held_elsewhere(events_dsn: str, target: str) -> str | None:
    """The one line to end with when the embedded store is held by another process (a server
    started with other settings, usually another --listen), else None."""
    kind, path = parse_dsn(events_dsn)
    if kind != "chdb":
        return None  # a ClickHouse server takes writers from any number of processes
    holder = holder_of(path)
    if holder is None:
        return None
    return (
        f"the event store {events_dsn} is in use by {holder} (an embedded store opens in one process "
        f"at a time) and no server answers at {target}: load through the server holding it with "
        "--listen HOST:PORT (its address) and --api-key, or stop it first; nothing was loaded"
    )


def run_load(
    settings: Any,
    path: Path,
    environment_id: int | None,
    batch_size: int,
    api_key: str,
    transport: ClientTransport | None = None,
    server: str | None = None,
) -> int:
    """`python -m server events load`: 0 all loaded, 1 some rows rejected, 2 nothing loadable or refused.

    `server` (host:port) names the server to load through; without it, one answering at the
    settings' listen address is used, else the store is written directly.
    """
    import sys

    if not path.is_file():
        print(f"error: {path} is not a file", file=sys.stderr)
        return 2
    if server and environment_id is None:
        print("error: --server needs --environment (the id on that server)", file=sys.stderr)
        return 2
    try:
        detect_format(path)
        # A named server has its own database: its environment ids are not checked here.
        env_id = environment_id if server and environment_id else None
        if env_id is None:
            _, env_id = resolve_environment(settings.database_url, environment_id)
    except (FileFormatError, LookupError) as exc:
        print(f"error: {exc}; nothing was loaded", file=sys.stderr)
        return 2
    target = server or client_target(settings.listen)
    transport = transport or ClientTransport.from_env()
    try:
        if server_answers(target, transport=transport):
            if not api_key:
                print(
                    f"error: a server answers at {target}: give --api-key or INSIGHTS_API_KEY "
                    "(a key with the event:write scope)",
                    file=sys.stderr,
                )
                return 2
            where = f"through the server at {target} ({transport.describe(target)})"
            summary = load_file(
                path, env_id, target=target, api_key=api_key, batch_size=batch_size, transport=transport
            )
        elif server:
            print(f"error: no server answers at {server}; nothing was loaded", file=sys.stderr)
            return 2
        else:
            where = f"into {settings.events_dsn}"
            held = store_held_elsewhere(settings.events_dsn, target)
            if held:
                print(f"error: {held}", file=sys.stderr)
                return 2
            store = EventStore(settings.events_dsn, cluster=settings.clickhouse_cluster)
            try:
                store.ensure_schema()
                summary = load_file(path, env_id, store=store, batch_size=batch_size)
            finally:
                store.close()
    except (FileFormatError, TransportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in summary_lines(summary, path, f"{where} (environment {env_id})"):
        print(line)
    if summary.rejected == 0:
        return 0
    return 2 if summary.parsed == 0 and summary.loaded == 0 else 1
