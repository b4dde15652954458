"""Trends end to end through gRPC against the same SQL run directly and the reference SQL shape, plus IngestEvents throughput."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import kit
from bench.serverproc import unthrottled
from generated.insights.v1 import common_pb2, events_pb2, insight_pb2, insight_pb2_grpc, query_pb2
from server.app import App
from server.cli.demo import Dataset, generate
from server.cli.loader import to_proto
from server.config import Settings
from server.domain import accounts
from server.principal import EnvironmentInfo
from server.queries.base import Definitions, QueryContext
from server.queries.common.codec import from_reference_json
from server.queries.common.dates import QueryDateRange
from server.queries.common.sql import Params
from server.queries.trends.compute import TrendsOutcome, run_trends
from server.transport import client_channel, with_server_tls
from storage.db import Database
from storage.events import EventStore
from storage.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
INGEST_METHOD = "/insights.v1.EventsService/IngestEvents"
NULL_LABEL = "$$_posthog_breakdown_null_$$"
OTHER_LABEL = "$$_posthog_breakdown_other_$$"
BREAKDOWN_LIMIT = 25
# Targets (at the largest size): e2e / direct, e2e / reference shape, per-event time drift.
TARGET_E2E_DIRECT = 1.15
TARGET_E2E_REFERENCE = 0.6
TARGET_PER_EVENT_DRIFT = 0.30
Metadata = tuple[tuple[str, str], ...]
Statement = tuple[str, dict[str, Any]]


def _trends(series: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "kind": "InsightVizNode",
        "source": {
            "kind": "TrendsQuery",
            "series": [series],
            "interval": "day",
            "dateRange": {"date_from": "-90d"},
            **extra,
        },
    }


# The measured queries, as the reference JSON a client would save (the demo insights, over 90 days).
QUERIES: dict[str, dict[str, Any]] = {
    "breakdown": _trends(
        {"kind": "EventsNode", "event": "$pageview", "name": "$pageview", "math": "total"},
        breakdownFilter={"breakdown": "$browser", "breakdown_type": "event"},
    ),
    "dau": _trends({"kind": "EventsNode", "event": "$pageview", "name": "$pageview", "math": "dau"}),
    "weekly_active": _trends(
        {"kind": "EventsNode", "event": None, "name": "All events", "math": "weekly_active"}
    ),
}


# ---------------------------------------------------------------------------
# The reference implementation's SQL shape for the breakdown trend (§1.3, §3.4, §3.6)
# ---------------------------------------------------------------------------


def reference_breakdown_sql(
    params: Params, team_id: int, event: str, key: str, dates: QueryDateRange, limit: int
) -> str:
    """The day-interval breakdown trend as the reference prints it, every value bound.

    Property access through `replaceRegexpAll(nullIf(nullIf(JSONExtractRaw(...))))`, `toTimeZone`
    around the timestamp in the filter and the bucket, the events query summed per (day, value),
    the top `limit` values by ordering/total/value (the rest become Other), and the zero fill
    with `indexOf`/`arrayLastIndex`/`arraySlice` over `groupArray`s, one row per breakdown value.
    """
    lower, upper = dates.sql_bounds()
    tz = params.bind(dates.timezone, "String")
    start = f"toStartOfDay(toDateTime64({params.bind(lower, 'String')}, 6, {tz}))"
    end = f"toDateTime64({params.bind(upper, 'String')}, 6, {tz})"
    null_label, other_label = params.bind(NULL_LABEL, "String"), params.bind(OTHER_LABEL, "String")
    prop = (
        f"replaceRegexpAll(nullIf(nullIf(JSONExtractRaw(e.properties, {params.bind(key, 'String')}), ''), "
        f"'null'), '^\"|\"$', '')"
    )
    breakdown_value = f"ifNull(nullIf(toString({prop}), ''), {null_label})"
    events_query = (
        f"SELECT count() AS total, toStartOfDay(toTimeZone(e.timestamp, {tz})) AS day_start, "
        f"{breakdown_value} AS breakdown_value "
        f"FROM events AS e "
        f"WHERE and(equals(e.team_id, {params.bind(team_id, 'Int64')}), "
        f"greaterOrEquals(toTimeZone(e.timestamp, {tz}), {start}), "
        f"lessOrEquals(toTimeZone(e.timestamp, {tz}), {end}), "
        f"equals(e.event, {params.bind(event, 'String')})) "
        f"GROUP BY day_start, breakdown_value"
    )
    ordering = (
        f"if(equals(breakdown_value, {other_label}), 2, if(equals(breakdown_value, {null_label}), 1, 0))"
    )
    series = f"SELECT sum(total) AS count, day_start, breakdown_value FROM ({events_query}) GROUP BY day_start, breakdown_value"
    totals = (
        f"SELECT count, day_start, breakdown_value, {ordering} AS ordering, "
        f"sum(count) OVER (PARTITION BY breakdown_value) AS value_total FROM ({series})"
    )
    ranked = (
        f"SELECT count, day_start, breakdown_value, "
        f"dense_rank() OVER (ORDER BY ordering ASC, value_total DESC, breakdown_value ASC) AS rank "
        f"FROM ({totals})"
    )
    limited = (
        f"SELECT sum(count) AS count, day_start, "
        f"if(rank > {params.bind(limit, 'UInt32')}, {other_label}, breakdown_value) AS breakdown_value "
        f"FROM ({ranked}) GROUP BY day_start, breakdown_value ORDER BY day_start ASC, breakdown_value ASC"
    )
    date_grid = (
        f"arrayMap(number -> plus({start}, toIntervalDay(number)), "
        f"range(0, plus(dateDiff('day', {start}, toStartOfDay({end})), 1)))"
    )
    zero_fill = (
        "arrayMap(_match_date -> arraySum(arraySlice(groupArray(ifNull(count, 0)), "
        "indexOf(groupArray(day_start) AS _days_for_count, _match_date) AS _index, "
        "plus(minus(arrayLastIndex(x -> equals(x, _match_date), _days_for_count), _index), 1))), date)"
    )
    return (
        f"SELECT {date_grid} AS date, {zero_fill} AS total, breakdown_value "
        f"FROM ({limited}) GROUP BY breakdown_value "
        f"ORDER BY {ordering} ASC, arraySum(total) DESC, breakdown_value ASC"
    )


# ---------------------------------------------------------------------------
# One size, in its own process (`trends.py --worker SIZE --dir TMP --out FILE`)
# ---------------------------------------------------------------------------


def _run_direct(store: EventStore, statements: Sequence[Statement]) -> None:
    for sql, params in statements:
        store.query(sql, params)


def _series_view(series: Any) -> list[tuple[str, list[float]]]:
    return [(s.label, [round(v, 6) for v in s.data]) for s in series]


def load_dataset(store: EventStore, data: Dataset) -> tuple[float, int]:
    """The demo generator's column inserts, then one merge per partition: (seconds, bytes on disk)."""
    began = time.perf_counter()
    store.ensure_schema()
    for columns in data.columns(100_000):
        store.insert_event_columns(columns)
    store.insert_persons(data.persons())
    # Merged parts, as a table that has lived a while has: the same layout at every size.
    store.query("OPTIMIZE TABLE events FINAL")
    rows = store.query("SELECT sum(bytes_on_disk) FROM system.parts WHERE table = 'events' AND active")
    return time.perf_counter() - began, int(rows[0][0] or 0)


