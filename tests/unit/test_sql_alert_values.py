"""How an alert reads a SQL insight (server.queries.sql.alert): the checked column, the rows as a series,
the three evaluations, and the refusals, against results written by hand."""

from __future__ import annotations

from typing import Any

import pytest

from generated.insights.v1 import alerts_pb2, query_pb2, results_pb2
from server.domain.alerts import evaluate
from server.domain.alerts.evaluate import AlertState, Bounds, Threshold
from server.queries.alerting import AlertAsk, AlertValueError
from server.queries.registry import ALERT_CONFIG_FIELDS, ALERTS, alerting_of
from server.queries.sql.alert import (
    ANY_ROW_MAX_ROWS,
    DataVisualizationAlertValues,
    HogQLAlertValues,
    config_json,
    is_numeric_type,
)
from server.queries.sql.values import row_value

SQL = HogQLAlertValues()
NODE = query_pb2.HogQLQuery(query="SELECT day, n FROM t")


def table(columns: list[tuple[str, str]], rows: list[list[Any]], limit: int = 100) -> results_pb2.InsightResult:
    out = results_pb2.InsightResult()
    out.hogql.columns.extend(name for name, _ in columns)
    out.hogql.types.extend(results_pb2.HogQLColumnType(name=n, type=t) for n, t in columns)
    out.hogql.rows.extend(row_value(r) for r in rows)
    out.hogql.limit = limit
    return out


DAILY = [("day", "Date"), ("n", "UInt64")]
# Three days, oldest first: 2, 3, 5.
THREE_DAYS = table(DAILY, [["2026-03-01", 2], ["2026-03-02", 3], ["2026-03-03", 5]])


def ask(condition: str = "absolute_value", detector: bool = False, **config: Any) -> AlertAsk:
    return AlertAsk(condition=condition, config={"type": "HogQLAlertConfig", **config}, detector=detector)


def check(
    result: results_pb2.InsightResult,
    lower: float | None = None,
    upper: float | None = None,
    condition: str = "absolute_value",
    percentage: bool = False,
    **config: Any,
) -> evaluate.Evaluation:
    threshold = Threshold("percentage" if percentage else "absolute", Bounds(lower, upper))
    return evaluate.evaluate(SQL, NODE, result, condition, threshold, {"type": "HogQLAlertConfig", **config})


@pytest.mark.parametrize(
    ("engine_type", "numeric"),
    [
        ("UInt64", True),
        ("Int8", True),
        ("Float64", True),
        ("Nullable(Float64)", True),
        ("LowCardinality(Nullable(Int32))", True),
        ("Decimal(10, 2)", True),
        ("Decimal128(4)", True),
        ("String", False),
        ("Bool", False),
        ("Date", False),
        ("IntervalDay", False),
        ("Array(UInt64)", False),
        ("Nullable(String)", False),
    ],
)
def test_numeric_columns_are_told_by_their_engine_type(engine_type: str, numeric: bool) -> None:
    assert is_numeric_type(engine_type) is numeric


# ------------------------------------------------------------------------------ the rows as values


def test_last_row_is_the_checked_value_and_the_rows_are_the_series() -> None:
    (line,) = SQL.watched(NODE, THREE_DAYS, ask())
    assert line.points == (2.0, 3.0, 5.0) and line.anchor_back == 1
    # The first column other than the checked one names the row, and the points (for a detector).
    assert line.label == "2026-03-03" and line.days == ("2026-03-01", "2026-03-02", "2026-03-03")
    fired = check(THREE_DAYS, upper=4)
    assert fired.state == AlertState.FIRING and fired.value == 5.0
    assert fired.breaches == ["The SQL insight value for 2026-03-03 (5) is above the upper threshold (4)"]
    # Equal to the bound does not breach.
    assert check(THREE_DAYS, upper=5).state == AlertState.NOT_FIRING


def test_relative_conditions_compare_the_last_row_with_the_one_before() -> None:
    grew = check(THREE_DAYS, upper=1, condition="relative_increase")
    assert grew.state == AlertState.FIRING and grew.value == 2.0
    assert grew.breaches == [
        "The SQL insight value for 2026-03-03 increased by 2 (from 3 to 5), which is above the upper threshold (1)"
    ]
    share = check(THREE_DAYS, upper=0.5, condition="relative_increase", percentage=True)
    assert share.state == AlertState.FIRING and share.value == pytest.approx(2 / 3)
    assert check(THREE_DAYS, upper=0, condition="relative_decrease").state == AlertState.NOT_FIRING


