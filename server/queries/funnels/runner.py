"""The funnels runner: FunnelsQuery behind the query-runner interface."""

from __future__ import annotations

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Definitions, Execute, Outcome, QueryContext, Reference, Runner
from server.queries.common.cohort_breakdown import breakdown_references
from server.queries.common.incohort import filter_references, properties_references
from server.queries.common.nodes import INTERVAL_NAMES
from server.queries.funnels.compute import check_funnels, relabel, run_funnels


class FunnelsRunner(Runner[query_pb2.FunnelsQuery]):
    """Actors per step of a funnel and their conversion times, with breakdowns."""

    kind = "funnels_query"

    def check(self, node: query_pb2.FunnelsQuery, ctx: QueryContext) -> None:
        check_funnels(node, ctx)

    def interval(self, node: query_pb2.FunnelsQuery) -> str | None:
        return INTERVAL_NAMES.get(node.interval, "day")

    def compute(self, node: query_pb2.FunnelsQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        outcome = run_funnels(node, ctx, execute)
        return Outcome.of(results_pb2.InsightResult(funnels=outcome.result), outcome)

    def references(self, node: query_pb2.FunnelsQuery) -> list[Reference]:
        """The actions its steps and exclusions are, the cohorts its filters name (the query's, its
        steps' and its exclusions') and its cohort breakdown lists (the environment's test-account
        filters are the execution layer's to list)."""
        found = properties_references(node.properties, "properties")
        for i, step in enumerate(node.series):
            kind = step.WhichOneof("node")
            if kind == "actions_node":
                found.append(Reference("action", step.actions_node.id, f"series[{i}].id"))
                found += filter_references(step.actions_node.properties, f"series[{i}].properties")
            elif kind == "events_node":
                found += filter_references(step.events_node.properties, f"series[{i}].properties")
        for i, item in enumerate(node.funnels_filter.exclusions):
            path = f"funnelsFilter.exclusions[{i}]"
            if item.WhichOneof("node") == "actions_node":
                found.append(Reference("action", item.actions_node.id, f"{path}.id"))
                found += filter_references(item.actions_node.properties, f"{path}.properties")
            elif item.WhichOneof("node") == "events_node":
                found += filter_references(item.events_node.properties, f"{path}.properties")
        found += breakdown_references(node.breakdown_filter)
        return found

    def relabel(
        self, result: results_pb2.InsightResult, node: query_pb2.FunnelsQuery, definitions: Definitions
    ) -> None:
        relabel(result, node, definitions.actions)
