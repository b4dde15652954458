"""`explain: true` on a HogQLQuery: the engine's plan of the statement as it would run, as rows."""

from __future__ import annotations

from typing import Any

from generated.insights.v1 import results_pb2
from server.queries.base import Outcome
from server.queries.sql.compile import Compiled
from server.queries.sql.values import row_value

# The one column of a plan: (name, engine type), as DESCRIBE gives them for rows.
PLAN_COLUMNS: list[Any] = [("explain", "String")]


def explained(compiled: Compiled, plan: list[Any]) -> Outcome:
    """The plan's lines (EXPLAIN of the compiled, environment-scoped statement) as one-column rows,
    and in `explain`; `clickhouse` is the statement explained. The statement itself never ran, so
    every plan line is returned (no row limit) and has_more is false."""
    lines = [str(row[0]) for row in plan]
    result = results_pb2.HogQLResult(
        columns=[name for name, _ in PLAN_COLUMNS],
        types=[results_pb2.HogQLColumnType(name=name, type=kind) for name, kind in PLAN_COLUMNS],
        rows=[row_value([line]) for line in lines],
        clickhouse=compiled.sql,
        explain=lines,
    )
    return Outcome(
        result=results_pb2.InsightResult(hogql=result),
        has_more=False,
        date_from=None,
        date_to=None,
        sql=compiled.sql,
    )
