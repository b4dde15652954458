"""SIGTERM on `python -m server serve`: in-flight calls finish, new ones are refused, exit 0 within grace."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qgrpc
from tests.integration.heavy import heavy_trend
from tests.integration.itkit import bearer, expect_error, free_port, health_status, wait_for_health

REPO = Path(__file__).resolve().parents[2]
GRACE_SECONDS = 8.0
# How long a poll waits for the server to reach a state at most: a safety net, not a threshold.
# Below the server's SQLite busy timeout (15 s), after which a call held by the lock would fail.
REACHED_WITHIN = 10.0


def _prepare_database(database_url: str, scopes: tuple[str, ...] = ("insight:write",)) -> tuple[int, str]:
    """Migrate a fresh SQLite file and create a tenant: (environment id, raw key)."""
    from server.domain import accounts
    from storage.db import Database
    from storage.migrate import upgrade

    upgrade(database_url)
    db = Database(database_url)
    try:
        org = accounts.create_organization(db, "shutdown org")
        env = accounts.create_environment(db, org, "shutdown env")
        user = accounts.create_user(db, "shutdown@example.com", first_name="Shut")
        accounts.add_membership(db, user, org)
        _, raw = accounts.create_api_key(db, user, list(scopes))
    finally:
        db.close()
    return env, raw


def _server_environment(tmp_path: Path, port: int, database_url: str, grace: float) -> dict[str, str]:
    return {
        **os.environ,
        "INSIGHTS_LISTEN": f"127.0.0.1:{port}",
        "INSIGHTS_DATABASE_URL": database_url,
        "INSIGHTS_EVENTS_DSN": f"chdb://{tmp_path / 'events'}",
        "INSIGHTS_GRACE_SECONDS": str(grace),
        "INSIGHTS_AUTH_CACHE_SECONDS": "0",
        "INSIGHTS_LOG_LEVEL": "INFO",
    }


async def _serving(process: asyncio.subprocess.Process, channel: grpc.aio.Channel, tmp_path: Path) -> None:
    ready = asyncio.create_task(wait_for_health(channel, timeout=60))
    exited = asyncio.create_task(process.wait())
    done, _ = await asyncio.wait({ready, exited}, timeout=65, return_when=asyncio.FIRST_COMPLETED)
    assert ready in done, f"server did not become SERVING (exit {process.returncode}):\n{_log(tmp_path)}"
    exited.cancel()
    ready.result()


async def _until(check: Callable[[], Awaitable[bool]], what: str, tmp_path: Path, timeout: float) -> None:
    """Polls `check` until it holds; fails with the server's log after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not within {timeout} s:\n{_log(tmp_path)}")
        await asyncio.sleep(0.05)


