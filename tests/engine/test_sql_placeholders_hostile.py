"""SQL insight placeholders against hostile input: a placeholder where a name goes, values carrying SQL,
quotes, unicode or huge lists, broken filters. Each is refused with INVALID_ARGUMENT naming the field
at fault (UNIMPLEMENTED for a form not built), or runs inertly over the caller's rows only."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format, struct_pb2
from hypothesis import strategies as st

from generated.insights.v1 import query_pb2
from server.errors import Unimplemented
from server.queries.common.errors import QueryError
from server.queries.sql.bindings import MAX_LIST_ITEMS, MAX_VALUE_CHARS
from storage.events import EventRow, EventStore
from tests.engine.sql_kit import run_node, two_environments
from tests.engine.tally import NONZERO, ZERO, assert_mostly_nonzero, tally
from tests.engine.test_sql_placeholders import hogql, prop, rows_of, variable


@pytest.fixture(scope="module")
def teams(store: EventStore) -> Iterator[tuple[EventStore, int, int, list[EventRow]]]:
    mine, other, events, _ = two_environments(store)
    yield store, mine, other, events


def _nan() -> query_pb2.HogQLVariable:
    found = query_pb2.HogQLVariable(code_name="x")
    found.value.number_value = math.nan
    return found


def _one(name: str, item: Any) -> dict[str, query_pb2.HogQLVariable]:
    return {"v1": variable(name, item)}


_COHORT = query_pb2.PropertyFilter(key="id", type=query_pb2.PROPERTY_FILTER_TYPE_COHORT)
_COHORT.value.int_value = 1

# (node, the field the refusal names, a fragment of its message).
REFUSED: list[tuple[query_pb2.HogQLQuery, str, str]] = [
    # A placeholder where a name goes: never an identifier, whatever its value.
    (hogql("SELECT count() FROM {variables.t}", variables=_one("t", "events")), "query", "never for a name"),
    (hogql("SELECT count() FROM events AS {variables.t}", variables=_one("t", "e")), "query", "never for a name"),
    (hogql("SELECT count() FROM events e JOIN {variables.t} ON 1", variables=_one("t", "persons")), "query", "never for a name"),
    (hogql("SELECT e.{variables.c} FROM events e", variables=_one("c", "team_id")), "query", "never for a name"),
    (hogql("SELECT properties.{variables.c} FROM events", variables=_one("c", "x")), "query", "never for a name"),
    (hogql("SELECT {variables.c}.team_id FROM events", variables=_one("c", "e")), "query", "never for a name"),
    (hogql("SELECT {variables.f}(1)", variables=_one("f", "sleep")), "query", "never for a name"),
    (hogql("SELECT count() FROM events GROUP BY event AS {k}", values={"k": "x"}), "query", "never for a name"),
    (hogql("SELECT 1 LIMIT {n}", values={"n": 5}), "query", "LIMIT"),
    (hogql("SELECT 1 LIMIT 1 OFFSET {variables.n}", variables=_one("n", 1)), "query", "LIMIT"),
    (hogql("SELECT CAST(1 AS {t})", values={"t": "String"}), "query", "never for a name"),
    (hogql("SELECT CAST(1, {t})", values={"t": "String"}), "query", "cannot be parsed"),
    # Forms of braces that are not placeholders.
    (hogql("SELECT {variables.a.b}"), "query", "{variables.code_name}"),
    (hogql("SELECT {variables}"), "query", "{variables.code_name}"),
    (hogql("SELECT {a.b}"), "query", "{name}"),
    (hogql("SELECT {'a': 1}"), "query", "'{'"),
    (hogql("SELECT {x:String}", values={"x": "a"}), "query", "'{'"),
    (hogql("SELECT {`filters`}"), "query", "'{'"),
    (hogql("SELECT {ünï}"), "query", "'{'"),
    # Placeholders without a value, values without a placeholder.
    (hogql("SELECT {variables.plan}"), "variables", "code_name plan"),
    (hogql("SELECT {variables.plan}", variables=_one("plam", "pro")), "variables", "code_name plan"),
    (hogql("SELECT {kind}"), "values", "{kind}"),
    (hogql("SELECT {Kind}", values={"kind": "x"}), "values.kind", "no {kind}"),
    (hogql("SELECT {Kind}"), "values", "{Kind}"),
    (hogql("SELECT 1", values={"kind": "x"}), "values.kind", "no {kind}"),
    # Inputs that cannot be bound.
    (hogql("SELECT {variables.x}", variables=_one("x) OR 1=1 --", "a")), "variables.v1.code_name", "code_name"),
    (hogql("SELECT 1", values={"a b": 1}), "values.a b", "placeholder name"),
    (hogql("SELECT 1", values={"filters": 1}), "values.filters", "placeholder name"),
    (hogql("SELECT {variables.x}", variables=_one("x", ["a"] * (MAX_LIST_ITEMS + 1))), "variables.v1.value", "at most"),
    (hogql("SELECT {variables.x}", variables=_one("x", "a" * (MAX_VALUE_CHARS + 1))), "variables.v1.value", "at most"),
    (hogql("SELECT {variables.x}", variables=_one("x", ["a" * 40_000, "b" * 40_000])), "variables.v1.value", "at most"),
    (hogql("SELECT {variables.x}", variables=_one("x", ["a", 1])), "variables.v1.value", "one kind"),
    (hogql("SELECT {variables.x}", variables=_one("x", [["a"]])), "variables.v1.value[0]", "a value is"),
    (hogql("SELECT {variables.x}", variables=_one("x", [None])), "variables.v1.value[0]", "a value is"),
    (hogql("SELECT {variables.x}", variables=_one("x", {"a": 1})), "variables.v1.value", "a value is"),
    (hogql("SELECT {variables.x}", variables={"v1": _nan()}), "variables.v1.value", "finite"),
    (hogql("SELECT {variables.x}", variables={"v1": query_pb2.HogQLVariable(code_name="x")}), "variables.v1.value", "no value"),
    (
        hogql("SELECT {variables.x}", variables={"v1": variable("x", 1), "v2": variable("x", 2)}),
        "variables.v2.code_name",
        "share",
    ),
    (
        hogql("SELECT {variables.x}", variables={"v1": query_pb2.HogQLVariable(variable_id="v2", code_name="x", value=struct_pb2.Value(number_value=1))}),
        "variables.v1.variable_id",
        "differs",
    ),
    # {filters} where no condition goes, or with no single events table to filter.
    (hogql("SELECT {filters}"), "query", "is a condition"),
    (hogql("SELECT count() FROM events GROUP BY event ORDER BY {filters}"), "query", "is a condition"),
    (hogql("SELECT count() FROM events GROUP BY {filters}"), "query", "is a condition"),
    (hogql("SELECT count() FROM events LIMIT 1 BY {filters}"), "query", "LIMIT"),
    (hogql("SELECT count() FROM persons WHERE {filters}"), "query", "reads none"),
    (hogql("SELECT count() FROM (SELECT * FROM events) WHERE {filters}"), "query", "reads none"),
    (hogql("WITH e AS (SELECT * FROM events) SELECT count() FROM e WHERE {filters}"), "query", "reads none"),
    (hogql("SELECT count() FROM events a, events b WHERE {filters}"), "query", "ambiguous"),
    (hogql("SELECT count() FROM events a JOIN events b ON a.uuid = b.uuid AND {filters}"), "query", "ambiguous"),
    # Broken filters, with or without the placeholder.
    (hogql("SELECT count() FROM events WHERE {filters}", date_from="yesterday-ish"), "filters.dateRange.date_from", "not a date"),
    (hogql("SELECT count() FROM events", date_to="'; DROP TABLE events"), "filters.dateRange.date_to", "not a date"),
    (hogql("SELECT count() FROM events WHERE {filters}", properties=[_COHORT]), "filters.properties[0].type", "cohort"),
    (hogql("SELECT count() FROM events WHERE {filters}", properties=[prop("", "exact", "x")]), "filters.properties[0].key", "key"),
]


def _field(error: QueryError | Unimplemented) -> str:
    return error.path if isinstance(error, QueryError) else str(error.metadata["field"])


@pytest.mark.parametrize("node,field,fragment", REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_hostile_placeholder_is_refused_naming_the_field(teams: Any, node: query_pb2.HogQLQuery, field: str, fragment: str) -> None:
    store, mine, _, _ = teams
    with pytest.raises(QueryError) as caught:
        run_node(store, mine, node)
    assert _field(caught.value) == field, caught.value.message
    assert fragment in caught.value.message
    assert "__ph_" not in caught.value.message and "__v_" not in caught.value.message


def test_a_filters_form_not_built_is_unimplemented_naming_the_query(teams: Any) -> None:
    store, mine, _, _ = teams
    for sql in ("SELECT count() FROM events WHERE timestamp >= {filters.dateRange.from}", "SELECT {filters.x}"):
        with pytest.raises(Unimplemented) as caught:
            run_node(store, mine, hogql(sql))
        assert caught.value.metadata["field"] == "query"


# Values that would change the statement if they were text in it: each runs as a value.
INERT: list[Any] = [
    "' OR 1=1 --",
    "x'; DROP TABLE events; --",
    "\\' OR ''='",
    '" OR ""="',
    "`team_id`",
    "{__team_id:Int64}",
    "{filters}",
    "$$ OR 1=1 $$",
    "1 OR team_id != 0",
    "theirs",
    "ｅｖｅｎｔｓ 😀 \u202e \u0000 \t\n\r é",
    "/* */ UNION ALL SELECT properties FROM events --",
]


@pytest.mark.parametrize("text", INERT, ids=[str(i) for i in range(len(INERT))])
def test_a_value_carrying_sql_is_inert(teams: Any, text: str) -> None:
    store, mine, _, _ = teams
    node = hogql(
        "SELECT {variables.s} AS s, {v} AS v, count() FROM events WHERE event = {variables.s} OR properties.marker = {v}",
        variables={"a": variable("s", text)},
        values={"v": text},
    )
    outcome = run_node(store, mine, node)
    assert rows_of(outcome) == [[text, text, 0]]
    assert text not in outcome.sql


def test_a_value_named_like_a_reserved_name_is_still_only_a_value(teams: Any) -> None:
    store, mine, _, _ = teams
    outcome = run_node(store, mine, hogql("SELECT {__team_id}", values={"__team_id": 12345}))
    assert rows_of(outcome) == [[12345]]


def test_a_list_value_with_quotes_and_the_most_items_is_one_parameter(teams: Any) -> None:
    store, mine, _, events = teams
    items = ["$pageview", "' OR 1=1 --", "purchase"] + [f"x'{i}\"" for i in range(MAX_LIST_ITEMS - 3)]
    node = hogql(
        "SELECT length({variables.l}), countIf(event IN {variables.l}) FROM events",
        variables={"a": variable("l", items)},
    )
    outcome = run_node(store, mine, node)
    assert rows_of(outcome) == [[MAX_LIST_ITEMS, sum(1 for e in events if e.event in ("$pageview", "purchase"))]]
    assert "OR 1=1" not in outcome.sql


def test_a_value_naming_the_other_environment_finds_nothing_of_it(teams: Any) -> None:
    store, mine, other, _ = teams
    node = hogql(
        "SELECT count() FROM events WHERE properties.marker = {variables.m} OR distinct_id IN {variables.ids}",
        variables={"a": variable("m", "theirs"), "b": variable("ids", ["d1", "d2"])},
    )
    mine_rows = rows_of(run_node(store, mine, node))
    theirs_rows = rows_of(run_node(store, other, node))
    # d1/d2 exist in both environments; each counts only its own rows, and "theirs" only in theirs.
    assert mine_rows[0][0] > 0 and theirs_rows[0][0] > mine_rows[0][0]


def _texts() -> st.SearchStrategy[tuple[str, str]]:
    """A name the data holds (or the other environment's marker) and any text at all."""
    seen = st.sampled_from(["$pageview", "purchase", "signup", "mine", "theirs"])
    return st.tuples(seen, st.one_of(st.text(max_size=40), st.sampled_from(INERT)))


def test_property_any_text_value_binds_verbatim_and_counts_only_the_callers_rows(teams: Any) -> None:
    """Property: whatever text a variable holds, the statement returns it unchanged and counts the
    caller's events whose name or marker equals it, computed in Python (never the other's)."""
    store, mine, _, events = teams
    sql = (
        "SELECT {variables.s} AS s, {variables.t} AS t, "
        "countIf(event = {variables.s} OR JSONExtractString(properties, 'marker') = {variables.s}), "
        "countIf(event = {variables.t} OR JSONExtractString(properties, 'marker') = {variables.t}) FROM events"
    )

    def matching(text: str) -> int:
        return sum(1 for e in events if e.event == text or json.loads(e.properties)["marker"] == text)

    def check(case: tuple[str, str]) -> str:
        known, text = case
        node = hogql(sql, variables={"a": variable("s", known), "b": variable("t", text)})
        outcome = run_node(store, mine, node)
        assert rows_of(outcome) == [[known, text, matching(known), matching(text)]], case
        return NONZERO if matching(known) or matching(text) else ZERO

    outcomes: Counter[str] = tally(_texts(), check, budget=60)
    assert_mostly_nonzero(outcomes, 0.3)


def test_values_reach_the_engine_only_as_parameters(teams: Any) -> None:
    store, mine, _, _ = teams
    node = hogql(
        "SELECT count() FROM events WHERE {filters} AND event = {variables.k}",
        date_from="2026-03-03",
        properties=[prop("$browser", "exact", "Chrome")],
        variables={"a": variable("k", "$pageview")},
    )
    outcome = run_node(store, mine, node)
    for text in ("2026-03-03", "Chrome", "$pageview", "$browser"):
        assert text not in outcome.sql
    assert json_format.MessageToDict(outcome.result.hogql)["results"][0][0] >= 1
