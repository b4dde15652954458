"""StreamQuery progress on demo events: time to the first progress message, the largest gap between
messages, the pace of status messages, and the stream's total time against a plain RunQuery of the
same query."""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.served import (
    RUN_QUERY,
    STREAM_QUERY,
    ClientAgent,
    Prepared,
    Streamed,
    demo_query,
    load_demo,
    loadavg,
    prepare,
    run_isolated,
    verdict,
    wait_app,
    worker_main,
)
from bench.trends import QUERIES
from generated.insights.v1 import common_pb2, query_service_pb2
from server.app import App
from server.execution.refresh import STREAM_MIN_GAP

TARGET_FIRST_PROGRESS = 0.300
TARGET_MAX_GAP = 1.0
# Status messages come at most every STREAM_MIN_GAP: over a stream's statuses, at most this many
# more than their time span allows (arrival jitter at either end of the span).
PACE_SLACK = 2
MIN_QUERY_SECONDS = 1.0
SCOPES = ["query:read"]


# ---------------------------------------------------------------------------
# The run's process
# ---------------------------------------------------------------------------


async def measure(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    prepared = prepare(tmp, SCOPES)
    app = App(prepared.settings)
    result: dict[str, Any] = {"events": args.events, "query": args.query, "cpus": os.cpu_count()}
    try:
        result["load"] = await load_demo(app, prepared.environment_id, args.events, args.seed)
        print(f"[stream] {result['load']}", flush=True)
        await app.start()
        await wait_app(app)
        with ClientAgent() as agent:
            result["repeats"] = await measure_streams(app, prepared, agent, args)
    finally:
        await app.stop(grace=1.0)
    return result


async def measure_streams(
    app: App, prepared: Prepared, agent: ClientAgent, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """A warm-up of each, then `repeats` rounds of one stream and one RunQuery (the order alternates)."""
    fields: dict[str, Any] = {
        "environment_id": prepared.environment_id,
        "query": demo_query(args.query),
        "refresh": common_pb2.REFRESH_MODE_FORCE_BLOCKING,
    }
    run_request = query_service_pb2.RunQueryRequest(**fields).SerializeToString()
    stream_request = query_service_pb2.StreamQueryRequest(**fields).SerializeToString()
    runs = app.execution.runs

    async def run_query() -> tuple[float, query_service_pb2.QueryResponse]:
        burst = await agent.burst(
            app.address, RUN_QUERY, run_request, prepared.metadata, 1, args.call_timeout
        )
        if burst.errors:
            raise RuntimeError(f"RunQuery failed: {dict(burst.errors)}")
        return burst.wall, query_service_pb2.QueryResponse.FromString(burst.sample)

    async def stream() -> tuple[Streamed, list[query_service_pb2.QueryEvent]]:
        got = await agent.stream(
            app.address, STREAM_QUERY, stream_request, prepared.metadata, args.call_timeout
        )
        if got.error:
            raise RuntimeError(f"StreamQuery failed: {got.error}")
        return got, [query_service_pb2.QueryEvent.FromString(m) for m in got.messages]

    await run_query()
    await stream()
    repeats: list[dict[str, Any]] = []
    for i in range(args.repeats):
        before = runs.engine_runs
        if i % 2 == 0:
            got, events = await stream()
            plain, reply = await run_query()
        else:
            plain, reply = await run_query()
            got, events = await stream()
        row = summarise(got, events, reply)
        row["run_query_s"] = plain
        row["executions"] = runs.engine_runs - before
        repeats.append(row)
        print(
            f"[stream] {i + 1}/{args.repeats}: first progress {row['first_progress_s'] * 1e3:.0f} ms, "
            f"largest gap {row['max_gap_s'] * 1e3:.0f} ms, {row['messages']} messages, stream "
            f"{row['total_s'] * 1e3:.0f} ms, RunQuery {plain * 1e3:.0f} ms",
            flush=True,
        )
    return repeats


def summarise(
    got: Streamed, events: list[query_service_pb2.QueryEvent], reply: query_service_pb2.QueryResponse
) -> dict[str, Any]:
    """The stream's figures, after checking its shape: statuses with monotonic progress, then the
    result, equal to RunQuery's."""
    kinds = [e.WhichOneof("event") for e in events]
    if not kinds or kinds[-1] != "result" or set(kinds[:-1]) != {"status"}:
        raise RuntimeError(f"unexpected stream shape: {kinds}")
    final = events[-1].result
    if final.is_cached or final.result != reply.result or not final.result.trends.series:
        raise RuntimeError("the stream's result differs from RunQuery's (or came from the cache)")
    rows = [e.status.query_progress.rows_read for e in events[:-1] if e.status.HasField("query_progress")]
    if rows != sorted(rows):
        raise RuntimeError(f"progress went backwards: {rows}")
    first_progress = next(
        (t for t, e in zip(got.arrivals, events, strict=True) if e.status.query_progress.rows_read > 0),
        float("nan"),
    )
    gaps = [b - a for a, b in itertools.pairwise(got.arrivals)]
    statuses = got.arrivals[:-1]
    span = statuses[-1] - statuses[0] if statuses else 0.0
    return {
        "first_message_s": got.arrivals[0],
        "first_progress_s": first_progress,
        "max_gap_s": max(gaps, default=0.0),
        "messages": len(events),
        "progress_messages": sum(1 for r in rows if r > 0),
        "statuses": len(statuses),
        "paced_max": int(span / STREAM_MIN_GAP) + 1 + PACE_SLACK,
        "rows_read": rows[-1] if rows else 0,
        "total_s": got.arrivals[-1],
    }


# ---------------------------------------------------------------------------
# The bench process: the report
# ---------------------------------------------------------------------------


def report(result: dict[str, Any]) -> int:
    repeats = result["repeats"]
    print()
    print(
        f"StreamQuery (force_blocking, {result['query']}) on {result['events']:,} events, "
        f"{len(repeats)} repeats; times from the call's start, in the client's process"
    )
    print(
        f"{'#':>2} {'first msg':>9} {'1st progress':>12} {'largest gap':>11} {'messages':>8} "
        f"{'progress':>8} {'statuses/paced':>14} {'rows read':>10} {'stream ms':>9} {'RunQuery ms':>11} "
        f"{'÷':>5} {'runs':>4}"
    )
    for i, r in enumerate(repeats, 1):
        print(
            f"{i:>2} {r['first_message_s'] * 1e3:>9.0f} {r['first_progress_s'] * 1e3:>12.0f} "
            f"{r['max_gap_s'] * 1e3:>11.0f} {r['messages']:>8} {r['progress_messages']:>8} "
            f"{str(r['statuses']) + '/' + str(r['paced_max']):>14} "
            f"{r['rows_read']:>10,} {r['total_s'] * 1e3:>9.0f} {r['run_query_s'] * 1e3:>11.0f} "
            f"{r['total_s'] / r['run_query_s']:>5.2f} {r['executions']:>4}"
        )

    def column(name: str) -> list[float]:
        return [float(r[name]) for r in repeats]

    first, gap = column("first_progress_s"), column("max_gap_s")
    ratio = [r["total_s"] / r["run_query_s"] for r in repeats]
    plain = statistics.median(column("run_query_s"))
    print()
    checks = []
    for label, values, target in (
        ("time to the first progress message", first, TARGET_FIRST_PROGRESS),
        ("largest gap between messages", gap, TARGET_MAX_GAP),
    ):
        for how, value in (("median", statistics.median(values)), ("max", max(values))):
            ok = value <= target  # NaN (no progress message at all) fails
            checks.append(ok)
            print(
                f"{verdict(ok)}  {label}, {how} over repeats: {value * 1e3:.0f} ms <= {target * 1e3:.0f} ms"
            )
    over = [r for r in repeats if r["statuses"] > r["paced_max"]]
    checks.append(not over)
    print(
        f"{verdict(not over)}  status messages at most every {STREAM_MIN_GAP * 1e3:.0f} ms "
        f"(+{PACE_SLACK} for jitter): {len(repeats) - len(over)} of {len(repeats)} repeats"
    )
    print(
        f"info  stream total ÷ RunQuery: median {statistics.median(ratio):.2f}, max {max(ratio):.2f} (no target); "
        f"RunQuery median {plain * 1e3:.0f} ms"
    )
    if plain < MIN_QUERY_SECONDS:
        print(
            f"note  the query took under {MIN_QUERY_SECONDS:g} s, so the gap figure says little: "
            f"use more --events or a heavier --query"
        )
    return 0 if all(checks) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--events", type=int, default=10_000_000, help="demo events (10,000,000; 1,000,000 is quick)"
    )
    parser.add_argument(
        "--query",
        choices=sorted(QUERIES),
        default="weekly_active",
        help="bench/trends.py's demo query to stream (weekly_active)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="streams (and RunQuery calls) measured (5)")
    parser.add_argument("--seed", type=int, default=7, help="demo data seed (7)")
    parser.add_argument("--call-timeout", type=float, default=300.0, help="deadline of each call (300 s)")
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds the whole run may take")
    parser.add_argument("--worker-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser


def main() -> int:
    args = _parser().parse_args()
    if args.worker_dir is not None:
        return worker_main(args, lambda tmp: measure(tmp, args))
    if args.events < 1 or args.repeats < 1:
        raise SystemExit("--events and --repeats must be >= 1")
    began = time.monotonic()
    print(f"load average at start: {loadavg()} ({os.cpu_count()} CPUs)", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind like Ctrl-C: the run is cleaned up
    try:
        result = run_isolated(Path(__file__).resolve(), sys.argv[1:], args.timeout, "insights-bench-stream-")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        print(f"load average at end: {loadavg()} (after {time.monotonic() - began:.0f}s)", flush=True)
    return report(result)


if __name__ == "__main__":
    raise SystemExit(main())
