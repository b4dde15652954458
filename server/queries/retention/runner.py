"""The retention runner: RetentionQuery behind the query-runner interface."""

from __future__ import annotations

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.base import Execute, Outcome, QueryContext, Reference, Runner
from server.queries.common.incohort import filter_references, properties_references
from server.queries.retention.compute import check_retention, run_retention
from server.queries.retention.spec import PERIOD_NAMES


class RetentionRunner(Runner[query_pb2.RetentionQuery]):
    """Cohorts of actors by the period they started in, and who of them came back in later periods."""

    kind = "retention_query"

    def check(self, node: query_pb2.RetentionQuery, ctx: QueryContext) -> None:
        check_retention(node, ctx)

    def interval(self, node: query_pb2.RetentionQuery) -> str | None:
        return PERIOD_NAMES.get(node.retention_filter.period, "day")

    def compute(self, node: query_pb2.RetentionQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        outcome = run_retention(node, ctx, execute)
        return Outcome(
            result=results_pb2.InsightResult(retention=outcome.result),
            has_more=outcome.has_more,
            date_from=outcome.dates.date_from,
            date_to=outcome.dates.date_to,
            sql=outcome.sql,
        )

    def references(self, node: query_pb2.RetentionQuery) -> list[Reference]:
        """The actions its target and returning entities name, and the cohorts its filters name
        (the environment's test-account filters are the execution layer's to list)."""
        found = properties_references(node.properties, "properties")
        rf = node.retention_filter
        for name, json_name in (("target_entity", "targetEntity"), ("returning_entity", "returningEntity")):
            if not rf.HasField(name):  # type: ignore[arg-type]
                continue
            entity: query_pb2.RetentionEntity = getattr(rf, name)
            is_action = entity.kind == "ActionsNode" or (
                not entity.HasField("kind") and entity.type == "actions"
            )
            if is_action and entity.id.WhichOneof("kind") == "int_value" and entity.id.int_value > 0:
                found.append(Reference("action", entity.id.int_value, f"retentionFilter.{json_name}.id"))
            found += filter_references(entity.properties, f"retentionFilter.{json_name}.properties")
        return found
