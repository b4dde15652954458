"""Funnel rules for first-time steps and for who is counted (groups, sessions), through the SQL
engine on chDB, against hand-worked values (none comes from the oracle)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from server.errors import Unimplemented
from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.funnels_harness import FunnelRun, run_funnel_engine
from tests.oracle import Event

# Monday 15 January 2024, 12:00 UTC; the ranges below are explicit.
NOW = dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.UTC)
RANGE = {"date_from": "2024-01-10", "date_to": "2024-01-12"}
_ids = itertools.count(1)


def at(day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, minute, tzinfo=dt.UTC)


def ev(when: dt.datetime, event: str, person: str = "p1", uuid: int | None = None, **props: Any) -> Event:
    n = next(_ids) if uuid is None else uuid
    return Event(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        event=event,
        distinct_id=f"d-{person}",
        person_id=person,
        timestamp=when,
        properties=props,
    )


def funnel(*steps: str | dict[str, Any], **fields: Any) -> dict[str, Any]:
    series = [{"kind": "EventsNode", "event": s} if isinstance(s, str) else {"kind": "EventsNode", **s} for s in steps]
    return {"kind": "FunnelsQuery", "series": series, "dateRange": RANGE, **fields}


def run(store: EventStore, events: list[Event], query: dict[str, Any]) -> FunnelRun:
    return run_funnel_engine(store, events, query, timezone="UTC", week_start_day=0, now=NOW)


def counts(result: FunnelRun) -> list[int]:
    (group,) = result.results
    return [step["count"] for step in group]


# --- first_time_for_user --------------------------------------------------------------------------


def test_a_first_event_before_the_range_makes_the_one_in_the_range_not_first(store: EventStore) -> None:
    events = [
        ev(at(2), "a", "p1"),  # p1's first "a" is before the range: p1 never enters
        ev(at(10, 1), "a", "p1"),
        ev(at(10, 2), "b", "p1"),
        ev(at(10, 1), "a", "p2"),  # p2's first "a" ever is in the range
        ev(at(10, 2), "b", "p2"),
        ev(at(10, 3), "a", "p2"),
    ]
    first = {"event": "a", "math": "first_time_for_user"}
    assert counts(run(store, events, funnel(first, "b"))) == [1, 1]
    assert counts(run(store, events, funnel("a", "b"))) == [2, 2]


def test_a_first_time_step_later_in_the_funnel_takes_only_the_first_event(store: EventStore) -> None:
    events = [
        ev(at(10, 1), "b", "p1"),  # p1's first "b" comes before "a": the later "b" is not first
        ev(at(10, 2), "a", "p1"),
        ev(at(10, 3), "b", "p1"),
        ev(at(10, 2), "a", "p2"),
        ev(at(10, 3), "b", "p2"),
        ev(at(10, 4), "b", "p2"),
    ]
    result = run(store, events, funnel("a", {"event": "b", "math": "first_time_for_user"}))
    assert counts(result) == [2, 1]
    assert result.results[0][1]["average_conversion_time"] == 3600


def test_first_time_for_user_needs_the_first_event_to_pass_the_filters_with_filters_takes_the_first_passing(
    store: EventStore,
) -> None:
    events = [
        # p1: the first "a" is on Firefox; the first on Chrome comes later.
        ev(at(10, 1), "a", "p1", browser="Firefox"),
        ev(at(10, 2), "a", "p1", browser="Chrome"),
        ev(at(10, 3), "b", "p1"),
        # p2: the first "a" is on Chrome.
        ev(at(10, 1), "a", "p2", browser="Chrome"),
        ev(at(10, 3), "b", "p2"),
        # p3: a Chrome "a" before the range, another in it.
        ev(at(3), "a", "p3", browser="Chrome"),
        ev(at(10, 1), "a", "p3", browser="Chrome"),
        ev(at(10, 3), "b", "p3"),
    ]
    chrome = [{"key": "browser", "operator": "exact", "value": "Chrome"}]
    plain = {"event": "a", "properties": chrome, "math": "first_time_for_user"}
    filtered = {"event": "a", "properties": chrome, "math": "first_time_for_user_with_filters"}
    assert counts(run(store, events, funnel(plain, "b"))) == [1, 1]  # p2
    assert counts(run(store, events, funnel(filtered, "b"))) == [2, 2]  # p1 (its second "a") and p2


def test_first_ever_ignores_the_querys_own_filters_which_apply_afterwards(store: EventStore) -> None:
    events = [
        ev(at(10, 1), "a", "p1", plan="free"),  # p1's first "a" fails the query's filter
        ev(at(10, 2), "a", "p1", plan="pro"),
        ev(at(10, 3), "b", "p1", plan="pro"),
        ev(at(10, 1), "a", "p2", plan="pro"),
        ev(at(10, 3), "b", "p2", plan="pro"),
    ]
    pro = [{"key": "plan", "operator": "exact", "value": "pro"}]
    result = run(store, events, funnel({"event": "a", "math": "first_time_for_user"}, "b", properties=pro))
    assert counts(result) == [1, 1]


def test_first_events_at_one_instant_the_smallest_uuid_is_first(store: EventStore) -> None:
    chrome = [{"key": "browser", "operator": "exact", "value": "Chrome"}]
    step = {"event": "a", "properties": chrome, "math": "first_time_for_user"}
    smaller_on_chrome = [
        ev(at(10, 1), "a", "p1", uuid=900_001, browser="Chrome"),
        ev(at(10, 1), "a", "p1", uuid=900_002, browser="Firefox"),
        ev(at(10, 2), "b", "p1"),
    ]
    assert counts(run(store, smaller_on_chrome, funnel(step, "b"))) == [1, 1]
    smaller_on_firefox = [
        ev(at(10, 1), "a", "p1", uuid=900_003, browser="Firefox"),
        ev(at(10, 1), "a", "p1", uuid=900_004, browser="Chrome"),
        ev(at(10, 2), "b", "p1"),
    ]
    assert counts(run(store, smaller_on_firefox, funnel(step, "b"))) == [0, 0]


def test_first_time_is_the_persons_even_when_counting_sessions(store: EventStore) -> None:
    events = [
        ev(at(10, 1), "a", "p1", **{"$session_id": "s1"}),
        ev(at(10, 2), "b", "p1", **{"$session_id": "s1"}),
        ev(at(10, 5), "a", "p1", **{"$session_id": "s2"}),  # p1's second "a": not first, though s2's first
        ev(at(10, 6), "b", "p1", **{"$session_id": "s2"}),
    ]
    ff = {"funnelAggregateByHogQL": "properties.$session_id"}
    first = {"event": "a", "math": "first_time_for_user"}
    assert counts(run(store, events, funnel(first, "b", funnelsFilter=ff))) == [1, 1]
    assert counts(run(store, events, funnel("a", "b", funnelsFilter=ff))) == [2, 2]


# --- funnelAggregateByHogQL: sessions ---------------------------------------------------------------


def test_session_aggregation_counts_sessions_and_drops_events_without_one(store: EventStore) -> None:
    events = [
        # One person, two sessions converting, one session stopping, and events without a session.
        ev(at(10, 1), "a", "p1", **{"$session_id": "s1"}),
        ev(at(10, 2), "b", "p1", **{"$session_id": "s1"}),
        ev(at(10, 3), "a", "p1", **{"$session_id": "s2"}),
        ev(at(10, 4), "b", "p1", **{"$session_id": "s2"}),
        ev(at(10, 5), "a", "p1", **{"$session_id": "s3"}),
        ev(at(10, 5), "b", "p1", **{"$session_id": ""}),
        ev(at(10, 5), "a", "p2"),
        ev(at(10, 6), "b", "p2", **{"$session_id": None}),
        # One session across two persons is one actor.
        ev(at(10, 7), "a", "p3", **{"$session_id": "s4"}),
        ev(at(10, 8), "b", "p4", **{"$session_id": "s4"}),
    ]
    for expression in ("properties.$session_id", "  properties . $session_id "):
        result = run(store, events, funnel("a", "b", funnelsFilter={"funnelAggregateByHogQL": expression}))
        assert counts(result) == [4, 3]
    assert counts(run(store, events, funnel("a", "b"))) == [3, 2]  # persons p1, p2, p3
    persons = run(store, events, funnel("a", "b", funnelsFilter={"funnelAggregateByHogQL": "person_id"}))
    assert counts(persons) == [3, 2]


def test_an_expression_with_a_group_type_is_not_computed_yet_and_says_which_field(store: EventStore) -> None:
    # Other expressions are computed (test_funnels_expression_rules.py); with a group type the
    # reference lets the group win, and taking one and ignoring the other is no answer.
    for expression in ("properties.$session_id", "lower(properties.$browser)"):
        query = funnel("a", "b", aggregation_group_type_index=1, funnelsFilter={"funnelAggregateByHogQL": expression})
        with pytest.raises(Unimplemented) as refused:
            run(store, [ev(at(10), "a")], query)
        assert refused.value.metadata["field"] == "funnelsFilter.funnelAggregateByHogQL"


# --- aggregation_group_type_index -----------------------------------------------------------------------


def test_group_aggregation_counts_group_keys_and_excludes_events_without_one(store: EventStore) -> None:
    events = [
        # Company "acme": p1 enters, p2 converts, within the window from p1's entry.
        ev(at(10, 1), "a", "p1", **{"$group_0": "acme", "$group_1": "team-x"}),
        ev(at(10, 2), "b", "p2", **{"$group_0": "acme"}),
        # Company "initech": enters only.
        ev(at(10, 1), "a", "p3", **{"$group_0": "initech"}),
        # No company (absent, empty, null): excluded, even though p4 converts.
        ev(at(10, 1), "a", "p4"),
        ev(at(10, 2), "b", "p4", **{"$group_0": ""}),
        ev(at(10, 3), "b", "p4", **{"$group_0": None}),
    ]
    assert counts(run(store, events, funnel("a", "b", aggregation_group_type_index=0))) == [2, 1]
    assert counts(run(store, events, funnel("a", "b", aggregation_group_type_index=1))) == [1, 0]
    assert counts(run(store, events, funnel("a", "b", aggregation_group_type_index=4))) == [0, 0]
    assert counts(run(store, events, funnel("a", "b"))) == [3, 1]  # by person: p1, p3, p4 enter; p4 converts


@pytest.mark.parametrize("index", [-1, 5, 100])
def test_a_group_type_index_outside_0_to_4_is_invalid_naming_the_field(store: EventStore, index: int) -> None:
    with pytest.raises(QueryError) as refused:
        run(store, [], funnel("a", "b", aggregation_group_type_index=index))
    assert refused.value.path == "aggregation_group_type_index"


def test_hostile_group_keys_and_session_ids_are_values_never_sql(store: EventStore) -> None:
    hostile = "x'); DROP TABLE events; --"
    events = [
        ev(at(10, 1), "a", "p1", **{"$group_2": hostile, "$session_id": hostile}),
        ev(at(10, 2), "b", "p2", **{"$group_2": hostile, "$session_id": hostile}),
    ]
    assert counts(run(store, events, funnel("a", "b", aggregation_group_type_index=2))) == [1, 1]
    ff = {"funnelAggregateByHogQL": "properties.$session_id"}
    result = run(store, events, funnel("a", "b", funnelsFilter=ff))
    assert counts(result) == [1, 1]
    assert hostile not in result.outcome.sql
