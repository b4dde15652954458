"""Shared by bench/coalescing.py and bench/stream.py: an isolated run over demo events, the App in
the run's process, and a client agent in a process of its own.

The layers, each cleaned up by the one above it:

- the bench process (`run_isolated`): makes a temp dir, starts the run's process in a new session
  with a time bound, stops the whole process group (SIGTERM, then SIGKILL) and removes the temp dir
  however the run ends;
- the run's process: its own SQLite file and chDB path, the demo events loaded into the App's own
  `EventStore`, the App serving on a loopback port, and the measurements (it reads the App's
  counters directly);
- the client agent (`ClientAgent`): a spawned process that makes the gRPC calls it is told to and
  returns timings, so that no client work shares a process or a GIL with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serverproc import unthrottled
from bench.trends import QUERIES, load_dataset, wait_serving
from generated.insights.v1 import query_pb2, query_service_pb2_grpc
from interceptors.auth import AuthInterceptor, KeyCache, method_policies
from interceptors.errors import ErrorInterceptor
from interceptors.logging import LoggingInterceptor
from server.app import SERVICES, App
from server.cli.demo import generate
from server.config import Settings
from server.domain import accounts
from server.principal import Principal
from server.queries.common.codec import from_reference_json
from server.services.queries import QueryServicer
from server.transport import bind, client_channel, with_server_tls
from storage.db import Database
from storage.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
RUN_QUERY = "/insights.v1.QueryService/RunQuery"
STREAM_QUERY = "/insights.v1.QueryService/StreamQuery"
GET_INSIGHT = "/insights.v1.InsightsService/GetInsight"
Metadata = tuple[tuple[str, str], ...]


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages (Linux), as /proc/loadavg prints them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def demo_query(name: str) -> query_pb2.QueryNode:
    """One of bench/trends.py's demo queries (90 days, day interval) as a QueryNode."""
    return from_reference_json(QUERIES[name], query_pb2.QueryNode)


# ---------------------------------------------------------------------------
# The bench process: one isolated run
# ---------------------------------------------------------------------------


def run_isolated(script: Path, argv: list[str], timeout: float, prefix: str) -> dict[str, Any]:
    """Runs `script --worker-dir TMP --out TMP/result.json ARGV` in its own session and temp dir.

    Returns the JSON the run wrote. Raises RuntimeError when it fails or outlives `timeout`; the
    process group is stopped and the temp dir removed in every case (Ctrl-C and SIGTERM included,
    when the caller turns SIGTERM into KeyboardInterrupt).
    """
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    out = tmp / "result.json"
    command = [sys.executable, str(script), "--worker-dir", str(tmp), "--out", str(out), *argv]
    proc = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        code = proc.wait(timeout)
        if code != 0:
            raise RuntimeError(f"the run exited with {code}")
        loaded: dict[str, Any] = json.loads(out.read_text())
        return loaded
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the run took more than {timeout:g}s") from None
    finally:
        _stop_group(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the run's process group (its agent and any server it spawned), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(15)
    # Whatever is left of the group (the agent, an echo server), even when the run itself exited.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait()


def worker_main(args: argparse.Namespace, measure: Callable[[Path], Awaitable[dict[str, Any]]]) -> int:
    """The run's process: `measure(tmp)` with SIGINT/SIGTERM cancelling it, its result as JSON."""
    logging.basicConfig(level=logging.WARNING)

    async def run() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):  # cancel, so that the App stops and closes chDB
            asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
        return await measure(Path(args.worker_dir))

    try:
        result = asyncio.run(run())
    except asyncio.CancelledError:
        return 130
    Path(args.out).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------
# The run's process: stores, demo data, the App
# ---------------------------------------------------------------------------


@dataclass
class Prepared:
    """A migrated metadata database with the demo organization and a key."""

    settings: Settings
    environment_id: int
    metadata: Metadata


def prepare(tmp: Path, scopes: list[str]) -> Prepared:
    """Migrates a SQLite file in `tmp`, creates the demo organization and a key with `scopes`."""
    database_url = f"sqlite:///{tmp / 'insights.db'}"
    upgrade(database_url)
    db = Database(database_url)
    try:
        user_id, env_id = accounts.bootstrap(db)
        _, raw_key = accounts.create_api_key(db, user_id, scopes, label="bench")
    finally:
        db.close()
    settings = Settings(
        listen="127.0.0.1:0",
        database_url=database_url,
        events_dsn=f"chdb://{tmp / 'events'}",
        log_level="WARNING",
        grace_seconds=1.0,
    )
    return Prepared(with_server_tls(unthrottled(settings)), env_id, (("authorization", f"Bearer {raw_key}"),))


async def load_demo(app: App, environment_id: int, events: int, seed: int) -> str:
    """bench/trends.py's load: the demo generator's column inserts into the App's store, then
    OPTIMIZE FINAL. Returns a line saying what it took."""
    began = time.perf_counter()
    data = await asyncio.to_thread(generate, environment_id, events, seed)
    generated = time.perf_counter() - began
    seconds, disk = await asyncio.to_thread(load_dataset, app.events, data)
    return (
        f"{len(data):,} demo events generated in {generated:.1f}s, loaded and merged in {seconds:.1f}s "
        f"({disk / 1e6:.0f} MB on disk)"
    )


async def wait_app(app: App) -> None:
    """Until the started App's health says SERVING."""
    await wait_serving(app.address)


