"""The paths runner: PathsQuery behind the query-runner interface."""

from __future__ import annotations

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Execute, Outcome, QueryContext, Reference, Runner
from server.queries.common.incohort import properties_references
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
        """The cohorts its filters name (the environment's test-account filters are the execution
        layer's to list)."""
        return properties_references(node.properties, "properties")
