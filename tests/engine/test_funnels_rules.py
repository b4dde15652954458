"""The reference's funnel rules (query-engine-semantics §4.3–4.6), through the SQL engine on chDB,
against hand-worked values (none comes from the oracle)."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.funnels_harness import FunnelRun, run_funnel_engine
from tests.engine.harness import event_rows, next_team_id
from tests.oracle import Event
from tests.oracle.funnels import compute_funnels

# Monday 15 January 2024, 12:00 UTC: "-7d" covers 8 January 00:00 to 15 January 23:59:59.999999.
NOW = dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)
H, MIN = 3600, 60


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, minute, second, micro, tzinfo=dt.UTC)


def ev(when: dt.datetime, event: str, person: str = "p1", **props: Any) -> Event:
    n = next(_ids)
    return Event(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        event=event,
        distinct_id=f"d-{person}",
        person_id=person,
        timestamp=when,
        properties=props,
        person_properties={"tier": "pro" if person.endswith("1") else "free"},
    )


def funnel(*steps: str | dict[str, Any], **fields: Any) -> dict[str, Any]:
    series = [{"kind": "EventsNode", "event": s} if isinstance(s, str) else {"kind": "EventsNode", **s} for s in steps]
    query: dict[str, Any] = {"kind": "FunnelsQuery", "series": series}
    query.update(fields)
    return query


def window(interval: int, unit: str, **extra: Any) -> dict[str, Any]:
    return {"funnelWindowInterval": interval, "funnelWindowIntervalUnit": unit, **extra}


def run(store: EventStore, events: list[Event], query: dict[str, Any], tz: str = "UTC") -> FunnelRun:
    return run_funnel_engine(store, events, query, timezone=tz, week_start_day=0, now=NOW)


def counts(result: FunnelRun) -> list[list[int]]:
    return [[step["count"] for step in group] for group in result.results]


def values(result: FunnelRun) -> list[Any]:
    return [group[0].get("breakdown_value") for group in result.results]


# --- §4.6 ---------------------------------------------------------------------------------------


def test_steps_outside_the_date_range_do_not_count(store: EventStore) -> None:
    events = [
        ev(at(11, 23), "a", "p1"),
        ev(at(12, 1), "b", "p1"),  # after date_to: no lookahead
        ev(at(9, 23), "a", "p2"),  # before date_from: p2 never entered
        ev(at(10, 1), "b", "p2"),
    ]
    result = run(store, events, funnel("a", "b", dateRange={"date_from": "2024-01-10", "date_to": "2024-01-11"}))
    assert counts(result) == [[1, 0]]


def test_a_conversion_exactly_at_the_window_edge_counts(store: EventStore) -> None:
    events = [
        ev(at(10, 10), "a", "p1"),
        ev(at(10, 11), "b", "p1"),  # exactly one hour: converts
        ev(at(10, 10), "a", "p2"),
        ev(at(10, 11, micro=1), "b", "p2"),  # one microsecond later: does not
    ]
    result = run(store, events, funnel("a", "b", funnelsFilter=window(1, "hour")))
    assert counts(result) == [[2, 1]]
    assert result.results[0][1]["average_conversion_time"] == 3600


@pytest.mark.parametrize(
    ("unit", "seconds"),
    [("second", 1), ("minute", 60), ("hour", H), ("day", 86400), ("week", 7 * 86400), ("month", 31 * 86400)],
)
def test_every_window_unit_is_inclusive_of_its_edge(store: EventStore, unit: str, seconds: int) -> None:
    start = dt.datetime(2023, 12, 1, tzinfo=dt.UTC)
    edge = start + dt.timedelta(seconds=seconds)
    events = [
        ev(start, "a", "p1"),
        ev(edge, "b", "p1"),
        ev(start, "a", "p2"),
        ev(edge + dt.timedelta(microseconds=1), "b", "p2"),
    ]
    query = funnel("a", "b", funnelsFilter=window(1, unit), dateRange={"date_from": "2023-11-01"})
    assert counts(run(store, events, query)) == [[2, 1]]


def test_distinct_steps_at_one_instant_convert_and_zero_seconds_are_not_averaged(store: EventStore) -> None:
    events = [
        ev(at(10, 9), "b", "p1"),  # stored first, same instant as its "a"
        ev(at(10, 9), "a", "p1"),
        ev(at(10, 9), "a", "p2"),
        ev(at(10, 9, 1), "b", "p2"),  # 60 s
    ]
    result = run(store, events, funnel("a", "b"))
    assert counts(result) == [[2, 2]]
    # As the reference: a 0-second conversion is left out of the mean and the median.
    assert result.results[0][1]["average_conversion_time"] == 60
    assert result.results[0][1]["median_conversion_time"] == 60


def test_sampling_scales_the_counts_back(store: EventStore) -> None:
    persons = [f"s{i}" for i in range(40)]
    events = [e for p in persons for e in (ev(at(10, 9), "a", p), ev(at(10, 10), "b", p))]
    team = next_team_id()
    store.insert_events(event_rows(team, events))
    # Sampling keeps the persons whose distinct_id hashes into the lower half (the events table's
    # sampling key): count them with the engine's own hash, then the funnel scales them by 1/0.5.
    kept = store.query(
        "SELECT countIf(cityHash64(d) < {half:UInt64}) FROM (SELECT arrayJoin({ids:Array(String)}) AS d)",
        {"half": 2**63, "ids": [f"d-{p}" for p in persons]},
    )[0][0]
    assert 0 < kept < len(persons)
    result = run_funnel_engine(
        store, events, funnel("a", "b", samplingFactor=0.5), timezone="UTC", week_start_day=0, now=NOW, team_id=team
    )
    assert counts(result) == [[2 * kept, 2 * kept]]


# --- §4.3: attempts, the window, ties ---------------------------------------------------------------


def test_the_window_runs_from_the_first_step_not_the_previous_one(store: EventStore) -> None:
    events = [ev(at(10, 0), "a"), ev(at(10, 1, 30), "b"), ev(at(10, 2, 30), "c")]  # c: 2.5 h after a
    assert counts(run(store, events, funnel("a", "b", "c", funnelsFilter=window(2, "hour")))) == [[1, 1, 0]]


def test_the_furthest_attempt_wins_and_the_first_to_reach_it_fixes_the_times(store: EventStore) -> None:
    events = [
        # p1: the 05:00 attempt gets furthest (c): its times count (10 min, 10 min).
        ev(at(10, 0), "a", "p1"),
        ev(at(10, 1), "b", "p1"),
        ev(at(10, 5), "a", "p1"),
        ev(at(10, 5, 10), "b", "p1"),
        ev(at(10, 5, 20), "c", "p1"),
        # p2: both attempts reach b; the first (1 h) fixes the time, not the later 30 min.
        ev(at(10, 0), "a", "p2"),
        ev(at(10, 1), "b", "p2"),
        ev(at(10, 5), "a", "p2"),
        ev(at(10, 5, 30), "b", "p2"),
    ]
    result = run(store, events, funnel("a", "b", "c"))
    assert counts(result) == [[2, 2, 1]]
    steps = result.results[0]
    assert steps[1]["average_conversion_time"] == (600 + 3600) / 2
    assert steps[1]["median_conversion_time"] == (600 + 3600) / 2
    assert steps[2]["average_conversion_time"] == 600


def test_one_event_completes_one_step_but_two_events_of_one_instant_complete_two(store: EventStore) -> None:
    events = [
        ev(at(10, 9), "a", "p1"),  # one event: step 1 only
        ev(at(10, 9), "a", "p2"),  # two events at one instant: both steps
        ev(at(10, 9), "a", "p2"),
        ev(at(10, 9), "a", "p3"),
        ev(at(10, 10), "a", "p3"),
    ]
    assert counts(run(store, events, funnel("a", "a"))) == [[3, 2]]


def test_an_exclusion_removes_the_person_from_every_step(store: EventStore) -> None:
    excluded = {"exclusions": [{"kind": "EventsNode", "event": "x", "funnelFromStep": 0, "funnelToStep": 1}]}
    events = [
        ev(at(10, 1), "a", "p1"),  # a, x, b: out of the funnel, not even counted at step 1
        ev(at(10, 2), "x", "p1"),
        ev(at(10, 3), "b", "p1"),
        ev(at(10, 1), "a", "p2"),  # x after b: converted
        ev(at(10, 2), "b", "p2"),
        ev(at(10, 3), "x", "p2"),
        ev(at(10, 1), "x", "p3"),  # x before a: converted
        ev(at(10, 2), "a", "p3"),
        ev(at(10, 3), "b", "p3"),
        ev(at(10, 1), "a", "p4"),  # an excluded attempt, then a clean one that converts
        ev(at(10, 2), "x", "p4"),
        ev(at(10, 3), "a", "p4"),
        ev(at(10, 4), "b", "p4"),
    ]
    assert counts(run(store, events, funnel("a", "b", funnelsFilter=excluded))) == [[3, 3]]


def test_strict_funnels_break_on_any_other_event(store: EventStore) -> None:
    events = [
        ev(at(10, 1), "a", "p1"),
        ev(at(10, 2), "other", "p1"),
        ev(at(10, 3), "b", "p1"),
        ev(at(10, 1), "a", "p2"),
        ev(at(10, 2), "b", "p2"),
    ]
    strict = funnel("a", "b", funnelsFilter={"funnelOrderType": "strict"})
    assert counts(run(store, events, strict)) == [[2, 1]]
    assert counts(run(store, events, funnel("a", "b"))) == [[2, 2]]


def test_an_optional_step_may_be_skipped_and_adds_no_time(store: EventStore) -> None:
    events = [
        ev(at(10, 0), "a", "p1"),
        ev(at(10, 1), "c", "p1"),  # b skipped
        ev(at(10, 0), "a", "p2"),
        ev(at(10, 0, 30), "b", "p2"),
        ev(at(10, 2), "c", "p2"),
    ]
    result = run(store, events, funnel("a", {"event": "b", "optionalInFunnel": True}, "c"))
    assert counts(result) == [[2, 1, 2]]
    steps = result.results[0]
    assert steps[1]["average_conversion_time"] is None
    # Each time runs from the previous required step (a): 1 h and 2 h.
    assert steps[2]["average_conversion_time"] == (H + 2 * H) / 2


def test_unordered_funnels_count_steps_in_any_order(store: EventStore) -> None:
    events = [
        ev(at(10, 0), "c", "p1"),
        ev(at(10, 0, 10), "a", "p1"),
        ev(at(10, 0, 20), "b", "p1"),
        ev(at(10, 0), "b", "p2"),
        ev(at(10, 1), "a", "p2"),
    ]
    result = run(store, events, funnel("a", "b", "c", funnelsFilter={"funnelOrderType": "unordered"}))
    assert counts(result) == [[2, 2, 1]]
    steps = result.results[0]
    assert [s["name"] for s in steps] == ["Completed 1 step", "Completed 2 steps", "Completed 3 steps"]
    assert all(s["action_id"] is None for s in steps)
    assert steps[1]["average_conversion_time"] == (600 + 3600) / 2
    assert steps[2]["average_conversion_time"] == 600


# --- breakdowns (§4.4) ------------------------------------------------------------------------------


def _browsers() -> list[Event]:
    return [
        ev(at(10, 0), "a", "p1", browser="Chrome"),
        ev(at(10, 1), "b", "p1", browser="Firefox"),
        ev(at(10, 0), "a", "p2", browser="Firefox"),
        ev(at(10, 1), "b", "p2", browser="Firefox"),
        ev(at(10, 0), "a", "p3"),  # no browser at all: the empty value
    ]


@pytest.mark.parametrize(
    ("attribution", "expected"),
    [
        # p1 takes its first value, Chrome; p3 has none. Equal counts: by value.
        ({}, [(["Chrome"], [1, 1]), (["Firefox"], [1, 1]), ([""], [1, 0])]),
        # p1 takes its last value: Firefox holds both.
        ({"breakdownAttributionType": "last_touch"}, [(["Firefox"], [2, 2]), ([""], [1, 0])]),
        # Each value is a funnel of its own events: p1 enters under Chrome, never converts there.
        ({"breakdownAttributionType": "all_events"}, [(["Firefox"], [1, 1]), ([""], [1, 0]), (["Chrome"], [1, 0])]),
        # The value of the step-1 event: p1 under Firefox; p3 never did step 1, so is nowhere.
        ({"breakdownAttributionType": "step", "breakdownAttributionValue": 1}, [(["Firefox"], [2, 2])]),
    ],
)
def test_breakdown_attribution(store: EventStore, attribution: dict[str, Any], expected: list[Any]) -> None:
    query = funnel("a", "b", breakdownFilter={"breakdown": "browser"}, funnelsFilter=attribution)
    result = run(store, _browsers(), query)
    assert list(zip(values(result), counts(result), strict=True)) == expected
    assert result.results[0][0]["breakdown"] == expected[0][0]


@pytest.mark.parametrize("attribution", ["first_touch", "last_touch"])
@pytest.mark.parametrize("days", [(10, 10), (10, 11)])
def test_touch_attribution_at_one_instant_takes_the_smallest_or_largest_value_as_arrays_compare(
    store: EventStore, attribution: str, days: tuple[int, int]
) -> None:
    """Several values at a person's first (last) instant: the smallest (largest) array, compared
    element by element, as the oracle does, whether the steps share the instant or not. The values are
    made so that comparing their texts joined would choose otherwise ("a" < "ab" but "ay" > "ab";
    a NUL inside a value, and as a whole value)."""
    first, second = (at(d) for d in days)
    events = [
        ev(first, "a", "p1", browser="ab", os="x"),
        ev(first, "a", "p1", browser="a", os="y"),
        ev(first, "a", "p1", browser="a\x00", os="a"),
        ev(second, "b", "p1", browser="zz", os="\x00"),
        ev(second, "b", "p1", browser="zz", os=""),
    ]
    breakdowns = [{"property": "browser", "type": "event"}, {"property": "os", "type": "event"}]
    query = funnel(
        "a",
        "b",
        dateRange={"date_from": "2024-01-01", "date_to": "2024-01-14"},
        breakdownFilter={"breakdowns": breakdowns},
        funnelsFilter={"breakdownAttributionType": attribution},
    )
    result = run(store, events, query)
    assert counts(result) == [[1, 1]]
    assert values(result) == [["a", "y"] if attribution == "first_touch" else ["zz", "\x00"]]
    oracle = compute_funnels(events, query, timezone="UTC", week_start_day=0, now=NOW)
    assert result.results == oracle.results


def test_values_beyond_the_limit_merge_into_other_which_is_ordered_like_any_value(store: EventStore) -> None:
    events = []
    for person, browser, converts in [("p1", "A", 1), ("p2", "A", 0), ("p3", "B", 1), ("p4", "C", 1)]:
        events.append(ev(at(10, 0), "a", person, browser=browser))
        if converts:
            events.append(ev(at(10, 1), "b", person, browser=browser))
    query = funnel("a", "b", breakdownFilter={"breakdown": "browser", "breakdown_limit": 1})
    result = run(store, events, query)
    # A ranks first ([2, 1]: last step ties with B and C, then step 1); B and C become Other [2, 2],
    # which then ranks before A.
    assert list(zip(values(result), counts(result), strict=True)) == [(["Other"], [2, 2]), (["A"], [2, 1])]
    assert result.has_more


def test_a_breakdown_with_nobody_is_empty_and_a_plain_funnel_is_zeros(store: EventStore) -> None:
    query = funnel("a", {"event": "b", "custom_name": "Bought"})
    plain = run(store, [], query)
    assert counts(plain) == [[0, 0]]
    first, second = plain.results[0]
    assert (first["action_id"], first["name"], first["order"], first["type"]) == ("a", "a", 0, "events")
    assert (second["custom_name"], second["order"]) == ("Bought", 1)
    assert first["average_conversion_time"] is None and second["average_conversion_time"] is None
    assert run(store, [], {**query, "breakdownFilter": {"breakdown": "browser"}}).results == []


# --- dates, time zones and filters ------------------------------------------------------------------


def test_the_date_range_is_in_the_environments_time_zone(store: EventStore) -> None:
    events = [
        ev(at(10, 4, 30), "a", "p1"),  # 9 January, 23:30 in New York: before the range
        ev(at(11, 4, 30), "a", "p2"),  # 10 January, 23:30: inside
        ev(at(11, 5, 30), "b", "p2"),  # 11 January, 00:30: after it
    ]
    query = funnel("a", "b", dateRange={"date_from": "2024-01-10", "date_to": "2024-01-10"})
    assert counts(run(store, events, query, tz="America/New_York")) == [[1, 0]]


def test_step_and_query_filters(store: EventStore) -> None:
    events = [
        ev(at(10, 0), "a", "p1", plan="pro", browser="Chrome"),
        ev(at(10, 1), "b", "p1", browser="Chrome"),
        ev(at(10, 0), "a", "p2", plan="free", browser="Chrome"),
        ev(at(10, 1), "b", "p2", browser="Chrome"),
        ev(at(10, 0), "a", "p3", plan="pro", browser="Chrome"),
        ev(at(10, 1), "b", "p3"),  # no browser: the query filter drops this step
    ]
    query = funnel(
        {"event": "a", "properties": [{"key": "plan", "value": "pro", "operator": "exact", "type": "event"}]},
        "b",
        properties=[{"key": "browser", "operator": "is_set", "type": "event"}],
    )
    assert counts(run(store, events, query)) == [[2, 1]]
    by_person = funnel("a", {"event": "b", "properties": [{"key": "tier", "value": "pro", "type": "person"}]})
    assert counts(run(store, events, by_person)) == [[3, 1]]


def test_hostile_names_keys_and_values_are_bound_never_sql_text(store: EventStore) -> None:
    first, second, key, value = "it's {p0:String}", "b\\'); DROP TABLE events; --", "we'ird key", "v'a\"l"
    events = [ev(at(10, 0), first, "p1", **{key: value}), ev(at(10, 1), second, "p1", **{key: value})]
    query = funnel(
        {"event": first, "properties": [{"key": key, "value": value, "operator": "exact", "type": "event"}]},
        second,
        breakdownFilter={"breakdown": key},
        funnelsFilter={"exclusions": [{"kind": "EventsNode", "event": value, "funnelFromStep": 0, "funnelToStep": 1}]},
    )
    result = run(store, events, query)
    assert list(zip(values(result), counts(result), strict=True)) == [([value], [1, 1])]
    assert result.results[0][0]["name"] == first
    for text in (first, second, key, value):
        assert text not in result.outcome.sql


_ACTIONS = {
    1: {"id": 1, "name": "Saw a", "steps": [{"event": "a"}]},
    2: {"id": 2, "name": "Did x", "steps": [{"event": "x"}]},
}


def _action(action_id: int, **fields: Any) -> dict[str, Any]:
    return {"kind": "ActionsNode", "id": action_id, **fields}


def test_an_exclusion_or_optional_step_equal_to_a_step_is_the_same_action_with_the_same_filters(
    store: EventStore,
) -> None:
    """docs/decisions.md "Funnel steps that are actions": same action id and same filters (or the
    step's filters among the other's) is equal; an action and an event are never equal."""
    events = [ev(at(10, 1), "a"), ev(at(10, 2), "x"), ev(at(10, 3), "b"), ev(at(10, 1), "a", "p2"), ev(at(10, 3), "b", "p2")]
    query = funnel("b", "b", funnelsFilter={"exclusions": [{**_action(2), "funnelFromStep": 0, "funnelToStep": 1}]})
    query["series"][0] = _action(1)

    def go(q: dict[str, Any]) -> FunnelRun:
        return run_funnel_engine(store, events, q, _ACTIONS, timezone="UTC", week_start_day=0, now=NOW)

    assert counts(go(query)) == [[1, 1]]  # x (action 2) between the steps takes p1 out
    same = {**query, "funnelsFilter": {"exclusions": [{**_action(1), "funnelFromStep": 0, "funnelToStep": 1}]}}
    with pytest.raises(QueryError) as refused:
        go(same)
    assert refused.value.path == "funnelsFilter.exclusions[0]"
    narrower = {"key": "browser", "operator": "exact", "value": "Chrome"}
    covered = {**query, "funnelsFilter": {"exclusions": [{**_action(1, properties=[narrower]), "funnelFromStep": 0, "funnelToStep": 1}]}}
    with pytest.raises(QueryError):
        go(covered)  # step 0 (action 1, no filters) matches every event the exclusion matches
    # An exclusion of event "a" is not the action "Saw a" (even though it selects the same events):
    # computed, as the oracle computes it.
    event_a = {**query, "funnelsFilter": {"exclusions": [{"kind": "EventsNode", "event": "a", "funnelFromStep": 0, "funnelToStep": 1}]}}
    expected = compute_funnels(events, event_a, timezone="UTC", week_start_day=0, now=NOW, actions=_ACTIONS)
    assert go(event_a).results == expected.results
    optional = funnel("b", "b", "b")
    optional["series"][1] = _action(1, optionalInFunnel=True)
    optional["series"][2] = _action(1)
    with pytest.raises(QueryError) as refused:
        go(optional)
    assert refused.value.path == "series[1].optionalInFunnel"


def test_action_steps_are_named_and_typed_by_the_action(store: EventStore) -> None:
    events = [ev(at(10, 1), "a"), ev(at(10, 3), "b")]
    query = funnel("b", "b")
    query["series"][0] = _action(1, custom_name="Landing")
    result = run_funnel_engine(store, events, query, _ACTIONS, timezone="UTC", week_start_day=0, now=NOW)
    first, second = result.results[0]
    assert (first["name"], first["action_id"], first["type"], first["custom_name"]) == ("Saw a", 1, "actions", "Landing")
    assert (second["name"], second["action_id"], second["type"]) == ("b", "b", "events")
    assert counts(result) == [[1, 1]]
