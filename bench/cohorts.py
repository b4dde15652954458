"""Cohort membership at query time against a materialised membership table, on the demo dataset.

For a behavioural cohort and a property cohort it times, on one chDB store:
- the membership subquery alone (counting its members);
- a 90-day daily trend of $pageview filtered to the cohort, with the subquery inside (query time)
  and with a lookup of a materialised `cohort_people` table instead;
- the same trend without any cohort filter (the baseline both are compared with);
- materialising the membership (INSERT ... SELECT), which the materialised approach pays again on
  every recalculation.

    .venv/bin/python bench/cohorts.py --events 10000000 [--store DIR] [--repeats 5]

`--store DIR` keeps the loaded store between runs (it is loaded once when empty).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generated.insights.v1 import cohorts_pb2
from server.cli.demo import generate
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition, membership_sql
from server.queries.common.sql import Params
from storage.cohort_members import CohortMembers
from storage.events import EventStore

TEAM = 1
COHORTS: dict[str, dict[str, Any]] = {
    # "Performed $pageview at least 5 times in the last 30 days"
    "behavioural": {
        "properties": {
            "type": "AND",
            "values": [
                {
                    "type": "AND",
                    "values": [{"behavioral": {"event": "$pageview", "count": 5, "time_value": 30}}],
                }
            ],
        }
    },
    # "plan is pro or business" (person property)
    "property": {
        "properties": {
            "type": "AND",
            "values": [
                {
                    "type": "AND",
                    "values": [
                        {
                            "person_property": {
                                "key": "plan",
                                "operator": "exact",
                                "value": ["pro", "business"],
                            }
                        }
                    ],
                }
            ],
        }
    },
}
MATERIALISED_DDL = (
    "CREATE TABLE IF NOT EXISTS cohort_people (team_id Int64, cohort_id Int64, version Int64, person_id UUID) "
    "ENGINE = ReplacingMergeTree ORDER BY (team_id, cohort_id, version, person_id)"
)
TREND = (
    "SELECT toStartOfDay(timestamp) AS day, count() FROM events WHERE team_id = {team:Int64} "
    "AND event = '$pageview' AND timestamp >= now64(6) - INTERVAL 90 DAY {extra} GROUP BY day ORDER BY day"
)


def command(store: EventStore, sql: str, parameters: dict[str, Any] | None = None) -> None:
    """A statement without a result (DDL, INSERT ... SELECT, mutation), its values bound."""
    with store.client() as client:
        client.command(sql, parameters=parameters)


def load(store: EventStore, events: int) -> None:
    started = time.monotonic()
    data = generate(TEAM, events, seed=0)
    for columns in data.columns(chunk=200_000):
        store.insert_event_columns(columns)
    store.insert_persons(data.persons())
    print(f"loaded {events:,} events and their persons in {time.monotonic() - started:.0f} s", flush=True)


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure(store: EventStore, name: str, definition: dict[str, Any], repeats: int) -> dict[str, float]:
    """Medians over `repeats` rounds; each round runs every variant once, in turn, so that the load
    of a shared machine weighs on all of them alike (ratios are per round, then the median)."""
    cohort = CohortDefinition(
        id=100 + len(name),
        name=name,
        version=1,
        is_static=False,
        filters=from_reference_json(definition, cohorts_pb2.CohortFilters),
    )
    params = Params()
    sql = membership_sql(
        params, cohort, team_id=TEAM, timezone="UTC", now=dt.datetime.now(dt.UTC), resolve=lambda _: None
    )
    values = params.values
    version = time.time_ns()
    materialise_sql = (
        "INSERT INTO cohort_people SELECT {team:Int64}, {c:Int64}, {v:Int64}, person_id FROM (" + sql + ")"
    )
    lookup = (
        "AND person_id IN (SELECT person_id FROM cohort_people WHERE team_id = {team:Int64} "
        "AND cohort_id = {c:Int64} AND version = {v:Int64})"
    )
    variants: dict[str, Callable[[], object]] = {
        "baseline": lambda: store.query(TREND.replace("{extra}", ""), {"team": TEAM}),
        "subquery": lambda: store.query(f"SELECT count() FROM ({sql})", values),
        "trend_query_time": lambda: store.query(
            TREND.replace("{extra}", f"AND person_id IN ({sql})"), {**values, "team": TEAM}
        ),
        "materialise": lambda: command(
            store, materialise_sql, {**values, "team": TEAM, "c": cohort.id, "v": version}
        ),
        "trend_materialised": lambda: store.query(
            TREND.replace("{extra}", lookup), {"team": TEAM, "c": cohort.id, "v": version}
        ),
    }
    members = store.query(f"SELECT count() FROM ({sql})", values)[0][0]
    samples: dict[str, list[float]] = {key: [] for key in variants}
    for round_number in range(repeats + 1):
        for key, run in variants.items():
            seconds = timed(run)
            if round_number:  # the first round warms caches up
                samples[key].append(seconds)
    out = {key: statistics.median(values) for key, values in samples.items()}
    for key in ("trend_query_time", "trend_materialised"):
        out[f"{key}_ratio"] = statistics.median(
            t / b for t, b in zip(samples[key], samples["baseline"], strict=True)
        )
    out["members"] = float(members)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--store", help="a directory that keeps the loaded store between runs")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="bench-cohorts-"))
    store = EventStore(f"chdb://{folder}/events")
    try:
        store.ensure_schema()
        CohortMembers(store).ensure_schema()
        command(store, MATERIALISED_DDL)
        if store.count_events(TEAM) == 0:
            load(store, args.events)
        events = store.count_events(TEAM)
        persons = store.query("SELECT count() FROM persons WHERE team_id = {t:Int64}", {"t": TEAM})[0][0]
        print(f"{events:,} events, {persons:,} persons (medians of {args.repeats} interleaved rounds)")
        for name, definition in COHORTS.items():
            m = measure(store, name, definition, args.repeats)
            print(
                f"{name:12} members {m['members']:>9,.0f} | trend without cohort {m['baseline'] * 1000:5.0f} ms | "
                f"membership alone {m['subquery'] * 1000:5.0f} ms | "
                f"trend, query time {m['trend_query_time'] * 1000:5.0f} ms (x{m['trend_query_time_ratio']:.2f}) | "
                f"trend, materialised {m['trend_materialised'] * 1000:5.0f} ms (x{m['trend_materialised_ratio']:.2f}) | "
                f"materialising {m['materialise'] * 1000:5.0f} ms"
            )
    finally:
        store.close()
        if not args.store:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
