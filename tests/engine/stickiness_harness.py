"""Runs a reference-JSON StickinessQuery through the SQL engine on embedded chDB, in the oracle's shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.stickiness.compute import StickinessOutcome, run_stickiness
from storage.events import EventStore
from tests.engine.harness import definitions_of, item_differences, query_context
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
    ctx = query_context(
        store,
        events,
        timezone=timezone,
        week_start_day=week_start_day,
        now=now,
        test_account_filters=test_account_filters,
        team_id=team_id,
        definitions=definitions_of(actions, cohorts),
    )
    proto = from_reference_json(query, query_pb2.StickinessQuery)
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
    return item_differences(expected, actual, lambda n, item: f"item {n} ({item['label']})")
