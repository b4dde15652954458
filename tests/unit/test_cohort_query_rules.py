"""Cohorts in trends queries, without the engine: which cohorts a query names (and at which field,
for the loader and its errors), which cohort filters and breakdowns are malformed (the field named),
and that an invalid query is INVALID_ARGUMENT whatever cohorts it names."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from generated.insights.v1 import cohorts_pb2, query_pb2
from server.errors import FailedPrecondition
from server.queries.base import Definitions, QueryContext, Reference
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.common.errors import QueryError
from server.queries.trends.compute import check_trends
from server.queries.trends.runner import TrendsRunner

NOW = dt.datetime(2024, 3, 20, 12, tzinfo=dt.UTC)


def _query(**fields: Any) -> query_pb2.TrendsQuery:
    base = {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}]}
    return from_reference_json({**base, **fields}, query_pb2.TrendsQuery)


def _in(cohort_id: Any, **more: Any) -> dict[str, Any]:
    return {"type": "cohort", "key": "id", "value": cohort_id, **more}


def _ctx(*cohorts: int) -> QueryContext:
    filters = from_reference_json(
        {"properties": {"values": [{"values": [{"behavioral": {"event": "x", "time_value": 3}}]}]}},
        cohorts_pb2.CohortFilters,
    )
    loaded = {c: CohortDefinition(c, f"c{c}", 1, False, filters) for c in cohorts}
    return QueryContext(
        team_id=1, timezone="UTC", week_start_day=0, now=NOW, definitions=Definitions(cohorts=loaded)
    )


def test_references_name_every_cohort_at_the_field_the_errors_name() -> None:
    query = _query(
        series=[
            {"kind": "EventsNode", "event": "a", "properties": [{"key": "k", "value": "v"}, _in(2)]},
            {
                "kind": "GroupNode",
                "nodes": [{"kind": "ActionsNode", "id": 9, "properties": [_in("3")]}],
                "properties": [_in(4)],
            },
        ],
        properties={
            "type": "AND",
            "values": [{"type": "OR", "values": [_in(1), {"type": "AND", "values": [_in(5)]}]}],
        },
        breakdownFilter={"breakdown_type": "cohort", "breakdown": [6, "all", 7]},
    )
    assert TrendsRunner().references(query) == [
        Reference("cohort", 1, "properties.values[0].values[0].value"),
        Reference("cohort", 5, "properties.values[0].values[1].values[0].value"),
        Reference("cohort", 2, "series[0].properties[1].value"),
        Reference("action", 9, "series[1].nodes[0].id"),
        Reference("cohort", 3, "series[1].nodes[0].properties[0].value"),
        Reference("cohort", 4, "series[1].properties[0].value"),
        Reference("cohort", 6, "breakdownFilter.breakdown[0]"),
        Reference("cohort", 7, "breakdownFilter.breakdown[2]"),
    ]
    # A malformed cohort filter or breakdown names nothing to load (the check names its field).
    assert (
        TrendsRunner().references(
            _query(properties=[_in(0)], breakdownFilter={"breakdown_type": "cohort", "breakdown": [1, 1]})
        )
        == []
    )


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        ({"properties": [_in(0)]}, "properties[0].value", "positive cohort id"),
        ({"properties": [_in("x1")]}, "properties[0].value", "positive cohort id"),
        ({"properties": [_in(1, operator="icontains")]}, "properties[0].operator", "in or not_in"),
        ({"properties": [{"type": "cohort", "key": "name", "value": 1}]}, "properties[0].key", '"id"'),
        (
            {"properties": [{"key": "k", "value": "v", "negation": True}]},
            "properties[0].negation",
            "cohort filters only",
        ),
        ({"breakdownFilter": {"breakdown_type": "cohort"}}, "breakdownFilter.breakdown", "cohort id"),
        (
            {"breakdownFilter": {"breakdown_type": "cohort", "breakdown": [1, -2]}},
            "breakdownFilter.breakdown[1]",
            "cohort id",
        ),
        (
            {"breakdownFilter": {"breakdown_type": "cohort", "breakdown": [1, "1"]}},
            "breakdownFilter.breakdown[1]",
            "twice",
        ),
        (
            {"breakdownFilter": {"breakdown_type": "cohort", "breakdown": list(range(1, 22))}},
            "breakdownFilter.breakdown",
            "at most 20",
        ),
        (
            {"breakdownFilter": {"breakdowns": [{"property": "1", "type": "cohort"}]}},
            "breakdownFilter.breakdowns[0].type",
            "event, person and hogql",
        ),
    ],
)
def test_malformed_cohort_filters_and_breakdowns_name_the_field(
    fields: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(QueryError) as raised:
        check_trends(_query(**fields), _ctx(1))
    assert raised.value.path == path and words in raised.value.message


def test_a_cohort_not_loaded_is_failed_precondition_naming_it_after_the_query_is_checked() -> None:
    with pytest.raises(FailedPrecondition) as raised:
        check_trends(_query(properties=[_in(1), _in(8, operator="not_in")]), _ctx(1))
    assert raised.value.reason == "COHORT_UNAVAILABLE"
    assert raised.value.metadata == {"cohort": "8", "field": "properties[1].value"}
    # With an invalid filter after it, the query is invalid whatever cohorts it names.
    bad_regex = {"key": "k", "operator": "regex", "value": "(a"}
    with pytest.raises(QueryError) as invalid:
        check_trends(
            _query(properties=[_in(8)], series=[{"kind": "EventsNode", "properties": [bad_regex]}]), _ctx()
        )
    assert invalid.value.path == "series[0].properties[0].value"
    # A nested cohort that is gone: the query's field, the nested cohort named.
    nested = from_reference_json(
        {"properties": {"values": [{"values": [{"in_cohort": {"cohort_id": 5}}]}]}}, cohorts_pb2.CohortFilters
    )
    ctx = QueryContext(
        team_id=1,
        timezone="UTC",
        week_start_day=0,
        now=NOW,
        definitions=Definitions(cohorts={2: CohortDefinition(2, "outer", 1, False, nested)}),
    )
    with pytest.raises(FailedPrecondition) as gone:
        check_trends(_query(breakdownFilter={"breakdown_type": "cohort", "breakdown": 2}), ctx)
    assert gone.value.metadata == {"cohort": "5", "field": "breakdownFilter.breakdown"}
    assert "cohort 2" in gone.value.message and "cohort 5" in gone.value.message
