"""Runs a reference-JSON TrendsQuery through the SQL engine on embedded chDB, in the oracle's shape.

Each run gets a fresh environment id (from a counter far above the integration tests' ids), so no
cleanup is needed and the runs never see each other's events.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import event

from generated.insights.v1 import actions_pb2, query_pb2, results_pb2
from server.errors import FailedPrecondition, Unimplemented
from server.queries.base import ActionDefinition, Definitions, QueryContext
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.common.errors import QueryError
from server.queries.trends.compute import TrendsOutcome, run_trends
from storage.events import EventRow, EventStore
from tests.oracle import Event, OracleError

_team_ids = itertools.count(10_000_000)
_NS = uuid.UUID("7d4c1e0a-2f8b-4a51-9a3c-5b0e6f1d2c3b")


_last: list[int] = []


def next_team_id() -> int:
    team_id = next(_team_ids)
    _last[:] = [team_id]
    return team_id


def last_team_id() -> int:
    """The environment of the latest run that inserted its own events."""
    return _last[0]


def person_uuid(person: str) -> uuid.UUID:
    return uuid.uuid5(_NS, person)


def event_rows(team_id: int, events: Sequence[Event]) -> list[EventRow]:
    return [
        EventRow(
            team_id=team_id,
            uuid=uuid.UUID(e.uuid),
            event=e.event,
            distinct_id=e.distinct_id,
            person_id=person_uuid(e.person_id),
            timestamp=e.timestamp.astimezone(dt.UTC),
            properties=json.dumps(e.properties),
            person_properties=json.dumps(e.person_properties),
            elements_chain=e.elements_chain,
        )
        for e in events
    ]


@dataclass
class EngineRun:
    results: list[dict[str, Any]]
    has_more: bool
    outcome: TrendsOutcome


def run_engine(
    store: EventStore,
    events: Sequence[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: dt.datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    team_id: int | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: dict[int, CohortDefinition] | None = None,
) -> EngineRun:
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
    outcome = run_trends(from_reference_json(query, query_pb2.TrendsQuery), ctx, execute=store.query)
    return EngineRun(as_json(outcome.result), outcome.has_more, outcome)


def query_context(
    store: EventStore,
    events: Sequence[Event],
    *,
    timezone: str,
    week_start_day: int,
    now: dt.datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    team_id: int | None = None,
    definitions: Definitions | None = None,
) -> QueryContext:
    """Inserts `events` for a fresh environment (unless `team_id` is given); the context to query them."""
    if team_id is None:
        team_id = next_team_id()
        if events:
            store.insert_events(event_rows(team_id, events))
    return QueryContext(
        team_id=team_id,
        timezone=timezone,
        week_start_day=week_start_day,
        now=now,
        test_account_filters=[
            from_reference_json(f, query_pb2.PropertyFilter) for f in (test_account_filters or [])
        ],
        earliest=lambda: store.earliest_timestamp(team_id),
        materialized=store.materialized,
        definitions=definitions or Definitions(),
    )


def assert_agree(expected: Any, got: Any, differences: Callable[[Any, Any], list[str]]) -> None:
    """Fails with the readable differences between the oracle's run and the engine's, has_more included."""
    problems = differences(expected.results, got.results)
    if expected.has_more != got.has_more:
        problems.append(f"has_more: oracle {expected.has_more} engine {got.has_more}")
    assert not problems, "\n".join(problems[:20])


def definitions_of(
    actions: dict[int, dict[str, Any]] | None = None, cohorts: dict[int, CohortDefinition] | None = None
) -> Definitions:
    """The definitions a query's context carries: reference-JSON actions by id, and cohorts."""
    return Definitions(
        actions={i: action_definition(a) for i, a in (actions or {}).items()}, cohorts=cohorts or {}
    )


