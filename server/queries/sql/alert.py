"""What an alert reads of a SQL insight: a numeric column of its rows (HogQLAlertConfig).

Decisions (docs/decisions.md, "SQL alerts"), after the reference's SQL alerts:
- `column` names the checked column; unset, the only column, else the only numeric one (none or
  several numeric columns is an error: the caller must choose). Numeric is the engine type (Int,
  UInt, Float, Decimal, possibly Nullable or LowCardinality); a Bool or text column is an error. A
  NULL cell (NaN and infinities travel as null too) counts as 0.
- `last_row` (the default): the rows are oldest first and form the series (time order); the last
  row is the checked value, the one before it the previous value. A result as long as its row limit
  may have been cut (its real last row missing): an error, never a check of the wrong row.
  `first_row`: the rows are newest first (the series is reversed); the first row is checked.
  `any_row`: each row is a line of its own (at most 50), any breaching row fires; absolute_value only.
- Relative conditions need two rows. No rows is one zero value (so a lower bound can breach), as
  for trends. Detectors score the whole ordered column (last_row / first_row only); the naming
  column's values stand for the points' dates in triggered_dates.
- The statement is run as saved: a SQL insight owns its window (no narrowing, no history widening).
- Every error about the result (column missing, not numeric, too few rows, cut result) errors the
  check; the alert stays enabled (the SQL may be fixed). `explain` on the insight is refused when the
  alert is saved (a plan has no values).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from google.protobuf import json_format, struct_pb2

from generated.insights.v1 import alerts_pb2, query_pb2, results_pb2
from server.queries.alerting import (
    ABSOLUTE_VALUE,
    AlertAsk,
    AlertValueError,
    AlertValues,
    BreakdownValue,
    Problem,
    Watched,
)

CONFIG_TYPE = "HogQLAlertConfig"
LAST_ROW, FIRST_ROW, ANY_ROW = "last_row", "first_row", "any_row"
EVALUATIONS = {
    alerts_pb2.HOG_QL_ALERT_EVALUATION_UNSPECIFIED: LAST_ROW,
    alerts_pb2.HOG_QL_ALERT_EVALUATION_LAST_ROW: LAST_ROW,
    alerts_pb2.HOG_QL_ALERT_EVALUATION_FIRST_ROW: FIRST_ROW,
    alerts_pb2.HOG_QL_ALERT_EVALUATION_ANY_ROW: ANY_ROW,
}
# any_row checks every row: past this many it would rather refuse than skip a breaching row.
ANY_ROW_MAX_ROWS = 50
# Column names are the engine's (aliases or printed expressions): a bound on what is stored.
COLUMN_NAME_LIMIT = 1000
SUBJECT = "The SQL insight value"
_WRAPPERS = re.compile(r"^(?:Nullable|LowCardinality)\((.*)\)$")
_NUMERIC = re.compile(r"^(?:U?Int(?:8|16|32|64|128|256)|Float(?:32|64)|BFloat16|Decimal(?:32|64|128|256)?\(.*\))$")


def is_numeric_type(engine_type: str) -> bool:
    """Whether an engine column type holds numbers (Nullable and LowCardinality unwrapped)."""
    found = engine_type.strip()
    while (inner := _WRAPPERS.match(found)) is not None:
        found = inner.group(1).strip()
    return _NUMERIC.match(found) is not None


def evaluation_of(ask: AlertAsk) -> str:
    return str(ask.config.get("evaluation") or LAST_ROW)


def _column_of(ask: AlertAsk, key: str) -> str | None:
    value = ask.config.get(key)
    return None if value is None else str(value)


def _value_index(result: results_pb2.HogQLResult, chosen: str | None) -> int:
    """The checked column: the chosen one, else the only one, else the only numeric one."""
    columns = list(result.columns)
    types = [t.type for t in result.types]
    if chosen is not None:
        if chosen not in columns:
            raise AlertValueError(
                f"hogql_config.column: the result has no column {chosen!r} (its columns: {', '.join(columns)})"
            )
        index = columns.index(chosen)
        if not is_numeric_type(types[index] if index < len(types) else ""):
            raise AlertValueError(
                f"hogql_config.column: column {chosen!r} is {types[index] if index < len(types) else 'untyped'}, "
                "not a number"
            )
        return index
    numeric = [i for i, t in enumerate(types) if is_numeric_type(t)]
    # The only column is the only numeric one, or there is none: one rule covers both.
    if len(numeric) == 1:
        return numeric[0]
    described = ", ".join(f"{c} {t}" for c, t in zip(columns, types, strict=False))
    raise AlertValueError(
        f"hogql_config.column: the result has {'no' if not numeric else 'more than one'} numeric column "
        f"({described}): choose the checked column"
    )


def _label_index(columns: list[str], chosen: str | None, value: int) -> int | None:
    """The naming column: the chosen one, else the first column other than the checked one."""
    if chosen is not None:
        if chosen not in columns:
            raise AlertValueError(
                f"hogql_config.label_column: the result has no column {chosen!r} "
                f"(its columns: {', '.join(columns)})"
            )
        return columns.index(chosen)
    return next((i for i in range(len(columns)) if i != value), None)


def _number(row: struct_pb2.ListValue, index: int, position: str) -> float:
    """One cell of the checked column as a float: NULL is 0; integers beyond 2^53 arrive as text."""
    if index >= len(row.values):
        raise AlertValueError(f"the {position} has no value in the checked column")
    cell = row.values[index]
    kind = cell.WhichOneof("kind")
    if kind == "number_value":
        return float(cell.number_value)
    if kind in (None, "null_value"):
        return 0.0
    if kind == "string_value":
        try:
            return float(int(cell.string_value))
        except ValueError:
            pass
    raise AlertValueError(f"the {position} holds no number in the checked column")


def _label(row: struct_pb2.ListValue, index: int | None) -> BreakdownValue:
    if index is None or index >= len(row.values):
        return None
    cell = row.values[index]
    kind = cell.WhichOneof("kind")
    if kind in (None, "null_value"):
        return None
    if kind == "number_value":
        number = cell.number_value
        return int(number) if number.is_integer() else number
    if kind in ("string_value", "bool_value"):
        value: str | bool = getattr(cell, kind)
        return value
    return json_format.MessageToJson(cell, indent=None)


def _text(value: BreakdownValue) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def sql_problems(node: query_pb2.HogQLQuery, ask: AlertAsk, where: str) -> list[Problem]:
    """What in `ask` does not fit the SQL node; `where` is the node's path in the insight's query."""
    stored = ask.config.get("type", CONFIG_TYPE)
    if stored != CONFIG_TYPE:
        # Only a stored alert whose insight became a SQL insight gets here.
        return [Problem("hogql_config", f"the insight is a SQL insight now, the alert's config is a {stored}")]
    out: list[Problem] = []
    if node.explain:
        out.append(
            Problem("insight", f"{where}.explain is set: the insight returns the engine's plan, which has no values")
        )
    evaluation = evaluation_of(ask)
    if evaluation not in (LAST_ROW, FIRST_ROW, ANY_ROW):
        out.append(Problem("hogql_config.evaluation", f"unknown evaluation {evaluation!r}"))
    for key in ("column", "label_column"):
        name = _column_of(ask, key)
        if name is not None and not name.strip():
            out.append(Problem(f"hogql_config.{key}", f"{key} must name a column of the result (got an empty name)"))
        elif name is not None and len(name) > COLUMN_NAME_LIMIT:
            out.append(Problem(f"hogql_config.{key}", f"at most {COLUMN_NAME_LIMIT} characters (got {len(name)})"))
    if evaluation == ANY_ROW and ask.condition != ABSOLUTE_VALUE:
        out.append(
            Problem(
                "condition.type",
                "any_row compares each row on its own (absolute_value): its rows are not a time series",
            )
        )
    if evaluation == ANY_ROW and ask.detector:
        out.append(
            Problem(
                "detector_config",
                "anomaly detectors need a time series: use last_row or first_row, not any_row",
            )
        )
    return out


def sql_watched(result: results_pb2.InsightResult, ask: AlertAsk) -> list[Watched]:
    """The watched lines of a SQL result (the module's decisions)."""
    if result.WhichOneof("result") != "hogql":
        raise AlertValueError("the insight query returned no SQL rows")
    table = result.hogql
    rows = list(table.rows)
    if not rows:
        return []
    evaluation = evaluation_of(ask)
    if evaluation == ANY_ROW and len(rows) > ANY_ROW_MAX_ROWS:
        raise AlertValueError(
            f"any_row checks at most {ANY_ROW_MAX_ROWS} rows, the query returned {len(rows)}: "
            "aggregate the rows or add a LIMIT"
        )
    if evaluation == LAST_ROW and table.HasField("limit") and len(rows) >= table.limit:
        raise AlertValueError(
            f"the query returned {len(rows)} rows, as many as its row limit, so its last row may not be the "
            "real one: aggregate, raise the LIMIT, or order newest first and use first_row"
        )
    value = _value_index(table, _column_of(ask, "column"))
    label = _label_index(list(table.columns), _column_of(ask, "label_column"), value)
    if evaluation == ANY_ROW:
        out = []
        for i, row in enumerate(rows):
            name = _label(row, label)
            text = _text(name) or f"row {i + 1}"
            out.append(Watched(text, name if name is not None else text, (_number(row, value, f"row {i + 1}"),)))
        return out
    ordered = list(reversed(rows)) if evaluation == FIRST_ROW else rows
    points = tuple(
        _number(row, value, f"row {len(rows) - i if evaluation == FIRST_ROW else i + 1}")
        for i, row in enumerate(ordered)
    )
    if ask.condition != ABSOLUTE_VALUE and not ask.detector and len(points) < 2:
        raise AlertValueError("a relative condition needs two rows (the checked one and the previous one)")
    # The naming column's values stand for the points' dates (a detector's triggered_dates).
    names = tuple(_text(_label(row, label)) for row in ordered) if label is not None else ()
    return [Watched(_text(_label(ordered[-1], label)), None, points, days=names)]


class HogQLAlertValues(AlertValues[query_pb2.HogQLQuery]):
    """Alerts on a bare HogQLQuery insight: a numeric column of its rows."""

    config_type = CONFIG_TYPE
    config_field = "hogql_config"

    def config_json(self, alert: alerts_pb2.Alert) -> dict[str, Any]:
        return config_json(alert)

    def problems(self, node: query_pb2.HogQLQuery, ask: AlertAsk) -> list[Problem]:
        return sql_problems(node, ask, "query")

    def query(
        self, node: query_pb2.HogQLQuery, ask: AlertAsk, history: int | None = None
    ) -> query_pb2.HogQLQuery:
        return copy.deepcopy(node)

    def watched(
        self, node: query_pb2.HogQLQuery, result: results_pb2.InsightResult, ask: AlertAsk
    ) -> list[Watched]:
        return sql_watched(result, ask)

    def subject(self, node: query_pb2.HogQLQuery, ask: AlertAsk) -> str:
        return SUBJECT


class DataVisualizationAlertValues(AlertValues[query_pb2.DataVisualizationNode]):
    """Alerts on a saved SQL insight (a DataVisualizationNode): its HogQLQuery source's rows."""

    config_type = CONFIG_TYPE
    config_field = "hogql_config"

    def config_json(self, alert: alerts_pb2.Alert) -> dict[str, Any]:
        return config_json(alert)

    def problems(self, node: query_pb2.DataVisualizationNode, ask: AlertAsk) -> list[Problem]:
        return sql_problems(node.source, ask, "query.source")

    def query(
        self, node: query_pb2.DataVisualizationNode, ask: AlertAsk, history: int | None = None
    ) -> query_pb2.DataVisualizationNode:
        return copy.deepcopy(node)

    def watched(
        self, node: query_pb2.DataVisualizationNode, result: results_pb2.InsightResult, ask: AlertAsk
    ) -> list[Watched]:
        return sql_watched(result, ask)

    def subject(self, node: query_pb2.DataVisualizationNode, ask: AlertAsk) -> str:
        return SUBJECT


def config_json(alert: alerts_pb2.Alert) -> dict[str, Any]:
    """The stored (reference JSON) form of an alert's HogQLAlertConfig, defaults applied."""
    config = alert.hogql_config
    return {
        "type": CONFIG_TYPE,
        "evaluation": EVALUATIONS.get(config.evaluation, LAST_ROW),
        # Explicit nulls, as the reference stores them: chosen from the result at each check.
        "column": config.column if config.HasField("column") else None,
        "label_column": config.label_column if config.HasField("label_column") else None,
    }
