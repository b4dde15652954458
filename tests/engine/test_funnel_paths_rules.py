"""Funnel paths (query-engine-semantics §8.1, §4; docs/decisions.md "Path groupings, drill-down keys
and funnel paths"), through the SQL engine on chDB, against hand-worked edges (none comes from the
oracle): the funnel's persons at a step, their events before / after / between the step times,
sessions split at the funnel window."""

from __future__ import annotations

from typing import Any

import pytest

from server.errors import Unimplemented
from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.paths_harness import edges
from tests.engine.test_paths_rules import RANGE, at, paths, pv, run
from tests.oracle import Event


def funnel(**filters: Any) -> dict[str, Any]:
    """signup → purchase within one hour."""
    return {
        "kind": "FunnelsQuery",
        "dateRange": RANGE,
        "series": [{"kind": "EventsNode", "event": "signup"}, {"kind": "EventsNode", "event": "purchase"}],
        "funnelsFilter": {"funnelWindowInterval": 1, "funnelWindowIntervalUnit": "hour", **filters},
    }


def funnel_paths(kind: str, step: int, source: dict[str, Any] | None = None) -> dict[str, Any]:
    query = paths()
    query["funnelPathsFilter"] = {"funnelSource": source or funnel(), "funnelPathType": kind, "funnelStep": step}
    return query


def events() -> list[Event]:
    return [
        # p1 converts: signup 10:01, purchase 10:04.
        pv(at(5, 10, 0), "/a"),
        pv(at(5, 10, 1), None, event="signup"),
        pv(at(5, 10, 2), "/b"),
        pv(at(5, 10, 3), "/c"),
        pv(at(5, 10, 4), None, event="purchase"),
        pv(at(5, 10, 5), "/d"),
        pv(at(5, 10, 45), "/e"),  # 40 minutes later: one session under a one-hour window
        pv(at(5, 12, 0), "/f"),  # 75 minutes later: a new session
        # p2 never enters the funnel.
        pv(at(5, 10, 0), "/a", person="p2"),
        pv(at(5, 10, 1), "/x", person="p2"),
        # p3 drops off after signing up at 10:00 (its purchase at 11:30 is outside the window).
        pv(at(5, 10, 0), None, person="p3", event="signup"),
        pv(at(5, 10, 1), "/y", person="p3"),
        pv(at(5, 10, 2), "/z", person="p3"),
        pv(at(5, 11, 0), "/q", person="p3"),  # exactly one window after the signup
        pv(at(5, 11, 1), "/r", person="p3"),
        pv(at(5, 11, 30), None, person="p3", event="purchase"),
    ]


def test_before_a_step_follows_its_converters_up_to_the_step(store: EventStore) -> None:
    got = edges(run(store, events(), funnel_paths("funnel_path_before_step", 2)).results)
    assert got == {("1_/a", "2_/b"): 1.0, ("2_/b", "3_/c"): 1.0}


def test_after_a_step_follows_everyone_who_reached_it_from_the_step_split_at_the_window(store: EventStore) -> None:
    got = edges(run(store, events(), funnel_paths("funnel_path_after_step", 1)).results)
    assert got == {
        ("1_/b", "2_/c"): 1.0,
        ("2_/c", "3_/d"): 1.0,
        ("3_/d", "4_/e"): 1.0,  # a 40-minute gap: the same session (the window is an hour)
        ("1_/y", "2_/z"): 1.0,
        ("2_/z", "3_/q"): 1.0,
        ("3_/q", "4_/r"): 1.0,
    }


def test_between_steps_follows_the_time_from_the_step_before_to_the_step(store: EventStore) -> None:
    got = edges(run(store, events(), funnel_paths("funnel_path_between_steps", 2)).results)
    assert got == {("1_/b", "2_/c"): 1.0}


def test_after_a_drop_off_starts_one_window_after_the_last_step_reached(store: EventStore) -> None:
    got = edges(run(store, events(), funnel_paths("funnel_path_after_step", -2)).results)
    assert got == {("1_/q", "2_/r"): 1.0}
    # Before the drop-off: up to the last step reached (p3's signup at 10:00, no page before it).
    assert run(store, events(), funnel_paths("funnel_path_before_step", -2)).results == []