async def start_uncoalesced(app: App) -> tuple[grpc.aio.Server, str]:
    """QueryService of `app` on a second loopback server built as App.start builds its own, minus
    the coalescing interceptor: the same execution layer, result cache and counters.

    INSIGHTS_COALESCING=false turns coalescing off for a whole App, but a second App would not
    share this one's execution layer and counters, which the comparison needs; so this copies
    App.start's interceptor chain (logging, errors, auth) and must follow it if App.start changes.
    """

    async def verify(raw_key: str) -> Principal:
        return await app.blocking.run(accounts.verify_api_key, app.db, raw_key)

    server = grpc.aio.server(
        interceptors=[
            LoggingInterceptor(),
            ErrorInterceptor(),
            AuthInterceptor(method_policies(SERVICES), verify, KeyCache(app.settings.auth_cache_seconds)),
        ],
        options=[("grpc.so_reuseport", 0)],
    )
    query_service_pb2_grpc.add_QueryServiceServicer_to_server(QueryServicer(app.execution), server)
    port = bind(server, app.settings, "127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


# ---------------------------------------------------------------------------
# The client agent
# ---------------------------------------------------------------------------


@dataclass
class Burst:
    """`n` identical unary calls started at once: wall time from the first send to the last reply."""

    wall: float
    latencies: list[float]
    errors: Counter[str]
    distinct_responses: int
    sample: bytes  # one response, undecoded


@dataclass
class Streamed:
    """One server stream: each message's arrival (seconds after the call started) and its bytes."""

    arrivals: list[float]
    messages: list[bytes]
    error: str


async def _burst(channel: grpc.aio.Channel, cmd: dict[str, Any]) -> Burst:
    call = channel.unary_unary(cmd["method"])  # bytes in, bytes out: the client decodes nothing

    async def one() -> tuple[float, bytes]:
        began = time.perf_counter()
        reply = await call(cmd["payload"], metadata=cmd["metadata"], timeout=cmd["timeout"])
        return time.perf_counter() - began, reply

    began = time.perf_counter()
    outcomes = await asyncio.gather(*(one() for _ in range(cmd["n"])), return_exceptions=True)
    wall = time.perf_counter() - began
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    digests: set[bytes] = set()
    sample = b""
    for outcome in outcomes:
        if isinstance(outcome, grpc.aio.AioRpcError):
            errors[outcome.code().name] += 1
        elif isinstance(outcome, BaseException):
            errors[type(outcome).__name__] += 1
        else:
            latencies.append(outcome[0])
            digests.add(hashlib.sha256(outcome[1]).digest())
            sample = outcome[1]
    return Burst(wall, latencies, errors, len(digests), sample)


async def _stream(channel: grpc.aio.Channel, cmd: dict[str, Any]) -> Streamed:
    call = channel.unary_stream(cmd["method"])
    arrivals: list[float] = []
    messages: list[bytes] = []
    error = ""
    began = time.perf_counter()
    try:
        async for message in call(cmd["payload"], metadata=cmd["metadata"], timeout=cmd["timeout"]):
            arrivals.append(time.perf_counter() - began)
            messages.append(message)
    except grpc.aio.AioRpcError as err:
        error = f"{err.code().name}: {err.details()}"
    return Streamed(arrivals, messages, error)


def _agent_process(conn: mpc.Connection) -> None:
    """The agent's loop: one channel per target, kept open; commands in, results out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run's process owns Ctrl-C and stops us

    async def main() -> None:
        channels: dict[str, grpc.aio.Channel] = {}
        try:
            while True:
                cmd = await asyncio.to_thread(conn.recv)
                if cmd is None:
                    return
                channel = channels.get(cmd["target"])
                if channel is None:
                    channel = client_channel(cmd["target"])
                    await asyncio.wait_for(channel.channel_ready(), 10)
                    channels[cmd["target"]] = channel
                if cmd["kind"] == "burst":
                    conn.send(await _burst(channel, cmd))
                else:
                    conn.send(await _stream(channel, cmd))
        finally:
            for channel in channels.values():
                await channel.close()

    with contextlib.suppress(EOFError, OSError):
        asyncio.run(main())
    conn.close()


class ClientAgent:
    """A spawned client process; `burst` and `stream` run there and return their timings."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_agent_process, args=(child,), daemon=True)
        self._proc.start()
        child.close()  # so that a dead agent reads as EOF, not as silence
        self._lock = asyncio.Lock()

    async def _ask(self, cmd: dict[str, Any], timeout: float) -> Any:
        async with self._lock:
            self._conn.send(cmd)
            return await asyncio.to_thread(self._receive, timeout)

    def _receive(self, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self._conn.poll(0.2):
                    return self._conn.recv()
                if not self._proc.is_alive() and not self._conn.poll(0):
                    break
        except (EOFError, OSError) as exc:
            raise RuntimeError("the client agent died") from exc
        raise RuntimeError(f"the client agent answered nothing within {timeout:g}s")

    async def burst(
        self, target: str, method: str, payload: bytes, metadata: Metadata, n: int, timeout: float
    ) -> Burst:
        cmd: dict[str, Any] = {"kind": "burst", "target": target, "method": method, "payload": payload}
        cmd |= {"metadata": metadata, "n": n, "timeout": timeout}
        result = await self._ask(cmd, timeout + 30)
        assert isinstance(result, Burst)
        return result

    async def stream(
        self, target: str, method: str, payload: bytes, metadata: Metadata, timeout: float
    ) -> Streamed:
        cmd: dict[str, Any] = {"kind": "stream", "target": target, "method": method, "payload": payload}
        cmd |= {"metadata": metadata, "timeout": timeout}
        result = await self._ask(cmd, timeout + 30)
        assert isinstance(result, Streamed)
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(None)
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._conn.close()

    def __enter__(self) -> ClientAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
