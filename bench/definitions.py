"""Trends over stored definitions end to end: a series of a 3-step action and a trend filtered by a
behavioural cohort, on the demo dataset, GetInsight against the same SQL run directly.

The action and the cohort are created through ActionsService and CohortsService; GetInsight (force
blocking) computes the insight through the whole service (auth, definition loading, execution, cache
write); "engine" runs the runner in this process with the definitions the service loads; "direct"
replays the engine's statements with their bound values. Target (issue 12): e2e / direct <= 1.15.

    .venv/bin/python bench/definitions.py --events 10000000 [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cohorts import COHORTS
from bench.serverproc import unthrottled
from bench.trends import Metadata, load_dataset, measure_query, wait_serving
from generated.insights.v1 import (
    actions_pb2,
    actions_pb2_grpc,
    cohorts_pb2,
    cohorts_pb2_grpc,
    common_pb2,
    insight_pb2,
    insight_pb2_grpc,
    query_pb2,
)
from server.app import App
from server.cli.demo import generate
from server.config import Settings
from server.domain import accounts
from server.domain.definitions import DefinitionLoader
from server.queries.common.codec import from_reference_json
from server.queries.registry import RUNNERS
from server.transport import client_channel, with_server_tls
from storage.db import Database
from storage.migrate import upgrade

TARGET_E2E_DIRECT = 1.15
SCOPES = ["insight:read", "insight:write", "action:write", "cohort:write"]

# Three ways to "engage": the invite form's submit button (selector over the chain), a view of the
# pricing page (URL contains), the hero's call to action (text and href).
ACTION = {
    "name": "Engaged",
    "steps": [
        {"event": "$autocapture", "selector": "form#invite > button.btn-primary"},
        {"event": "$pageview", "url": "/pricing", "url_matching": "contains"},
        {"event": "$autocapture", "text": "Start free trial", "href": "/signup"},
    ],
}


def _trend(series: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "kind": "TrendsQuery",
        "series": [series],
        "interval": "day",
        "dateRange": {"date_from": "-90d"},
        **extra,
    }


def queries(action_id: int, cohort_id: int) -> dict[str, dict[str, Any]]:
    """The measured insights, as the reference JSON a client would save."""
    return {
        "action_total": {
            "kind": "InsightVizNode",
            "source": _trend({"kind": "ActionsNode", "id": action_id, "math": "total"}),
        },
        "action_dau": {
            "kind": "InsightVizNode",
            "source": _trend({"kind": "ActionsNode", "id": action_id, "math": "dau"}),
        },
        "cohort_filter": {
            "kind": "InsightVizNode",
            "source": _trend(
                {"kind": "EventsNode", "event": "$pageview", "math": "total"},
                properties=[{"type": "cohort", "key": "id", "value": cohort_id}],
            ),
        },
    }


def _prepare(tmp: Path) -> tuple[str, int, int, Metadata]:
    """A metadata store with one environment and a key: (database url, user, environment, metadata)."""
    database_url = f"sqlite:///{tmp / 'insights.db'}"
    upgrade(database_url)
    db = Database(database_url)
    try:
        user_id, env_id = accounts.bootstrap(db)
        _, raw_key = accounts.create_api_key(db, user_id, SCOPES, label="bench")
    finally:
        db.close()
    return database_url, user_id, env_id, (("authorization", f"Bearer {raw_key}"),)


async def run(args: argparse.Namespace, tmp: Path) -> list[tuple[str, dict[str, Any]]]:
    database_url, user_id, env_id, metadata = _prepare(tmp)
    settings = Settings(
        listen="127.0.0.1:0",
        database_url=database_url,
        events_dsn=f"chdb://{tmp / 'events'}",
        log_level="WARNING",
        grace_seconds=1.0,
    )
    app = App(with_server_tls(unthrottled(settings)))
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        began = time.perf_counter()
        data = generate(env_id, args.events, args.seed)
        load_s, disk = await asyncio.to_thread(load_dataset, app.events, data)
        print(
            f"[{args.events:,}] generated and loaded in {time.perf_counter() - began:.1f}s "
            f"(load {load_s:.1f}s, {disk / 1e6:.0f} MB on disk)",
            flush=True,
        )
        await app.start()
        await wait_serving(app.address)
        db = Database(database_url)
        try:
            principal = accounts.verify_api_key(db, metadata[0][1].removeprefix("Bearer "))
            env = principal.environments[env_id]
            async with client_channel(app.address) as channel:
                action = await actions_pb2_grpc.ActionsServiceStub(channel).CreateAction(
                    actions_pb2.CreateActionRequest(
                        environment_id=env_id, action=from_reference_json(ACTION, actions_pb2.Action)
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                cohort = await cohorts_pb2_grpc.CohortsServiceStub(channel).CreateCohort(
                    cohorts_pb2.CreateCohortRequest(
                        environment_id=env_id,
                        cohort=cohorts_pb2.Cohort(
                            name="Frequent viewers",
                            filters=from_reference_json(COHORTS["behavioural"], cohorts_pb2.CohortFilters),
                        ),
                    ),
                    metadata=metadata,
                    timeout=30,
                )
                stub = insight_pb2_grpc.InsightsServiceStub(channel)
                load = DefinitionLoader(db)
                for name, body in queries(action.id, cohort.id).items():
                    node = from_reference_json(body, query_pb2.QueryNode)
                    created = await stub.CreateInsight(
                        insight_pb2.CreateInsightRequest(
                            environment_id=env_id, insight=insight_pb2.Insight(name=f"bench {name}", query=node)
                        ),
                        metadata=metadata,
                        timeout=30,
                    )
                    trends = node.insight_viz_node.source.trends_query
                    runner = RUNNERS.runner("trends_query")
                    assert runner is not None
                    definitions = load(env_id, runner.references(trends))
                    request = insight_pb2.GetInsightRequest(
                        environment_id=env_id, id=created.id, refresh=common_pb2.REFRESH_MODE_FORCE_BLOCKING
                    )
                    measured = await measure_query(app, stub, request, metadata, env, body, args, definitions)
                    results.append((name, measured))
                    print(
                        f"[{args.events:,}] {name}: e2e {measured['e2e_s'] * 1e3:.0f} ms, engine "
                        f"{measured['engine_s'] * 1e3:.0f} ms, direct {measured['direct_s'] * 1e3:.0f} ms",
                        flush=True,
                    )
        finally:
            db.close()
    finally:
        await app.stop(grace=1.0)
    del user_id
    return results


def report(events: int, results: list[tuple[str, dict[str, Any]]]) -> int:
    print(f"\n{'query':<14} {'e2e ms':>8} {'engine ms':>9} {'direct ms':>9} {'e2e/dir':>8} {'spread':>7}")
    failed = 0
    for name, q in results:
        ratio = q["e2e_s"] / q["direct_s"]
        samples = q["samples"]
        spread = max((max(v) - min(v)) / sorted(v)[len(v) // 2] for v in samples.values() if v)
        print(
            f"{name:<14} {q['e2e_s'] * 1e3:>8.1f} {q['engine_s'] * 1e3:>9.1f} {q['direct_s'] * 1e3:>9.1f} "
            f"{ratio:>8.3f} {spread:>6.0%}"
        )
    print()
    for name, q in results:
        ratio = q["e2e_s"] / q["direct_s"]
        ok = ratio <= TARGET_E2E_DIRECT
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {name}: e2e / direct {ratio:.3f} <= {TARGET_E2E_DIRECT} at {events:,}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="demo events (1000000)")
    parser.add_argument("--repeats", type=int, default=7, help="measured rounds per query after a warm-up (7)")
    parser.add_argument("--seed", type=int, default=7, help="demo data seed (7)")
    parser.add_argument("--call-timeout", type=float, default=300.0, help="deadline of each RPC in seconds")
    args = parser.parse_args()
    args.show_sql = False
    print(
        f"trends over an action and a cohort, {args.events:,} demo events; {args.repeats} rounds after a "
        f"warm-up, medians; {os.cpu_count()} CPUs",
        flush=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="insights-bench-definitions-"))
    try:
        results = asyncio.run(run(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report(args.events, results)


if __name__ == "__main__":
    raise SystemExit(main())
