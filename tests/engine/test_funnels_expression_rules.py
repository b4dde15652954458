"""Funnels counting the values of a HogQL expression (`funnelAggregateByHogQL`), through the SQL
engine on chDB, against hand-worked counts (none comes from the oracle)."""

from __future__ import annotations

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.test_funnels_actors_rules import at, counts, ev, funnel, run


def by(expression: str, *steps: str, **fields: object) -> dict[str, object]:
    return funnel(*(steps or ("a", "b")), funnelsFilter={"funnelAggregateByHogQL": expression}, **fields)


def test_an_event_property_expression_counts_its_distinct_values(store: EventStore) -> None:
    events = [
        # Account "x": p1 enters, p2 converts in the window (one actor across two persons).
        ev(at(10, 1), "a", "p1", account="x"),
        ev(at(10, 2), "b", "p2", account="x"),
        # Account "y" enters only; "Y" is another value (no folding of case by itself).
        ev(at(10, 1), "a", "p3", account="y"),
        ev(at(10, 3), "b", "p3", account="Y"),
        # No account (absent, '' or null): nobody's event, whoever converts.
        ev(at(10, 1), "a", "p4"),
        ev(at(10, 2), "b", "p4", account=""),
        ev(at(10, 3), "b", "p4", account=None),
    ]
    assert counts(run(store, events, by("properties.account"))) == [2, 1]
    # lower() folds "y" and "Y" into one actor, who now converts.
    assert counts(run(store, events, by("lower(properties.account)"))) == [2, 2]
    assert counts(run(store, events, funnel("a", "b"))) == [3, 2]  # by person: p1, p3, p4 enter; p3, p4 convert


def test_an_expression_of_person_properties_and_fields_and_a_numeric_value(store: EventStore) -> None:
    events = [
        ev(at(10, 1), "a", "p1", n=5),
        ev(at(10, 2), "b", "p2", n=5.0),  # the same number's text: one actor "5"
        ev(at(10, 1), "a", "p3", n=7),
    ]
    for e in events:
        e.person_properties = {"team": "red" if e.person_id != "p3" else "blue"}
    assert counts(run(store, events, by("properties.n"))) == [2, 1]
    assert counts(run(store, events, by("person.properties.team"))) == [2, 1]
    # concat of NULL is NULL: p1..p3 all have a team and an n, so three values: red-5 (p1, p2), blue-7.
    assert counts(run(store, events, by("concat(person.properties.team, '-', properties.n)"))) == [2, 1]
    # The event's own name: every "a" event is one actor "a", which never does "b".
    assert counts(run(store, events, by("event"))) == [1, 0]
    assert counts(run(store, events, by("distinct_id"))) == [2, 0]


def test_an_expression_applies_in_every_view(store: EventStore) -> None:
    # One actor "x" across two persons converts in two hours; by person nobody converts.
    events = [ev(at(10, 1), "a", "p1", account="x"), ev(at(10, 3), "b", "p2", account="x")]

    def view(viz: str, expression: str | None) -> dict[str, object]:
        ff = {"funnelVizType": viz} | ({"funnelAggregateByHogQL": expression} if expression else {})
        return funnel("a", "b", funnelsFilter=ff)

    ttc = run(store, events, view("time_to_convert", "properties.account")).outcome.result.time_to_convert
    assert ttc.average_conversion_time == 7200
    assert sum(b.count for b in ttc.bins) == 1
    trends = run(store, events, view("trends", "properties.account")).outcome.result.trends.series
    assert [list(s.data) for s in trends] == [[100.0, 0.0, 0.0]]
    by_person = run(store, events, view("trends", None)).outcome.result.trends.series
    assert [list(s.data) for s in by_person] == [[0.0, 0.0, 0.0]]


