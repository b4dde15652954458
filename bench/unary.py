"""GetInsight throughput and p50/p99 latency against a bare grpc.aio echo server measured in the same run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.serverproc import UNTHROTTLED
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from server.config import Settings
from server.transport import bind, client_channel, with_server_tls

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.5
ECHO_SERVICE, ECHO_NAME = "bench.Echo", "Echo"
ECHO_METHOD = f"/{ECHO_SERVICE}/{ECHO_NAME}"
GET_METHOD = "/insights.v1.InsightsService/GetInsight"
_KEY_LINE = re.compile(r"API key \(shown once, store it now\): (\S+)")
_ENV_LINE = re.compile(r"Environment: (\d+)")
Metadata = tuple[tuple[str, str], ...]


# ---------------------------------------------------------------------------
# The echo server (runs in its own process: `unary.py --serve-echo PORT`)
# ---------------------------------------------------------------------------


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def serve_echo(port: int) -> None:
    """A bare grpc.aio server with one generic unary handler that returns the request bytes."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    handler = grpc.method_handlers_generic_handler(
        ECHO_SERVICE, {ECHO_NAME: grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    # Over TLS when the service is (INSIGHTS_TLS_*): the ratio compares like with like.
    bind(server, with_server_tls(Settings()), f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(0.5)


# ---------------------------------------------------------------------------
# Closed-loop load
# ---------------------------------------------------------------------------


@dataclass
class Load:
    """What one phase sends: a pre-serialized request to a method, identical for every call."""

    target: str
    method: str
    payload: bytes
    metadata: Metadata
    workers: int
    timeout: float
    max_calls: int


@dataclass
class Sample:
    """The calls one client process completed inside the measurement window."""

    calls: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    client_cpu: float = 0.0


async def drive(load: Load, start_at: float, end_at: float) -> Sample:
    """Runs `load.workers` closed-loop callers on one channel until `end_at` (wall clock).

    Calls before `start_at` are warm-up; only calls that start and finish inside the window count.
    Every non-OK status is counted, warm-up included. The window closes early after `max_calls`.
    """
    offset = time.time() - time.perf_counter()
    begin, end = start_at - offset, end_at - offset
    sample = Sample()
    stopped_at: list[float] = []
    async with client_channel(load.target) as channel:
        call = channel.unary_unary(load.method)  # bytes in, bytes out: no (de)serialization cost
        await asyncio.wait_for(channel.channel_ready(), 10)

        async def worker() -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= end or stopped_at:
                    return
                try:
                    await call(load.payload, metadata=load.metadata, timeout=load.timeout)
                except grpc.aio.AioRpcError as err:
                    sample.errors[err.code().name] += 1
                    continue
                t1 = time.perf_counter()
                if t0 >= begin and t1 <= end:
                    sample.latencies.append(t1 - t0)
                    if len(sample.latencies) >= load.max_calls:
                        stopped_at.append(t1)

        cpu0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(load.workers)))
        sample.client_cpu = time.process_time() - cpu0
    sample.calls = len(sample.latencies)
    sample.elapsed = (stopped_at[0] if stopped_at else end) - begin
    return sample


