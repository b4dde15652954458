"""SIGKILL of `python -m server serve` while events stream in: every acknowledged batch survives, and
resending the unacknowledged ones (or everything) after a restart stores each event exactly once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from server.cli.loader import LoadSummary, ingest_over_grpc, load_file, read_events, validated_batches
from tests.integration.itkit import bearer, free_port, timestamp, wait_for_health, week_pageviews

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
BATCHES, PER_BATCH = 25, 1000


@dataclass
class Deployment:
    """A server's stores and address, kept across restarts of its process."""

    tmp: Path
    port: int
    environment_id: int
    key: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "INSIGHTS_LISTEN": self.target,
            "INSIGHTS_DATABASE_URL": f"sqlite:///{self.tmp / 'insights.db'}",
            "INSIGHTS_EVENTS_DSN": f"chdb://{self.tmp / 'events'}",
            "INSIGHTS_AUTH_CACHE_SECONDS": "0",
            "INSIGHTS_LOG_LEVEL": "WARNING",
        }


def _prepare(tmp: Path) -> Deployment:
    """A migrated SQLite file with a tenant whose key may write events and run queries."""
    from server.domain import accounts
    from storage.db import Database
    from storage.migrate import upgrade

    url = f"sqlite:///{tmp / 'insights.db'}"
    upgrade(url)
    db = Database(url)
    try:
        org = accounts.create_organization(db, "crash org")
        env = accounts.create_environment(db, org, "crash env")
        user = accounts.create_user(db, "crash@example.com", first_name="Crash")
        accounts.add_membership(db, user, org)
        _, raw = accounts.create_api_key(db, user, ["event:write", "query:read"])
    finally:
        db.close()
    return Deployment(tmp, free_port(), int(env), str(raw))


