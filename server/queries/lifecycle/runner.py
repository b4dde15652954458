"""The lifecycle runner: LifecycleQuery behind the query-runner interface."""

from __future__ import annotations

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Definitions, Execute, Outcome, QueryContext, Reference, Runner
from server.queries.common.incohort import filter_references, properties_references
from server.queries.common.nodes import INTERVAL_NAMES
from server.queries.lifecycle.compute import check_lifecycle, run_lifecycle


class LifecycleRunner(Runner[query_pb2.LifecycleQuery]):
    """Per period, the persons who are new, returning, resurrecting or went dormant."""

    kind = "lifecycle_query"

    def check(self, node: query_pb2.LifecycleQuery, ctx: QueryContext) -> None:
        check_lifecycle(node, ctx)

    def interval(self, node: query_pb2.LifecycleQuery) -> str | None:
        return INTERVAL_NAMES.get(node.interval, "day")

    def compute(self, node: query_pb2.LifecycleQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        outcome = run_lifecycle(node, ctx, execute)
        return Outcome.of(results_pb2.InsightResult(lifecycle=outcome.result), outcome)

    def references(self, node: query_pb2.LifecycleQuery) -> list[Reference]:
        """The action its series counts and the cohorts its filters name (the environment's
        test-account filters are the execution layer's to list)."""
        found = properties_references(node.properties, "properties")
        if node.series:
            kind = node.series[0].WhichOneof("node")
            if kind == "actions_node" and node.series[0].actions_node.id > 0:
                found.append(Reference("action", node.series[0].actions_node.id, "series[0].id"))
            if kind in ("events_node", "actions_node"):
                found += filter_references(getattr(node.series[0], kind).properties, "series[0].properties")
        return found

    def relabel(
        self, result: results_pb2.InsightResult, node: query_pb2.LifecycleQuery, definitions: Definitions
    ) -> None:
        """The series' custom name (not part of the cache key) on each item's action."""
        if not node.series:
            return
        kind = node.series[0].WhichOneof("node")
        inner = getattr(node.series[0], kind) if kind in ("events_node", "actions_node") else None
        for item in result.lifecycle.series:
            if inner is not None and inner.HasField("custom_name") and inner.custom_name:
                item.action.custom_name = inner.custom_name
            else:
                item.action.ClearField("custom_name")
