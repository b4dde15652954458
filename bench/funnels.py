"""Funnels end to end through gRPC against the same SQL run directly and the reference's SQL-fallback shape.

Per size (one process each): the demo dataset is loaded by `python -m server demo` (bench/serverproc.py)
and merged; the store is copied, a `python -m server serve` process serves one copy, and this process
opens the other, so that "direct" and "reference" run on the same engine and the same data, in a
process of their own, while e2e goes through the served process. Every query is a 3-step funnel
($pageview → signed_up → purchase, 14-day window, 90 days of data): ordered, ordered with a breakdown,
strict, unordered.

The reference shape is the reference's old SQL fallback (query-engine-semantics.md §4.3, "Old SQL
fallback": window functions per step, nested one level per step), written here from that text. It is a
COST BASELINE, not a second implementation of our semantics: its step counts may differ on edge cases
(several attempts, ties, strict resets), and the bench only prints whether they agree.

    .venv/bin/python bench/funnels.py                                  # 1M and 10M demo events
    .venv/bin/python bench/funnels.py --sizes "1000000" --repeats 5    # one size
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import kit
from bench.serverproc import Prepared, prepared, serving
from generated.insights.v1 import common_pb2, query_pb2, query_service_pb2, query_service_pb2_grpc
from server.queries.common.codec import from_reference_json
from server.queries.common.dates import QueryDateRange
from server.queries.common.properties import property_text
from server.queries.common.sql import Params
from server.queries.funnels.compute import FunnelsOutcome, run_funnels
from storage.events import EventStore

ROOT = Path(__file__).resolve().parent.parent
# Targets (at the largest size): e2e / direct, e2e / reference fallback shape.
TARGET_E2E_DIRECT = 1.15
TARGET_E2E_REFERENCE = 0.8
STEPS = ("$pageview", "signed_up", "purchase")
WINDOW_DAYS = 14
Statement = tuple[str, dict[str, Any]]


def _funnel(**extra: Any) -> dict[str, Any]:
    filters = {"funnelWindowInterval": WINDOW_DAYS, "funnelWindowIntervalUnit": "day", **extra.pop("filters", {})}
    return {
        "kind": "InsightVizNode",
        "source": {
            "kind": "FunnelsQuery",
            "series": [{"kind": "EventsNode", "event": e, "name": e} for e in STEPS],
            "dateRange": {"date_from": "-90d"},
            "funnelsFilter": filters,
            **extra,
        },
    }


# The measured queries, as the reference JSON a client would save.
QUERIES: dict[str, dict[str, Any]] = {
    "ordered": _funnel(),
    "breakdown": _funnel(breakdownFilter={"breakdown": "$browser", "breakdown_type": "event"}),
    "strict": _funnel(filters={"funnelOrderType": "strict"}),
    "unordered": _funnel(filters={"funnelOrderType": "unordered"}),
}


# ---------------------------------------------------------------------------
# The reference's old SQL fallback (§4.3), a cost baseline
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    """What the reference SQL is built for."""

    order: str  # ordered | strict | unordered
    breakdown: str | None  # an event property key, first-touch attribution


def reference_sql(params: Params, shape: Shape, team_id: int, dates: QueryDateRange) -> str:
    """The old fallback's statement: rows (prop, step_1..step_n counts of actors whose furthest step
    is k, mean and median conversion times per step), every value bound.

    Per event row and actor, `latest_i` is the first step-i time at or after the row (a window
    `min(...) OVER (PARTITION BY actor ORDER BY timestamp DESC ROWS UNBOUNDED PRECEDING)`), nested
    one query level per step so that `latest_0 <= latest_1 <= ...`; strict reads the i-th next event
    instead (`ROWS BETWEEN i PRECEDING AND i PRECEDING`); unordered is one such query per rotation of
    the steps under UNION ALL. Then the furthest step per row, `max(steps)` per actor, and counts per
    breakdown value. Not timed here (the old path ran it too): its separate breakdown-values query and
    the cumulative sums it did in Python.
    """
    n = len(STEPS)
    tz = params.bind(dates.timezone, "String")
    lower, upper = dates.sql_bounds()
    window = f"INTERVAL {params.bind(WINDOW_DAYS, 'UInt32')} DAY"
    by = "aggregation_target" + (", prop" if shape.breakdown else "")
    over = f"PARTITION BY {by} ORDER BY timestamp DESC"

    def events(steps: list[str]) -> str:
        cols = []
        for i, name in enumerate(steps):
            cols.append(f"if(event = {params.bind(name, 'String')}, 1, 0) AS step_{i}")
            cols.append(f"if(step_{i} = 1, timestamp, NULL) AS latest_{i}")
        where = [
            f"team_id = {params.bind(team_id, 'Int64')}",
            f"timestamp >= toDateTime64({params.bind(lower, 'String')}, 6, {tz})",
            f"timestamp <= toDateTime64({params.bind(upper, 'String')}, 6, {tz})",
        ]
        if shape.order != "strict":
            where.append(f"event IN {params.bind(sorted(set(steps)), 'Array(String)')}")
        prop = ""
        if shape.breakdown:
            basic = f"[ifNull({property_text(params, shape.breakdown, 'event')}, '')]"
            prop = f", {basic} AS prop_basic"
        inner = (
            f"SELECT person_id AS aggregation_target, timestamp, {', '.join(cols)}{prop} "
            f"FROM events WHERE {' AND '.join(where)}"
        )
        if shape.order != "strict":
            inner += " AND (" + " OR ".join(f"step_{i} = 1" for i in range(n)) + ")"
        if shape.breakdown:
            # First-touch attribution, a window per actor as the old path computed it.
            inner = (
                "SELECT *, argMinIf(prop_basic, timestamp, notEmpty(arrayFilter(x -> notEmpty(x), prop_basic))) "
                "OVER (PARTITION BY aggregation_target) AS prop_vals, "
                f"if(notEmpty(prop_vals), prop_vals, ['']) AS prop FROM ({inner})"
            )
        return inner

    def partition_cols(level: int, strict: bool = False) -> str:
        cols = []
        for i in range(n):
            cols.append(f"step_{i}")
            if i < level:
                cols.append(f"latest_{i}")
            elif strict:
                cols.append(f"min(latest_{i}) OVER ({over} ROWS BETWEEN {i} PRECEDING AND {i} PRECEDING) AS latest_{i}")
            else:
                cols.append(f"min(latest_{i}) OVER ({over} ROWS BETWEEN UNBOUNDED PRECEDING AND 0 PRECEDING) AS latest_{i}")
        return ", ".join(cols)

    prop_col = ", prop" if shape.breakdown else ""

    def comparison_cols(level: int) -> str:
        cols = []
        for i in range(n):
            cols.append(f"step_{i}")
            if i < level:
                cols.append(f"latest_{i}")
            else:
                cols.append(f"if(latest_{i} < latest_{level - 1}, NULL, latest_{i}) AS latest_{i}")
        return ", ".join(cols)

    def step_query(level: int) -> str:
        if level >= n:
            return (
                f"SELECT aggregation_target, timestamp, {partition_cols(1)}{prop_col} FROM ({events(list(STEPS))})"
            )
        return (
            f"SELECT aggregation_target, timestamp, {partition_cols(level)}{prop_col} FROM ("
            f"SELECT aggregation_target, timestamp, {comparison_cols(level)}{prop_col} FROM ({step_query(level + 1)}))"
        )

    def sorting(k: int) -> str:
        if k == 1:
            return "1"
        conditions = []
        for i in range(1, k):
            conditions.append(f"latest_{i - 1} <= latest_{i}")
            conditions.append(f"latest_{i} <= latest_0 + {window}")
        return f"if({' AND '.join(conditions)}, {k}, {sorting(k - 1)})"

    def step_times() -> str:
        return ", ".join(
            f"if(isNotNull(latest_{i}) AND latest_{i} <= latest_{i - 1} + {window}, "
            f"dateDiff('second', toDateTime(latest_{i - 1}), toDateTime(latest_{i})), NULL) AS step_{i}_conversion_time"
            for i in range(1, n)
        )

    if shape.order == "unordered":
        unordered_sorting = "arraySum([" + ", ".join(
            f"if(latest_0 < latest_{i} AND latest_{i} <= latest_0 + {window}, 1, 0)" for i in range(1, n)
        ) + ", 1])"
        times = ", ".join(
            f"if(isNotNull(conversion_times[{i + 1}]) AND conversion_times[{i + 1}] <= conversion_times[{i}] + {window}, "
            f"dateDiff('second', conversion_times[{i}], conversion_times[{i + 1}]), NULL) AS step_{i}_conversion_time"
            for i in range(1, n)
        )
        rotations = []
        for r in range(n):
            steps = list(STEPS[r:] + STEPS[:r])
            inner = f"SELECT aggregation_target, timestamp, {partition_cols(1)}{prop_col} FROM ({events(steps)})"
            rotations.append(
                f"SELECT aggregation_target{prop_col}, {unordered_sorting} AS steps, "
                f"arraySort([{', '.join(f'latest_{i}' for i in range(n))}]) AS conversion_times, {times} "
                f"FROM ({inner}) WHERE step_0 = 1"
            )
        per_row = " UNION ALL ".join(rotations)
    elif shape.order == "strict":
        inner = f"SELECT aggregation_target, timestamp, {partition_cols(1, strict=True)}{prop_col} FROM ({events(list(STEPS))})"
        per_row = f"SELECT *, {sorting(n)} AS steps, {step_times()} FROM ({inner}) WHERE step_0 = 1"
    else:
        per_row = f"SELECT *, {sorting(n)} AS steps, {step_times()} FROM ({step_query(2)}) WHERE step_0 = 1"

    names = ", ".join(f"step_{i}_conversion_time" for i in range(1, n))
    inner_avgs = ", ".join(f"avg(step_{i}_conversion_time) AS step_{i}_average_conversion_time_inner" for i in range(1, n))
    inner_medians = ", ".join(f"median(step_{i}_conversion_time) AS step_{i}_median_conversion_time_inner" for i in range(1, n))
    per_actor = (
        f"SELECT aggregation_target, steps, {inner_avgs}, {inner_medians}{prop_col} FROM ("
        f"SELECT aggregation_target, steps, max(steps) OVER (PARTITION BY {by}) AS max_steps, {names}{prop_col} "
        f"FROM ({per_row})) GROUP BY aggregation_target, steps{prop_col} HAVING steps = max(max_steps)"
    )
    counts = ", ".join(f"countIf(steps = {k}) AS step_{k}" for k in range(1, n + 1))
    avgs = ", ".join(f"avg(step_{i}_average_conversion_time_inner) AS step_{i}_average_conversion_time" for i in range(1, n))
    medians = ", ".join(f"median(step_{i}_median_conversion_time_inner) AS step_{i}_median_conversion_time" for i in range(1, n))
    order = ", ".join(f"step_{k} DESC" for k in range(n, 0, -1))
    if shape.breakdown:
        return f"SELECT prop, {counts}, {avgs}, {medians} FROM ({per_actor}) GROUP BY prop ORDER BY {order}"
    return f"SELECT [] AS prop, {counts}, {avgs}, {medians} FROM ({per_actor})"


def reference_counts(rows: list[tuple[Any, ...]]) -> dict[tuple[str, ...], list[int]]:
    """Actors per step from the reference rows: the furthest-step counts summed from the last step back."""
    n = len(STEPS)
    out = {}
    for row in rows:
        furthest = [int(c) for c in row[1 : 1 + n]]
        out[tuple(row[0])] = [sum(furthest[k:]) for k in range(n)]
    return out


def engine_counts(outcome: FunnelsOutcome) -> dict[tuple[str, ...], list[int]]:
    out = {}
    for group in outcome.result.steps.breakdowns:
        value = tuple(v.string_value for v in group.steps[0].breakdown_value.list_value.values)
        out[value] = [s.count for s in group.steps]
    return out


# ---------------------------------------------------------------------------
# One size, in its own process (`funnels.py --worker SIZE --out FILE`)
# ---------------------------------------------------------------------------


def measure_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Loads `size` demo events, serves one copy of the store, opens the other here, measures every query."""
    result: dict[str, Any] = {"size": size, "queries": {}}
    with prepared(size, f"insights-bench-funnels-{size}-") as ready:
        store = kit.merged_copy(__file__, ready, result)
        try:
            with serving(ready) as process, grpc.insecure_channel(ready.target) as channel:
                stub = query_service_pb2_grpc.QueryServiceStub(channel)
                metadata = (("authorization", f"Bearer {ready.key}"),)
                for name, body in QUERIES.items():
                    q = measure_query(name, body, ready, store, stub, metadata, process.pid, args)
                    result["queries"][name] = q
                    print(
                        f"[{size:,}] {name}: e2e {q['e2e_s'] * 1e3:.0f} ms, engine {q['engine_s'] * 1e3:.0f} ms, "
                        f"direct {q['direct_s'] * 1e3:.0f} ms, reference {q['reference_s'] * 1e3:.0f} ms; "
                        f"CPU e2e {q['e2e_cpu_s']:.2f} s, direct {q['direct_cpu_s']:.2f} s, "
                        f"reference {q['reference_cpu_s']:.2f} s; counts {q['counts']}, reference "
                        f"{'agrees' if q['reference_agrees'] else 'differs: ' + str(q['reference_counts'])}",
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
    metadata: tuple[tuple[str, str], ...],
    server_pid: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Warm-up and checks, then `repeats` interleaved rounds of e2e / engine / direct / reference."""
    node = from_reference_json(body, query_pb2.QueryNode)
    funnels = node.insight_viz_node.source.funnels_query
    request = query_service_pb2.RunQueryRequest(
        environment_id=ready.environment_id, query=node, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
    )
    ctx = kit.context(store, ready)
    statements: list[Statement] = []

    def recording(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        statements.append((sql, dict(params)))
        return store.query(sql, params)

    warm = stub.RunQuery(request, metadata=metadata, timeout=args.call_timeout)
    outcome = run_funnels(funnels, ctx, recording)
    if warm.result.funnels != outcome.result:
        raise RuntimeError(f"{name}: RunQuery and the engine on the copied store disagree")
    source = body["source"]
    shape = Shape(
        order=source["funnelsFilter"].get("funnelOrderType", "ordered"),
        breakdown=source.get("breakdownFilter", {}).get("breakdown"),
    )
    params = Params(columns=store.materialized)
    reference = (reference_sql(params, shape, ctx.team_id, outcome.date_range), params.values)
    ref_counts = reference_counts(store.query(*reference))
    counts = engine_counts(outcome)

    def e2e() -> None:
        reply = stub.RunQuery(request, metadata=metadata, timeout=args.call_timeout)
        if reply.result.funnels != outcome.result:
            raise RuntimeError(f"{name}: RunQuery's result changed between rounds")

    def direct() -> None:
        for sql, values in statements:
            store.query(sql, values)

    paths: dict[str, Callable[[], object]] = {
        "e2e": e2e,
        "engine": lambda: run_funnels(funnels, ctx, store.query),
        "direct": direct,
        "reference": lambda: store.query(*reference),
    }
    measured = kit.timed_rounds(paths, args.repeats, server_pid)
    measured["statements"] = len(statements)
    measured["counts"] = {"|".join(k): v for k, v in counts.items()}
    measured["reference_counts"] = {"|".join(k): v for k, v in ref_counts.items()}
    measured["reference_agrees"] = counts == ref_counts
    if args.show_sql:
        for text, values in statements:
            print(f"-- engine ({name})\n{text}\n-- {values}", flush=True)
        print(f"-- reference ({name})\n{reference[0]}\n-- {reference[1]}", flush=True)
    return measured


# ---------------------------------------------------------------------------
# The parent: one subprocess per size, then the table
# ---------------------------------------------------------------------------


def report(results: list[dict[str, Any]]) -> int:
    """Prints the table and the verdicts; returns the exit status (1 when a target fails)."""
    results = sorted(results, key=lambda r: r["size"])
    last = results[-1]
    print()
    print(
        f"{'size':>11} {'query':<10} {'e2e ms':>8} {'engine ms':>9} {'direct ms':>9} {'ref ms':>8} "
        f"{'e2e/dir':>7} {'e2e/ref':>7} {'paired':>13} {'CPU e2e s':>9} {'CPU dir s':>9} {'CPU ref s':>9} {'ref agrees':>10} {'spread':>6}"
    )
    for r in results:
        for name, q in r["queries"].items():
            print(
                f"{r['size']:>11,} {name:<10} {q['e2e_s'] * 1e3:>8.0f} {q['engine_s'] * 1e3:>9.0f} "
                f"{q['direct_s'] * 1e3:>9.0f} {q['reference_s'] * 1e3:>8.0f} "
                f"{q['e2e_s'] / q['direct_s']:>7.3f} {q['e2e_s'] / q['reference_s']:>7.3f} "
                f"{kit.paired_ratio(q['samples'], 'e2e', 'direct'):>6.3f} "
                f"{kit.paired_ratio(q['samples'], 'e2e', 'reference'):>6.3f} "
                f"{q['e2e_cpu_s']:>9.2f} {q['direct_cpu_s']:>9.2f} {q['reference_cpu_s']:>9.2f} "
                f"{('yes' if q['reference_agrees'] else 'no'):>10} {kit.spread(q['samples']):>6.0%}"
            )
    # The verdicts judge the paired ratios (median over rounds of e2e / baseline in one round): the
    # ratio of medians beside them swung by +-0.1 between runs at 10M on this shared machine.
    print("(e2e/dir, e2e/ref: ratios of the medians; paired: median of the per-round ratios, dir then ref)")
    print()
    failed = False
    at = f"at {last['size']:,}"
    for baseline, label, target in (
        ("direct", "direct", TARGET_E2E_DIRECT),
        ("reference", "reference fallback shape", TARGET_E2E_REFERENCE),
    ):
        for name, q in last["queries"].items():
            ratio = kit.paired_ratio(q["samples"], "e2e", baseline)
            ok = ratio <= target
            failed |= not ok
            print(f"{kit.verdict(ok)}  {name}: e2e / {label} {ratio:.3f} (paired) <= {target} {at}")
    return 1 if failed else 0


def main() -> int:
    return kit.main(__file__, __doc__, measure_size, report)


if __name__ == "__main__":
    raise SystemExit(main())
