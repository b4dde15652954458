"""Property filters of type hogql and element (and the refused types), through every kind's engine.

Expected values are worked by hand, or stated as "the filtered query over all events equals the
unfiltered query over the events the filter keeps" (the kinds' own results, no oracle).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from server.errors import Unimplemented
from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine import (
    test_funnels_rules as funnels,
)
from tests.engine import (
    test_lifecycle_rules as lifecycle,
)
from tests.engine import (
    test_paths_rules as paths,
)
from tests.engine import (
    test_retention_rules as retention,
)
from tests.engine import (
    test_stickiness_rules as stickiness,
)
from tests.engine import (
    test_trends_rules as trends,
)
from tests.oracle import Event

CHAIN = 'a.btn:attr__href="/go"href="/go"nth-child="1"nth-of-type="1"text="Go \\"now\\"";div:nth-child="1"nth-of-type="1"'


def _kept(e: Event) -> bool:
    return e.properties.get("plan") == "pro"


def _events(make: Callable[..., Event]) -> list[Event]:
    """Two events each: p1 on a pro plan with a clicked link, p2 on a free plan, p3 with no plan (NULL)."""
    events = [make(person, plan, step) for person, plan in (("p1", "pro"), ("p2", "free"), ("p3", None)) for step in (0, 1)]
    for e in events:
        if _kept(e):
            e.elements_chain = CHAIN
    return events


def _trends(store: EventStore, events: list[Event], props: Any) -> Any:
    query = trends.trends(dateRange={"date_from": "2024-01-04", "date_to": "2024-01-08"})
    if props:
        query["properties"] = props
    return trends.run(store, events, query).results


def _funnels(store: EventStore, events: list[Event], props: Any) -> Any:
    query = funnels.funnel("$pageview", "buy", dateRange={"date_from": "2024-01-04", "date_to": "2024-01-08"})
    if props:
        query["properties"] = props
    return funnels.run(store, events, query).results


def _retention(store: EventStore, events: list[Event], props: Any) -> Any:
    return retention.run(store, events, retention.retention(properties=props) if props else retention.retention()).results


def _stickiness(store: EventStore, events: list[Event], props: Any) -> Any:
    return stickiness.run(store, events, stickiness.sticky(properties=props) if props else stickiness.sticky()).results


def _lifecycle(store: EventStore, events: list[Event], props: Any) -> Any:
    return lifecycle.run(store, events, lifecycle.lifecycle(properties=props) if props else lifecycle.lifecycle()).results


def _paths(store: EventStore, events: list[Event], props: Any) -> Any:
    query = paths.paths()
    if props:
        query["properties"] = props
    return paths.run(store, events, query).results


def _make(person: str, plan: str | None, step: int = 0) -> Event:
    when = dt.datetime(2024, 1, 5, 10, step * 5, tzinfo=dt.UTC)
    props = {"$current_url": f"/page{step}"} | ({"plan": plan} if plan is not None else {})
    e = paths.pv(when, f"/page{step}", person, **props)
    e.event = "buy" if step else "$pageview"
    return e


_KINDS = {
    "trends": _trends,
    "funnels": _funnels,
    "retention": _retention,
    "stickiness": _stickiness,
    "lifecycle": _lifecycle,
    "paths": _paths,
}
_ALL_PAGEVIEWS = ("trends", "retention", "stickiness", "lifecycle", "paths")

# Each keeps exactly the pro plan's events (p1's); NULL plan (p3) never passes.
KEEPING_P1 = {
    "hogql comparison": [{"type": "hogql", "key": "properties.plan = 'pro'"}],
    "hogql number": [{"type": "hogql", "key": "toInt64(properties.plan = 'pro') * 2"}],
    "element tag_name": [{"type": "element", "key": "tag_name", "value": "a"}],
    "element selector": [{"type": "element", "key": "selector", "value": "div > a.btn", "operator": "exact"}],
    "element href": [{"type": "element", "key": "href", "value": "/go"}],
    "element text": [{"type": "element", "key": "text", "value": 'go "NOW"', "operator": "icontains"}],
}


@pytest.mark.parametrize("kind", sorted(_KINDS))
@pytest.mark.parametrize("name", sorted(KEEPING_P1))
def test_a_filter_keeps_what_it_selects_in_every_kind(store: EventStore, kind: str, name: str) -> None:
    compute = _KINDS[kind]
    events = _events(_make)
    if kind in _ALL_PAGEVIEWS:
        for e in events:
            e.event = "$pageview"
    everything = compute(store, events, None)
    filtered = compute(store, events, KEEPING_P1[name])
    assert filtered == compute(store, [e for e in events if _kept(e)], None)
    assert filtered != everything


@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_a_string_valued_hogql_filter_is_invalid_naming_its_key_in_every_kind(store: EventStore, kind: str) -> None:
    # A String is no truth value: the engine's type error is the caller's, never an internal one.
    with pytest.raises(QueryError) as raised:
        _KINDS[kind](store, _events(_make), [{"type": "event", "key": "plan", "operator": "is_set"}, {"type": "hogql", "key": "properties.plan"}])
    assert raised.value.path == "properties[1].key"
    assert "the engine cannot compute the expression" in raised.value.message


def test_hogql_null_is_false_and_a_negation_keeps_only_non_null(store: EventStore) -> None:
    events = _events(_make)
    for e in events:
        e.event = "$pageview"
    # p1 twice (pro), p2 twice (free), p3 twice (no plan: a NULL comparison, kept by neither).
    assert _trends(store, events, [{"type": "hogql", "key": "properties.plan = 'pro'"}])[0]["count"] == 2
    assert _trends(store, events, [{"type": "hogql", "key": "properties.plan != 'pro'"}])[0]["count"] == 2
    assert _trends(store, events, [{"type": "hogql", "key": "0"}])[0]["count"] == 0
    assert _trends(store, events, [{"type": "hogql", "key": "isNull(properties.plan)"}])[0]["count"] == 2


def test_hostile_hogql_and_element_values_are_bound_not_spliced(store: EventStore) -> None:
    hostile = "x'); DROP TABLE events; --\\"
    e = trends.ev(trends.at(2024, 1, 5), props={hostile: hostile})
    # The chain escapes a quote inside a value (\"); the text itself holds `'`, `;` and `"`.
    e.elements_chain = 'a:text="x\'); DROP \\"events\\"; --"nth-child="1"nth-of-type="1"'
    other = trends.ev(trends.at(2024, 1, 5))
    key = "properties.`" + hostile.replace("\\", "\\\\").replace("`", "\\`") + "` = '" + hostile.replace("\\", "\\\\").replace("'", "\\'") + "'"
    assert _trends(store, [e, other], [{"type": "hogql", "key": key}])[0]["count"] == 1
    assert _trends(store, [e, other], [{"type": "element", "key": "text", "value": 'x\'); DROP "events"; --'}])[0]["count"] == 1
    assert _trends(store, [e, other], [{"type": "element", "key": "href", "value": hostile, "operator": "is_not"}])[0]["count"] == 2


@pytest.mark.parametrize(
    ("f", "path"),
    [
        ({"type": "hogql", "key": ""}, "properties[0].key"),
        ({"type": "hogql", "key": "count() > 0"}, "properties[0].key"),
        ({"type": "hogql", "key": "1", "operator": "exact"}, "properties[0].operator"),
        ({"type": "hogql", "key": "lower(1) = 'a'"}, "properties[0].key"),
        ({"type": "element", "key": "id", "value": "a"}, "properties[0].key"),
        ({"type": "element", "key": "selector", "value": "a", "operator": "icontains"}, "properties[0].operator"),
        ({"type": "element", "key": "text", "value": "a", "operator": "gt"}, "properties[0].operator"),
        ({"type": "element", "key": "href", "value": "(", "operator": "regex"}, "properties[0].value"),
        ({"type": "element", "key": "href"}, "properties[0].value"),
        ({"type": "data_warehouse", "key": "x", "value": "a"}, "properties[0].type"),
        ({"type": "recording", "key": "x", "value": "a"}, "properties[0].type"),
        ({"type": "feature", "key": "x", "value": "a"}, "properties[0].type"),
    ],
)
def test_invalid_filters_name_their_field(store: EventStore, f: dict[str, Any], path: str) -> None:
    with pytest.raises(QueryError) as raised:
        _trends(store, [], [f])
    assert raised.value.path == path


@pytest.mark.parametrize("kind", ["session", "group", "event_metadata"])
def test_session_group_and_event_metadata_filters_are_unimplemented_naming_the_type(store: EventStore, kind: str) -> None:
    with pytest.raises(Unimplemented) as raised:
        _trends(store, [], [{"type": kind, "key": "$session_duration", "value": 1, "operator": "gt"}])
    assert raised.value.metadata["field"] == "properties[0].type"