def test_first_row_reads_newest_first() -> None:
    newest_first = table(DAILY, [["2026-03-03", 5], ["2026-03-02", 3], ["2026-03-01", 2]])
    (line,) = SQL.watched(NODE, newest_first, ask(evaluation="first_row"))
    assert line.points == (2.0, 3.0, 5.0) and line.label == "2026-03-03"
    assert line.days == ("2026-03-01", "2026-03-02", "2026-03-03")
    grew = check(newest_first, upper=1, condition="relative_increase", evaluation="first_row")
    assert grew.state == AlertState.FIRING and grew.value == 2.0
    # A result as long as its limit is fine here: its head is never cut.
    cut = table(DAILY, [["2026-03-03", 5], ["2026-03-02", 3]], limit=2)
    assert check(cut, upper=4, evaluation="first_row").value == 5.0


def test_any_row_checks_each_row_and_names_the_breaching_ones() -> None:
    browsers = table(
        [("browser", "Nullable(String)"), ("n", "UInt64")], [["Chrome", 9], ["Firefox", 2], [None, 12]]
    )
    lines = SQL.watched(NODE, browsers, ask(evaluation="any_row"))
    assert [(w.label, w.points) for w in lines] == [("Chrome", (9.0,)), ("Firefox", (2.0,)), ("row 3", (12.0,))]
    fired = check(browsers, upper=8, evaluation="any_row")
    assert fired.state == AlertState.FIRING and fired.value == 9.0
    assert fired.triggered_breakdown_values == ["Chrome", "row 3"]
    assert fired.breaches == [
        "The SQL insight value for Chrome (9) is above the upper threshold (8)",
        "The SQL insight value for row 3 (12) is above the upper threshold (8)",
    ]
    # Inside the bounds: not firing, and no single value to record.
    quiet = check(browsers, lower=1, upper=20, evaluation="any_row")
    assert quiet.state == AlertState.NOT_FIRING and quiet.value is None


def test_a_chosen_column_and_label_column() -> None:
    wide = table(
        [("day", "Date"), ("views", "UInt64"), ("revenue", "Nullable(Float64)"), ("plan", "String")],
        [["2026-03-01", 7, 1.5, "free"], ["2026-03-02", 9, None, "pro"]],
    )
    # Two numeric columns: the caller must choose.
    with pytest.raises(AlertValueError, match="more than one numeric column"):
        SQL.watched(NODE, wide, ask())
    (line,) = SQL.watched(NODE, wide, ask(column="revenue", label_column="plan"))
    # NULL counts as 0.
    assert line.points == (1.5, 0.0) and line.label == "pro"
    assert check(wide, lower=1, column="views").value == 9.0


@pytest.mark.parametrize(
    ("columns", "rows", "config", "message"),
    [
        (DAILY, [["2026-03-01", 1]], {"column": "nosuch"}, "no column 'nosuch'"),
        (DAILY, [["2026-03-01", 1]], {"column": "day"}, "'day' is Date, not a number"),
        (DAILY, [["2026-03-01", 1]], {"label_column": "nosuch"}, "label_column: the result has no column"),
        ([("flag", "Bool")], [[True]], {}, "no numeric column"),
        ([("event", "String"), ("who", "String")], [["a", "b"]], {}, "no numeric column"),
    ],
)
def test_a_column_the_result_cannot_give_errors_the_check(
    columns: list[tuple[str, str]], rows: list[list[Any]], config: dict[str, Any], message: str
) -> None:
    with pytest.raises(AlertValueError, match=message):
        SQL.watched(NODE, table(columns, rows), ask(**config))
    with pytest.raises(evaluate.EvaluationError, match=message):
        check(table(columns, rows), upper=1, **config)


def test_a_single_column_is_the_checked_one_and_big_integers_keep_their_value() -> None:
    (line,) = SQL.watched(NODE, table([("n", "UInt64")], [[2**60]]), ask())
    assert line.points == (float(2**60),) and line.label == ""
    assert check(table([("n", "UInt64")], [[4]]), upper=3).breaches == [
        "The SQL insight value (4) is above the upper threshold (3)"
    ]


