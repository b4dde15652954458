"""Cohort breakdowns of funnels (query-engine-semantics §4.4–4.5), through the SQL engine on chDB,
against hand-worked values: each cohort's funnel over its members, the cohort's name shown and its
id the value, all users, no limit, and a missing or deleted cohort refused naming its field."""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.base import DefinitionUnavailable
from storage.cohort_members import CohortMembers
from storage.events import EventStore
from tests.engine.cohort_store import store_cohort_example
from tests.engine.funnels_harness import FunnelRun, run_funnel_engine, run_funnel_trends_engine
from tests.engine.test_funnels_rules import NOW, at, ev, funnel
from tests.oracle import Event
from tests.oracle.cohorts import OracleCohort, Person

# p1 is in both cohorts (pro, and listed), p2 in "Pro tier" only, p3 in "Listed" only, p4 in none.
PRO = OracleCohort(
    5,
    filters={
        "properties": {
            "type": "AND",
            "values": [{"type": "AND", "values": [{"person_property": {"key": "tier", "value": "pro"}}]}],
        }
    },
    name="Pro tier",
)
LISTED = OracleCohort(12, is_static=True, members=frozenset({"p1", "p3"}), name="Listed")
PERSONS = [
    Person("p1", {"tier": "pro"}),
    Person("p2", {"tier": "pro"}),
    Person("p3", {"tier": "free"}),
    Person("p4", {"tier": "free"}),
]
# p1 and p3 convert (a → b); p2 and p4 enter only.
EVENTS = [
    ev(at(10, 9), "a", "p1"),
    ev(at(10, 10), "b", "p1"),
    ev(at(10, 9), "a", "p2"),
    ev(at(11, 9), "a", "p3"),
    ev(at(11, 9, 30), "b", "p3"),
    ev(at(12, 9), "a", "p4"),
]


@pytest.fixture(scope="module")
def cohort_store(store: EventStore) -> EventStore:
    CohortMembers(store).ensure_schema()
    return store


def by_cohort(breakdown: Any, **fields: Any) -> dict[str, Any]:
    query = funnel("a", "b", dateRange={"date_from": "-7d"}, **fields)
    query["breakdownFilter"] = {"breakdown_type": "cohort", "breakdown": breakdown, **query.get("breakdownFilter", {})}
    return query


def run(
    store: EventStore, query: dict[str, Any], cohorts: list[OracleCohort] | None = None, events: list[Event] | None = None
) -> FunnelRun:
    team_id, definitions = store_cohort_example(
        store, NOW, EVENTS if events is None else events, PERSONS, [PRO, LISTED] if cohorts is None else cohorts
    )
    return run_funnel_engine(
        store, [], query, cohorts=definitions, team_id=team_id, timezone="UTC", week_start_day=0, now=NOW
    )


def groups(result: FunnelRun) -> list[tuple[str, int, list[int]]]:
    """(shown name, id, counts per step) per cohort, in the result's order."""
    return [(g[0]["breakdown"], g[0]["breakdown_value"], [s["count"] for s in g]) for g in result.results]


def test_an_actor_in_two_cohorts_counts_in_both(cohort_store: EventStore) -> None:
    result = run(cohort_store, by_cohort([5, 12]))
    # Pro tier: p1 (converted), p2; Listed: p1, p3 (both converted). Listed has more at the last step.
    assert groups(result) == [("Listed", 12, [2, 2]), ("Pro tier", 5, [2, 1])]
    assert not result.has_more
    # Every step of a group carries the cohort; conversion times are the cohort's own.
    listed, pro = result.results
    assert {(s["breakdown"], s["breakdown_value"]) for s in listed} == {("Listed", 12)}
    assert listed[1]["average_conversion_time"] == (3600 + 1800) / 2
    assert pro[1]["average_conversion_time"] == 3600


def test_all_users_holds_everyone_as_id_0(cohort_store: EventStore) -> None:
    for given in ("all", 0, ["all"], "0"):
        assert groups(run(cohort_store, by_cohort(given))) == [("all users", 0, [4, 2])]
    # Beside a cohort, ranked by counts as any cohort (all users entered more).
    assert groups(run(cohort_store, by_cohort([12, "all"]))) == [("all users", 0, [4, 2]), ("Listed", 12, [2, 2])]