def item_differences(
    expected: list[dict[str, Any]], actual: list[dict[str, Any]], name: Callable[[int, dict[str, Any]], str]
) -> list[str]:
    """What differs between the oracle's result items and the engine's, key by key, as readable
    lines (empty: equal); `name(index, item)` says which item a line is about."""
    problems: list[str] = []
    if len(expected) != len(actual):
        problems.append(f"item count: oracle {len(expected)} engine {len(actual)}")
    for n, (want, got) in enumerate(zip(expected, actual, strict=False)):
        for key in sorted(set(want) | set(got)):
            a, b = want.get(key, "<missing>"), got.get(key, "<missing>")
            if a != b:
                problems.append(f"{name(n, want)} {key}: oracle {a!r} engine {b!r}")
    return problems


def action_definition(action: dict[str, Any]) -> ActionDefinition:
    """A stored action (reference JSON) as the execution layer hands it to a runner."""
    steps = tuple(from_reference_json(step, actions_pb2.ActionStep) for step in action.get("steps") or [])
    return ActionDefinition(int(action["id"]), str(action["name"]), int(action.get("version", 1)), steps)


def as_json(result: results_pb2.TrendsResult) -> list[dict[str, Any]]:
    """Engine items in the oracle's item shape (the keys the oracle produces, nothing else)."""
    out = []
    for s in result.series:
        item: dict[str, Any] = {
            "data": list(s.data),
            "days": list(s.days),
            "labels": list(s.labels),
            "count": s.count,
            "label": s.label,
            "order": s.order,
        }
        if s.breakdown_values:
            item["breakdown_value"] = list(s.breakdown_values)
        elif s.HasField("breakdown_value"):
            kind = s.breakdown_value.WhichOneof("kind")
            item["breakdown_value"] = getattr(s.breakdown_value, kind) if kind else None
        if s.compare:
            item["compare"] = True
            item["compare_label"] = s.compare_label
        if s.HasField("aggregated_value"):
            item["aggregated_value"] = s.aggregated_value
        if s.raw_data:
            item["raw_data"] = list(s.raw_data)
        out.append(item)
    return out


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def differences(expected: list[dict[str, Any]], actual: list[dict[str, Any]]) -> list[str]:
    """What differs between the oracle's items and the engine's, as readable lines (empty: equal)."""
    problems: list[str] = []
    if len(expected) != len(actual):
        problems.append(
            f"item count: oracle {len(expected)} engine {len(actual)}\n"
            f"  oracle labels {[i['label'] for i in expected]}\n  engine labels {[i['label'] for i in actual]}"
        )
    for n, (want, got) in enumerate(zip(expected, actual, strict=False)):
        keys = set(want) | set(got)
        for key in sorted(keys):
            a, b = want.get(key, "<missing>"), got.get(key, "<missing>")
            if key in ("data", "raw_data") and isinstance(a, list) and isinstance(b, list):
                same = len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
            elif key in ("count", "aggregated_value") and isinstance(a, float) and isinstance(b, float):
                same = _close(a, b)
            else:
                same = a == b
            if not same:
                problems.append(f"item {n} ({want.get('label')!r}) {key}: oracle {a!r} engine {b!r}")
    return problems


_REFUSAL_CODES = {QueryError: "INVALID_ARGUMENT", FailedPrecondition: "FAILED_PRECONDITION", Unimplemented: "UNIMPLEMENTED"}
R = TypeVar("R")
S = TypeVar("S")


def run_both(oracle: Callable[[], R], engine: Callable[[], S]) -> tuple[R, S] | None:
    """Runs the oracle and the engine on one example: both results, or None when both refused it
    with the same status (any other mix of refusals fails the test)."""
    oracle_error: OracleError | None = None
    engine_error: Exception | None = None
    try:
        expected = oracle()
    except OracleError as exc:
        oracle_error = exc
    try:
        got = engine()
    except (QueryError, FailedPrecondition, Unimplemented) as exc:
        engine_error = exc
    if oracle_error is None and engine_error is None:
        return expected, got
    event(f"rejected: {type(oracle_error).__name__}")
    # By kind: a missing definition is a FailedPrecondition subclass (DefinitionUnavailable).
    engine_code = next((code for kind, code in _REFUSAL_CODES.items() if isinstance(engine_error, kind)), None)
    assert oracle_error is not None and engine_code == oracle_error.code, f"oracle: {oracle_error!r}, engine: {engine_error!r}"
    return None
