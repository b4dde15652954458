"""100 identical concurrent RunQuery calls with request coalescing on and off against one call alone,
and cached GetInsight throughput against bench/unary.py's echo baseline, on demo events."""

from __future__ import annotations

import argparse
import copy
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.served import (
    GET_INSIGHT,
    RUN_QUERY,
    Burst,
    ClientAgent,
    Prepared,
    demo_query,
    load_demo,
    loadavg,
    prepare,
    run_isolated,
    start_uncoalesced,
    verdict,
    wait_app,
    worker_main,
)
from bench.trends import QUERIES
from bench.unary import ECHO_METHOD, Load, Phase, free_port, run_phase, spawned, wait_serving
from generated.insights.v1 import common_pb2, insight_pb2, insight_pb2_grpc, query_service_pb2
from generated.insights.v1.query_pb2 import QueryNode
from server.app import App
from server.queries.common.codec import from_reference_json
from server.transport import client_channel

TARGET_EXECUTIONS = 1
TARGET_WALL_RATIO = 1.3
TARGET_THROUGHPUT_RATIO = 0.5
QUERY = "breakdown"  # bench/trends.py's demo breakdown: $pageview by $browser, 90 days, day interval
SCOPES = ["insight:read", "insight:write", "query:read"]


# ---------------------------------------------------------------------------
# The run's process
# ---------------------------------------------------------------------------


