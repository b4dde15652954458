"""Runs a reference-JSON FunnelsQuery through the SQL engine on embedded chDB, in the oracle's shape."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.funnels.compute import FunnelsOutcome, run_funnels
from storage.events import EventStore
from tests.engine.harness import definitions_of, query_context
from tests.oracle import Event


@dataclass
class FunnelRun:
    results: list[list[dict[str, Any]]]
    has_more: bool
    outcome: FunnelsOutcome


def run_funnel_engine(
    store: EventStore,
    events: Sequence[Event],
    query: dict[str, Any],
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: dict[int, CohortDefinition] | None = None,
    **context: Any,
) -> FunnelRun:
    """Inserts `events` as harness.query_context does (`context`: its keywords) and runs `query` on
    them, with `actions` (reference JSON by id) and `cohorts` the environment's definitions."""
    ctx = query_context(store, events, definitions=definitions_of(actions, cohorts), **context)
    outcome = run_funnels(from_reference_json(query, query_pb2.FunnelsQuery), ctx, execute=store.query)
    return FunnelRun(as_json(outcome.result), outcome.has_more, outcome)


def _scalar(value: query_pb2.Scalar) -> Any:
    kind = value.WhichOneof("kind")
    return getattr(value, kind) if kind else None


def _breakdown(value: results_pb2.BreakdownValue) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "list_value":
        return [_scalar(v) for v in value.list_value.values]
    return getattr(value, kind) if kind else None


def as_json(result: results_pb2.FunnelsResult) -> list[list[dict[str, Any]]]:
    """Engine step lists in the oracle's shape (every key the oracle produces; None for unset)."""
    out = []
    for group in result.steps.breakdowns:
        steps = []
        for s in group.steps:
            item: dict[str, Any] = {
                "action_id": _scalar(s.action_id) if s.HasField("action_id") else None,
                "name": s.name if s.HasField("name") else None,
                "custom_name": s.custom_name if s.HasField("custom_name") else None,
                "order": s.order,
                "count": s.count,
                "type": s.type,
                "average_conversion_time": s.average_conversion_time if s.HasField("average_conversion_time") else None,
                "median_conversion_time": s.median_conversion_time if s.HasField("median_conversion_time") else None,
            }
            if s.HasField("breakdown"):
                item["breakdown"] = _breakdown(s.breakdown)
                item["breakdown_value"] = _breakdown(s.breakdown_value)
            steps.append(item)
        out.append(steps)
    return out


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return bool(a == b)


def differences(expected: list[list[dict[str, Any]]], actual: list[list[dict[str, Any]]]) -> list[str]:
    """What differs between the oracle's step lists and the engine's, as readable lines (empty: equal)."""
    problems: list[str] = []
    if len(expected) != len(actual):
        problems.append(
            f"group count: oracle {len(expected)} engine {len(actual)}\n"
            f"  oracle {[(g[0].get('breakdown_value'), [s['count'] for s in g]) for g in expected]}\n"
            f"  engine {[(g[0].get('breakdown_value'), [s['count'] for s in g]) for g in actual]}"
        )
    for n, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if len(want) != len(got):
            problems.append(f"group {n}: oracle {len(want)} steps, engine {len(got)}")
        for k, (a, b) in enumerate(zip(want, got, strict=False)):
            for key in sorted(set(a) | set(b)):
                x, y = a.get(key, "<missing>"), b.get(key, "<missing>")
                if not _close(x, y):
                    problems.append(f"group {n} ({a.get('breakdown_value')}) step {k} {key}: oracle {x!r} engine {y!r}")
    return problems


def run_time_to_convert_engine(
    store: EventStore, events: Sequence[Event], query: dict[str, Any], **context: Any
) -> dict[str, Any]:
    """A time_to_convert funnel through the engine, in the oracle's shape
    ({"bins": [[start, count], ...], "average_conversion_time": float | None})."""
    ctx = query_context(store, events, **context)
    outcome = run_funnels(from_reference_json(query, query_pb2.FunnelsQuery), ctx, execute=store.query)
    ttc = outcome.result.time_to_convert
    mean = ttc.average_conversion_time if ttc.HasField("average_conversion_time") else None
    return {"bins": [[b.bin_start_seconds, b.count] for b in ttc.bins], "average_conversion_time": mean}


def trends_json(result: results_pb2.FunnelsResult) -> list[dict[str, Any]]:
    """Engine funnel-trends series in the oracle's shape."""
    out = []
    for s in result.trends.series:
        item: dict[str, Any] = {
            "count": s.count,
            "data": list(s.data),
            "days": list(s.days),
            "labels": list(s.labels),
            "reached_from_step_count": list(s.reached_from_step_count),
            "reached_to_step_count": list(s.reached_to_step_count),
        }
        if s.HasField("breakdown_value"):
            item["breakdown_value"] = _breakdown(s.breakdown_value)
        out.append(item)
    return out


def run_funnel_trends_engine(
    store: EventStore,
    events: Sequence[Event],
    query: dict[str, Any],
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: dict[int, CohortDefinition] | None = None,
    **context: Any,
) -> tuple[list[dict[str, Any]], bool]:
    """A funnelVizType trends funnel through the engine: (series in the oracle's shape, has_more)."""
    ctx = query_context(store, events, definitions=definitions_of(actions, cohorts), **context)
    outcome = run_funnels(from_reference_json(query, query_pb2.FunnelsQuery), ctx, execute=store.query)
    return trends_json(outcome.result), outcome.has_more
