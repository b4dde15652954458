"""Engine modifiers are refused by every kind that computes (UNIMPLEMENTED naming the modifier),
before anything runs; an empty modifiers object, or asking for the environment's time zone (what
every kind does), computes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from generated.insights.v1 import query_pb2
from server.errors import Unimplemented
from server.queries.base import QueryContext
from server.queries.common.codec import from_reference_json
from server.queries.registry import RUNNERS

EVENTS = {"kind": "EventsNode", "event": "$pageview"}
QUERIES: dict[str, tuple[str, dict[str, Any], Any]] = {
    "trends_query": ("TrendsQuery", {"series": [EVENTS]}, query_pb2.TrendsQuery),
    "funnels_query": ("FunnelsQuery", {"series": [EVENTS, EVENTS]}, query_pb2.FunnelsQuery),
    "retention_query": ("RetentionQuery", {}, query_pb2.RetentionQuery),
    "lifecycle_query": ("LifecycleQuery", {"series": [EVENTS]}, query_pb2.LifecycleQuery),
    "stickiness_query": ("StickinessQuery", {"series": [EVENTS]}, query_pb2.StickinessQuery),
    "paths_query": ("PathsQuery", {}, query_pb2.PathsQuery),
    # A drill-down: its own modifiers (its source's are the source kind's).
    "insight_actors_query": ("InsightActorsQuery", {"source": {"kind": "PathsQuery"}}, query_pb2.InsightActorsQuery),
    "hogql_query": ("HogQLQuery", {"query": "SELECT 1"}, query_pb2.HogQLQuery),
    # A saved SQL insight: the modifiers are its source's (see _node).
    "data_visualization_node": ("HogQLQuery", {"query": "SELECT 1"}, query_pb2.HogQLQuery),
}
# Where a kind's modifiers sit, relative to its node.
WITHIN = {"data_visualization_node": "source."}
CTX = QueryContext(team_id=1, timezone="UTC", week_start_day=0, now=dt.datetime(2024, 6, 1, tzinfo=dt.UTC))


class Ran(Exception):
    """The statement was handed to the engine."""


def _execute(sql: str, params: dict[str, Any], settings: Any = None) -> list[Any]:
    raise Ran(sql)


def _node(kind: str, modifiers: dict[str, Any]) -> Any:
    name, body, message = QUERIES[kind]
    node = from_reference_json({"kind": name, **body, "modifiers": modifiers}, message)
    if kind == "data_visualization_node":
        return query_pb2.DataVisualizationNode(source=node)
    return node


def test_every_computing_kind_is_covered() -> None:
    assert set(QUERIES) == set(RUNNERS.kinds)


@pytest.mark.parametrize("kind", sorted(QUERIES))
@pytest.mark.parametrize(
    ("modifiers", "field"),
    [
        ({"personsOnEventsMode": "disabled"}, "modifiers.personsOnEventsMode"),
        ({"inCohortVia": "leftjoin"}, "modifiers.inCohortVia"),
        ({"convertToProjectTimezone": False}, "modifiers.convertToProjectTimezone"),
    ],
)
def test_a_modifier_is_unimplemented_naming_it_and_nothing_runs(kind: str, modifiers: dict[str, Any], field: str) -> None:
    runner = RUNNERS.runner(kind)
    assert runner is not None
    with pytest.raises(Unimplemented) as caught:
        runner.compute(_node(kind, modifiers), CTX, _execute)
    assert caught.value.metadata["field"] == WITHIN.get(kind, "") + field


@pytest.mark.parametrize("kind", sorted(QUERIES))
@pytest.mark.parametrize("modifiers", [{}, {"convertToProjectTimezone": True}])
def test_no_modifier_or_the_time_zone_one_computes(kind: str, modifiers: dict[str, Any]) -> None:
    runner = RUNNERS.runner(kind)
    assert runner is not None
    with pytest.raises(Ran):
        runner.compute(_node(kind, modifiers), CTX, _execute)