@pytest.mark.parametrize(
    "expression",
    ["count()", "sum(properties.n)", "(SELECT 1)", "nosuchfield", "sleep(1)", "lower(", "properties.a AS b", "{x}", "e.x"],
)
def test_an_invalid_expression_is_invalid_naming_the_field(store: EventStore, expression: str) -> None:
    with pytest.raises(QueryError) as refused:
        run(store, [], by(expression))
    assert refused.value.path == "funnelsFilter.funnelAggregateByHogQL"


def test_hostile_keys_and_values_are_bound_never_sql(store: EventStore) -> None:
    hostile = "x'); DROP TABLE events; --"
    events = [
        ev(at(10, 1), "a", "p1", **{hostile: hostile}),
        ev(at(10, 2), "b", "p2", **{hostile: hostile}),
    ]
    result = run(store, events, by(f"concat(properties.`{hostile.replace('`', '')}`, '{hostile.replace(chr(39), chr(39) * 2)}')"))
    assert counts(result) == [1, 1]
    assert hostile not in result.outcome.sql
    assert "DROP" not in result.outcome.sql


@pytest.mark.parametrize("expression", ["lower(1)", "toInt64('abc')", "intDiv(1, 0)", "substring(event, 0, 1)"])
def test_an_expression_the_engine_cannot_compute_is_invalid_naming_the_field(store: EventStore, expression: str) -> None:
    # Types and values the compiler cannot know: the engine's refusal is the caller's, never internal.
    with pytest.raises(QueryError) as refused:
        run(store, [ev(at(10, 1), "a", "p1", account="x")], by(expression))
    assert refused.value.path == "funnelsFilter.funnelAggregateByHogQL"
    assert "the engine cannot compute the expression" in refused.value.message
    assert "SELECT" not in refused.value.message


# --- breakdown_type hogql ----------------------------------------------------------------------------


def test_a_hogql_breakdown_splits_by_the_expressions_text_with_missing_as_empty(store: EventStore) -> None:
    events = [
        ev(at(10, 1), "a", "p1", account="Acme"),
        ev(at(10, 2), "b", "p1", account="Acme"),
        ev(at(10, 1), "a", "p2", account="acme"),
        ev(at(10, 1), "a", "p3"),
    ]
    query = funnel("a", "b", breakdownFilter={"breakdown": "lower(properties.account)", "breakdown_type": "hogql"})
    result = run(store, events, query)
    got = {tuple(group[0]["breakdown_value"]): [s["count"] for s in group] for group in result.results}
    assert got == {("acme",): [2, 1], ("",): [1, 0]}
    # Two dimensions: a property and an expression.
    query = funnel(
        "a",
        "b",
        breakdownFilter={
            "breakdowns": [{"property": "account", "type": "event"}, {"property": "concat(event, '!')", "type": "hogql"}]
        },
    )
    got = {tuple(g[0]["breakdown_value"]): [s["count"] for s in g] for g in run(store, events, query).results}
    assert got == {("Acme", "a!"): [1, 1], ("acme", "a!"): [1, 0], ("", "a!"): [1, 0]}


@pytest.mark.parametrize(
    ("breakdown", "path"),
    [
        ({"breakdown": "count()", "breakdown_type": "hogql"}, "breakdownFilter.breakdown"),
        ({"breakdowns": [{"property": "x", "type": "event"}, {"property": "nosuch", "type": "hogql"}]}, "breakdownFilter.breakdowns[1].property"),
    ],
)
def test_an_invalid_hogql_breakdown_is_invalid_naming_its_field(store: EventStore, breakdown: dict[str, object], path: str) -> None:
    with pytest.raises(QueryError) as refused:
        run(store, [], funnel("a", "b", breakdownFilter=breakdown))
    assert refused.value.path == path


def test_an_engine_error_of_a_hogql_breakdown_names_it(store: EventStore) -> None:
    query = funnel("a", "b", breakdownFilter={"breakdown": "lower(1)", "breakdown_type": "hogql"})
    with pytest.raises(QueryError) as refused:
        run(store, [ev(at(10, 1), "a", "p1")], query)
    assert refused.value.path == "breakdownFilter.breakdown"
