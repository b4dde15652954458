"""Query bounds checked before the engine: regex size and nesting, property group depth, series,
formulas, breakdown_limit, and enum numbers the engine's lookups do not know."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import pytest

from generated.insights.v1 import query_pb2 as qpb
from server.queries.base import QueryContext
from server.queries.errors import QueryError
from server.queries.properties import (
    MAX_GROUP_DEPTH,
    MAX_REGEX_DEPTH,
    MAX_REGEX_LENGTH,
    properties_sql,
    regex_problem,
)
from server.queries.sql import Params
from server.queries.trends.compute import MAX_BREAKDOWN_LIMIT, MAX_FORMULAS, MAX_SERIES, run_trends

NOW = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)


def _nested(depth: int) -> str:
    return "(" * depth + "a" + ")" * depth


def test_regex_nesting_is_bounded_before_pythons_parser_can_run_out_of_stack() -> None:
    assert regex_problem(_nested(MAX_REGEX_DEPTH)) is None
    assert (
        regex_problem(_nested(MAX_REGEX_DEPTH + 1)) == f"a regex nests groups at most {MAX_REGEX_DEPTH} deep"
    )
    # Far past the interpreter's recursion limit: refused by the scan, never parsed.
    problem = regex_problem(_nested(sys.getrecursionlimit() * 2))
    assert problem is not None and str(MAX_REGEX_DEPTH) in problem
    assert regex_problem("(?:" * 500 + "a" + ")" * 500) is not None


def test_escaped_and_bracketed_parentheses_are_not_groups() -> None:
    deep = MAX_REGEX_DEPTH * 3
    assert regex_problem("\\(" * deep + "a" + "\\)" * deep) is None
    assert regex_problem("[(]" * deep) is None
    assert regex_problem("(a)" * deep) is None  # siblings, not nesting


def test_regex_length_is_bounded() -> None:
    assert regex_problem("a" * MAX_REGEX_LENGTH) is None
    problem = regex_problem("a" * (MAX_REGEX_LENGTH + 1))
    assert problem is not None and str(MAX_REGEX_LENGTH) in problem


def _groups(depth: int) -> qpb.Properties:
    props = qpb.Properties()
    group = props.group.values.add()
    for _ in range(depth - 1):
        group = group.values.add().group
    group.values.add().filter.CopyFrom(qpb.PropertyFilter(key="k", value=qpb.PropertyValue(string_value="v")))
    return props


def test_property_groups_nest_up_to_the_bound() -> None:
    assert "ifNull" in properties_sql(Params(), _groups(MAX_GROUP_DEPTH), "properties", "UTC")

    with pytest.raises(QueryError) as caught:
        properties_sql(Params(), _groups(MAX_GROUP_DEPTH + 1), "properties", "UTC")

    assert caught.value.path == "properties" + ".values[0]" * (MAX_GROUP_DEPTH + 1)
    assert f"at most {MAX_GROUP_DEPTH}" in caught.value.message


def test_a_filter_list_is_named_as_the_json_array() -> None:
    props = qpb.Properties()
    props.list.values.add(value=qpb.PropertyValue(string_value="v"))

    with pytest.raises(QueryError) as caught:
        properties_sql(Params(), props, "properties", "UTC")

    assert caught.value.path == "properties[0].key"


def _run(query: qpb.TrendsQuery) -> Any:
    ctx = QueryContext(team_id=1, timezone="UTC", week_start_day=0, now=NOW)
    return run_trends(query, ctx, lambda sql, params: [])


def _trends(series: int = 1, **fields: Any) -> qpb.TrendsQuery:
    return qpb.TrendsQuery(
        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event=f"e{i}")) for i in range(series)], **fields
    )


def _refusal(query: qpb.TrendsQuery) -> QueryError:
    with pytest.raises(QueryError) as caught:
        _run(query)
    return caught.value


def test_series_are_bounded() -> None:
    _run(_trends(MAX_SERIES))

    error = _refusal(_trends(MAX_SERIES + 1))

    assert error.path == "series" and str(MAX_SERIES) in error.message


def test_formulas_are_bounded() -> None:
    query = _trends(trends_filter=qpb.TrendsFilter(formulas=["A"] * (MAX_FORMULAS + 1)))

    assert _refusal(query).path == "trendsFilter.formulas"


@pytest.mark.parametrize("limit", [-1, -5, -(2**31), MAX_BREAKDOWN_LIMIT + 1])
def test_breakdown_limit_out_of_range_is_refused_not_sliced(limit: int) -> None:
    query = _trends(
        breakdown_filter=qpb.BreakdownFilter(
            breakdown=qpb.BreakdownKey(string_value="browser"), breakdown_limit=limit
        )
    )

    error = _refusal(query)

    assert error.path == "breakdownFilter.breakdown_limit" and str(MAX_BREAKDOWN_LIMIT) in error.message


@pytest.mark.parametrize("limit", [0, 1, MAX_BREAKDOWN_LIMIT])
def test_breakdown_limit_in_range_runs(limit: int) -> None:
    query = _trends(
        breakdown_filter=qpb.BreakdownFilter(
            breakdown=qpb.BreakdownKey(string_value="browser"), breakdown_limit=limit
        )
    )

    _run(query)


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda q: setattr(q, "interval", 77), "interval"),
        (lambda q: setattr(q.series[0].events_node, "math", 12345), "series[0].math"),
        (lambda q: q.properties.list.values.add(key="k", operator=-3), "properties[0].operator"),
        (lambda q: q.series[0].events_node.properties.add(key="k", type=99), "series[0].properties[0].type"),
    ],
)
def test_the_engine_refuses_undefined_enum_numbers_itself(mutate: Any, path: str) -> None:
    query = _trends()
    mutate(query)

    error = _refusal(query)

    assert error.path == path and "is not a value of" in error.message
