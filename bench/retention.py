"""Retention end to end through gRPC against the same SQL run directly, and its time per event by size.

For each size (one subprocess and temp dir each: a chDB path belongs to one process) the demo data is
generated and loaded, a 7-day daily retention insight of `$pageview` (and a first-time one with a
breakdown) is saved, and each round times GetInsight with FORCE_BLOCKING (e2e), the runner alone
(engine) and the runner's recorded statement run directly (direct). Medians are printed with the
ratios e2e / direct (target <= 1.15) and the change in e2e time per event from the smallest to the
largest size (target: within ±30 % or cheaper).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.trends import load_dataset, wait_serving
from generated.insights.v1 import common_pb2, insight_pb2, insight_pb2_grpc, query_pb2
from server.app import App
from server.cli.demo import generate
from server.config import Settings
from server.domain import accounts
from server.queries.base import QueryContext
from server.queries.common.codec import from_reference_json
from server.queries.retention.compute import run_retention
from server.transport import client_channel, with_server_tls
from storage.db import Database
from storage.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
TARGET_E2E_DIRECT = 1.15
TARGET_PER_EVENT_DRIFT = 0.30
QUERIES: dict[str, dict[str, Any]] = {
    "recurring_7d": {"kind": "RetentionQuery", "retentionFilter": {"period": "Day", "totalIntervals": 7}},
    "first_time_breakdown": {
        "kind": "RetentionQuery",
        "retentionFilter": {"period": "Day", "totalIntervals": 7, "retentionType": "retention_first_time"},
        "breakdownFilter": {"breakdown": "$browser", "breakdown_type": "event"},
    },
}


async def measure_size(size: int, tmp: Path, repeats: int, seed: int) -> dict[str, Any]:
    database_url = f"sqlite:///{tmp / 'insights.db'}"
    upgrade(database_url)
    db = Database(database_url)
    try:
        user_id, env_id = accounts.bootstrap(db)
        principal = accounts.verify_api_key(
            db, accounts.create_api_key(db, user_id, ["insight:read"], label="p")[1]
        )
        _, raw_key = accounts.create_api_key(db, user_id, ["insight:read", "insight:write"], label="bench")
    finally:
        db.close()
    env = principal.environments[env_id]
    metadata = (("authorization", f"Bearer {raw_key}"),)
    settings = Settings(
        listen="127.0.0.1:0",
        database_url=database_url,
        events_dsn=f"chdb://{tmp / 'events'}",
        log_level="WARNING",
        grace_seconds=1.0,
    )
    app = App(with_server_tls(settings))
    result: dict[str, Any] = {"size": size, "queries": {}}
    try:
        data = generate(env_id, size, seed)
        result["load_s"], _ = await asyncio.to_thread(load_dataset, app.events, data)
        await app.start()
        await wait_serving(app.address)
        async with client_channel(app.address) as channel:
            stub = insight_pb2_grpc.InsightsServiceStub(channel)
            for name, body in QUERIES.items():
                node = from_reference_json(body, query_pb2.RetentionQuery)
                viz = query_pb2.QueryNode(
                    insight_viz_node=query_pb2.InsightVizNode(
                        source=query_pb2.InsightSource(retention_query=node)
                    )
                )
                created = await stub.CreateInsight(
                    insight_pb2.CreateInsightRequest(
                        environment_id=env_id, insight=insight_pb2.Insight(name=name, query=viz)
                    ),
                    metadata=metadata,
                    timeout=60,
                )
                request = insight_pb2.GetInsightRequest(
                    environment_id=env_id, id=created.id, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
                )

                def context() -> QueryContext:
                    return QueryContext(
                        team_id=env.id,
                        timezone=env.timezone,
                        week_start_day=env.week_start_day,
                        now=dt.datetime.now(dt.UTC),
                        materialized=app.events.materialized,
                    )

                recorded: list[tuple[str, dict[str, Any]]] = []

                def recording(
                    sql: str, params: dict[str, Any], recorded: list[tuple[str, dict[str, Any]]] = recorded
                ) -> Any:
                    recorded.append((sql, dict(params)))
                    return app.events.query(sql, params)

                warm = await stub.GetInsight(request, metadata=metadata, timeout=600)
                outcome = await asyncio.to_thread(run_retention, node, context(), recording)
                if warm.result.retention != outcome.result:
                    raise RuntimeError(f"GetInsight and the runner disagree on {name}")
                sizes = [c.values[0].count for c in outcome.result.cohorts]
                timings: dict[str, list[float]] = {"e2e": [], "engine": [], "direct": []}
                for _ in range(repeats):
                    began = time.perf_counter()
                    await stub.GetInsight(request, metadata=metadata, timeout=600)
                    timings["e2e"].append(time.perf_counter() - began)
                    began = time.perf_counter()
                    await asyncio.to_thread(run_retention, node, context(), app.events.query)
                    timings["engine"].append(time.perf_counter() - began)
                    began = time.perf_counter()
                    for sql, params in recorded:
                        await asyncio.to_thread(app.events.query, sql, params)
                    timings["direct"].append(time.perf_counter() - began)
                q = {f"{k}_s": statistics.median(v) for k, v in timings.items()}
                result["queries"][name] = q
                print(
                    f"[{size:,}] {name}: e2e {q['e2e_s'] * 1e3:.0f} ms, engine {q['engine_s'] * 1e3:.0f} ms, "
                    f"direct {q['direct_s'] * 1e3:.0f} ms; cohort sizes {sizes[:7]}",
                    flush=True,
                )
    finally:
        await app.stop(grace=1.0)
    return result


def run_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"insights-bench-retention-{size}-"))
    out = tmp / "result.json"
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        str(size),
        "--dir",
        str(tmp),
        "--out",
        str(out),
    ]
    argv += ["--repeats", str(args.repeats), "--seed", str(args.seed)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        if proc.wait(args.timeout) != 0:
            raise RuntimeError(f"the {size:,}-event run failed")
        loaded: dict[str, Any] = json.loads(out.read_text())
        return loaded
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def report(results: list[dict[str, Any]]) -> int:
    failed = False
    for name in QUERIES:
        for r in results:
            q = r["queries"][name]
            ratio = q["e2e_s"] / q["direct_s"]
            ok = ratio <= TARGET_E2E_DIRECT
            failed |= not ok
            print(
                f"{name} @ {r['size']:,}: e2e / direct = {ratio:.2f} (target <= {TARGET_E2E_DIRECT}) {'ok' if ok else 'MISSED'}"
            )
        if len(results) > 1:
            first, last = results[0], results[-1]
            per = [r["queries"][name]["e2e_s"] / r["size"] for r in (first, last)]
            drift = per[1] / per[0] - 1
            ok = drift <= TARGET_PER_EVENT_DRIFT
            failed |= not ok
            print(
                f"{name}: e2e per event {per[0] * 1e9:.0f} ns @ {first['size']:,} -> {per[1] * 1e9:.0f} ns @ "
                f"{last['size']:,}: {drift:+.0%} (target within +{TARGET_PER_EVENT_DRIFT:.0%}) {'ok' if ok else 'MISSED'}"
            )
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000 10000000", help="demo event counts, space separated")
    parser.add_argument("--repeats", type=int, default=5, help="measured rounds per query after a warm-up")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=2400.0, help="seconds one size may take in all")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        result = asyncio.run(measure_size(args.worker, Path(args.dir), args.repeats, args.seed))
        Path(args.out).write_text(json.dumps(result))
        return 0
    sizes = [int(s.replace("_", "")) for s in args.sizes.split()]
    print(
        f"retention on demo data, sizes {sizes}; {args.repeats} rounds after a warm-up, medians", flush=True
    )
    return report([run_size(size, args) for size in sizes])


if __name__ == "__main__":
    raise SystemExit(main())
