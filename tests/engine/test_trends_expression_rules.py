"""Trends broken down by a HogQL expression (`breakdown_type: hogql`) and aggregating one
(`math: hogql` with `math_hogql`), through the SQL engine on chDB, against hand-worked values
(none comes from the oracle)."""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.test_trends_rules import _by_value, at, ev, run, trends
from tests.oracle import NULL_LABEL, OTHER_LABEL, Event


def _events() -> list[Event]:
    # 10 Jan: Chrome, chrome (folded by lower), Firefox, none, '' (none); 11 Jan: Chrome.
    return [
        ev(at(2024, 1, 10, 10), "p1", {"browser": "Chrome", "amount": 2}),
        ev(at(2024, 1, 10, 11), "p2", {"browser": "chrome", "amount": 3}),
        ev(at(2024, 1, 10, 12), "p3", {"browser": "Firefox", "amount": 10}),
        ev(at(2024, 1, 10, 13), "p4", {}),
        ev(at(2024, 1, 10, 14), "p5", {"browser": ""}),
        ev(at(2024, 1, 11, 10), "p1", {"browser": "Chrome", "amount": 5}),
    ]


def hogql_math(expression: str, **fields: Any) -> dict[str, Any]:
    query = trends(**fields)
    query["series"][0].update({"math": "hogql", "math_hogql": expression})
    return query


def test_a_hogql_breakdown_splits_by_the_expressions_text_and_missing_is_the_null_label(store: EventStore) -> None:
    out = run(store, _events(), trends(breakdownFilter={"breakdown": "lower(properties.browser)", "breakdown_type": "hogql"}))
    # chrome: p1 twice, p2; firefox: p3; no browser (absent, ''): p4, p5.
    assert _by_value(out) == [("chrome", 3), ("firefox", 1), (NULL_LABEL, 2)]
    # A number's text: toString(2) is "2"; the missing amount is NULL (NULL + 1 stays NULL).
    out = run(store, _events(), trends(breakdownFilter={"breakdown": "properties.amount", "breakdown_type": "hogql"}))
    assert sorted(_by_value(out)) == sorted([("2", 1), ("3", 1), ("10", 1), ("5", 1), (NULL_LABEL, 2)])


def test_a_hogql_dimension_beside_a_property_and_the_other_bucket(store: EventStore) -> None:
    bf = {
        "breakdowns": [{"property": "browser", "type": "event"}, {"property": "concat(event, '!')", "type": "hogql"}],
        "breakdown_limit": 1,
    }
    out = run(store, _events(), trends(breakdownFilter=bf))
    # Chrome ranks first (2); everything else (4 events) is Other.
    assert [(i["breakdown_value"], i["count"]) for i in out.results] == [(["Chrome", "$pageview!"], 2), ([OTHER_LABEL, OTHER_LABEL], 4)]
    assert out.has_more


def test_a_hogql_dimension_is_bucketed_and_url_normalised_like_a_property(store: EventStore) -> None:
    bf = {"breakdown": "toFloat64OrNull(properties.amount) * 2", "breakdown_type": "hogql", "breakdown_histogram_bin_count": 2}
    out = run(store, _events(), trends(breakdownFilter=bf))
    # Values 4, 6, 20, 10: min 4, max 20, width 8: [4, 12) holds 4, 6, 10; [12, 20.01) holds 20.
    assert sorted(_by_value(out)) == sorted([("[4.0,12.0]", 3), ("[12.0,20.01]", 1), (NULL_LABEL, 2)])
    events = [ev(at(2024, 1, 10, 10), "p1", {"u": "https://x.com/a/"}), ev(at(2024, 1, 10, 11), "p2", {"u": "https://x.com/a?#"})]
    bf = {"breakdown": "properties.u", "breakdown_type": "hogql", "breakdown_normalize_url": True}
    assert _by_value(run(store, events, trends(breakdownFilter=bf))) == [("https://x.com/a", 2)]


def test_hostile_expression_text_is_a_value_never_sql(store: EventStore) -> None:
    text = "concat(properties.browser, '''); DROP TABLE events; --')"
    out = run(store, _events()[:1], trends(breakdownFilter={"breakdown": text, "breakdown_type": "hogql"}))
    assert _by_value(out) == [("Chrome'); DROP TABLE events; --", 1)]
    assert "DROP" not in out.outcome.sql


