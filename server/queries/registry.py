"""Which runner computes which query kind, and where a query's source node sits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from generated.insights.v1 import query_pb2
from server.queries.actors.runner import ActorsRunner
from server.queries.alerting import AlertValues
from server.queries.base import Runner
from server.queries.funnels.alert import FunnelsAlertValues
from server.queries.funnels.runner import FunnelsRunner
from server.queries.lifecycle.runner import LifecycleRunner
from server.queries.paths.runner import PathsRunner
from server.queries.retention.runner import RetentionRunner
from server.queries.sql.alert import DataVisualizationAlertValues, HogQLAlertValues
from server.queries.sql.runner import DataVisualizationRunner, HogQLRunner, SqlLimits
from server.queries.stickiness.runner import StickinessRunner
from server.queries.trends.alert import TrendsAlertValues
from server.queries.trends.runner import TrendsRunner


@dataclass(frozen=True)
class Source:
    """The node a query computes: its kind (oneof member), the node, and its field path."""

    kind: str
    node: Message
    path: str  # "query.source" inside an InsightVizNode, else "query"

    @property
    def name(self) -> str:
        """The kind as the reference names it (the node's message name, e.g. "FunnelsQuery")."""
        return str(self.node.DESCRIPTOR.name)


def source_of(query: query_pb2.QueryNode | None) -> Source | None:
    """The source node of a query (unwrapping an InsightVizNode); None when there is none."""
    if query is None:
        return None
    member = query.WhichOneof("node")
    if member is None:
        return None
    if member == "insight_viz_node":
        inner = query.insight_viz_node.source.WhichOneof("query")
        if inner is None:
            return None
        return Source(inner, getattr(query.insight_viz_node.source, inner), "query.source")
    return Source(member, getattr(query, member), "query")


def alerting_of(query: query_pb2.QueryNode | None) -> tuple[Source, AlertValues[Any]] | None:
    """The source node of a query and how alerts read its kind; None when the kind is not alertable."""
    source = source_of(query)
    if source is None or source.kind not in ALERTS:
        return None
    return source, ALERTS[source.kind]


class Registry:
    """The runners of the service, by kind."""

    def __init__(self, runners: Iterable[Runner[Any]]):
        self._runners: dict[str, Runner[Any]] = {}
        for runner in runners:
            if runner.kind in self._runners:
                raise ValueError(f"two runners for {runner.kind}")
            self._runners[runner.kind] = runner

    def runner(self, kind: str) -> Runner[Any] | None:
        return self._runners.get(kind)

    def with_runner(self, runner: Runner[Any]) -> Registry:
        """This registry with `runner` for its kind (tests add or stand in for a kind without
        touching the service's)."""
        return Registry([*(r for kind, r in self._runners.items() if kind != runner.kind), runner])

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._runners)


# One line per query kind the service computes.
RUNNERS = Registry(
    [
        TrendsRunner(),
        FunnelsRunner(),
        RetentionRunner(),
        LifecycleRunner(),
        StickinessRunner(),
        PathsRunner(),
        ActorsRunner(),
        HogQLRunner(),
        DataVisualizationRunner(),
    ]
)



def sql_registry(limits: SqlLimits) -> Registry:
    """The service's runners, the SQL ones under the configured engine limits."""
    return RUNNERS.with_runner(HogQLRunner(limits)).with_runner(DataVisualizationRunner(limits))


# How alerts read each alertable kind (registered beside its runner; a kind without one is not alertable).
ALERTS: dict[str, AlertValues[Any]] = {
    "trends_query": TrendsAlertValues(),
    "funnels_query": FunnelsAlertValues(),
    "hogql_query": HogQLAlertValues(),
    "data_visualization_node": DataVisualizationAlertValues(),
}
# The Alert field carrying each stored config type, e.g. "FunnelsAlertConfig" -> "funnels_config".
ALERT_CONFIG_FIELDS: dict[str, str] = {v.config_type: v.config_field for v in ALERTS.values()}
