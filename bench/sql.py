"""SQL insights: a GROUP BY over events end to end through gRPC against the same compiled SQL run
directly, and the compile time (parse, checks, rewrite, print) of a 50-line statement against
sqlglot's parse of it alone.

Compile: in this process, before any size, `--compile-runs` (500) alternating runs of compile_sql and
of the dialect's parse of the same text; medians (target: compile <= 5 ms) and their ratio.
Per size (one process each, bench/kit.py): the demo dataset is loaded by `python -m server demo`
(bench/serverproc.py) and merged; the store is copied, a `python -m server serve` process serves one
copy and this process opens the other. The GROUP BY (events per day and browser over 30 days) is
timed in interleaved rounds: RunQuery with FORCE_BLOCKING (e2e, through the served process, which
describes the result's columns and then runs the statement), the HogQL runner here (engine), and the
compiled statement run directly once with the runner's engine settings (direct). Printed: medians
and e2e / direct (target <= 1.15).

    .venv/bin/python bench/sql.py                                  # 1M and 10M demo events
    .venv/bin/python bench/sql.py --sizes "1000000" --repeats 7    # one size
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlglot.parser

from bench import kit
from bench.serverproc import prepared, serving
from generated.insights.v1 import common_pb2, query_pb2, query_service_pb2, query_service_pb2_grpc
from server.queries.sql.compile import compile_sql
from server.queries.sql.dialect import parse
from server.queries.sql.runner import HogQLRunner, SqlLimits

TARGET_E2E_DIRECT = 1.15
TARGET_COMPILE_MS = 5.0

GROUP_BY = (
    "SELECT toDate(timestamp) AS day, properties.$browser AS browser, count() AS n FROM events "
    "WHERE timestamp >= today() - 30 GROUP BY day, browser ORDER BY day, browser LIMIT 10000"
)

# A realistic saved query (49 lines): CTEs, a sessions join, property access on events and persons,
# conditional aggregates, an IN subquery, a window and string/array functions.
STATEMENT = """-- Weekly engagement by browser: sessions, pageviews, bounce rate and buyers, last 30 days
WITH
    recent AS (
        SELECT
            e.distinct_id AS distinct_id,
            e.`$session_id` AS session_id,
            e.event AS event,
            e.timestamp AS ts,
            properties.$browser AS browser,
            toFloat64OrNull(properties.amount) AS amount,
            person.properties.plan AS plan
        FROM events AS e
        WHERE e.timestamp >= now() - INTERVAL 30 DAY
          AND e.event IN ('$pageview', '$autocapture', 'purchase', 'signed_up')
    ),
    buyers AS (
        SELECT DISTINCT distinct_id
        FROM recent
        WHERE event = 'purchase' AND amount > 0
    ),
    per_session AS (
        SELECT
            s.session_id AS session_id,
            s.`$session_duration` AS duration,
            s.`$is_bounce` AS bounced,
            s.`$entry_pathname` AS entry_path
        FROM sessions AS s
        WHERE s.`$start_timestamp` >= now() - INTERVAL 30 DAY
    )
SELECT
    toStartOfWeek(r.ts) AS week,
    coalesce(r.browser, 'unknown') AS browser,
    count() AS event_count,
    countIf(r.event = '$pageview') AS pageviews,
    uniq(r.session_id) AS session_count,
    round(avg(p.duration), 1) AS avg_duration,
    round(100 * countIf(p.bounced) / nullIf(countIf(p.bounced IS NOT NULL), 0), 2) AS bounce_rate,
    uniqIf(r.distinct_id, r.distinct_id IN (SELECT distinct_id FROM buyers)) AS buyers,
    sumIf(r.amount, r.event = 'purchase') AS revenue,
    anyIf(r.plan, r.plan IS NOT NULL) AS some_plan,
    arrayStringConcat(arraySlice(arraySort(groupUniqArray(p.entry_path)), 1, 3), ', ') AS top_entries,
    row_number() OVER (PARTITION BY toStartOfWeek(r.ts) ORDER BY count() DESC) AS rank_in_week
