"""Memory under large results: the server's RSS after many distinct, large breakdown results, against
its warm baseline measured in the same run.

A server process of its own (`python -m server serve`) over the demo dataset answers, in order:
1. warm-up calls (small trends, a breakdown by browser) → the warm baseline RSS;
2. `--queries` distinct trends broken down by `$session_id` with a large `breakdown_limit`, each
   FORCE_BLOCKING, the client accepting answers up to 64 MiB and asking for large answers with
   the `x-insights-max-response-bytes` header (`--no-opt-in` measures the default limit instead);
3. a wait past the query-status lifetime and the engine allocator's decay, and one small call.

It prints the RSS after each phase and its ratio to the baseline. The result cache legitimately keeps
up to INSIGHTS_RESULT_CACHE_MB of results (`--cache-mb`), so the target is that the last RSS, less
the results the budget may still hold, is within +10 % of the baseline: nothing else stays behind.

    .venv/bin/python bench/memory.py                       # 1M demo events, 24 queries
    .venv/bin/python bench/memory.py --events 200000 --queries 6
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generated.insights.v1 import common_pb2, query_pb2, query_service_pb2, query_service_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.10
MAX_RECEIVE = 64 * 1024 * 1024  # the server's default opt-in ceiling
OPT_IN_HEADER = "x-insights-max-response-bytes"


def rss_mb(pid: int) -> float:
    """Resident set size of a process, in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        try:
            yield process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(channel: grpc.Channel, timeout: float = 120) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(grpc.RpcError):
            status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
        time.sleep(0.2)
    raise RuntimeError("server did not become SERVING")


def trend(date_from: str, breakdown: str | None = None, limit: int = 0) -> query_pb2.QueryNode:
    query = query_pb2.TrendsQuery(
        series=[query_pb2.SeriesNode(events_node=query_pb2.EventsNode(event="$pageview"))],
        interval=query_pb2.INTERVAL_TYPE_DAY,
        date_range=query_pb2.DateRange(date_from=date_from),
    )
    if breakdown:
        query.breakdown_filter.breakdown.string_value = breakdown
        if limit:
            query.breakdown_filter.breakdown_limit = limit
    return query_pb2.QueryNode(trends_query=query)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=24)
    parser.add_argument("--breakdown-limit", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30, help="range of the first large query (-Nd)")
    parser.add_argument("--cache-mb", type=int, default=256)
    parser.add_argument("--status-ttl", type=int, default=5)
    parser.add_argument(
        "--settle",
        type=int,
        default=15,
        help="seconds to wait past the status lifetime (the engine's allocator returns freed memory after ~10 s)",
    )
    parser.add_argument("--no-opt-in", action="store_true", help="do not ask for answers above 4 MiB")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        port = _free_port()
        env = {
            **os.environ,
            "INSIGHTS_LISTEN": f"127.0.0.1:{port}",
            "INSIGHTS_DATABASE_URL": f"sqlite:///{tmp / 'insights.db'}",
            "INSIGHTS_EVENTS_DSN": f"chdb://{tmp / 'events'}",
            "INSIGHTS_RESULT_CACHE_MB": str(args.cache_mb),
            "INSIGHTS_QUERY_STATUS_TTL_SECONDS": str(args.status_ttl),
            "INSIGHTS_ALERT_POLL_SECONDS": "0",
            "INSIGHTS_LOG_LEVEL": "WARNING",
        }
        _run([sys.executable, "-m", "server", "migrate"], env)
        printed = _run([sys.executable, "-m", "server", "create-api-key", "--scopes", "*", "--label", "bench"], env)
        key = re.search(r"(phx_\S+)", printed)
        environment = re.search(r"Environment: (\d+)", printed)
        assert key and environment, printed
        started = time.monotonic()
        _run([sys.executable, "-m", "server", "demo", "--events", str(args.events)], env)
        print(f"demo dataset: {args.events} events in {time.monotonic() - started:.0f} s")
        figures = measure(args, env, tmp, key.group(1), int(environment.group(1)), port)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def measure(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, key: str, environment: int, port: int
) -> dict[str, Any]:
    metadata: list[tuple[str, str]] = [("authorization", f"Bearer {key}")]
    if not args.no_opt_in:
        metadata.append((OPT_IN_HEADER, str(MAX_RECEIVE)))
    options = [("grpc.max_receive_message_length", MAX_RECEIVE)]
    with serving(env, tmp / "server.log") as process, grpc.insecure_channel(f"127.0.0.1:{port}", options) as channel:
        wait_ready(channel)
        stub = query_service_pb2_grpc.QueryServiceStub(channel)

        errors: dict[str, str] = {}

        def run(query: query_pb2.QueryNode) -> tuple[str, int]:
            request = query_service_pb2.RunQueryRequest(
                environment_id=environment, query=query, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
            )
            try:
                response = stub.RunQuery(request, metadata=metadata, timeout=600)
            except grpc.RpcError as err:
                errors.setdefault(err.code().name, err.details() or "")
                return err.code().name, 0
            return "OK", response.ByteSize()

        for date_from in ("-7d", "-14d", "-30d"):
            run(trend(date_from))
            run(trend(date_from, "$browser"))
        baseline = rss_mb(process.pid)
        print(f"warm baseline: {baseline:.0f} MiB")
        outcomes: dict[str, int] = {}
        sizes = []
        started = time.monotonic()
        for i in range(args.queries):
            code, size = run(trend(f"-{args.days + i}d", "$session_id", args.breakdown_limit))
            outcomes[code] = outcomes.get(code, 0) + 1
            sizes.append(size)
        took = time.monotonic() - started
        after = rss_mb(process.pid)
        largest = max(sizes) / 1024 / 1024 if sizes else 0.0
        print(
            f"{args.queries} large queries in {took:.0f} s: {outcomes}, largest answer {largest:.1f} MiB; "
            f"RSS {after:.0f} MiB ({after / baseline:.2f}x baseline)"
        )
        for code, detail in errors.items():
            print(f"  {code}: {detail[:300]}")
        time.sleep(args.status_ttl + args.settle)
        run(trend("-7d"))
        expired = rss_mb(process.pid)
        # What the budget may legitimately still hold: the answers' bytes, at most the budget.
        held = min(sum(sizes) / 1024 / 1024, args.cache_mb)
        verdict = "PASS" if expired - held <= baseline * TARGET else "FAIL"
        print(
            f"after the statuses expired: RSS {expired:.0f} MiB ({expired / baseline:.2f}x baseline); "
            f"results the budget may hold: {held:.0f} MiB; without them {(expired - held) / baseline:.2f}x "
            f"(target <= {TARGET:.2f}x) {verdict}"
        )
    return {
        "baseline_mb": baseline,
        "after_mb": after,
        "expired_mb": expired,
        "ratio_after": after / baseline,
        "ratio_expired": expired / baseline,
        "held_mb": held,
        "ratio_expired_without_held": (expired - held) / baseline,
        "outcomes": outcomes,
        "largest_answer_mb": largest,
    }


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    raise SystemExit(main())
