"""Retention, stickiness, lifecycle and paths end to end through gRPC against the same SQL run directly.

Per size (one process each, bench/kit.py): the demo dataset is loaded by `python -m server demo`
(bench/serverproc.py) and merged; the store is copied, a `python -m server serve` process serves one
copy and this process opens the other. Each query is timed in interleaved rounds: RunQuery with
FORCE_BLOCKING (e2e, through the served process), the kind's runner here (engine), and the SQL the
runner ran, run directly (direct). Printed: medians, e2e / direct at every size (target <= 1.15),
and the e2e time per event from the smallest size to the largest (target: within +30 %, or cheaper).

    .venv/bin/python bench/journeys.py                                  # 1M and 10M demo events
    .venv/bin/python bench/journeys.py --sizes "1000000" --repeats 5    # one size
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import kit
from bench.serverproc import Prepared, prepared, serving
from generated.insights.v1 import common_pb2, query_pb2, query_service_pb2, query_service_pb2_grpc
from server.queries.base import Outcome
from server.queries.common.codec import from_reference_json
from server.queries.registry import RUNNERS, source_of
from storage.events import EventStore

TARGET_E2E_DIRECT = 1.15
TARGET_PER_EVENT_DRIFT = 0.30
PAGEVIEWS = [{"kind": "EventsNode", "event": "$pageview", "name": "$pageview"}]

# The measured queries, as the reference JSON a client would save (the four).
QUERIES: dict[str, dict[str, Any]] = {
    "retention_7d": {
        "kind": "RetentionQuery",
        "retentionFilter": {"period": "Day", "totalIntervals": 7},
    },
    "stickiness_30d": {"kind": "StickinessQuery", "series": PAGEVIEWS, "dateRange": {"date_from": "-30d"}},
    "lifecycle_30d": {"kind": "LifecycleQuery", "series": PAGEVIEWS, "dateRange": {"date_from": "-30d"}},
    "paths_5_steps": {
        "kind": "PathsQuery",
        "pathsFilter": {"includeEventTypes": ["$pageview"], "stepLimit": 5},
        "dateRange": {"date_from": "-7d"},
    },
}
Statement = tuple[str, dict[str, Any]]


def measure_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Loads `size` demo events, serves one copy of the store, opens the other here, measures every query."""
    result: dict[str, Any] = {"size": size, "queries": {}}
    with prepared(size, f"insights-bench-journeys-{size}-") as ready:
        store = kit.merged_copy(__file__, ready, result)
        try:
            with serving(ready) as process, grpc.insecure_channel(ready.target) as channel:
                stub = query_service_pb2_grpc.QueryServiceStub(channel)
                for name, body in QUERIES.items():
                    q = measure_query(name, body, ready, store, stub, process.pid, args)
                    result["queries"][name] = q
                    print(
                        f"[{size:,}] {name}: e2e {q['e2e_s'] * 1e3:.0f} ms, engine {q['engine_s'] * 1e3:.0f} ms, "
                        f"direct {q['direct_s'] * 1e3:.0f} ms; CPU e2e {q['e2e_cpu_s']:.2f} s, "
                        f"direct {q['direct_cpu_s']:.2f} s; {q['statements']} statement(s)",
                        flush=True,
                    )
        finally:
            store.close()
    return result


def measure_query(
    name: str,
    body: dict[str, Any],
    ready: Prepared,
    store: EventStore,
    stub: query_service_pb2_grpc.QueryServiceStub,
    server_pid: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Warm-up and a check that both stores agree, then `repeats` interleaved rounds of e2e / engine / direct."""
    node = from_reference_json(body, query_pb2.QueryNode)
    source = source_of(node)
    runner = RUNNERS.runner(source.kind) if source is not None else None
    if source is None or runner is None:
        raise RuntimeError(f"{name}: no runner computes it")
    request = query_service_pb2.RunQueryRequest(
        environment_id=ready.environment_id, query=node, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
    )
    metadata = (("authorization", f"Bearer {ready.key}"),)
    ctx = kit.context(store, ready)
    statements: list[Statement] = []

    def recording(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        statements.append((sql, dict(params)))
        return store.query(sql, params)

    warm = stub.RunQuery(request, metadata=metadata, timeout=args.call_timeout)
    outcome: Outcome = runner.compute(source.node, ctx, recording)
    if warm.result != outcome.result:
        raise RuntimeError(f"{name}: RunQuery and the runner on the copied store disagree")

    def e2e() -> None:
        reply = stub.RunQuery(request, metadata=metadata, timeout=args.call_timeout)
        if reply.result != outcome.result:
            raise RuntimeError(f"{name}: RunQuery's result changed between rounds")

    def direct() -> None:
        for sql, values in statements:
            store.query(sql, values)

    paths: dict[str, Callable[[], object]] = {
        "e2e": e2e,
        "engine": lambda: runner.compute(source.node, ctx, store.query),
        "direct": direct,
    }
    measured = kit.timed_rounds(paths, args.repeats, server_pid)
    measured["statements"] = len(statements)
    if args.show_sql:
        for text, values in statements:
            print(f"-- {name}\n{text}\n-- {values}", flush=True)
    return measured


def report(results: list[dict[str, Any]]) -> int:
    """Prints the table and the verdicts; returns the exit status (1 when a target fails)."""
    results = sorted(results, key=lambda r: r["size"])
    print()
    print(
        f"{'size':>11} {'query':<15} {'e2e ms':>8} {'engine ms':>9} {'direct ms':>9} {'e2e/dir':>7} "
        f"{'ns/event':>8} {'CPU e2e s':>9} {'CPU dir s':>9} {'spread':>6}"
    )
    for r in results:
        for name, q in r["queries"].items():
            print(
                f"{r['size']:>11,} {name:<15} {q['e2e_s'] * 1e3:>8.0f} {q['engine_s'] * 1e3:>9.0f} "
                f"{q['direct_s'] * 1e3:>9.0f} {q['e2e_s'] / q['direct_s']:>7.3f} {q['e2e_s'] / r['size'] * 1e9:>8.0f} "
                f"{q['e2e_cpu_s']:>9.2f} {q['direct_cpu_s']:>9.2f} {kit.spread(q['samples']):>6.0%}"
            )
    print()
    failed = False
    for r in results:
        for name, q in r["queries"].items():
            ratio = q["e2e_s"] / q["direct_s"]
            ok = ratio <= TARGET_E2E_DIRECT
            failed |= not ok
            print(f"{kit.verdict(ok)}  {name}: e2e / direct {ratio:.3f} <= {TARGET_E2E_DIRECT} at {r['size']:,}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        for name in last["queries"]:
            per = [r["queries"][name]["e2e_s"] / r["size"] for r in (first, last)]
            drift = per[1] / per[0] - 1
            ok = drift <= TARGET_PER_EVENT_DRIFT
            failed |= not ok
            print(
                f"{kit.verdict(ok)}  {name}: e2e per event {per[0] * 1e9:.0f} ns at {first['size']:,} -> "
                f"{per[1] * 1e9:.0f} ns at {last['size']:,}, {drift:+.0%} <= +{TARGET_PER_EVENT_DRIFT:.0%}"
            )
    return 1 if failed else 0


def main() -> int:
    return kit.main(__file__, __doc__, measure_size, report)


if __name__ == "__main__":
    raise SystemExit(main())