FROM recent AS r
LEFT JOIN per_session AS p ON p.session_id = r.session_id
WHERE r.browser IS NULL OR lower(r.browser) NOT LIKE '%bot%'
GROUP BY week, browser
HAVING event_count > 10
ORDER BY week DESC, event_count DESC
LIMIT 500
"""


def compiled_extensions() -> bool:
    """Whether sqlglot runs its mypyc-compiled modules (the sqlglotc package) or pure Python."""
    return not str(sqlglot.parser.__file__).endswith(".py")


def compile_timing(runs: int) -> dict[str, Any]:
    """Medians of compile_sql and of the dialect's parse of STATEMENT, alternating, after a warm-up:
    CPU time of this thread (what a compile costs, whatever else the machine runs) and wall time."""
    for _ in range(20):
        compile_sql(STATEMENT, 1)
        parse(STATEMENT)
    samples: dict[str, list[float]] = {"compile": [], "parse": [], "compile_wall": [], "parse_wall": []}
    for _ in range(runs):
        for name, run in (("compile", lambda: compile_sql(STATEMENT, 1)), ("parse", lambda: parse(STATEMENT))):
            cpu, wall = time.thread_time(), time.perf_counter()
            run()
            samples[f"{name}_wall"].append(time.perf_counter() - wall)
            samples[name].append(time.thread_time() - cpu)
    timing: dict[str, Any] = {f"{k}_ms": statistics.median(v) * 1e3 for k, v in samples.items()}
    timing["lines"] = len(STATEMENT.strip().splitlines())
    timing["compiled_extensions"] = compiled_extensions()
    return timing


def measure_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Loads `size` demo events, serves one copy of the store, opens the other here, times the GROUP BY."""
    result: dict[str, Any] = {"size": size}
    with prepared(size, f"insights-bench-sql-{size}-") as ready:
        store = kit.merged_copy(__file__, ready, result)
        try:
            with serving(ready) as process, grpc.insecure_channel(ready.target) as channel:
                stub = query_service_pb2_grpc.QueryServiceStub(channel)
                node = query_pb2.HogQLQuery(query=GROUP_BY)
                request = query_service_pb2.RunQueryRequest(
                    environment_id=ready.environment_id,
                    query=query_pb2.QueryNode(hogql_query=node),
                    refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING,
                )
                metadata = (("authorization", f"Bearer {ready.key}"),)
                ctx = kit.context(store, ready)
                runner = HogQLRunner()
                compiled = compile_sql(GROUP_BY, ctx.team_id)
                settings = SqlLimits().settings()

                warm = stub.RunQuery(request, metadata=metadata, timeout=args.call_timeout)
                outcome = runner.compute(node, ctx, store.query)
                rows = json_format.MessageToDict(outcome.result.hogql).get("results", [])
                if json_format.MessageToDict(warm.result.hogql).get("results", []) != rows or not rows:
                    raise RuntimeError("RunQuery and the runner on the copied store disagree (or found nothing)")

                def e2e() -> None:
                    stub.RunQuery(request, metadata=metadata, timeout=args.call_timeout)

                measured = kit.timed_rounds(
                    {
                        "e2e": e2e,
                        "engine": lambda: runner.compute(node, ctx, store.query),
                        "direct": lambda: store.query(compiled.sql, compiled.params, settings=settings),
                    },
                    args.repeats,
                    process.pid,
                )
                measured["rows"] = len(rows)
                result["group_by"] = measured
                if args.show_sql:
                    print(f"-- group_by\n{compiled.sql}\n-- {compiled.params}", flush=True)
                print(
                    f"[{size:,}] group_by: e2e {measured['e2e_s'] * 1e3:.0f} ms, engine "
                    f"{measured['engine_s'] * 1e3:.0f} ms, direct {measured['direct_s'] * 1e3:.0f} ms; "
                    f"{len(rows)} rows",
                    flush=True,
                )
        finally:
            store.close()
    return result


def report(results: list[dict[str, Any]], timing: dict[str, Any]) -> int:
    """Prints the table and the verdicts; returns the exit status (1 when a target fails)."""
    results = sorted(results, key=lambda r: r["size"])
    print()
    print(
        f"{'size':>11} {'e2e ms':>8} {'engine ms':>9} {'direct ms':>9} {'e2e/dir':>7} {'CPU e2e s':>9} "
        f"{'CPU dir s':>9} {'spread':>6}"
    )
    failed = False
    for r in results:
        q = r["group_by"]
        print(
            f"{r['size']:>11,} {q['e2e_s'] * 1e3:>8.0f} {q['engine_s'] * 1e3:>9.0f} {q['direct_s'] * 1e3:>9.0f} "
            f"{q['e2e_s'] / q['direct_s']:>7.3f} {q['e2e_cpu_s']:>9.2f} {q['direct_cpu_s']:>9.2f} "
            f"{kit.spread(q['samples']):>6.0%}"
        )
    print()
    for r in results:
        ratio = r["group_by"]["e2e_s"] / r["group_by"]["direct_s"]
        ok = ratio <= TARGET_E2E_DIRECT
        failed |= not ok
        print(f"{kit.verdict(ok)}  group_by: e2e / direct {ratio:.3f} <= {TARGET_E2E_DIRECT} at {r['size']:,}")
    ok = timing["compile_ms"] <= TARGET_COMPILE_MS
    failed |= not ok
    print(
        f"{kit.verdict(ok)}  compile of a {timing['lines']}-line statement: {timing['compile_ms']:.2f} ms CPU "
        f"<= {TARGET_COMPILE_MS} ms ({timing['compile_ms'] / timing['parse_ms']:.2f}x sqlglot's parse alone)"
    )
    return 1 if failed else 0


def main() -> int:
    options = kit.parser(__doc__)
    options.add_argument("--compile-runs", type=int, default=500, help="timed compiles of the 50-line statement")
    options.add_argument("--compile-only", action="store_true", help="time the compile, load no events")
    args = options.parse_args()
    if args.optimize:
        return kit.optimize_main(args.optimize)
    if args.worker is not None:
        return kit.worker_main(measure_size, args)
    load = os.getloadavg()
    print(f"sql on demo data; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {os.cpu_count()} CPUs", flush=True)
    timing = compile_timing(args.compile_runs)
    print(
        f"compile: {timing['compile_ms']:.2f} ms CPU median ({timing['compile_wall_ms']:.2f} ms wall), sqlglot parse "
        f"alone {timing['parse_ms']:.2f} ms CPU ({timing['parse_wall_ms']:.2f} ms wall), ratio "
        f"{timing['compile_ms'] / timing['parse_ms']:.2f}; {timing['lines']} lines; "
        f"sqlglot compiled extensions: {'yes' if timing['compiled_extensions'] else 'no'}",
        flush=True,
    )
    if args.compile_only:
        return report([], timing)
    argv = ["--repeats", str(args.repeats), "--call-timeout", str(args.call_timeout)]
    argv += ["--show-sql"] if args.show_sql else []
    results = kit.run_sizes(__file__, args.sizes, argv, args.timeout)
    return results if isinstance(results, int) else report(results, timing)


if __name__ == "__main__":
    raise SystemExit(main())
