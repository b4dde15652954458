"""Runs a reference-JSON LifecycleQuery through the SQL engine on embedded chDB, in the oracle's shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.common.codec import from_reference_json, to_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.lifecycle.compute import LifecycleOutcome, run_lifecycle
from storage.events import EventStore
from tests.engine.harness import definitions_of, item_differences, query_context
from tests.oracle import Event


@dataclass
class LifecycleRun:
    results: list[dict[str, Any]]
    outcome: LifecycleOutcome


def run_lifecycle_engine(
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
) -> LifecycleRun:
    """Inserts `events` (ingestion keeps their persons current) for a fresh environment (unless
    `team_id` is given) and runs `query`."""
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
    proto = from_reference_json(query, query_pb2.LifecycleQuery)
    outcome = run_lifecycle(proto, ctx, execute=store.query)
    return LifecycleRun(as_json(outcome.result), outcome)


def as_json(result: results_pb2.LifecycleResult) -> list[dict[str, Any]]:
    """The engine's items as the service renders them (the reference's JSON)."""
    rendered = to_reference_json(result)
    assert isinstance(rendered, dict)
    items: list[dict[str, Any]] = rendered["results"]
    return items


def differences(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    """What differs between the oracle's items and the engine's, as readable lines (empty: equal)."""
    return item_differences(expected, actual, lambda n, item: str(item["status"]))


def data(results: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Each status's values (for rule tests)."""
    return {item["status"]: item["data"] for item in results}