async def test_sigterm_drains_the_in_flight_call_and_exits_zero(tmp_path: Path) -> None:
    db_file = tmp_path / "insights.db"
    database_url = f"sqlite:///{db_file}"
    environment_id, key = await asyncio.to_thread(_prepare_database, database_url)
    port = free_port()
    env = _server_environment(tmp_path, port, database_url, GRACE_SECONDS)
    log = (tmp_path / "server.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", cwd=REPO, env=env, stdout=log, stderr=log
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    lock: sqlite3.Connection | None = None
    try:
        await _serving(process, channel, tmp_path)

        stub = igrpc.InsightsServiceStub(channel)
        metadata = bearer(key)
        await stub.ListInsights(
            ipb.ListInsightsRequest(environment_id=environment_id), metadata=metadata, timeout=10
        )

        # Hold the database's write lock so that the next CreateInsight waits inside the server.
        lock = sqlite3.connect(db_file, timeout=5, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        request = ipb.CreateInsightRequest(
            environment_id=environment_id, insight=ipb.Insight(name="finished during shutdown")
        )
        in_flight = asyncio.ensure_future(stub.CreateInsight(request, metadata=metadata, timeout=20))
        # A later call on the same connection is answered only once the server has taken this one:
        # HTTP/2 keeps the order of the streams, and the server accepts calls in arrival order.
        assert await health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        assert not in_flight.done(), "the call was not held by the database lock"

        process.send_signal(signal.SIGTERM)
        terminated_at = time.monotonic()

        async def stopped_listening() -> bool:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as fresh:
                return await health_status(fresh) == -1

        # The drain has begun: the server takes no new connection, with the call still held.
        await _until(stopped_listening, "the server to refuse new connections", tmp_path, REACHED_WITHIN)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as fresh:
            refused = igrpc.InsightsServiceStub(fresh).ListInsights(
                ipb.ListInsightsRequest(environment_id=environment_id), metadata=metadata, timeout=3
            )
            await expect_error(refused, grpc.StatusCode.UNAVAILABLE)
        assert not in_flight.done(), "the in-flight call ended before the lock was released"

        lock.execute("COMMIT")
        lock.close()
        lock = None

        created = await asyncio.wait_for(in_flight, 15)
        assert created.name == "finished during shutdown"
        assert created.id > 0

        code = await asyncio.wait_for(process.wait(), GRACE_SECONDS + 5)
        elapsed = time.monotonic() - terminated_at
        assert code == 0, _log(tmp_path)
        assert elapsed < GRACE_SECONDS, f"exit took {elapsed:.1f}s, grace is {GRACE_SECONDS}s"

        with sqlite3.connect(db_file) as check:
            rows = check.execute("SELECT name, deleted FROM insights WHERE id = ?", (created.id,)).fetchall()
        assert rows == [("finished during shutdown", 0)]
    finally:
        if lock is not None:
            lock.close()
        await channel.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


# Heavy runs still computing when SIGTERM arrives: shutdown stops them at the end of the grace.
SHORT_GRACE_SECONDS = 2.0
EXIT_SLACK_SECONDS = 5.0


async def test_sigterm_stops_running_queries_and_exits_within_the_grace_period(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'insights.db'}"
    environment_id, key = await asyncio.to_thread(_prepare_database, database_url, ("query:read",))
    # The events are written before the server opens the store (one process per chDB path).
    loader = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from tests.integration.heavy import bulk_insert_store as b; b(sys.argv[1], int(sys.argv[2]))",
        f"chdb://{tmp_path / 'events'}",
        str(environment_id),
        cwd=REPO,
    )
    assert await asyncio.wait_for(loader.wait(), 120) == 0
    port = free_port()
    env = _server_environment(tmp_path, port, database_url, SHORT_GRACE_SECONDS)
    log = (tmp_path / "server.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "serve", cwd=REPO, env=env, stdout=log, stderr=log
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await _serving(process, channel, tmp_path)
        stub = qgrpc.QueryServiceStub(channel)
        metadata = bearer(key)

        def request(refresh: int, series: int, query_id: str) -> qs.RunQueryRequest:
            return qs.RunQueryRequest(
                environment_id=environment_id,
                query=heavy_trend(series),
                refresh=refresh,  # type: ignore[arg-type]
                client_query_id=query_id,
            )

        # An async run nobody waits for, and a blocking call waiting on another run.
        await stub.RunQuery(request(cpb.REFRESH_MODE_FORCE_ASYNC, 12, "detached"), metadata=metadata, timeout=10)
        blocking = asyncio.ensure_future(
            stub.RunQuery(request(cpb.REFRESH_MODE_FORCE_BLOCKING, 13, "waited"), metadata=metadata, timeout=60)
        )
        for query_id in ("detached", "waited"):
            status_request = qs.GetQueryStatusRequest(
                environment_id=environment_id, query_id=query_id, show_progress=True
            )

            async def reading(status_request: qs.GetQueryStatusRequest = status_request) -> bool:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    status = await stub.GetQueryStatus(status_request, metadata=metadata, timeout=5)
                    return status.query_progress.rows_read > 0
                return False  # not started yet (NOT_FOUND)

            await _until(reading, f"run {query_id} to read rows in the engine", tmp_path, timeout=30)

        process.send_signal(signal.SIGTERM)
        terminated_at = time.monotonic()
        code = await asyncio.wait_for(process.wait(), SHORT_GRACE_SECONDS + 60)
        elapsed = time.monotonic() - terminated_at
        assert code == 0, _log(tmp_path)
        assert elapsed < SHORT_GRACE_SECONDS + EXIT_SLACK_SECONDS, (
            f"exit took {elapsed:.1f}s, grace is {SHORT_GRACE_SECONDS}s:\n{_log(tmp_path)}"
        )
        error = await expect_error(blocking, grpc.StatusCode.UNAVAILABLE)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()


def _log(tmp_path: Path) -> str:
    return (tmp_path / "server.log").read_text(errors="replace")[-4000:]