async def wait_serving(target: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with client_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the in-process server did not report SERVING within {timeout:g}s")


def _ingest_messages(data: Dataset, environment_id: int, per_message: int) -> tuple[list[bytes], int]:
    """The dataset as serialized IngestEventsRequest messages (built before any timing): (messages, bytes)."""
    messages: list[bytes] = []
    total = 0
    for chunk in data.events(per_message):
        payload = ingest_request(environment_id, chunk)
        messages.append(payload)
        total += len(payload)
    return messages, total


def ingest_request(environment_id: int, rows: Sequence[Any]) -> bytes:
    """One serialized IngestEventsRequest carrying `rows` (EventRow) as the loader sends them."""
    return events_pb2.IngestEventsRequest(
        environment_id=environment_id, events=[to_proto(r) for r in rows]
    ).SerializeToString()


async def measure_ingest(
    app: App, target: str, metadata: Metadata, data: Dataset, env_rpc: int, env_direct: int, per_message: int
) -> dict[str, Any]:
    """IngestEvents (pre-serialized messages from this process) against direct inserts of the same events."""
    messages, wire_bytes = _ingest_messages(data, env_rpc, per_message)
    async with client_channel(target) as channel:
        call = channel.stream_unary(
            INGEST_METHOD, response_deserializer=events_pb2.IngestEventsResponse.FromString
        )

        async def requests() -> AsyncIterator[bytes]:
            for message in messages:
                yield message

        began = time.perf_counter()
        response = await call(requests(), metadata=metadata, timeout=1800)
        rpc_seconds = time.perf_counter() - began
    messages.clear()
    if response.accepted != len(data) or response.rejected:
        raise RuntimeError(
            f"IngestEvents accepted {response.accepted} and rejected {response.rejected} of {len(data)}"
        )
    # The rows the service stores, built up front so that only the inserts are timed.
    copy = dataclasses.replace(data, environment_id=env_direct)
    rows = [row for chunk in copy.events(100_000) for row in chunk]
    began = time.perf_counter()
    app.events.insert_events(rows)
    rows_seconds = time.perf_counter() - began
    del rows
    columns = list(dataclasses.replace(data, environment_id=env_direct + 1).columns(100_000))
    began = time.perf_counter()
    for batch in columns:
        app.events.insert_event_columns(batch)
    columns_seconds = time.perf_counter() - began
    for env in (env_rpc, env_direct, env_direct + 1):
        stored = app.events.count_events(env)
        if stored != len(data):
            raise RuntimeError(f"environment {env} holds {stored} events, expected {len(data)}")
    n = len(data)
    return {
        "events": n,
        "per_message": per_message,
        "wire_mb": wire_bytes / 1e6,
        "rpc_eps": n / rpc_seconds,
        "rows_eps": n / rows_seconds,
        "columns_eps": n / columns_seconds,
    }


async def measure_size(size: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Loads `size` demo events into a fresh store, serves it in-process and measures every query."""
    database_url = f"sqlite:///{tmp / 'insights.db'}"
    upgrade(database_url)
    db = Database(database_url)
    try:
        user_id, env_id = accounts.bootstrap(db)
        principal = accounts.verify_api_key(
            db, accounts.create_api_key(db, user_id, ["insight:read"], label="probe")[1]
        )
        org_id = principal.environments[env_id].organization_id
        env_rpc = accounts.create_environment(db, org_id, "ingest through the RPC")
        env_direct = accounts.create_environment(db, org_id, "direct inserts (rows)")
        accounts.create_environment(db, org_id, "direct inserts (columns)")
        _, raw_key = accounts.create_api_key(
            db, user_id, ["insight:read", "insight:write", "event:write"], label="bench"
        )
    finally:
        db.close()
    env: EnvironmentInfo = principal.environments[env_id]
    metadata: Metadata = (("authorization", f"Bearer {raw_key}"),)
    settings = Settings(
        listen="127.0.0.1:0",
        database_url=database_url,
        events_dsn=f"chdb://{tmp / 'events'}",
        log_level="WARNING",
        grace_seconds=1.0,
    )
    app = App(with_server_tls(unthrottled(settings)))
    result: dict[str, Any] = {"size": size, "queries": {}}
    try:
        began = time.perf_counter()
        data = generate(env_id, size, args.seed)
        result["generate_s"] = time.perf_counter() - began
        result["load_s"], result["disk_bytes"] = await asyncio.to_thread(load_dataset, app.events, data)
        print(
            f"[{size:,}] generated in {result['generate_s']:.1f}s, loaded and merged in "
            f"{result['load_s']:.1f}s ({result['disk_bytes'] / 1e6:.0f} MB on disk)",
            flush=True,
        )
        await app.start()
        target = app.address
        await wait_serving(target)
        async with client_channel(target) as channel:
            stub = insight_pb2_grpc.InsightsServiceStub(channel)
            for name, body in QUERIES.items():
                query = from_reference_json(body, query_pb2.QueryNode)
                created = await stub.CreateInsight(
                    insight_pb2.CreateInsightRequest(
                        environment_id=env_id, insight=insight_pb2.Insight(name=f"bench {name}", query=query)
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                request = insight_pb2.GetInsightRequest(
                    environment_id=env_id, id=created.id, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
                )
                result["queries"][name] = await measure_query(app, stub, request, metadata, env, body, args)
                q = result["queries"][name]
                print(
                    f"[{size:,}] {name}: e2e {q['e2e_s'] * 1e3:.0f} ms, engine {q['engine_s'] * 1e3:.0f} ms, "
                    f"direct {q['direct_s'] * 1e3:.0f} ms"
                    + (f", reference {q['reference_s'] * 1e3:.0f} ms" if "reference_s" in q else ""),
                    flush=True,
                )
        if size <= args.ingest_max_size:
            print(f"[{size:,}] IngestEvents vs direct inserts of the same {size:,} events ...", flush=True)
            result["ingest"] = await measure_ingest(
                app, target, metadata, data, env_rpc, env_direct, args.per_message
            )
    finally:
        await app.stop(grace=1.0)
    return result


async def measure_query(
    app: App,
    stub: insight_pb2_grpc.InsightsServiceStub,
    request: insight_pb2.GetInsightRequest,
    metadata: Metadata,
    env: EnvironmentInfo,
    body: dict[str, Any],
    args: argparse.Namespace,
    definitions: Definitions | None = None,
) -> dict[str, Any]:
    """Warm-up, then `repeats` rounds of e2e / engine / direct (/ reference), interleaved.
    `definitions`: the stored actions and cohorts the query names, as the service loads them."""
    trends = from_reference_json(body["source"], query_pb2.TrendsQuery)

    def context() -> QueryContext:
        return QueryContext(
            team_id=env.id,
            timezone=env.timezone,
            week_start_day=env.week_start_day,
            now=dt.datetime.now(dt.UTC),
            earliest=lambda: app.events.earliest_timestamp(env.id),
            # The same materialized columns as the service's own engine, so "direct" runs its SQL.
            materialized=app.events.materialized,
            definitions=definitions or Definitions(),
        )

    # The engine's statements and bound values, recorded while it runs them for real.
    statements: list[Statement] = []

    def recording(sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        statements.append((sql, dict(params)))
        return app.events.query(sql, params)

    def engine() -> TrendsOutcome:
        return run_trends(trends, context(), app.events.query)

    warm = await stub.GetInsight(request, metadata=metadata, timeout=args.call_timeout)
    outcome = await asyncio.to_thread(run_trends, trends, context(), recording)
    if _series_view(warm.result.trends.series) != _series_view(outcome.result.series):
        raise RuntimeError(f"GetInsight and the engine disagree on {body['source']['series']}")
    reference: Statement | None = None
    if "breakdownFilter" in body["source"]:
        params = Params()
        sql = reference_breakdown_sql(
            params, env.id, "$pageview", "$browser", outcome.date_range, BREAKDOWN_LIMIT
        )
        reference = (sql, params.values)
        rows = app.events.query(sql, params.values)
        got = {str(r[2]): [float(v) for v in r[1]] for r in rows}
        want = {s.label: list(s.data) for s in outcome.result.series}
        if got != want:
            raise RuntimeError(f"the reference shape disagrees with the engine:\n{got}\n{want}")
    timings: dict[str, list[float]] = {"e2e": [], "engine": [], "direct": [], "reference": []}
    for _ in range(args.repeats):
        began = time.perf_counter()
        reply = await stub.GetInsight(request, metadata=metadata, timeout=args.call_timeout)
        timings["e2e"].append(time.perf_counter() - began)
        if not reply.result.trends.series:
            raise RuntimeError("GetInsight returned no series")
        began = time.perf_counter()
        engine()
        timings["engine"].append(time.perf_counter() - began)
        began = time.perf_counter()
        _run_direct(app.events, statements)
        timings["direct"].append(time.perf_counter() - began)
        if reference is not None:
            began = time.perf_counter()
            app.events.query(*reference)
            timings["reference"].append(time.perf_counter() - began)
    measured: dict[str, Any] = {f"{k}_s": kit.median(v) for k, v in timings.items() if v}
    measured["statements"] = len(statements)
    measured["samples"] = {k: v for k, v in timings.items() if v}
    if args.show_sql:
        for text, values in statements:
            print(f"-- engine\n{text}\n-- {values}", flush=True)
        if reference is not None:
            print(f"-- reference\n{reference[0]}\n-- {reference[1]}", flush=True)
    return measured


def worker_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)

    async def run() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGINT, signal.SIGTERM):  # cancel, so that the App stops and closes chDB
            asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
        return await measure_size(args.worker, Path(args.dir), args)

    try:
        result = asyncio.run(run())
    except asyncio.CancelledError:
        return 130
    Path(args.out).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------
# The parent: one subprocess per size, then the table
# ---------------------------------------------------------------------------


def report(results: list[dict[str, Any]]) -> int:
    """Prints the table and the verdicts; returns the exit status (1 when a target fails)."""
    results = sorted(results, key=lambda r: r["size"])
    first, last = results[0], results[-1]
    print()
    print(
        f"{'size':>11} {'query':<14} {'e2e ms':>8} {'engine ms':>9} {'direct ms':>9} {'ref ms':>8} "
        f"{'e2e/dir':>7} {'e2e/ref':>7} {'ns/event':>8} {'Δ vs ' + format(first['size'], ','):>14} "
        f"{'spread':>6}"
    )
    for r in results:
        for name, q in r["queries"].items():
            base = first["queries"][name]["e2e_s"] / first["size"]
            per_event = q["e2e_s"] / r["size"]
            drift = per_event / base - 1
            ref = q.get("reference_s")
            print(
                f"{r['size']:>11,} {name:<14} {q['e2e_s'] * 1e3:>8.1f} {q['engine_s'] * 1e3:>9.1f} "
                f"{q['direct_s'] * 1e3:>9.1f} {(ref * 1e3 if ref else float('nan')):>8.1f} "
                f"{q['e2e_s'] / q['direct_s']:>7.3f} {(q['e2e_s'] / ref if ref else float('nan')):>7.3f} "
                f"{per_event * 1e9:>8.1f} "
                f"{('—' if r is first else format(drift, '+.0%')):>14} {kit.spread(q['samples']):>6.0%}"
            )
    print()
    for r in results:
        ingest = r.get("ingest")
        if ingest is None:
            print(f"{r['size']:>11,} IngestEvents: skipped (above --ingest-max-size)")
            continue
        print(
            f"{r['size']:>11,} IngestEvents {ingest['rpc_eps']:>10,.0f} ev/s ({ingest['per_message']} events "
            f"per message, {ingest['wire_mb']:.0f} MB on the wire)   direct insert_events "
            f"{ingest['rows_eps']:>10,.0f} ev/s   ratio {ingest['rpc_eps'] / ingest['rows_eps']:.2f}   "
            f"(insert_event_columns {ingest['columns_eps']:,.0f} ev/s, ratio "
            f"{ingest['rpc_eps'] / ingest['columns_eps']:.2f})"
        )
    print()
    failed = False
    at = f"at {last['size']:,}"
    for name, q in last["queries"].items():
        ratio = q["e2e_s"] / q["direct_s"]
        ok = ratio <= TARGET_E2E_DIRECT
        failed |= not ok
        print(f"{kit.verdict(ok)}  {name}: e2e / direct {ratio:.3f} <= {TARGET_E2E_DIRECT} {at}")
    for name, q in last["queries"].items():
        if "reference_s" in q:
            ratio = q["e2e_s"] / q["reference_s"]
            ok = ratio <= TARGET_E2E_REFERENCE
            failed |= not ok
            print(f"{kit.verdict(ok)}  {name}: e2e / reference shape {ratio:.3f} <= {TARGET_E2E_REFERENCE} {at}")
    if last is not first:
        for name, q in last["queries"].items():
            drift = (q["e2e_s"] / last["size"]) / (first["queries"][name]["e2e_s"] / first["size"]) - 1
            ok = abs(drift) <= TARGET_PER_EVENT_DRIFT
            failed |= not ok
            note = " (cheaper per event: fixed costs amortised)" if drift < -TARGET_PER_EVENT_DRIFT else ""
            print(
                f"{kit.verdict(ok)}  {name}: time per event {first['size']:,} → {last['size']:,} "
                f"{drift:+.0%} within ±{TARGET_PER_EVENT_DRIFT:.0%}{note}"
            )
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--sizes",
        type=kit.sizes,
        default=[1_000_000, 10_000_000],
        help="demo event counts, space separated ('1000000 10000000')",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="measured rounds per query after a warm-up (5)"
    )
    parser.add_argument("--seed", type=int, default=7, help="demo data seed (7)")
    parser.add_argument(
        "--ingest-max-size",
        type=int,
        default=1_000_000,
        help="time IngestEvents only for sizes up to this many events (1000000)",
    )
    parser.add_argument("--per-message", type=int, default=2_000, help="events per IngestEvents message")
    parser.add_argument("--call-timeout", type=float, default=300.0, help="deadline of each RPC in seconds")
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds one size may take in all")
    parser.add_argument("--show-sql", action="store_true", help="print the engine's and the reference SQL")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser


def main() -> int:
    args = _parser().parse_args()
    if args.repeats < 1 or args.per_message < 1:
        raise SystemExit("--repeats and --per-message must be positive")
    if args.worker is not None:
        return worker_main(args)
    print(
        f"trends on demo data, sizes {', '.join(f'{s:,}' for s in args.sizes)}; {args.repeats} rounds after "
        f"a warm-up, medians; one process per size; {os.cpu_count()} CPUs",
        flush=True,
    )
    argv = ["--repeats", str(args.repeats), "--seed", str(args.seed), "--call-timeout", str(args.call_timeout)]
    argv += ["--ingest-max-size", str(args.ingest_max_size), "--per-message", str(args.per_message)]
    argv += ["--show-sql"] if args.show_sql else []
    results = kit.run_sizes(__file__, args.sizes, argv, args.timeout, pass_dir=True)
    return results if isinstance(results, int) else report(results)


if __name__ == "__main__":
    raise SystemExit(main())
