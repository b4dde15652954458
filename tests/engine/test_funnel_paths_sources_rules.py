"""Funnel paths of funnels with optional steps, breakdowns, samples and groups (docs/decisions.md,
"Funnel paths of optional steps, breakdowns, samples and groups"), through the SQL engine on chDB,
against hand-worked edges (none comes from the oracle)."""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.paths_harness import edges
from tests.engine.test_funnel_paths_rules import funnel, funnel_paths
from tests.engine.test_paths_rules import at, pv, run
from tests.oracle import Event


def with_tour(**filters: Any) -> dict[str, Any]:
    """signup → tour (optional) → purchase within one hour."""
    source = funnel(**filters)
    source["series"].insert(1, {"kind": "EventsNode", "event": "tour", "optionalInFunnel": True})
    return source


def tour_events() -> list[Event]:
    return [
        # p1 takes the tour: signup 10:00, tour 10:10, purchase 10:20.
        pv(at(5, 10, 0), None, event="signup"),
        pv(at(5, 10, 5), "/a"),
        pv(at(5, 10, 10), None, event="tour"),
        pv(at(5, 10, 15), "/b"),
        pv(at(5, 10, 16), "/c"),
        pv(at(5, 10, 20), None, event="purchase"),
        # p5 skips it: signup 10:00, purchase 10:20.
        pv(at(5, 10, 0), None, person="p5", event="signup"),
        pv(at(5, 10, 5), "/x", person="p5"),
        pv(at(5, 10, 15), "/y", person="p5"),
        pv(at(5, 10, 20), None, person="p5", event="purchase"),
        # p6 takes the tour and does not buy; p7 signs up only.
        pv(at(5, 10, 0), None, person="p6", event="signup"),
        pv(at(5, 10, 5), "/m", person="p6"),
        pv(at(5, 10, 10), None, person="p6", event="tour"),
        pv(at(5, 10, 15), "/n", person="p6"),
        pv(at(5, 10, 16), "/o", person="p6"),
        pv(at(5, 10, 0), None, person="p7", event="signup"),
        pv(at(5, 10, 5), "/s", person="p7"),
        pv(at(5, 10, 6), "/t", person="p7"),
    ]


def test_an_optional_step_is_followed_by_those_who_completed_it(store: EventStore) -> None:
    """Step 2 is the tour: p1 and p6 took it (p5 skipped it, so is not at step 2)."""
    got = edges(run(store, tour_events(), funnel_paths("funnel_path_after_step", 2, with_tour())).results)
    assert got == {("1_/b", "2_/c"): 1.0, ("1_/n", "2_/o"): 1.0}


def test_between_steps_starts_at_the_last_step_completed_before(store: EventStore) -> None:
    """Between the tour and the purchase for p1; from the signup for p5, who skipped the tour."""
    got = edges(run(store, tour_events(), funnel_paths("funnel_path_between_steps", 3, with_tour())).results)
    assert got == {("1_/b", "2_/c"): 1.0, ("1_/x", "2_/y"): 1.0}


def test_a_drop_off_after_an_optional_step_is_bounded_by_the_last_step_completed(store: EventStore) -> None:
    """Dropped off at the purchase (-3): completed the signup (the required step before) and not
    the purchase, p6 and p7; their paths before the last step they completed (p6's tour, p7's
    signup: nothing before it), and between the two steps p6 completed (p7 has only one)."""
    evs = [*tour_events(), pv(at(5, 9, 50), "/u", person="p7"), pv(at(5, 9, 55), "/v", person="p7")]
    before = edges(run(store, evs, funnel_paths("funnel_path_before_step", -3, with_tour())).results)
    # p6 up to its tour (10:10): /m, one step, no edge; p7 up to its signup (10:00).
    assert before == {("1_/u", "2_/v"): 1.0}
    evs.append(pv(at(5, 10, 8), "/m2", person="p6"))
    before = edges(run(store, evs, funnel_paths("funnel_path_before_step", -3, with_tour())).results)
    assert before == {("1_/u", "2_/v"): 1.0, ("1_/m", "2_/m2"): 1.0}
    between = edges(run(store, tour_events(), funnel_paths("funnel_path_between_steps", -3, with_tour())).results)
    assert between == {}  # p6: only /m between signup and tour, one step
    evs = [*tour_events(), pv(at(5, 10, 6), "/q", person="p6")]
    between = edges(run(store, evs, funnel_paths("funnel_path_between_steps", -3, with_tour())).results)
    assert between == {("1_/m", "2_/q"): 1.0}
    # After the drop-off: from one window (an hour) after the last step completed.
    evs = [*tour_events(), pv(at(5, 11, 10), "/late", person="p6"), pv(at(5, 11, 11), "/later", person="p6")]
    evs += [pv(at(5, 11, 0), "/p7late", person="p7"), pv(at(5, 11, 1), "/p7later", person="p7")]
    after = edges(run(store, evs, funnel_paths("funnel_path_after_step", -3, with_tour())).results)
    assert after == {("1_/late", "2_/later"): 1.0, ("1_/p7late", "2_/p7later"): 1.0}