def test_equal_counts_keep_the_order_listed(cohort_store: EventStore) -> None:
    twin = OracleCohort(3, is_static=True, members=frozenset({"p1", "p3"}), name="Twin")
    query = by_cohort([12, 3])
    assert groups(run(cohort_store, query, [PRO, LISTED, twin])) == [("Listed", 12, [2, 2]), ("Twin", 3, [2, 2])]
    query = by_cohort([3, 12])
    assert groups(run(cohort_store, query, [PRO, LISTED, twin])) == [("Twin", 3, [2, 2]), ("Listed", 12, [2, 2])]


def test_cohorts_are_never_cut_into_other_and_empty_ones_are_left_out(cohort_store: EventStore) -> None:
    nobody = OracleCohort(7, is_static=True, members=frozenset({"p9"}), name="Nobody here")
    query = by_cohort([5, 7, 12], breakdownFilter={"breakdown_limit": 1})
    result = run(cohort_store, query, [PRO, LISTED, nobody])
    assert groups(result) == [("Listed", 12, [2, 2]), ("Pro tier", 5, [2, 1])]
    assert not result.has_more


@pytest.mark.parametrize(
    "attribution",
    [{}, {"breakdownAttributionType": "last_touch"}, {"breakdownAttributionType": "all_events"},
     {"breakdownAttributionType": "step", "breakdownAttributionValue": 1}],
)
def test_every_attribution_computes_each_cohort_over_its_members(cohort_store: EventStore, attribution: dict[str, Any]) -> None:
    # Step attribution to step 1 would drop the actors who never reached it under a property
    # breakdown; a cohort's every event is the cohort's, so nothing changes.
    result = run(cohort_store, by_cohort([5, 12], funnelsFilter=attribution))
    assert groups(result) == [("Listed", 12, [2, 2]), ("Pro tier", 5, [2, 1])]


def test_unordered_and_strict_funnels_break_down_by_cohort(cohort_store: EventStore) -> None:
    # p1's b comes before its a here: unordered still converts it, ordered does not.
    events = [ev(at(10, 9), "b", "p1"), ev(at(10, 10), "a", "p1"), ev(at(10, 9), "a", "p3"), ev(at(10, 9, 1), "x", "p3"), ev(at(10, 9, 2), "b", "p3")]
    unordered = by_cohort([12], funnelsFilter={"funnelOrderType": "unordered"})
    assert groups(run(cohort_store, unordered, events=events)) == [("Listed", 12, [2, 2])]
    strict = by_cohort([12], funnelsFilter={"funnelOrderType": "strict"})
    assert groups(run(cohort_store, strict, events=events)) == [("Listed", 12, [2, 0])]


@pytest.mark.parametrize(
    ("cohorts", "breakdown", "field"),
    [
        ([PRO, LISTED], [5, 99], "breakdownFilter.breakdown[1]"),
        ([PRO, OracleCohort(12, is_static=True, members=frozenset({"p1"}), deleted=True, name="Gone")], [5, 12], "breakdownFilter.breakdown[1]"),
        ([PRO, LISTED], 99, "breakdownFilter.breakdown"),
    ],
)
def test_a_missing_or_deleted_cohort_is_failed_precondition_naming_the_field(
    cohort_store: EventStore, cohorts: list[OracleCohort], breakdown: Any, field: str
) -> None:
    with pytest.raises(DefinitionUnavailable) as caught:
        run(cohort_store, by_cohort(breakdown), cohorts)
    assert caught.value.path == field and caught.value.kind == "cohort"


def test_the_trends_view_names_each_cohort_and_ranks_equal_totals_by_id_descending(cohort_store: EventStore) -> None:
    twin = OracleCohort(3, is_static=True, members=frozenset({"p1", "p3"}), name="Twin")
    team_id, definitions = store_cohort_example(cohort_store, NOW, EVENTS, PERSONS, [PRO, LISTED, twin])
    query = by_cohort([3, 5, 12], funnelsFilter={"funnelVizType": "trends"}, breakdownFilter={"breakdown_limit": 1})
    series, has_more = run_funnel_trends_engine(
        cohort_store, [], query, cohorts=definitions, team_id=team_id, timezone="UTC", week_start_day=0, now=NOW
    )
    assert not has_more
    # Day 10 is index 2 of the -7d range (8 … 15 January): p1 and p2 entered then, p3 on the 11th.
    # Two entries each over the range: ranked by id, descending (the reference's order).
    assert [(s["breakdown_value"], s["reached_from_step_count"][2:4], s["data"][2:4]) for s in series] == [
        ("Listed", [1, 1], [100.0, 100.0]),
        ("Pro tier", [2, 0], [50.0, 0.0]),
        ("Twin", [1, 1], [100.0, 100.0]),
    ]