async def measure(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    prepared = prepare(tmp, SCOPES)
    app = App(prepared.settings)
    result: dict[str, Any] = {"events": args.events, "calls": args.calls, "cpus": os.cpu_count()}
    try:
        result["load"] = await load_demo(app, prepared.environment_id, args.events, args.seed)
        print(f"[coalescing] {result['load']}", flush=True)
        await app.start()
        await wait_app(app)
        off_server, off_target = await start_uncoalesced(app)
        try:
            with ClientAgent() as agent:
                result["bursts"] = await measure_bursts(app, off_target, prepared, agent, args)
            result["throughput"] = await measure_throughput(app, prepared, args, tmp)
        finally:
            await off_server.stop(1.0)
    finally:
        await app.stop(grace=1.0)
    return result


async def measure_bursts(
    app: App, off_target: str, prepared: Prepared, agent: ClientAgent, args: argparse.Namespace
) -> dict[str, Any]:
    """Rounds of: one RunQuery alone, then `calls` at once on each server (the order alternates)."""
    request = query_service_pb2.RunQueryRequest(
        environment_id=prepared.environment_id,
        query=demo_query(QUERY),
        refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING,
    ).SerializeToString()
    targets = {"on": app.address, "off": off_target}
    runs, stats = app.execution.runs, app.coalescing.stats

    async def fire(target: str, n: int) -> tuple[Burst, dict[str, int]]:
        before = (runs.engine_runs, stats.leaders, stats.followers, stats.bypasses)
        cpu = time.process_time()  # this process is the server's: the client calls from the agent's
        burst = await agent.burst(target, RUN_QUERY, request, prepared.metadata, n, args.call_timeout)
        cpu = time.process_time() - cpu
        after = (runs.engine_runs, stats.leaders, stats.followers, stats.bypasses)
        counts = dict(
            zip(("executions", "leaders", "followers", "bypasses"), after_minus(after, before), strict=True)
        )
        if burst.errors or len(burst.latencies) != n:
            raise RuntimeError(f"{n} RunQuery calls on {target}: errors {dict(burst.errors)}")
        reply = query_service_pb2.QueryResponse.FromString(burst.sample)
        if not reply.result.trends.series or reply.is_cached:
            raise RuntimeError(f"RunQuery did not compute a fresh result: {reply.calculation_trigger!r}")
        counts["server_cpu_ms"] = round(cpu * 1e3)
        return burst, counts

    # Warm-up: one computation on each server (connections, auth cache, the engine's first read).
    for target in targets.values():
        await fire(target, 1)
    rounds: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        single, alone = await fire(app.address, 1)
        row: dict[str, Any] = {"single_s": single.wall, "single_cpu_ms": alone["server_cpu_ms"]}
        order = ("on", "off") if round_no % 2 == 0 else ("off", "on")
        for mode in order:
            burst, counts = await fire(targets[mode], args.calls)
            row[mode] = {
                "wall_s": burst.wall,
                "p50_s": statistics.median(burst.latencies),
                "max_s": max(burst.latencies),
                "distinct": burst.distinct_responses,
                **counts,
            }
        rounds.append(row)
        print(
            f"[coalescing] round {round_no + 1}/{args.rounds}: one query {single.wall * 1e3:.0f} ms; "
            + "; ".join(
                f"{args.calls} calls coalescing {m} {row[m]['wall_s'] * 1e3:.0f} ms, "
                f"{row[m]['executions']} execution(s)"
                for m in ("on", "off")
            ),
            flush=True,
        )
    return {"rounds": rounds}


def after_minus(after: tuple[int, ...], before: tuple[int, ...]) -> list[int]:
    return [a - b for a, b in zip(after, before, strict=True)]


async def measure_throughput(
    app: App, prepared: Prepared, args: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """bench/unary.py's two phases: its echo server, then GetInsight on an insight with a cached result."""
    env_id = prepared.environment_id
    async with client_channel(app.address) as channel:
        stub = insight_pb2_grpc.InsightsServiceStub(channel)
        created = await stub.CreateInsight(
            insight_pb2.CreateInsightRequest(
                environment_id=env_id,
                insight=insight_pb2.Insight(name=f"bench {QUERY}", query=demo_query(QUERY)),
            ),
            metadata=prepared.metadata,
            timeout=30,
        )
        computed = await stub.GetInsight(
            insight_pb2.GetInsightRequest(
                environment_id=env_id, id=created.id, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
            ),
            metadata=prepared.metadata,
            timeout=args.call_timeout,
        )
        request = insight_pb2.GetInsightRequest(environment_id=env_id, id=created.id)  # force_cache
        cached = await stub.GetInsight(request, metadata=prepared.metadata, timeout=30)
        # For contrast: the same insight over a range never computed, so force_cache finds no result.
        body = copy.deepcopy(QUERIES[QUERY])
        body["source"]["dateRange"] = {"date_from": "-60d"}
        bare = await stub.CreateInsight(
            insight_pb2.CreateInsightRequest(
                environment_id=env_id,
                insight=insight_pb2.Insight(
                    name="bench, no result", query=from_reference_json(body, QueryNode)
                ),
            ),
            metadata=prepared.metadata,
            timeout=30,
        )
        bare_request = insight_pb2.GetInsightRequest(environment_id=env_id, id=bare.id)
        without = await stub.GetInsight(bare_request, metadata=prepared.metadata, timeout=30)
    if without.HasField("result"):
        raise RuntimeError("the contrast insight has a result")
    if not cached.is_cached or cached.result != computed.result or not cached.result.trends.series:
        raise RuntimeError("GetInsight (force_cache) did not answer with the cached result")
    payload = request.SerializeToString()
    echo_port = free_port()
    echo_argv = [
        sys.executable,
        str(Path(__file__).resolve().parent / "unary.py"),
        "--serve-echo",
        str(echo_port),
    ]
    phases: dict[str, list[Phase]] = {"echo": [], "GetInsight": [], "no result": []}
    with spawned("echo", echo_argv, dict(os.environ), tmp / "echo.log", f"127.0.0.1:{echo_port}") as echo:
        await wait_serving(echo, health=False)
        print(
            f"[coalescing] GetInsight: {len(payload)} B request, {cached.ByteSize()} B response "
            f"({len(cached.result.trends.series)} cached series); echo: the same request and metadata; "
            f"contrast: GetInsight of an insight without a result ({without.ByteSize()} B); "
            f"{args.workers} workers in {args.processes} client process(es)",
            flush=True,
        )
        for _ in range(args.throughput_rounds):
            for name, target, method, pid, body_bytes in (
                ("echo", echo.target, ECHO_METHOD, echo.proc.pid, payload),
                ("GetInsight", app.address, GET_INSIGHT, os.getpid(), payload),
                ("no result", app.address, GET_INSIGHT, os.getpid(), bare_request.SerializeToString()),
            ):
                echo.check_alive()
                load = Load(target, method, body_bytes, prepared.metadata, args.workers, 5.0, 500_000)
                phase = await run_phase(name, load, pid, args.processes, args.warmup, args.seconds)
                if phase.errors or phase.calls == 0:
                    raise RuntimeError(f"{name}: non-OK statuses {dict(phase.errors)} or no calls")
                phases[name].append(phase)
                print(
                    f"[coalescing] {name:<10} {phase.calls:>7} calls  {phase.qps:8.0f} qps  "
                    f"p50 {phase.p50_ms:6.2f} ms  p99 {phase.p99_ms:6.2f} ms  server "
                    f"{phase.server_cores:4.2f} cores ({phase.server_us_per_call:5.0f} µs/call)  "
                    f"client {phase.client_cores:4.2f} cores",
                    flush=True,
                )
    return {
        "response_bytes": cached.ByteSize(),
        "bare_bytes": without.ByteSize(),
        "bare_qps": [p.qps for p in phases["no result"]],
        "bare_us_per_call": [p.server_us_per_call for p in phases["no result"]],
        "series": len(cached.result.trends.series),
        "echo_qps": [p.qps for p in phases["echo"]],
        "get_qps": [p.qps for p in phases["GetInsight"]],
        "get_us_per_call": [p.server_us_per_call for p in phases["GetInsight"]],
        "echo_us_per_call": [p.server_us_per_call for p in phases["echo"]],
    }


# ---------------------------------------------------------------------------
# The bench process: the report
# ---------------------------------------------------------------------------


def report(result: dict[str, Any]) -> int:
    rounds = result["bursts"]["rounds"]
    calls = result["calls"]
    single = statistics.median(r["single_s"] for r in rounds)
    print()
    print(
        f"{calls} concurrent identical RunQuery (force_blocking, {QUERY}) on {result['events']:,} events, "
        f"{len(rounds)} rounds, medians; one query alone: {single * 1e3:.0f} ms "
        f"(min {min(r['single_s'] for r in rounds) * 1e3:.0f}, max {max(r['single_s'] for r in rounds) * 1e3:.0f}), "
        f"server CPU {statistics.median(r['single_cpu_ms'] for r in rounds):.0f} ms"
    )
    print("per-round figures are listed as round1/round2/...; server CPU includes the engine's threads")
    print(
        f"{'coalescing':<11} {'wall ms':>8} {'÷ one':>6} {'p50 ms':>7} {'slowest ms':>10} "
        f"{'executions':>10} {'leaders':>11} {'followers':>9} {'bypasses':>8} {'distinct':>8} "
        f"{'server CPU ms':>14}"
    )
    figures: dict[str, dict[str, Any]] = {}
    for mode in ("on", "off"):
        rows = [r[mode] for r in rounds]
        wall = statistics.median(x["wall_s"] for x in rows)
        figures[mode] = {"ratio": wall / single, "executions": max(x["executions"] for x in rows)}
        print(
            f"{mode:<11} {wall * 1e3:>8.0f} {wall / single:>6.2f} "
            f"{statistics.median(x['p50_s'] for x in rows) * 1e3:>7.0f} "
            f"{statistics.median(x['max_s'] for x in rows) * 1e3:>10.0f} "
            f"{'/'.join(str(x['executions']) for x in rows):>10} "
            f"{'/'.join(str(x['leaders']) for x in rows):>11} "
            f"{'/'.join(str(x['followers']) for x in rows):>9} "
            f"{'/'.join(str(x['bypasses']) for x in rows):>8} "
            f"{max(x['distinct'] for x in rows):>8} "
            f"{'/'.join(str(x['server_cpu_ms']) for x in rows):>14}"
        )
    t = result["throughput"]
    ratios = [g / e for g, e in zip(t["get_qps"], t["echo_qps"], strict=True)]
    ratio = statistics.median(ratios)
    print()
    print(
        f"cached GetInsight ({t['response_bytes']} B, {t['series']} series) "
        f"{statistics.median(t['get_qps']):.0f} qps ({statistics.median(t['get_us_per_call']):.0f} µs server CPU/call) "
        f"vs echo {statistics.median(t['echo_qps']):.0f} qps ({statistics.median(t['echo_us_per_call']):.0f} µs); "
        "ratio per round " + ", ".join(f"{r:.2f}" for r in ratios)
    )
    bare = [b / e for b, e in zip(t["bare_qps"], t["echo_qps"], strict=True)]
    print(
        f"contrast: GetInsight without a result ({t['bare_bytes']} B) {statistics.median(t['bare_qps']):.0f} qps "
        f"({statistics.median(t['bare_us_per_call']):.0f} µs server CPU/call); ratio to echo per round "
        + ", ".join(f"{r:.2f}" for r in bare)
    )
    print()
    on, off = figures["on"], figures["off"]
    checks = [
        (
            on["executions"] <= TARGET_EXECUTIONS,
            f"coalescing on: engine executions per {calls} calls (worst round) {on['executions']} "
            f"<= {TARGET_EXECUTIONS}",
        ),
        (
            on["ratio"] <= TARGET_WALL_RATIO,
            f"coalescing on: wall time ÷ one query {on['ratio']:.2f} <= {TARGET_WALL_RATIO}",
        ),
        (
            ratio >= TARGET_THROUGHPUT_RATIO,
            f"cached GetInsight qps ÷ echo qps {ratio:.2f} >= {TARGET_THROUGHPUT_RATIO}",
        ),
    ]
    for ok, text in checks:
        print(f"{verdict(ok)}  {text}")
    # Coalescing off is the comparison, not a target; the same bounds, for reading.
    print(
        f"info  coalescing off: engine executions {off['executions']} (target for on: {TARGET_EXECUTIONS}), "
        f"wall time ÷ one query {off['ratio']:.2f} (target for on: <= {TARGET_WALL_RATIO}: "
        f"{verdict(off['ratio'] <= TARGET_WALL_RATIO)})"
    )
    return 0 if all(ok for ok, _ in checks) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--events", type=int, default=10_000_000, help="demo events (10,000,000; 1,000,000 is quick)"
    )
    parser.add_argument("--calls", type=int, default=100, help="concurrent identical RunQuery calls (100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one query, then each burst (3)")
    parser.add_argument("--seed", type=int, default=7, help="demo data seed (7)")
    parser.add_argument(
        "--seconds", type=float, default=8.0, help="measured seconds per throughput phase (8)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per throughput phase (2)")
    parser.add_argument("--workers", type=int, default=16, help="closed-loop GetInsight/echo callers (16)")
    parser.add_argument(
        "--processes", type=int, default=1, help="client processes for the throughput phases (1; >= 1)"
    )
    parser.add_argument("--throughput-rounds", type=int, default=2, help="echo/GetInsight rounds (2)")
    parser.add_argument("--call-timeout", type=float, default=300.0, help="deadline of each RunQuery (300 s)")
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds the whole run may take")
    parser.add_argument("--worker-dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser


def main() -> int:
    args = _parser().parse_args()
    if args.worker_dir is not None:
        return worker_main(args, lambda tmp: measure(tmp, args))
    if min(args.events, args.calls, args.rounds, args.processes, args.workers, args.throughput_rounds) < 1:
        raise SystemExit(
            "--events, --calls, --rounds, --processes, --workers and --throughput-rounds must be >= 1"
        )
    began = time.monotonic()
    print(f"load average at start: {loadavg()} ({os.cpu_count()} CPUs)", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind like Ctrl-C: the run is cleaned up
    argv = sys.argv[1:]
    try:
        result = run_isolated(Path(__file__).resolve(), argv, args.timeout, "insights-bench-coalescing-")
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
