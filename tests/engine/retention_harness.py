"""Runs a reference-JSON RetentionQuery through the SQL engine on embedded chDB, in the oracle's shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.common.codec import from_reference_json
from server.queries.retention.compute import RetentionOutcome, run_retention
from storage.events import EventStore
from tests.engine.harness import definitions_of, query_context
from tests.oracle import Event


@dataclass
class RetentionRun:
    results: list[dict[str, Any]]
    has_more: bool
    outcome: RetentionOutcome


def run_retention_engine(
    store: EventStore,
    events: Sequence[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: dt.datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
    team_id: int | None = None,
) -> RetentionRun:
    """Inserts `events` for a fresh environment (unless `team_id` is given) and runs `query` on them."""
    ctx = query_context(
        store,
        events,
        timezone=timezone,
        week_start_day=week_start_day,
        now=now,
        test_account_filters=test_account_filters,
        team_id=team_id,
        definitions=definitions_of(actions),
    )
    proto = from_reference_json(query, query_pb2.RetentionQuery)
    outcome = run_retention(proto, ctx, execute=store.query)
    return RetentionRun(as_json(outcome.result), outcome.has_more, outcome)


def as_json(result: results_pb2.RetentionResult) -> list[dict[str, Any]]:
    """Engine cohorts in the oracle's shape (every key the oracle produces)."""
    out = []
    for cohort in result.cohorts:
        item: dict[str, Any] = {
            "date": cohort.date,
            "label": cohort.label,
            "values": [{"count": v.count, "label": v.label} for v in cohort.values],
        }
        if cohort.HasField("breakdown_value"):
            item["breakdown_value"] = cohort.breakdown_value.string_value
        out.append(item)
    return out


def differences(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    """What differs between the oracle's cohorts and the engine's, as readable lines (empty: equal)."""
    problems: list[str] = []
    if len(expected) != len(actual):
        problems.append(
            f"cohort count: oracle {len(expected)} engine {len(actual)}\n"
            f"  oracle {[(c.get('breakdown_value'), c['date']) for c in expected]}\n"
            f"  engine {[(c.get('breakdown_value'), c['date']) for c in actual]}"
        )
    for n, (want, got) in enumerate(zip(expected, actual, strict=False)):
        for key in sorted(set(want) | set(got)):
            a, b = want.get(key, "<missing>"), got.get(key, "<missing>")
            if a != b:
                problems.append(
                    f"cohort {n} ({want.get('breakdown_value')!r} {want['label']}) {key}: oracle {a!r} engine {b!r}"
                )
    return problems


def counts(results: list[dict[str, Any]]) -> list[list[int]]:
    """The counts of each cohort, in order (for rule tests)."""
    return [[v["count"] for v in cohort["values"]] for cohort in results]
