"""Runs a reference-JSON StickinessQuery through the SQL engine on embedded chDB, in the oracle's shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Definitions, QueryContext
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.stickiness.compute import StickinessOutcome, run_stickiness
from storage.events import EventStore
from tests.engine.harness import action_definition, event_rows, next_team_id
from tests.oracle import Event


@dataclass
class StickinessRun:
    results: list[dict[str, Any]]
    outcome: StickinessOutcome


def run_stickiness_engine(
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
    cohorts: dict[int, CohortDefinition] | None = None,
) -> StickinessRun:
    """Inserts `events` for a fresh environment (unless `team_id` is given) and runs `query` on them."""
    if team_id is None:
        team_id = next_team_id()
        if events:
            store.insert_events(event_rows(team_id, events))
    proto = from_reference_json(query, query_pb2.StickinessQuery)
    ctx = QueryContext(
        team_id=team_id,
        timezone=timezone,
        week_start_day=week_start_day,
        now=now,
        test_account_filters=[
            from_reference_json(f, query_pb2.PropertyFilter) for f in (test_account_filters or [])
        ],
        earliest=lambda: store.earliest_timestamp(team_id),
        materialized=store.materialized,
        definitions=Definitions(
            actions={i: action_definition(a) for i, a in (actions or {}).items()}, cohorts=cohorts or {}
        ),
    )
    outcome = run_stickiness(proto, ctx, execute=store.query)
    return StickinessRun(as_json(outcome.result), outcome)


def as_json(result: results_pb2.StickinessResult) -> list[dict[str, Any]]:
    """Engine items in the oracle's shape."""
    out = []
    for item in result.series:
        shaped: dict[str, Any] = {
            "data": list(item.data),
            "days": list(item.days),
            "labels": list(item.labels),
            "count": item.count,
            "label": item.label,
            "action": MessageToDict(item.action, preserving_proto_field_name=True),
        }
        if item.compare:
            shaped |= {"compare": True, "compare_label": item.compare_label}
        out.append(shaped)
    return out


def differences(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    """What differs between the oracle's items and the engine's, as readable lines (empty: equal)."""
    problems: list[str] = []
    if len(expected) != len(actual):
        problems.append(f"item count: oracle {len(expected)} engine {len(actual)}")
    for n, (want, got) in enumerate(zip(expected, actual, strict=False)):
        for key in sorted(set(want) | set(got)):
            a, b = want.get(key, "<missing>"), got.get(key, "<missing>")
            if a != b:
                problems.append(f"item {n} ({want['label']}) {key}: oracle {a!r} engine {b!r}")
    return problems
