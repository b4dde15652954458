"""The paths runner: PathsQuery behind the query-runner interface."""

from __future__ import annotations

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Execute, Outcome, QueryContext, Reference, Runner
from server.queries.common.incohort import properties_references
from server.queries.funnels.runner import FunnelsRunner
from server.queries.paths.compute import check_paths, run_paths


class PathsRunner(Runner[query_pb2.PathsQuery]):
    """The most common sequences of pages, screens or events within sessions."""

    kind = "paths_query"

    def check(self, node: query_pb2.PathsQuery, ctx: QueryContext) -> None:
        check_paths(node, ctx)

    def interval(self, node: query_pb2.PathsQuery) -> str | None:
        return "day"

    def compute(self, node: query_pb2.PathsQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        outcome = run_paths(node, ctx, execute)
        return Outcome.of(results_pb2.InsightResult(paths=outcome.result), outcome)

    def references(self, node: query_pb2.PathsQuery) -> list[Reference]:
        """The cohorts its filters name, and the actions and cohorts of the funnel its paths follow
        (the environment's test-account filters are the execution layer's to list)."""
        found = properties_references(node.properties, "properties")
        if node.HasField("funnel_paths_filter"):
            where = "funnelPathsFilter.funnelSource"
            for ref in FunnelsRunner().references(node.funnel_paths_filter.funnel_source):
                found.append(Reference(ref.kind, ref.id, f"{where}.{ref.path}"))
        return found
