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
import json
import sys
import time
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serverproc import Prepared, prepared, rss_mb, serving
from generated.insights.v1 import common_pb2, query_pb2, query_service_pb2, query_service_pb2_grpc

TARGET = 1.10
MAX_RECEIVE = 64 * 1024 * 1024  # the server's default opt-in ceiling
OPT_IN_HEADER = "x-insights-max-response-bytes"


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

    settings = {"result_cache_mb": str(args.cache_mb), "query_status_ttl_seconds": str(args.status_ttl)}
    with prepared(args.events, "bench-memory-", **settings) as ready:
        figures = measure(args, ready)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def measure(args: argparse.Namespace, ready: Prepared) -> dict[str, Any]:
    environment = ready.environment_id
    metadata: list[tuple[str, str]] = [("authorization", f"Bearer {ready.key}")]
    if not args.no_opt_in:
        metadata.append((OPT_IN_HEADER, str(MAX_RECEIVE)))
    options = [("grpc.max_receive_message_length", MAX_RECEIVE)]
    with serving(ready) as process, grpc.insecure_channel(ready.target, options) as channel:
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


if __name__ == "__main__":
    raise SystemExit(main())