def breakdown_events() -> list[Event]:
    """p1 converts in Chrome (10:01 → 10:04), then again in Firefox (10:30 → 10:40)."""
    return [
        pv(at(5, 10, 1), None, event="signup", browser="Chrome"),
        pv(at(5, 10, 2), "/b"),
        pv(at(5, 10, 3), "/c"),
        pv(at(5, 10, 4), None, event="purchase", browser="Chrome"),
        pv(at(5, 10, 10), "/outside"),
        pv(at(5, 10, 30), None, event="signup", browser="Firefox"),
        pv(at(5, 10, 35), "/x"),
        pv(at(5, 10, 40), None, event="purchase", browser="Firefox"),
    ]


def test_a_breakdown_does_not_split_the_paths_each_value_walk_adds_its_span(store: EventStore) -> None:
    """All-events attribution walks p1 once per browser: both walks reach step 2, and the paths
    between the steps take the events of either span, as one path (the values are not split).
    Without a breakdown (or first touch) one walk: the first attempt, 10:01 → 10:04."""
    source = {**funnel(breakdownAttributionType="all_events"), "breakdownFilter": {"breakdown": "browser"}}
    got = edges(run(store, breakdown_events(), funnel_paths("funnel_path_between_steps", 2, source)).results)
    assert got == {("1_/b", "2_/c"): 1.0, ("2_/c", "3_/x"): 1.0}
    first = {**funnel(), "breakdownFilter": {"breakdown": "browser"}}
    plain = edges(run(store, breakdown_events(), funnel_paths("funnel_path_between_steps", 2)).results)
    assert plain == {("1_/b", "2_/c"): 1.0}
    assert edges(run(store, breakdown_events(), funnel_paths("funnel_path_between_steps", 2, first)).results) == plain


def test_a_sampled_funnel_samples_the_paths_and_scales_them_back(store: EventStore) -> None:
    """The funnel's sample (its distinct ids below the factor's cityHash64 bound) walks; their
    paths are scaled by 1/factor, as a sampled paths query's, and a smaller paths factor wins."""
    people = [f"p{i}" for i in range(30)]
    evs = []
    for p in people:
        evs += [pv(at(5, 10, 0), None, p, event="signup"), pv(at(5, 10, 1), "/a", p), pv(at(5, 10, 2), "/b", p)]
    factor = 0.25
    bound = int(factor * 2**64)
    kept = {
        p for p in people if store.query("SELECT cityHash64({d:String}) < {t:UInt64}", {"d": f"d-{p}", "t": bound}) == [(1,)]
    }
    assert 0 < len(kept) < len(people)
    whole = run(store, [e for e in evs if e.person_id in kept], funnel_paths("funnel_path_after_step", 1)).results
    assert whole == [{"source": "1_/a", "target": "2_/b", "value": float(len(kept)), "average_conversion_time": 60000.0}]
    sampled = funnel_paths("funnel_path_after_step", 1, {**funnel(), "samplingFactor": factor})
    want = [{**edge, "value": float(round(edge["value"] / factor))} for edge in whole]
    assert run(store, evs, sampled).results == want
    assert run(store, evs, {**sampled, "samplingFactor": 0.5}).results == want


def group_events() -> list[Event]:
    """acme's members: p1 signs up, p2 buys 10 minutes later; neither person converts alone."""
    return [
        pv(at(5, 10, 0), None, event="signup", **{"$group_0": "acme"}),
        pv(at(5, 10, 5), "/a", person="p2", **{"$group_0": "acme"}),
        pv(at(5, 10, 10), None, person="p2", event="purchase", **{"$group_0": "acme"}),
        pv(at(5, 10, 15), "/b", **{"$group_0": "acme"}),
        pv(at(5, 10, 16), "/c", person="p2", **{"$group_0": "acme"}),
        pv(at(5, 10, 17), "/d", person="p2"),  # no group: on no group's path
    ]


@pytest.mark.parametrize("paths_group", [None, 0])
def test_a_funnel_of_groups_is_followed_by_its_groups_paths(store: EventStore, paths_group: int | None) -> None:
    source = {**funnel(), "aggregation_group_type_index": 0}
    query = funnel_paths("funnel_path_after_step", 2, source)
    if paths_group is not None:
        query["aggregation_group_type_index"] = paths_group
    got = edges(run(store, group_events(), query).results)
    assert got == {("1_/b", "2_/c"): 1.0}
    # The same funnel of persons: nobody reached step 2.
    assert run(store, group_events(), funnel_paths("funnel_path_after_step", 2)).results == []


@pytest.mark.parametrize(("source_group", "paths_group"), [(0, 1), (None, 0)])
def test_paths_of_other_actors_than_the_funnels_are_invalid(
    store: EventStore, source_group: int | None, paths_group: int
) -> None:
    source = funnel() if source_group is None else {**funnel(), "aggregation_group_type_index": source_group}
    query = {**funnel_paths("funnel_path_after_step", 1, source), "aggregation_group_type_index": paths_group}
    with pytest.raises(QueryError) as err:
        run(store, [], query)
    assert err.value.path == "aggregation_group_type_index"
