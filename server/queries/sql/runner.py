"""The SQL runners: a bare HogQLQuery and the HogQLQuery source of a DataVisualizationNode."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import query_pb2, results_pb2
from server.errors import ResourceExhausted, Unimplemented
from server.queries.base import Execute, Outcome, QueryContext, Runner
from server.queries.common.errors import QueryError
from server.queries.common.nodes import refuse_later
from server.queries.sql.compile import Compiled, compile_sql
from server.queries.sql.engine_errors import cleaned_message, engine_code, tripped_limit
from server.queries.sql.explain import PLAN_COLUMNS, explained
from server.queries.sql.filters import resolved_range
from server.queries.sql.inputs import Inputs, inputs_of
from server.queries.sql.problems import FIELD, invalid, not_offered
from server.queries.sql.values import row_value
from storage.events import QueryCancelled, is_cancellation


@dataclass(frozen=True)
class SqlLimits:
    """Engine limits a SQL insight runs under (0: the engine's own default)."""

    max_execution_seconds: int = 60
    max_memory_bytes: int = 0
    max_rows_to_read: int = 0

    def settings(self) -> dict[str, Any]:
        """Engine settings of every statement: read-only (readonly=2: writes, DDL and SYSTEM are
        refused; settings may still be sent with the call, which is how these arrive, while the
        statement itself may carry none) and the limits."""
        found: dict[str, Any] = {"readonly": 2, "max_execution_time": self.max_execution_seconds}
        if self.max_memory_bytes:
            found["max_memory_usage"] = self.max_memory_bytes
        if self.max_rows_to_read:
            found["max_rows_to_read"] = self.max_rows_to_read
        return found


def _check_returnable(described: list[Any]) -> None:
    """Refuses a result column the client cannot decode: an aggregate function's state (sumState…)."""
    for row in described:
        if "AggregateFunction(" in str(row[1]) and not str(row[1]).startswith("SimpleAggregateFunction("):
            raise invalid(
                f"column {row[0]} is an aggregate state ({row[1]}), which cannot be returned: "
                "finish it with finalizeAggregation() or the -Merge combinator"
            )


def _run(
    compiled: Compiled, execute: Execute, settings: Mapping[str, Any], explain: bool = False
) -> tuple[list[Any], list[Any]]:
    """(column descriptions, rows) of the compiled statement (with `explain`, its plan's lines, the
    statement itself never run), engine errors sorted into the caller's (INVALID_ARGUMENT with the
    engine's cleaned message) and tripped limits (RESOURCE_EXHAUSTED)."""
    try:
        if explain:
            return PLAN_COLUMNS, list(execute(f"EXPLAIN {compiled.sql}", compiled.params, settings))
        described = list(execute(f"DESCRIBE TABLE ({compiled.sql})", compiled.params, settings))
        _check_returnable(described)
        rows = list(execute(compiled.sql, compiled.params, settings))
    except QueryCancelled:
        raise
    except Exception as exc:
        if is_cancellation(exc) or engine_code(exc) is None:
            raise
        limit = tripped_limit(exc)
        if limit is not None:
            raise ResourceExhausted(
                f"{FIELD}: the statement exceeded {limit} ({cleaned_message(exc)})",
                reason="SQL_LIMIT_EXCEEDED",
                metadata={"limit": limit, "field": FIELD},
                retryable=False,
            ) from None
        raise invalid(f"the engine refused the statement: {cleaned_message(exc)}") from None
    return described, rows


def run_sql(node: query_pb2.HogQLQuery, ctx: QueryContext, execute: Execute, limits: SqlLimits) -> Outcome:
    """Computes a HogQLQuery: QueryError/Unimplemented naming fields relative to `node`."""
    if node.connection_id:
        raise not_offered("connection_id", "external connections", "SQL insights read this service's own events")
    # Every field of the node is computed now; engine modifiers are still refused (refuse_later).
    refuse_later(node, [], "HogQLQuery", "SQL_OPTION_NOT_IMPLEMENTED")
    inputs = _inputs(node, ctx)
    compiled = compile_sql(node.query, ctx.team_id, inputs)
    described, rows = _run(compiled, execute, limits.settings(), explain=node.explain)
    if node.explain:
        return explained(compiled, rows)
    result = results_pb2.HogQLResult(
        columns=[str(d[0]) for d in described],
        types=[results_pb2.HogQLColumnType(name=str(d[0]), type=str(d[1])) for d in described],
        rows=[row_value(r) for r in rows[: compiled.limit]],
        limit=compiled.limit,
        offset=compiled.offset,
        clickhouse=compiled.sql,
    )
    bounds = None
    if compiled.filtered:
        bounds = resolved_range(node.filters if node.HasField("filters") else None, inputs, ctx.earliest)
    return Outcome(
        result=results_pb2.InsightResult(hogql=result),
        has_more=len(rows) > compiled.limit,
        date_from=bounds[0] if bounds else None,
        date_to=bounds[1] if bounds else None,
        sql=compiled.sql,
        # The statement may read outside its {filters} range (and reads persons): a past range
        # does not make the result final.
        settles=False,
    )


def _inputs(node: query_pb2.HogQLQuery, ctx: QueryContext) -> Inputs:
    return inputs_of(node, timezone=ctx.timezone, now=ctx.now, test_account_filters=ctx.test_account_filters)


def check_sql(node: query_pb2.HogQLQuery, ctx: QueryContext) -> None:
    """QueryError for SQL that can never run (placeholders without values included); a part not
    built yet is no error when saving."""
    try:
        compile_sql(node.query, 0, _inputs(node, ctx))
    except Unimplemented:
        return


class HogQLRunner(Runner[query_pb2.HogQLQuery]):
    """A caller's own SELECT over its environment's events and persons, as a table."""

    kind = "hogql_query"

    def __init__(self, limits: SqlLimits | None = None):
        self.limits = limits or SqlLimits()

    def check(self, node: query_pb2.HogQLQuery, ctx: QueryContext) -> None:
        check_sql(node, ctx)

    def interval(self, node: query_pb2.HogQLQuery) -> str | None:
        return None

    def compute(self, node: query_pb2.HogQLQuery, ctx: QueryContext, execute: Execute) -> Outcome:
        return run_sql(node, ctx, execute, self.limits)


class DataVisualizationRunner(Runner[query_pb2.DataVisualizationNode]):
    """A saved SQL insight: its HogQLQuery source computed; chart and table settings are stored with
    the insight and returned as they are (they shape nothing the engine computes)."""

    kind = "data_visualization_node"

    def __init__(self, limits: SqlLimits | None = None):
        self.limits = limits or SqlLimits()

    def check(self, node: query_pb2.DataVisualizationNode, ctx: QueryContext) -> None:
        try:
            check_sql(node.source, ctx)
        except QueryError as exc:
            raise exc.within("source") from None

    def interval(self, node: query_pb2.DataVisualizationNode) -> str | None:
        return None

    def compute(self, node: query_pb2.DataVisualizationNode, ctx: QueryContext, execute: Execute) -> Outcome:
        try:
            return run_sql(node.source, ctx, execute, self.limits)
        except QueryError as exc:
            raise exc.within("source") from None
        except (Unimplemented, ResourceExhausted) as exc:
            _prefix(exc, "source")
            raise


def _prefix(error: Unimplemented | ResourceExhausted, prefix: str) -> None:
    """Puts a field named by a refusal under `prefix` (the node wrapping the HogQLQuery)."""
    field = error.metadata.get("field")
    if field:
        error.metadata["field"] = f"{prefix}.{field}"
        error.message = f"{prefix}.{error.message}" if error.message.startswith(field) else error.message
        error.args = (error.message,)


