"""The unordered-funnel rules of docs/funnels-semantics.md ("Unordered"): entrance periods in the
trends view, full-range exclusions and step-0 attribution, through the SQL engine on chDB against
hand-worked values; the oracle is run on each too, so that it encodes the same rule."""

from __future__ import annotations

from typing import Any

from storage.events import EventStore
from tests.engine.funnels_harness import run_funnel_trends_engine
from tests.engine.test_funnels_rules import NOW, at, counts, ev, funnel, run, window
from tests.oracle import Event
from tests.oracle.funnels import compute_funnel_trends, compute_funnels

H = 3600
NO_X = [{"kind": "EventsNode", "event": "x", "funnelFromStep": 0, "funnelToStep": 1}]


def unordered(*steps: str, **extra: Any) -> dict[str, Any]:
    """An unordered funnel over 8-15 Jan 2024 with a 3-hour window."""
    fields = {key: extra.pop(key) for key in ("breakdownFilter",) if key in extra}
    return funnel(*steps, dateRange={"date_from": "-7d"}, funnelsFilter=window(3, "hour", funnelOrderType="unordered", **extra), **fields)


def steps(store: EventStore, events: list[Event], query: dict[str, Any]) -> tuple[list[list[int]], list[list[dict[str, Any]]]]:
    """(counts per group, step lists) from the engine, checked equal to the oracle's."""
    got = run(store, events, query)
    expected = compute_funnels(events, query, timezone="UTC", week_start_day=0, now=NOW)
    assert got.results == expected.results
    return counts(got), got.results


def trends(store: EventStore, events: list[Event], query: dict[str, Any]) -> list[dict[str, Any]]:
    """The engine's trends series (days 8-15 Jan), checked equal to the oracle's."""
    kwargs: dict[str, Any] = {"timezone": "UTC", "week_start_day": 0, "now": NOW}
    series, _ = run_funnel_trends_engine(store, events, query, **kwargs)
    assert series == compute_funnel_trends(events, query, **kwargs).results
    return series


# --- the trends view: an attempt enters in the period of its first event ------------------------


def test_an_unordered_attempt_enters_in_the_period_of_its_first_event_whichever_step_it_is(store: EventStore) -> None:
    # p1: b at 23:00 on the 10th, a at 01:00 on the 11th: one attempt entering on the 10th (b is
    # its first event), converted. Its later event a starts an attempt of its own on the 11th,
    # which reaches one step only.
    events = [ev(at(10, 23), "b", "p1"), ev(at(11, 1), "a", "p1")]
    (item,) = trends(store, events, unordered("a", "b", funnelVizType="trends"))
    assert item["reached_from_step_count"][2:4] == [1, 1]
    assert item["reached_to_step_count"][2:4] == [1, 0]
    assert item["data"][2:4] == [100.0, 0.0]


def test_an_unordered_period_takes_its_best_attempt_and_a_conversion_past_the_window_does_not_count(
    store: EventStore,
) -> None:
    # p1 on the 12th: a at 09:00, then a at 10:00 and b at 12:30: the 10:00 attempt converts
    # (2.5 h), the 09:00 one does not (3.5 h), and the period takes the better. p2: a at 09:00 on
    # the 13th, b 3 h 1 min later: entered, not converted.
    events = [ev(at(12, 9), "a", "p1"), ev(at(12, 10), "a", "p1"), ev(at(12, 12, 30), "b", "p1")]
    events += [ev(at(13, 9), "a", "p2"), ev(at(13, 12, 1), "b", "p2")]
    (item,) = trends(store, events, unordered("a", "b", funnelVizType="trends"))
    assert item["reached_from_step_count"][4:6] == [1, 1]
    assert item["reached_to_step_count"][4:6] == [1, 0]


# --- exclusions: an attempt is excluded by an exclusion event strictly inside its span -----------


def test_an_exclusion_between_an_unordered_attempts_first_and_last_step_removes_the_person(store: EventStore) -> None:
    # p1: b, x, a (x inside the attempt): out entirely, not even at step 1. p2: x after its last
    # step: counted. p3: x at the instant of its first event, p4 at the instant of its last:
    # neither is strictly inside, both counted.
    events = [ev(at(10, 9), "b", "p1"), ev(at(10, 10), "x", "p1"), ev(at(10, 11), "a", "p1")]
    events += [ev(at(10, 9), "b", "p2"), ev(at(10, 10), "a", "p2"), ev(at(10, 11), "x", "p2")]
    events += [ev(at(10, 9), "x", "p3"), ev(at(10, 9), "b", "p3"), ev(at(10, 10), "a", "p3")]
    events += [ev(at(10, 9), "b", "p4"), ev(at(10, 10), "a", "p4"), ev(at(10, 10), "x", "p4")]
    found, _ = steps(store, events, unordered("a", "b", exclusions=NO_X))
    assert found == [[3, 3]]


