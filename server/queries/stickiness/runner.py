"""The stickiness runner: StickinessQuery behind the query-runner interface."""

from __future__ import annotations

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Definitions, Execute, Outcome, QueryContext, Reference, Runner
from server.queries.common.incohort import filter_references, properties_references
from server.queries.common.nodes import INTERVAL_NAMES
from server.queries.stickiness.compute import check_stickiness, run_stickiness, series_label
from server.queries.stickiness.spec import Series


class StickinessRunner(Runner[query_pb2.StickinessQuery]):
    """How many actors were active in exactly 1, 2, ... N intervals, per series."""

    kind = "stickiness_query"

    def check(self, node: query_pb2.StickinessQuery, ctx: QueryContext) -> None:
        check_stickiness(node, ctx)

    def interval(self, node: query_pb2.StickinessQuery) -> str | None:
        return INTERVAL_NAMES.get(node.interval, "day")

    def compute(self, node: query_pb2.StickinessQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        outcome = run_stickiness(node, ctx, execute)
        return Outcome.of(results_pb2.InsightResult(stickiness=outcome.result), outcome)

    def references(self, node: query_pb2.StickinessQuery) -> list[Reference]:
        """The actions its series count and the cohorts its filters name (the environment's
        test-account filters are the execution layer's to list)."""
        found = properties_references(node.properties, "properties")
        for i, series in enumerate(node.series):
            kind = series.WhichOneof("node")
            if kind == "actions_node" and series.actions_node.id > 0:
                found.append(Reference("action", series.actions_node.id, f"series[{i}].id"))
            if kind in ("events_node", "actions_node"):
                found += filter_references(getattr(series, kind).properties, f"series[{i}].properties")
        return found

    def relabel(
        self, result: results_pb2.InsightResult, node: query_pb2.StickinessQuery, definitions: Definitions
    ) -> None:
        """The caller's series names (custom_name, not part of the cache key) on a result computed under others."""
        for item in result.stickiness.series:
            order = item.action.order
            if order >= len(node.series) or node.series[order].WhichOneof("node") not in ("events_node", "actions_node"):
                continue
            series = node.series[order]
            source = getattr(series, series.WhichOneof("node") or "events_node")
            custom = source.custom_name if source.HasField("custom_name") and source.custom_name else None
            shown = Series(
                "",
                order,
                source.event if series.WhichOneof("node") == "events_node" and source.HasField("event") else None,
                source.id if series.WhichOneof("node") == "actions_node" else None,
                (),
                custom,
                source.name if source.HasField("name") and source.name else None,
            )
            item.label = item.action.name = series_label(shown, definitions.actions)
            if custom:
                item.action.custom_name = custom
            else:
                item.action.ClearField("custom_name")
