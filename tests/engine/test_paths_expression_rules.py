"""Paths whose items are a HogQL expression's values (`includeEventTypes: ["hogql"]` with
`pathsHogQLExpression`, query-engine-semantics §8.2), on chDB, against hand-worked edges."""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.paths_harness import edges
from tests.engine.test_paths_rules import RANGE, at, pv, run


def hogql_paths(expression: str, *types: str, **filters: Any) -> dict[str, Any]:
    pf = {"includeEventTypes": list(types or ("hogql",)), "pathsHogQLExpression": expression, **filters}
    return {"kind": "PathsQuery", "dateRange": RANGE, "pathsFilter": pf}


def _events() -> list[Any]:
    return [
        pv(at(5, 10, 0), "/home", plan="Pro"),
        pv(at(5, 10, 1), None, event="signup", plan="pro"),
        pv(at(5, 10, 2), None, event="$autocapture"),  # no plan: NULL is the item ''
        pv(at(5, 10, 3), None, event="purchase", plan="free"),
    ]


def test_hogql_alone_names_every_events_item_by_the_expression(store: EventStore) -> None:
    # Every event (no type filter), $pageview too: pro, pro (collapsed), '', free.
    got = edges(run(store, _events(), hogql_paths("lower(properties.plan)")).results)
    assert got == {("1_pro", "2_"): 1.0, ("2_", "3_free"): 1.0}


def test_hogql_beside_pageviews_keeps_urls_and_the_type_filter(store: EventStore) -> None:
    # $pageview listed: only pageviews pass (the reference's OR of the listed types), by URL.
    assert edges(run(store, _events(), hogql_paths("properties.plan", "hogql", "$pageview")).results) == {}
    # With custom events too: the URL, then the custom events' expression values ($autocapture is not custom).
    got = edges(run(store, _events(), hogql_paths("properties.plan", "hogql", "$pageview", "custom_event")).results)
    assert got == {("1_/home", "2_pro"): 1.0, ("2_pro", "3_free"): 1.0}


def test_no_type_listed_uses_the_expression_for_events_other_than_pageviews_and_screens(store: EventStore) -> None:
    query = hogql_paths("concat(event, '!')")
    query["pathsFilter"].pop("includeEventTypes")
    got = edges(run(store, _events(), query).results)
    assert got == {("1_/home", "2_signup!"): 1.0, ("2_signup!", "3_$autocapture!"): 1.0, ("3_$autocapture!", "4_purchase!"): 1.0}


def test_hostile_expression_text_is_an_item(store: EventStore) -> None:
    out = run(store, _events()[:2], hogql_paths("concat(event, '''); DROP TABLE events; --')"))
    assert edges(out.results) == {("1_$pageview'); DROP TABLE events; --", "2_signup'); DROP TABLE events; --"): 1.0}


@pytest.mark.parametrize("expression", ["count()", "nosuchfield", "lower(properties.plan", "lower(1)"])
def test_an_invalid_expression_is_invalid_naming_it(store: EventStore, expression: str) -> None:
    with pytest.raises(QueryError) as caught:
        run(store, _events(), hogql_paths(expression))
    assert caught.value.path == "pathsFilter.pathsHogQLExpression"


def test_an_expression_without_the_hogql_type_is_refused_not_dropped(store: EventStore) -> None:
    # The reference passes over it when the listed types leave "hogql" out; dropping what the
    # caller sent would show other paths than asked for.
    with pytest.raises(QueryError) as caught:
        run(store, _events(), hogql_paths("properties.plan", "$pageview"))
    assert caught.value.path == "pathsFilter.pathsHogQLExpression"
    assert "includeEventTypes" in caught.value.message