def test_an_unordered_funnels_step_n_is_when_n_steps_were_done_in_any_order(store: EventStore) -> None:
    """p4 purchases first and signs up later: an ordered funnel sees only the signup (step 1), an
    unordered one two steps done, the first at the purchase, the second at the signup."""
    walk = [
        pv(at(5, 10, 0), "/k", person="p4"),
        pv(at(5, 10, 0, 30), "/l", person="p4"),
        pv(at(5, 10, 1), None, person="p4", event="purchase"),
        pv(at(5, 10, 2), "/m", person="p4"),
        pv(at(5, 10, 2, 30), "/o", person="p4"),
        pv(at(5, 10, 3), None, person="p4", event="signup"),
        pv(at(5, 10, 4), "/n", person="p4"),
        pv(at(5, 10, 5), "/p", person="p4"),
    ]
    assert run(store, walk, funnel_paths("funnel_path_between_steps", 2)).results == []
    unordered = funnel(funnelOrderType="unordered")
    got = edges(run(store, walk, funnel_paths("funnel_path_between_steps", 2, unordered)).results)
    assert got == {("1_/m", "2_/o"): 1.0}
    before = edges(run(store, walk, funnel_paths("funnel_path_before_step", 1, unordered)).results)
    assert before == {("1_/k", "2_/l"): 1.0}  # up to the first step done (the purchase)
    after = edges(run(store, walk, funnel_paths("funnel_path_after_step", 2, unordered)).results)
    assert after == {("1_/n", "2_/p"): 1.0}  # from the second (the signup)


def test_the_funnel_keeps_its_own_rules_exclusions_remove_a_person(store: EventStore) -> None:
    # A refund between the steps excludes p1 from the funnel.
    evs = [*events(), pv(at(5, 10, 3, 30), None, event="refund")]
    source = funnel(exclusions=[{"kind": "EventsNode", "event": "refund", "funnelFromStep": 0, "funnelToStep": 1}])
    got = edges(run(store, evs, funnel_paths("funnel_path_after_step", 1, source)).results)
    # p1 is excluded from the funnel altogether; p3 (no refund) remains.
    assert got == {("1_/y", "2_/z"): 1.0, ("2_/z", "3_/q"): 1.0, ("3_/q", "4_/r"): 1.0}


@pytest.mark.parametrize(
    ("fpf", "field"),
    [
        ({"funnelPathType": "funnel_path_after_step", "funnelStep": 0}, "funnelPathsFilter.funnelStep"),
        ({"funnelPathType": "funnel_path_after_step", "funnelStep": 3}, "funnelPathsFilter.funnelStep"),
        ({"funnelPathType": "funnel_path_after_step", "funnelStep": -1}, "funnelPathsFilter.funnelStep"),
        ({"funnelPathType": "funnel_path_between_steps", "funnelStep": 1}, "funnelPathsFilter.funnelStep"),
        ({"funnelPathType": "sideways", "funnelStep": 1}, "funnelPathsFilter.funnelPathType"),
        ({"funnelStep": 1}, "funnelPathsFilter.funnelPathType"),
    ],
)
def test_invalid_funnel_paths_name_their_field(store: EventStore, fpf: dict[str, Any], field: str) -> None:
    query = paths()
    query["funnelPathsFilter"] = {"funnelSource": funnel(), **fpf}
    with pytest.raises(QueryError) as err:
        run(store, [], query)
    assert err.value.path == field


def test_funnel_paths_without_a_funnel_name_the_source(store: EventStore) -> None:
    query = paths()
    query["funnelPathsFilter"] = {"funnelPathType": "funnel_path_after_step", "funnelStep": 1}
    with pytest.raises(QueryError) as err:
        run(store, [], query)
    assert err.value.path == "funnelPathsFilter.funnelSource"


def test_an_invalid_funnel_names_its_field_under_the_source(store: EventStore) -> None:
    source = funnel()
    source["series"] = source["series"][:1]
    with pytest.raises(QueryError) as err:
        run(store, [], funnel_paths("funnel_path_after_step", 1, source))
    assert err.value.path == "funnelPathsFilter.funnelSource.series"


@pytest.mark.parametrize(
    ("source", "step", "field"),
    [
        ({**funnel(), "breakdownFilter": {"breakdown": "$browser"}}, 1, "funnelPathsFilter.funnelSource.breakdownFilter"),
        (funnel(funnelWindowIntervalUnit="month"), -2, "funnelPathsFilter.funnelSource.funnelsFilter.funnelWindowIntervalUnit"),
        ({**funnel(), "aggregation_group_type_index": 0}, 1, "funnelPathsFilter.funnelSource.aggregation_group_type_index"),
        (
            funnel(funnelAggregateByHogQL="properties.$session_id"),
            1,
            "funnelPathsFilter.funnelSource.funnelsFilter.funnelAggregateByHogQL",
        ),
        # A funnel of an expression's values computes; its paths (a person's) are not followed.
        (
            funnel(funnelAggregateByHogQL="lower(properties.account)"),
            1,
            "funnelPathsFilter.funnelSource.funnelsFilter.funnelAggregateByHogQL",
        ),
    ],
)
def test_funnels_not_followed_yet_are_unimplemented_naming_the_field(
    store: EventStore, source: dict[str, Any], step: int, field: str
) -> None:
    with pytest.raises(Unimplemented) as err:
        run(store, [], funnel_paths("funnel_path_after_step", step, source))
    assert err.value.metadata["field"] == field