def test_an_unfinished_unordered_attempt_is_excluded_until_its_window_ends(store: EventStore) -> None:
    # p1: a, then x 2 h later (inside the 3 h window), never b: excluded. p2: x 4 h later: counted
    # at step 1. p3: x exactly at the window's edge: not strictly inside, counted.
    events = [ev(at(10, 9), "a", "p1"), ev(at(10, 11), "x", "p1")]
    events += [ev(at(10, 9), "a", "p2"), ev(at(10, 13), "x", "p2")]
    events += [ev(at(10, 9), "a", "p3"), ev(at(10, 12), "x", "p3")]
    found, _ = steps(store, events, unordered("a", "b", exclusions=NO_X))
    assert found == [[2, 0]]


def test_a_clean_attempt_reaching_as_far_keeps_the_person_and_gives_the_times(store: EventStore) -> None:
    # p1's first attempt (a, x, b in 2 h) is excluded; a later one (b, then a 1 h later) reaches
    # both steps cleanly: p1 counts, with the clean attempt's time. p2's only full attempt is
    # excluded, its clean attempts reach one step: p2 is out (the furthest attempt decides).
    events = [ev(at(10, 9), "a", "p1"), ev(at(10, 10), "x", "p1"), ev(at(10, 11), "b", "p1")]
    events += [ev(at(11, 9), "b", "p1"), ev(at(11, 10), "a", "p1")]
    events += [ev(at(10, 9), "a", "p2"), ev(at(10, 10), "x", "p2"), ev(at(10, 11), "b", "p2"), ev(at(12, 9), "a", "p2")]
    found, results = steps(store, events, unordered("a", "b", exclusions=NO_X))
    assert found == [[1, 1]]
    assert results[0][1]["average_conversion_time"] == H


def test_an_exclusion_counts_per_period_in_the_trends_view(store: EventStore) -> None:
    # The 10th's attempt meets x before its last step; the 11th's converts cleanly.
    events = [ev(at(10, 9), "b", "p1"), ev(at(10, 10), "x", "p1"), ev(at(10, 11), "a", "p1")]
    events += [ev(at(11, 9), "a", "p1"), ev(at(11, 10), "b", "p1")]
    (item,) = trends(store, events, unordered("a", "b", funnelVizType="trends", exclusions=NO_X))
    assert item["reached_from_step_count"][2:4] == [0, 1]
    assert item["data"][2:4] == [0.0, 100.0]


# --- step attribution: the value at an attempt's first event -------------------------------------


def step_zero(**extra: Any) -> dict[str, Any]:
    return unordered(
        "a", "b", breakdownAttributionType="step", breakdownAttributionValue=0,
        breakdownFilter={"breakdown": "browser"}, **extra,
    )


def test_unordered_step_attribution_takes_the_value_at_an_attempts_first_event(store: EventStore) -> None:
    # p1: b (Chrome) then a (Safari): its attempt starts at b, so it converts as Chrome; the
    # attempt starting at a (Safari) reaches one step. p2: a (Safari), b (Chrome): converts as
    # Safari, its b-attempt reaches one step as Chrome.
    events = [ev(at(10, 9), "b", "p1", browser="Chrome"), ev(at(10, 10), "a", "p1", browser="Safari")]
    events += [ev(at(11, 9), "a", "p2", browser="Safari"), ev(at(11, 10), "b", "p2", browser="Chrome")]
    found, results = steps(store, events, step_zero())
    assert values_of(results) == [["Chrome"], ["Safari"]]
    assert found == [[2, 1], [2, 1]]


def test_unordered_step_attribution_in_the_trends_view_follows_the_first_event(store: EventStore) -> None:
    events = [ev(at(10, 23), "b", "p1", browser="Chrome"), ev(at(11, 1), "a", "p1", browser="Safari")]
    # One entry each: ranked by value, descending.
    safari, chrome = trends(store, events, step_zero(funnelVizType="trends"))
    assert chrome["breakdown_value"] == ["Chrome"] and safari["breakdown_value"] == ["Safari"]
    assert chrome["reached_to_step_count"][2:4] == [1, 0]  # entered with b on the 10th, converted
    assert safari["reached_from_step_count"][2:4] == [0, 1] and safari["reached_to_step_count"][3] == 0


def values_of(results: list[list[dict[str, Any]]]) -> list[Any]:
    return [group[0].get("breakdown_value") for group in results]