@pytest.mark.parametrize(
    ("breakdown", "path"),
    [
        ({"breakdown": "count()", "breakdown_type": "hogql"}, "breakdownFilter.breakdown"),
        ({"breakdown": "nosuchfield", "breakdown_type": "hogql"}, "breakdownFilter.breakdown"),
        ({"breakdowns": [{"property": "x", "type": "event"}, {"property": "sum(1)", "type": "hogql"}]}, "breakdownFilter.breakdowns[1].property"),
    ],
)
def test_an_invalid_hogql_breakdown_is_invalid_naming_its_field(store: EventStore, breakdown: dict[str, Any], path: str) -> None:
    with pytest.raises(QueryError) as caught:
        run(store, _events(), trends(breakdownFilter=breakdown))
    assert caught.value.path == path


def test_an_engine_error_of_a_hogql_breakdown_names_it(store: EventStore) -> None:
    with pytest.raises(QueryError) as caught:
        run(store, _events(), trends(breakdownFilter={"breakdown": "lower(1)", "breakdown_type": "hogql"}))
    assert caught.value.path == "breakdownFilter.breakdown"


def test_math_hogql_is_the_aggregate_per_bucket(store: EventStore) -> None:
    out = run(store, _events(), hogql_math("sum(toFloat64OrNull(properties.amount))"))
    # 10 Jan: 2 + 3 + 10 = 15; 11 Jan: 5; the range is 8 days ending 15 Jan.
    assert out.results[0]["data"] == [0, 0, 15, 5, 0, 0, 0, 0]
    out = run(store, _events(), hogql_math("count() * 2 + uniq(person_id)"))
    assert out.results[0]["data"] == [0, 0, 15, 3, 0, 0, 0, 0]  # 5·2 + 5, 1·2 + 1


def test_math_hogql_with_a_breakdown_recounts_other_and_totals(store: EventStore) -> None:
    bf = {"breakdown": "browser", "breakdown_limit": 1}
    out = run(store, _events(), hogql_math("max(toFloat64OrNull(properties.amount))", breakdownFilter=bf, trendsFilter={"display": "ActionsPie"}))
    # Whole range: Firefox max 10 ranks first; the rest (Chrome 2 and 5, chrome 3, none) is
    # recounted as one group: max 5 (a sum of the cut values' maxima would be 8).
    assert [(i["breakdown_value"], i["aggregated_value"]) for i in out.results] == [("Firefox", 10), (OTHER_LABEL, 5)]
    assert out.has_more


def test_math_hogql_in_formulas_and_compare(store: EventStore) -> None:
    query = hogql_math("sum(toFloat64OrNull(properties.amount))", trendsFilter={"formula": "A * 2"})
    assert run(store, _events(), query).results[0]["data"] == [0, 0, 30, 10, 0, 0, 0, 0]
    query = hogql_math("count()", compareFilter={"compare": True})
    out = run(store, _events(), query)
    assert [(i["compare_label"], i["count"]) for i in out.results] == [("current", 6), ("previous", 0)]


def test_math_hogql_with_no_value_is_zero(store: EventStore) -> None:
    # No event has `nothing`: sum of nothing is 0, avg of nothing NULL → 0.
    out = run(store, _events(), hogql_math("avg(toFloat64OrNull(properties.nothing))"))
    assert out.results[0]["data"] == [0] * 8


@pytest.mark.parametrize(
    ("series", "path"),
    [
        ({"math": "hogql"}, "series[0].math_hogql"),
        ({"math": "hogql", "math_hogql": "count("}, "series[0].math_hogql"),
        ({"math": "hogql", "math_hogql": "nosuch(1)"}, "series[0].math_hogql"),
        # A field outside any aggregate has no one value per bucket: the engine's, the caller's.
        ({"math": "hogql", "math_hogql": "properties.amount"}, "series[0].math_hogql"),
        ({"math": "hogql", "math_hogql": "sum(lower(1))"}, "series[0].math_hogql"),
    ],
)
def test_an_invalid_math_hogql_is_invalid_naming_it(store: EventStore, series: dict[str, Any], path: str) -> None:
    query = trends()
    query["series"][0].update(series)
    with pytest.raises(QueryError) as caught:
        run(store, _events(), query)
    assert caught.value.path == path