def _client_process(load: Load, conn: mpc.Connection) -> None:
    """A client process: connect, report ready, receive the window, drive, send the sample back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns Ctrl-C and terminates us

    async def main() -> Sample:
        async with client_channel(load.target) as channel:
            await asyncio.wait_for(channel.channel_ready(), 10)
        conn.send("ready")
        start_at, end_at = await asyncio.to_thread(conn.recv)
        return await drive(load, start_at, end_at)

    conn.send(asyncio.run(main()))
    conn.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """The merged result of one phase."""

    name: str
    calls: int
    qps: float
    p50_ms: float
    p99_ms: float
    errors: Counter[str]
    server_cores: float
    server_us_per_call: float
    client_cores: float


async def run_phase(
    name: str, load: Load, server_pid: int, processes: int, warmup: float, seconds: float
) -> Phase:
    """Warm up, then measure for `seconds`, in this process or split across `processes` client processes."""
    samples: list[Sample] = []
    if processes <= 0:
        start_at = time.time() + warmup
        end_at = start_at + seconds
        task = asyncio.ensure_future(drive(load, start_at, end_at))
        server_cpu = await _server_cpu_in_window(server_pid, start_at, end_at, task)
        samples.append(await task)
    else:
        ctx = mp.get_context("spawn")
        per = [load.workers // processes + (i < load.workers % processes) for i in range(processes)]
        children: list[tuple[Any, mpc.Connection]] = []
        finished = False
        try:
            for workers in per:
                parent_end, child_end = ctx.Pipe()
                part = Load(
                    load.target,
                    load.method,
                    load.payload,
                    load.metadata,
                    max(workers, 1),
                    load.timeout,
                    max(load.max_calls // processes, 1),
                )
                proc = ctx.Process(target=_client_process, args=(part, child_end), daemon=True)
                proc.start()
                child_end.close()  # so that a dead child reads as EOF, not as silence
                children.append((proc, parent_end))
            for proc, conn in children:
                if await asyncio.to_thread(_receive, proc, conn, 60) != "ready":
                    raise RuntimeError(f"client process {proc.pid} did not start")
            start_at = time.time() + warmup
            end_at = start_at + seconds
            for _, conn in children:
                conn.send((start_at, end_at))
            waiting = asyncio.gather(
                *(asyncio.to_thread(_receive, proc, conn, warmup + seconds + 60) for proc, conn in children)
            )
            waiting.add_done_callback(_retrieve)  # no "exception never retrieved" noise on Ctrl-C
            server_cpu = await _server_cpu_in_window(server_pid, start_at, end_at, waiting)
            for sample in await waiting:
                assert isinstance(sample, Sample)
                samples.append(sample)
            finished = True
        finally:
            for proc, conn in children:
                proc.join(5 if finished else 0)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(5)
                conn.close()
    return _merge(name, samples, server_cpu, seconds)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _receive(proc: Any, conn: mpc.Connection, timeout: float) -> Any:
    """The next message of a client process; raises if it dies or stays silent for `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if conn.poll(0.2):
                return conn.recv()
            if not proc.is_alive() and not conn.poll(0):
                break
    except (EOFError, OSError) as exc:
        raise RuntimeError(f"client process {proc.pid} died") from exc
    raise RuntimeError(f"client process {proc.pid} sent nothing within {timeout:g}s")


async def _server_cpu_in_window(pid: int, start_at: float, end_at: float, work: asyncio.Future[Any]) -> float:
    """Server CPU seconds spent between start_at and end_at (or until `work` finishes early)."""
    await asyncio.sleep(max(start_at - time.time(), 0))
    cpu0 = _cpu_seconds(pid)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(work), max(end_at - time.time(), 0))
    return _cpu_seconds(pid) - cpu0


def _merge(name: str, samples: list[Sample], server_cpu: float, seconds: float) -> Phase:
    latencies = sorted(x for s in samples for x in s.latencies)
    errors: Counter[str] = Counter()
    for s in samples:
        errors.update(s.errors)
    calls = len(latencies)
    elapsed = max((s.elapsed for s in samples), default=seconds)
    qps = sum(s.calls / s.elapsed for s in samples if s.elapsed > 0)
    return Phase(
        name=name,
        calls=calls,
        qps=qps,
        p50_ms=_percentile(latencies, 0.50) * 1e3,
        p99_ms=_percentile(latencies, 0.99) * 1e3,
        errors=errors,
        server_cores=server_cpu / elapsed if elapsed > 0 else float("nan"),
        server_us_per_call=server_cpu / calls * 1e6 if calls else float("nan"),
        client_cores=sum(s.client_cpu for s in samples) / elapsed if elapsed > 0 else float("nan"),
    )


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


# ---------------------------------------------------------------------------
# Servers under test, as subprocesses
# ---------------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    """A server subprocess and where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    target: str

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


@contextlib.contextmanager
def spawned(name: str, argv: list[str], env: dict[str, str], log: Path, target: str) -> Iterator[Running]:
    """Starts a server subprocess; on exit sends SIGTERM, then SIGKILL if it lingers."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        yield Running(name, proc, log, target)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_serving(server: Running, *, health: bool, timeout: float = 60.0) -> None:
    """Polls standard health until SERVING, or (health=False) until the channel connects."""
    deadline = time.monotonic() + timeout
    async with client_channel(server.target) as channel:
        while time.monotonic() < deadline:
            server.check_alive()
            try:
                if not health:
                    await asyncio.wait_for(channel.channel_ready(), 0.5)
                    return
                stub = health_pb2_grpc.HealthStub(channel)
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except (TimeoutError, grpc.aio.AioRpcError):
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.name} did not become ready within {timeout}s:\n{server.tail()}")


def create_api_key(env: dict[str, str]) -> tuple[str, int]:
    """Migrates the bench database and creates a '*' key with the service's own CLI: (key, environment)."""
    done = subprocess.run(
        [sys.executable, "-m", "server", "create-api-key", "--scopes", "*", "--label", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    key, environment = _KEY_LINE.search(done.stdout), _ENV_LINE.search(done.stdout)
    if done.returncode != 0 or key is None or environment is None:
        raise RuntimeError(f"create-api-key failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return key.group(1), int(environment.group(1))


def realistic_insight() -> ipb.Insight:
    """A trends insight as the product saves it: two event series, filters, a breakdown, tags."""
    series = [
        qpb.SeriesNode(
            events_node=qpb.EventsNode(
                event="$pageview",
                name="$pageview",
                math=qpb.MATH_TYPE_TOTAL,
                properties=[
                    qpb.PropertyFilter(
                        key="$browser",
                        value=qpb.PropertyValue(string_value="Chrome"),
                        operator=qpb.PROPERTY_OPERATOR_EXACT,
                        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
                    )
                ],
            )
        ),
        qpb.SeriesNode(
            events_node=qpb.EventsNode(
                event="signed_up", name="signed_up", custom_name="Sign-ups", math=qpb.MATH_TYPE_DAU
            )
        ),
    ]
    properties = qpb.Properties(
        list=qpb.PropertyFilterList(
            values=[
                qpb.PropertyFilter(
                    key="$current_url",
                    value=qpb.PropertyValue(string_value="/pricing"),
                    operator=qpb.PROPERTY_OPERATOR_ICONTAINS,
                    type=qpb.PROPERTY_FILTER_TYPE_EVENT,
                ),
                qpb.PropertyFilter(
                    key="email", operator=qpb.PROPERTY_OPERATOR_IS_SET, type=qpb.PROPERTY_FILTER_TYPE_PERSON
                ),
            ]
        )
    )
    trends = qpb.TrendsQuery(
        series=series,
        interval=qpb.INTERVAL_TYPE_DAY,
        date_range=qpb.DateRange(date_from="-30d"),
        properties=properties,
        breakdown_filter=qpb.BreakdownFilter(
            breakdown=qpb.BreakdownKey(string_value="$browser"),
            breakdown_type=qpb.BREAKDOWN_TYPE_EVENT,
            breakdown_limit=10,
        ),
        trends_filter=qpb.TrendsFilter(display=qpb.CHART_DISPLAY_TYPE_ACTIONS_LINE_GRAPH),
        filter_test_accounts=True,
    )
    query = qpb.QueryNode(
        insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(trends_query=trends), full=True)
    )
    return ipb.Insight(
        name="Pricing page views vs sign-ups",
        description="Daily pricing page views in Chrome against daily signing-up users, by browser.",
        tags=["marketing", "pricing", "weekly-review"],
        query=query,
    )


async def seed_insight(target: str, metadata: Metadata, environment_id: int) -> tuple[int, int]:
    """Creates the insight through CreateInsight and checks GetInsight answers: (id, response bytes)."""
    async with client_channel(target) as channel:
        stub = igrpc.InsightsServiceStub(channel)
        created = await stub.CreateInsight(
            ipb.CreateInsightRequest(environment_id=environment_id, insight=realistic_insight()),
            metadata=metadata,
            timeout=15,
        )
        got = await stub.GetInsight(
            ipb.GetInsightRequest(environment_id=environment_id, id=created.id), metadata=metadata, timeout=15
        )
    if got.id != created.id or got.query != created.query or list(got.tags) != sorted(created.tags):
        raise RuntimeError(f"GetInsight returned a different insight:\n{got}")
    return created.id, got.ByteSize()


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def _report(phase: Phase) -> None:
    print(
        f"  {phase.name:<11} calls={phase.calls:<7} errors={sum(phase.errors.values()):<3} "
        f"qps={phase.qps:8.0f}  p50={phase.p50_ms:6.2f} ms  p99={phase.p99_ms:6.2f} ms  "
        f"server cpu={phase.server_cores:4.2f} cores ({phase.server_us_per_call:5.0f} µs/call)  "
        f"client cpu={phase.client_cores:4.2f} cores",
        flush=True,
    )


async def bench(args: argparse.Namespace, tmp: Path) -> int:
    main_task = asyncio.current_task()
    assert main_task is not None
    for signum in (signal.SIGINT, signal.SIGTERM):  # explicit: background shells start us with SIGINT ignored
        asyncio.get_running_loop().add_signal_handler(signum, main_task.cancel)
    echo_port, insights_port = free_port(), free_port()
    env = {
        **os.environ,
        "INSIGHTS_LISTEN": f"127.0.0.1:{insights_port}",
        "INSIGHTS_DATABASE_URL": f"sqlite:///{tmp / 'insights.db'}",
        "INSIGHTS_EVENTS_DSN": f"chdb://{tmp / 'events'}",
        "INSIGHTS_LOG_LEVEL": "WARNING",
        "INSIGHTS_GRACE_SECONDS": "1",
        **{f"INSIGHTS_{name.upper()}": value for name, value in UNTHROTTLED.items()},
    }
    raw_key, environment_id = create_api_key(env)
    metadata: Metadata = (("authorization", f"Bearer {raw_key}"),)
    echo_argv = [sys.executable, str(Path(__file__).resolve()), "--serve-echo", str(echo_port)]
    insights_argv = [sys.executable, "-m", "server", "serve"]
    with (
        spawned("echo", echo_argv, env, tmp / "echo.log", f"127.0.0.1:{echo_port}") as echo,
        spawned(
            "insights", insights_argv, env, tmp / "insights.log", f"127.0.0.1:{insights_port}"
        ) as insights,
    ):
        await wait_serving(echo, health=False)
        await wait_serving(insights, health=True)
        insight_id, response_size = await seed_insight(insights.target, metadata, environment_id)
        request = ipb.GetInsightRequest(environment_id=environment_id, id=insight_id).SerializeToString()
        clients = f"{args.processes} client processes" if args.processes > 0 else "the bench process"
        print(
            f"closed loop on loopback: {args.workers} workers in {clients}, warm-up {args.warmup:g}s, "
            f"{args.seconds:g}s per phase, at most {args.max_calls} calls, timeout {args.timeout:g}s; "
            f"{os.cpu_count()} CPUs",
            flush=True,
        )
        print(
            f"GetInsight: {len(request)} B request, {response_size} B response; "
            f"echo: the same request and metadata, echoed",
            flush=True,
        )
        ratios: list[float] = []
        failed: list[Phase] = []
        for round_no in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {round_no}/{args.rounds}")
            phases: dict[str, Phase] = {}
            for name, server, method in (("echo", echo, ECHO_METHOD), ("GetInsight", insights, GET_METHOD)):
                server.check_alive()
                load = Load(
                    server.target, method, request, metadata, args.workers, args.timeout, args.max_calls
                )
                phase = await run_phase(
                    name, load, server.proc.pid, args.processes, args.warmup, args.seconds
                )
                _report(phase)
                phases[name] = phase
                if phase.errors or phase.calls == 0:
                    failed.append(phase)
            ratio = phases["GetInsight"].qps / phases["echo"].qps if phases["echo"].qps else 0.0
            ratios.append(ratio)
            print(f"  ratio = getinsight_qps / echo_qps = {ratio:.2f}", flush=True)
    if failed:
        for phase in failed:
            print(
                f"FAILED: {phase.name} had non-OK statuses {dict(phase.errors)} or no calls", file=sys.stderr
            )
        return 1
    ratio = statistics.median(ratios)
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    label = "median ratio" if len(ratios) > 1 else "ratio"
    print(f"{label} {ratio:.2f} vs target >= {TARGET_RATIO}: {verdict}")
    return 0 if verdict == "PASS" else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds before each phase (2)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent closed-loop callers (16)")
    parser.add_argument(
        "--processes",
        type=int,
        default=0,
        help="split the workers across K client processes; 0 drives them from this process (0)",
    )
    parser.add_argument("--max-calls", type=int, default=500_000, help="measured calls per phase at most")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline of each call in seconds (5)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="echo/GetInsight rounds; the median ratio decides"
    )
    parser.add_argument("--serve-echo", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return parser


def main() -> int:
    args = _parser().parse_args()
    if args.serve_echo is not None:
        asyncio.run(serve_echo(args.serve_echo))
        return 0
    if args.seconds <= 0 or args.warmup < 0 or args.workers < 1 or args.rounds < 1 or args.max_calls < 1:
        raise SystemExit("--seconds, --workers, --rounds and --max-calls must be positive")
    try:
        with tempfile.TemporaryDirectory(prefix="insights-bench-") as tmp:
            return asyncio.run(bench(args, Path(tmp)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