@asynccontextmanager
async def serving(deployment: Deployment, run: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """The server as a subprocess on the deployment's stores, SERVING; killed on the way out."""
    log = (deployment.tmp / f"server-{run}.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", cwd=REPO, env=deployment.env(), stdout=log, stderr=log
    )
    try:
        async with grpc.aio.insecure_channel(deployment.target) as channel:
            ready = asyncio.create_task(wait_for_health(channel, timeout=90))
            exited = asyncio.create_task(process.wait())
            done, _ = await asyncio.wait({ready, exited}, timeout=95, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            log_text = (deployment.tmp / f"server-{run}.log").read_text(errors="replace")[-3000:]
            assert ready in done, f"server did not become SERVING (exit {process.returncode}):\n{log_text}"
            ready.result()
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


def make_batches(environment_id: int) -> list[epb.IngestEventBatchesRequest]:
    """BATCHES batches of PER_BATCH pageviews with their own uuids, spread over the last 3 days."""
    batches = []
    for b in range(BATCHES):
        events = [
            epb.Event(
                event="$pageview",
                distinct_id=f"user-{i % 50}",
                timestamp=timestamp(NOW - dt.timedelta(seconds=7 * (b * PER_BATCH + i) + 1)),
                uuid=str(uuid.uuid4()),
            )
            for i in range(PER_BATCH)
        ]
        request = epb.IngestEventBatchesRequest(environment_id=environment_id, sequence=b + 1, events=events)
        batches.append(request)
    return batches


async def pageview_total(deployment: Deployment) -> float:
    """The environment's $pageview total over the last week, as RunQuery computes it."""
    async with grpc.aio.insecure_channel(deployment.target) as channel:
        return await week_pageviews(channel, deployment.environment_id, bearer(deployment.key))


async def test_acknowledged_batches_survive_sigkill_and_a_resend_stores_each_event_once(
    tmp_path: Path,
) -> None:
    deployment = await asyncio.to_thread(_prepare, tmp_path)
    batches = make_batches(deployment.environment_id)
    acked: list[epb.IngestEventBatchesResponse] = []
    killed = asyncio.Event()

    async def requests() -> AsyncIterator[epb.IngestEventBatchesRequest]:
        # Fourteen batches, and the stream stays open: it can only end by the kill.
        for batch in batches[:14]:
            yield batch
        await killed.wait()

    async with serving(deployment, 1) as process, grpc.aio.insecure_channel(deployment.target) as channel:
        call = egrpc.EventsServiceStub(channel).IngestEventBatches(
            requests(), metadata=bearer(deployment.key), timeout=300
        )
        broke: grpc.aio.AioRpcError | None = None
        try:
            async for ack in call:
                acked.append(ack)
                if len(acked) == 10:
                    process.kill()  # SIGKILL: no shutdown code runs
                    await process.wait()
        except grpc.aio.AioRpcError as err:
            broke = err
        killed.set()
        assert broke is not None and broke.code() == grpc.StatusCode.UNAVAILABLE, broke
    assert 10 <= len(acked) <= 14
    assert [a.sequence for a in acked] == list(range(1, len(acked) + 1))
    assert all((a.accepted, a.duplicates) == (PER_BATCH, 0) for a in acked)

    async with serving(deployment, 2):
        # Every acknowledged batch was stored; the unacknowledged ones may be, in part or whole.
        survived = await pageview_total(deployment)
        assert len(acked) * PER_BATCH <= survived <= BATCHES * PER_BATCH
        # Resume from the first unacknowledged batch.
        async with grpc.aio.insecure_channel(deployment.target) as channel:
            call = egrpc.EventsServiceStub(channel).IngestEventBatches(
                iter(batches[len(acked) :]), metadata=bearer(deployment.key), timeout=300
            )
            resent = [ack async for ack in call]
        assert [a.sequence for a in resent] == list(range(len(acked) + 1, BATCHES + 1))
        assert all(a.accepted + a.duplicates == PER_BATCH and not a.rejected for a in resent)
        assert sum(a.duplicates for a in resent) == survived - len(acked) * PER_BATCH
        assert await pageview_total(deployment) == BATCHES * PER_BATCH

        # Resending everything (a client that kept no acks) stores nothing more.
        async with grpc.aio.insecure_channel(deployment.target) as channel:
            call = egrpc.EventsServiceStub(channel).IngestEventBatches(
                iter(batches), metadata=bearer(deployment.key), timeout=300
            )
            again = [ack async for ack in call]
        assert sum(a.duplicates for a in again) == BATCHES * PER_BATCH
        assert await pageview_total(deployment) == BATCHES * PER_BATCH


def write_file(path: Path, lines: int) -> Path:
    """A JSON Lines file of pageviews without uuids (the loader derives them from the lines)."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            at = (NOW - dt.timedelta(seconds=5 * i + 1)).isoformat()
            f.write(json.dumps({"event": "$pageview", "distinct_id": f"u{i % 40}", "timestamp": at}) + "\n")
    return path


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls `condition` until it holds (generous overall timeout)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_the_loader_resumes_after_the_server_is_killed_and_restarted(tmp_path: Path) -> None:
    deployment = await asyncio.to_thread(_prepare, tmp_path)
    lines = 30 * PER_BATCH
    path = await asyncio.to_thread(write_file, tmp_path / "events.jsonl", lines)
    summary = LoadSummary(format="jsonl")
    outcome: dict[str, Any] = {}

    def load() -> None:
        batches = validated_batches(read_events(path, "jsonl"), deployment.environment_id, summary, PER_BATCH)
        try:
            target, key, env = deployment.target, deployment.key, deployment.environment_id
            ingest_over_grpc(target, key, env, batches, summary, ready_timeout=180)
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    loader = threading.Thread(target=load, daemon=True)
    async with serving(deployment, 1) as process:
        loader.start()
        await eventually(lambda: summary.loaded >= 5 * PER_BATCH, 120, "five acknowledged batches")
        process.kill()
        await process.wait()
    assert loader.is_alive(), outcome
    async with serving(deployment, 2):
        await asyncio.to_thread(loader.join, 300)
        assert not loader.is_alive() and "error" not in outcome, outcome
        # Every line is accounted for once: stored by an acknowledged batch, or found stored when
        # the loader resent a batch whose ack the kill swallowed.
        assert summary.loaded + summary.duplicates == lines and summary.rejected == 0
        assert await pageview_total(deployment) == lines

        # Loading the same file again stores nothing: its rows' uuids come from their lines.
        reloaded = await asyncio.to_thread(
            load_file,
            path,
            deployment.environment_id,
            target=deployment.target,
            api_key=deployment.key,
            progress=False,
        )
        assert (reloaded.loaded, reloaded.duplicates) == (0, lines)
        assert await pageview_total(deployment) == lines


_OLD_STORE_SCRIPT = """
import datetime as dt, sys, uuid
from storage.events import EventRow, EventStore

store = EventStore(sys.argv[1])
with store.client() as client:
    # The events table as stores created before deduplication have it.
    client.command(
        "CREATE TABLE events (team_id Int64, uuid UUID, event String, distinct_id String, person_id UUID,"
        " timestamp DateTime64(6, 'UTC'), properties String, person_properties String,"
        " created_at DateTime64(6, 'UTC') DEFAULT now64(6),"
        " `$session_id` String MATERIALIZED JSONExtractString(properties, '$session_id'))"
        " ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp)"
        " ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id))"
        " SAMPLE BY cityHash64(distinct_id)"
    )
store.ensure_schema()
now = dt.datetime.now(dt.UTC)
rows = [EventRow(3, uuid.uuid4(), "e", "d", uuid.uuid4(), now, "{}", "{}") for _ in range(100)]
first = store.insert_new_events(rows)
again = store.insert_new_events(rows[:60] + rows[:60])
engine = store.query("SELECT engine FROM system.tables WHERE name = 'events' AND database = 'default'")
print(first.inserted, again.inserted, again.duplicates, store.count_events(3), engine[0][0])
store.close()
"""


async def test_a_store_created_before_deduplication_keeps_its_table_and_skips_duplicates(
    tmp_path: Path,
) -> None:
    # Its own process: a chDB path is held by the process that opened it.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _OLD_STORE_SCRIPT,
        f"chdb://{tmp_path / 'events'}",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    assert out.decode().split() == ["100", "0", "120", "100", "MergeTree"]
