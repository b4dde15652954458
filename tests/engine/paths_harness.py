"""Runs a reference-JSON PathsQuery through the SQL engine on embedded chDB, in the oracle's shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.actors.runner import ActorsRunner
from server.queries.base import Definitions, QueryContext
from server.queries.common.codec import from_reference_json, to_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.paths.compute import PathsOutcome, run_paths
from storage.events import EventStore
from tests.engine.harness import event_rows, next_team_id, person_uuid
from tests.oracle import Event


@dataclass
class PathsRun:
    results: list[dict[str, Any]]
    outcome: PathsOutcome


def run_paths_engine(
    store: EventStore,
    events: Sequence[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    now: dt.datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    team_id: int | None = None,
    cohorts: dict[int, CohortDefinition] | None = None,
) -> PathsRun:
    """Inserts `events` for a fresh environment (unless `team_id` is given) and runs `query`."""
    if team_id is None:
        team_id = next_team_id()
        if events:
            store.insert_events(event_rows(team_id, events))
    proto = from_reference_json(query, query_pb2.PathsQuery)
    ctx = QueryContext(
        team_id=team_id,
        timezone=timezone,
        week_start_day=0,
        now=now,
        test_account_filters=[
            from_reference_json(f, query_pb2.PropertyFilter) for f in (test_account_filters or [])
        ],
        earliest=lambda: store.earliest_timestamp(team_id),
        materialized=store.materialized,
        definitions=Definitions(actions={}, cohorts=cohorts or {}),
    )
    outcome = run_paths(proto, ctx, execute=store.query)
    return PathsRun(as_json(outcome.result), outcome)


def as_json(result: results_pb2.PathsResult) -> list[dict[str, Any]]:
    """The engine's edges as the service renders them (the reference's JSON)."""
    rendered = to_reference_json(result)
    assert isinstance(rendered, dict)
    items: list[dict[str, Any]] = rendered.get("results", [])
    return items


def differences(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    """What differs between the oracle's edges and the engine's, as readable lines (empty: equal);
    mean times compare to a microsecond (the engine averages in floating point)."""
    problems: list[str] = []
    if len(expected) != len(actual):
        problems.append(f"edge count: oracle {len(expected)} engine {len(actual)}")
    for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
        for key in ("source", "target", "value"):
            if want.get(key) != got.get(key):
                problems.append(f"edge {i} {key}: oracle {want.get(key)!r} engine {got.get(key)!r}")
        a, b = want["average_conversion_time"], got.get("average_conversion_time", 0.0)
        if abs(a - b) > 1e-3:
            problems.append(f"edge {i} average_conversion_time: oracle {a!r} engine {b!r}")
    return problems


def edges(results: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """Each edge's value (for rule tests)."""
    return {(e["source"], e["target"]): e["value"] for e in results}


@dataclass
class ActorsRun:
    """A drill-down's page as the service returns it."""

    ids: list[str]
    has_more: bool
    result: results_pb2.ActorsResult
    sql: str


def run_paths_actors_engine(
    store: EventStore,
    events: Sequence[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    now: dt.datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    team_id: int | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> ActorsRun:
    """Inserts `events` for a fresh environment (unless `team_id` is given) and runs an
    InsightActorsQuery whose source is the PathsQuery `query`, through the actors runner."""
    if team_id is None:
        team_id = next_team_id()
        if events:
            store.insert_events(event_rows(team_id, events))
    node: dict[str, Any] = {"kind": "InsightActorsQuery", "source": query}
    if limit is not None:
        node["limit"] = limit
    if offset is not None:
        node["offset"] = offset
    proto = from_reference_json(node, query_pb2.InsightActorsQuery)
    ctx = QueryContext(
        team_id=team_id,
        timezone=timezone,
        week_start_day=0,
        now=now,
        test_account_filters=[
            from_reference_json(f, query_pb2.PropertyFilter) for f in (test_account_filters or [])
        ],
        earliest=lambda: store.earliest_timestamp(team_id),
        materialized=store.materialized,
    )
    outcome = ActorsRunner().compute(proto, ctx, store.query)
    result = outcome.result.actors
    return ActorsRun([a.id for a in result.actors], outcome.has_more, result, outcome.sql)


def actor_ids(query: dict[str, Any], oracle_actors: list[str]) -> list[str]:
    """The oracle's actors as the engine names them (a person's UUID, a group's key), ordered by
    that text as the service orders them."""
    # Group keys when the paths, or the funnel they follow, are of a group type.
    source = (query.get("funnelPathsFilter") or {}).get("funnelSource") or {}
    of_groups = "aggregation_group_type_index" in query or source.get("aggregation_group_type_index") is not None
    named = oracle_actors if of_groups else [str(person_uuid(a)) for a in oracle_actors]
    return sorted(named, key=lambda a: a.encode())
