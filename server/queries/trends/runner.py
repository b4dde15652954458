"""The trends runner: TrendsQuery behind the query-runner interface."""

from __future__ import annotations

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Definitions, Execute, Outcome, QueryContext, Reference, Runner
from server.queries.common.cohort_breakdown import breakdown_references
from server.queries.common.incohort import filter_references, properties_references
from server.queries.common.nodes import INTERVAL_NAMES
from server.queries.trends.compute import (
    TOTAL_VALUE_DISPLAYS,
    check_trends,
    run_trends,
    series_label,
)


class TrendsRunner(Runner[query_pb2.TrendsQuery]):
    """Series of events over time (or as totals), with breakdowns, compare and formulas."""

    kind = "trends_query"

    def check(self, node: query_pb2.TrendsQuery, ctx: QueryContext) -> None:
        check_trends(node, ctx)

    def interval(self, node: query_pb2.TrendsQuery) -> str | None:
        # Total-value displays compute one number per range: their staleness follows the day's.
        if node.trends_filter.display in TOTAL_VALUE_DISPLAYS:
            return "day"
        return INTERVAL_NAMES.get(node.interval, "day")

    def compute(self, node: query_pb2.TrendsQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        outcome = run_trends(node, ctx, execute)
        return Outcome.of(results_pb2.InsightResult(trends=outcome.result), outcome)

    def references(self, node: query_pb2.TrendsQuery) -> list[Reference]:
        """The actions its series (and their GroupNodes' members) count, and the cohorts its filters
        and its cohort breakdown name (the environment's test-account filters are the execution
        layer's to list)."""
        found = properties_references(node.properties, "properties")
        for i, series in enumerate(node.series):
            kind = series.WhichOneof("node")
            if kind == "actions_node":
                found.append(Reference("action", series.actions_node.id, f"series[{i}].id"))
            elif kind == "group_node":
                for j, member in enumerate(series.group_node.nodes):
                    member_kind = member.WhichOneof("node")
                    member_path = f"series[{i}].nodes[{j}]"
                    if member_kind == "actions_node":
                        found.append(Reference("action", member.actions_node.id, f"{member_path}.id"))
                    if member_kind is not None:
                        member_node = getattr(member, member_kind)
                        found += filter_references(member_node.properties, f"{member_path}.properties")
            if kind is not None and kind != "data_warehouse_node":
                found += filter_references(getattr(series, kind).properties, f"series[{i}].properties")
        found += breakdown_references(node.breakdown_filter)
        return found

    def relabel(
        self, result: results_pb2.InsightResult, node: query_pb2.TrendsQuery, definitions: Definitions
    ) -> None:
        """The caller's series and formula names (custom_name) on a result computed under others."""
        formulas = node.trends_filter.formula_nodes
        for line in result.trends.series:
            if line.HasField("action"):
                if line.order >= len(node.series):
                    continue
                series = node.series[line.order]
                source = getattr(series, series.WhichOneof("node") or "events_node")
                old, new = line.action.name, series_label(series, definitions.actions)
                keyed = line.HasField("breakdown_value") or len(line.breakdown_values) > 0
                if not keyed:
                    line.label = new
                elif len(node.series) > 1 and line.label.startswith(f"{old} - "):
                    line.label = new + line.label[len(old) :]
                line.action.name = new
                if source.HasField("custom_name"):
                    line.action.custom_name = source.custom_name
                else:
                    line.action.ClearField("custom_name")
            elif line.order < len(formulas):
                formula = formulas[line.order]
                line.label = formula.custom_name or f"Formula ({formula.formula})"