def test_no_rows_is_one_zero_value() -> None:
    empty = table(DAILY, [])
    assert SQL.watched(NODE, empty, ask()) == []
    fired = check(empty, lower=1)
    assert fired.state == AlertState.FIRING and fired.value == 0.0


def test_results_that_cannot_be_trusted_error_the_check() -> None:
    # As many rows as the limit: the last row may not be the real one.
    cut = table(DAILY, [["2026-03-01", 2], ["2026-03-02", 3]], limit=2)
    with pytest.raises(AlertValueError, match="as many as its row limit"):
        SQL.watched(NODE, cut, ask())
    many = table([("k", "String"), ("n", "UInt8")], [[str(i), i] for i in range(ANY_ROW_MAX_ROWS + 1)], limit=1000)
    with pytest.raises(AlertValueError, match=f"at most {ANY_ROW_MAX_ROWS} rows"):
        SQL.watched(NODE, many, ask(evaluation="any_row"))
    one = table(DAILY, [["2026-03-01", 2]])
    with pytest.raises(AlertValueError, match="needs two rows"):
        SQL.watched(NODE, one, ask("relative_increase"))
    trends = results_pb2.InsightResult()
    trends.trends.SetInParent()
    with pytest.raises(AlertValueError, match="no SQL rows"):
        SQL.watched(NODE, trends, ask())


# ------------------------------------------------------------------------------ the configuration


@pytest.mark.parametrize(
    ("node", "a", "field"),
    [
        (query_pb2.HogQLQuery(query="SELECT 1", explain=True), ask(), "insight"),
        (NODE, ask("relative_increase", evaluation="any_row"), "condition.type"),
        (NODE, ask(detector=True, evaluation="any_row"), "detector_config"),
        (NODE, ask(column=" "), "hogql_config.column"),
        (NODE, ask(label_column="x" * 1001), "hogql_config.label_column"),
        (NODE, AlertAsk("absolute_value", {"type": "TrendsAlertConfig", "series_index": 0}), "hogql_config"),
    ],
)
def test_configs_that_do_not_fit_a_sql_insight(node: query_pb2.HogQLQuery, a: AlertAsk, field: str) -> None:
    assert [p.field for p in SQL.problems(node, a)] == [field]


def test_valid_configs_have_no_problems() -> None:
    for a in (ask(), ask("relative_decrease", evaluation="first_row"), ask(detector=True), ask(column="n")):
        assert SQL.problems(NODE, a) == []


def test_a_data_visualization_node_is_read_through_its_source() -> None:
    dvn = query_pb2.DataVisualizationNode(source=query_pb2.HogQLQuery(query="SELECT 1", explain=True))
    (problem,) = DataVisualizationAlertValues().problems(dvn, ask())
    assert problem.field == "insight" and "query.source.explain" in problem.message
    assert DataVisualizationAlertValues().query(dvn, ask()) == dvn
    (line,) = DataVisualizationAlertValues().watched(dvn, THREE_DAYS, ask())
    assert line.points == (2.0, 3.0, 5.0)


def test_both_sql_kinds_are_alertable_with_their_own_config_field() -> None:
    assert isinstance(ALERTS["hogql_query"], HogQLAlertValues)
    assert isinstance(ALERTS["data_visualization_node"], DataVisualizationAlertValues)
    assert ALERT_CONFIG_FIELDS["HogQLAlertConfig"] == "hogql_config"
    query = query_pb2.QueryNode(data_visualization_node=query_pb2.DataVisualizationNode(source=NODE))
    found = alerting_of(query)
    assert found is not None and found[0].kind == "data_visualization_node"


def test_the_stored_config_applies_the_defaults() -> None:
    assert config_json(alerts_pb2.Alert()) == {
        "type": "HogQLAlertConfig",
        "evaluation": "last_row",
        "column": None,
        "label_column": None,
    }
    chosen = alerts_pb2.Alert(
        hogql_config=alerts_pb2.HogQLAlertConfig(
            evaluation=alerts_pb2.HOG_QL_ALERT_EVALUATION_ANY_ROW, column="n", label_column="browser"
        )
    )
    assert config_json(chosen) == {
        "type": "HogQLAlertConfig",
        "evaluation": "any_row",
        "column": "n",
        "label_column": "browser",
    }
