"""The reference's paths rules (query-engine-semantics §8), through the SQL engine on chDB, against
hand-worked edges (none comes from the oracle); refusals name the field; hostile values stay bound."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from generated.insights.v1 import cohorts_pb2
from server.errors import FailedPrecondition, Unimplemented
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.paths_harness import PathsRun, edges, run_paths_engine
from tests.oracle import Event

NOW = dt.datetime(2024, 1, 10, 15, 0, tzinfo=dt.UTC)
RANGE = {"date_from": "2024-01-04", "date_to": "2024-01-08"}
_ids = itertools.count(1)


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, minute, second, tzinfo=dt.UTC)


def pv(when: dt.datetime, url: str | None, person: str = "p1", event: str = "$pageview", **props: Any) -> Event:
    n = next(_ids)
    if url is not None:
        props["$current_url" if event == "$pageview" else "$screen_name"] = url
    return Event(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        event=event,
        distinct_id=f"d-{person}",
        person_id=person,
        timestamp=when,
        properties=props,
        person_properties={"email": f"{person}@example.com"},
    )


def paths(**filters: Any) -> dict[str, Any]:
    query: dict[str, Any] = {"kind": "PathsQuery", "dateRange": RANGE, "pathsFilter": {"includeEventTypes": ["$pageview"]}}
    query["pathsFilter"].update(filters)
    return query


def run(store: EventStore, events: list[Event], query: dict[str, Any], tz: str = "UTC", **kw: Any) -> PathsRun:
    return run_paths_engine(store, events, query, timezone=tz, now=NOW, **kw)


def test_pageviews_by_url_with_step_prefixes_trailing_slash_stripped_and_milliseconds(store: EventStore) -> None:
    events = [pv(at(5, 10, 0), "/home/"), pv(at(5, 10, 1), "/pricing"), pv(at(5, 10, 1, 30), "/signup")]
    got = run(store, events, paths()).results
    assert got == [
        {"source": "1_/home", "target": "2_/pricing", "value": 1.0, "average_conversion_time": 60000.0},
        {"source": "2_/pricing", "target": "3_/signup", "value": 1.0, "average_conversion_time": 30000.0},
    ]


def test_a_gap_of_30_minutes_starts_a_new_session_and_29_does_not(store: EventStore) -> None:
    events = [
        pv(at(5, 10, 0), "/a"),
        pv(at(5, 10, 29, 59), "/b"),  # 29:59 later: same session
        pv(at(5, 10, 59, 59), "/c"),  # exactly 30:00 later: a new session starting at /c
        pv(at(5, 11, 0), "/d"),
    ]
    got = edges(run(store, events, paths()).results)
    assert got == {("1_/a", "2_/b"): 1.0, ("1_/c", "2_/d"): 1.0}


def test_each_session_counts_so_one_person_can_weigh_an_edge_twice(store: EventStore) -> None:
    events = [pv(at(5, 10), "/a"), pv(at(5, 10, 1), "/b"), pv(at(6, 10), "/a"), pv(at(6, 10, 1), "/b")]
    assert edges(run(store, events, paths()).results) == {("1_/a", "2_/b"): 2.0}


def test_consecutive_duplicates_collapse_and_keep_the_last_time(store: EventStore) -> None:
    events = [pv(at(5, 10, 0), "/a"), pv(at(5, 10, 5), "/a"), pv(at(5, 10, 6), "/b")]
    got = run(store, events, paths()).results
    assert got == [{"source": "1_/a", "target": "2_/b", "value": 1.0, "average_conversion_time": 60000.0}]


def test_step_limit_keeps_the_first_steps(store: EventStore) -> None:
    events = [pv(at(5, 10, i), f"/{c}") for i, c in enumerate("abcde")]
    got = edges(run(store, events, paths(stepLimit=3)).results)
    assert got == {("1_/a", "2_/b"): 1.0, ("2_/b", "3_/c"): 1.0}


def test_start_point_keeps_the_suffix_and_drops_sessions_without_it(store: EventStore) -> None:
    events = [
        *(pv(at(5, 10, i), f"/{c}") for i, c in enumerate("abcd")),
        *(pv(at(5, 10, i), f"/{c}", person="p2") for i, c in enumerate("xy")),
    ]
    got = edges(run(store, events, paths(startPoint="/b/")).results)
    assert got == {("1_/b", "2_/c"): 1.0, ("2_/c", "3_/d"): 1.0}


def test_end_point_keeps_the_last_steps_up_to_it(store: EventStore) -> None:
    events = [pv(at(5, 10, i), f"/{c}") for i, c in enumerate("abcdef")]
    got = edges(run(store, events, paths(endPoint="/e", stepLimit=3)).results)
    assert got == {("1_/c", "2_/d"): 1.0, ("2_/d", "3_/e"): 1.0}


def test_start_and_end_points_too_long_keep_both_ends_around_an_ellipsis(store: EventStore) -> None:
    events = [pv(at(5, 10, i), f"/{c}") for i, c in enumerate("abcdefg")]
    got = edges(run(store, events, paths(startPoint="/b", endPoint="/g", stepLimit=4)).results)
    assert got == {("1_/b", "2_/c"): 1.0, ("2_/c", "3_..."): 1.0, ("3_...", "4_/f"): 1.0, ("4_/f", "5_/g"): 1.0}


def test_edge_limit_orders_heaviest_first_and_drops_orphans(store: EventStore) -> None:
    events = []
    for p in range(3):
        events += [pv(at(5, 10, 0), "/a", person=f"a{p}"), pv(at(5, 10, 1), "/b", person=f"a{p}")]
    for p in range(2):
        events += [pv(at(5, 10, 0), "/x", person=f"x{p}"), pv(at(5, 10, 1), "/y", person=f"x{p}"), pv(at(5, 10, 2), "/z", person=f"x{p}")]
    # Edges: a->b 3, x->y 2, y->z 2. A limit of 2 keeps a->b and x->y ("1_/x" < "2_/y").
    assert edges(run(store, events, paths(edgeLimit=2)).results) == {("1_/a", "2_/b"): 3.0, ("1_/x", "2_/y"): 2.0}
    # Weight bounds: only the edges of weight 2; y->z is kept, reachable through x->y.
    got = edges(run(store, events, paths(minEdgeWeight=2, maxEdgeWeight=2)).results)
    assert got == {("1_/x", "2_/y"): 2.0, ("2_/y", "3_/z"): 2.0}
    # Of weight 3 or more: a->b only.
    assert edges(run(store, events, paths(minEdgeWeight=3)).results) == {("1_/a", "2_/b"): 3.0}


def test_an_edge_cut_from_its_first_step_is_dropped(store: EventStore) -> None:
    events = []
    for p in range(2):
        events += [pv(at(5, 10, 0), "/x", person=f"x{p}"), pv(at(5, 10, 1), "/y", person=f"x{p}"), pv(at(5, 10, 2), "/z", person=f"x{p}")]
    events += [pv(at(5, 10, 0), "/w", person="w"), pv(at(5, 10, 1), "/y", person="w"), pv(at(5, 10, 2), "/z", person="w")]
    # y->z weighs 3 but neither first edge reaches the limit of 1: the only edge kept is orphaned.
    assert run(store, events, paths(edgeLimit=1)).results == []


def test_custom_events_by_name_and_screens_by_screen_name(store: EventStore) -> None:
    events = [
        pv(at(5, 10, 0), "/home"),
        pv(at(5, 10, 1), None, event="signup"),
        pv(at(5, 10, 2), "Main", event="$screen"),
        pv(at(5, 10, 3), None, event="$autocapture"),
    ]
    assert edges(run(store, events, paths(includeEventTypes=["custom_event", "$screen"])).results) == {
        ("1_signup", "2_Main"): 1.0
    }
    assert edges(run(store, events, paths(includeEventTypes=["$pageview", "custom_event"])).results) == {
        ("1_/home", "2_signup"): 1.0
    }


def test_cleaning_rules_apply_in_order_and_exclusions_use_the_cleaned_item(store: EventStore) -> None:
    events = [pv(at(5, 10, 0), "/user/1"), pv(at(5, 10, 1), "/user/2"), pv(at(5, 10, 2), "/cart"), pv(at(5, 10, 3), "/done")]
    rules = [{"regex": "/user/[0-9]+", "alias": "/user/:id"}, {"regex": ":id", "alias": "<id>"}]
    got = edges(run(store, events, paths(localPathCleaningFilters=rules, excludeEvents=["/cart"])).results)
    # Both users collapse into one "/user/<id>" step; "/cart" is left out.
    assert got == {("1_/user/<id>", "2_/done"): 1.0}


def test_a_grouping_replaces_the_cleaned_steps_it_matches_first_grouping_first(store: EventStore) -> None:
    events = [
        pv(at(5, 10, 0), "/user/1"),
        pv(at(5, 10, 1), "/user/22/edit"),
        pv(at(5, 10, 2), "/shop/user/3"),
        pv(at(5, 10, 3), "/cart"),
    ]
    # "/user/*" matches anywhere in a step, so "/shop/user/3" joins it; the runs of one grouping
    # collapse into one step. "*art" is listed first for "/cart" and wins over "/c*".
    got = edges(run(store, events, paths(pathGroupings=["/user/*", "*art", "/c*"])).results)
    assert got == {("1_/user/*", "2_*art"): 1.0}
    # Cleaning first: "/cart" becomes "/basket", which no grouping but "/b*" matches.
    rules = [{"regex": "cart", "alias": "basket"}]
    got = edges(run(store, events, paths(pathGroupings=["/user/*", "/b*"], localPathCleaningFilters=rules)).results)
    assert got == {("1_/user/*", "2_/b*"): 1.0}


def test_a_grouping_is_literal_text_but_its_stars_and_points_and_exclusions_use_its_text(store: EventStore) -> None:
    events = [pv(at(5, 10, 0), "/a(1)"), pv(at(5, 10, 1), "/a.b"), pv(at(5, 10, 2), "/axb"), pv(at(5, 10, 3), "/z")]
    # "/a.b" is literal: it takes "/a.b" but not "/axb"; "(1)" is literal too.
    got = edges(run(store, events, paths(pathGroupings=["/a.b", "*(1)"])).results)
    assert got == {("1_*(1)", "2_/a.b"): 1.0, ("2_/a.b", "3_/axb"): 1.0, ("3_/axb", "4_/z"): 1.0}
    # A start point and an exclusion compare the grouped step.
    got = edges(run(store, events, paths(pathGroupings=["/a*b"], startPoint="/a*b")).results)
    assert got == {("1_/a*b", "2_/z"): 1.0}
    got = edges(run(store, events, paths(pathGroupings=["/a*b"], excludeEvents=["/a*b"])).results)
    assert got == {("1_/a(1)", "2_/z"): 1.0}


def test_properties_and_test_accounts_filter_events(store: EventStore) -> None:
    events = [
        pv(at(5, 10, 0), "/a", browser="Chrome"),
        pv(at(5, 10, 1), "/b", browser="Firefox"),
        pv(at(5, 10, 2), "/c", browser="Chrome"),
    ]
    query = paths()
    query["properties"] = [{"key": "browser", "operator": "exact", "value": "Chrome"}]
    assert edges(run(store, events, query).results) == {("1_/a", "2_/c"): 1.0}
    query = paths()
    query["filterTestAccounts"] = True
    tf = [{"key": "browser", "operator": "is_not", "value": "Firefox"}]
    assert edges(run(store, events, query, test_account_filters=tf).results) == {("1_/a", "2_/c"): 1.0}


def test_the_range_is_whole_days_in_the_time_zone(store: EventStore) -> None:
    # 4 January 00:30 in Berlin is 3 January 23:30 UTC: inside a range starting on the 4th there.
    events = [pv(dt.datetime(2024, 1, 3, 23, 30, tzinfo=dt.UTC), "/a"), pv(dt.datetime(2024, 1, 3, 23, 31, tzinfo=dt.UTC), "/b")]
    assert edges(run(store, events, paths(), tz="Europe/Berlin").results) == {("1_/a", "2_/b"): 1.0}
    assert run(store, events, paths(), tz="UTC").results == []


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"stepLimit": 0}, "pathsFilter.stepLimit"),
        ({"edgeLimit": 0}, "pathsFilter.edgeLimit"),
        ({"minEdgeWeight": -1}, "pathsFilter.minEdgeWeight"),
        ({"localPathCleaningFilters": [{"regex": "(", "alias": "x"}]}, "pathsFilter.localPathCleaningFilters[0].regex"),
        ({"localPathCleaningFilters": [{"regex": "a", "alias": "\\1"}]}, "pathsFilter.localPathCleaningFilters[0].alias"),
        ({"pathGroupings": ["/a/*", ""]}, "pathsFilter.pathGroupings[1]"),
        ({"pathGroupings": [f"/{i}/*" for i in range(101)]}, "pathsFilter.pathGroupings"),
    ],
)
def test_invalid_options_name_their_field(store: EventStore, filters: dict[str, Any], field: str) -> None:
    with pytest.raises(QueryError) as err:
        run(store, [], paths(**filters))
    assert err.value.path == field


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"pathsFilter": {"pathEndKey": "2_/b"}}, "pathsFilter.pathEndKey"),
        ({"pathsFilter": {"pathDropoffKey": "2_/b"}}, "pathsFilter.pathDropoffKey"),
        ({"pathsFilter": {"pathReplacements": True}}, "pathsFilter.pathReplacements"),
        ({"pathsFilter": {"pathStartKey": "1_/a"}}, "pathsFilter.pathStartKey"),
    ],
)
def test_options_not_built_are_unimplemented_naming_the_field(store: EventStore, query: dict[str, Any], field: str) -> None:
    with pytest.raises(Unimplemented) as err:
        run(store, [], {"kind": "PathsQuery", "dateRange": RANGE, **query})
    assert err.value.metadata["field"] == field


def test_sampling_keeps_whole_distinct_ids_and_scales_traversals_back_before_the_edge_weights(
    store: EventStore,
) -> None:
    """The persons whose distinct id falls in the sample (a fixed hash) walk as everyone does; each
    edge's traversals are divided by the factor and rounded, and minEdgeWeight reads that number."""
    people = [f"p{i}" for i in range(30)]
    events = [pv(at(5, 10, 0), "/a", p) for p in people] + [pv(at(5, 10, 1), "/b", p) for p in people]
    events += [pv(at(5, 10, 2), "/c", p) for p in people[:10]]
    factor = 0.25
    bound = int(factor * 2**64)
    kept = {
        p for p in people if store.query("SELECT cityHash64({d:String}) < {t:UInt64}", {"d": f"d-{p}", "t": bound}) == [(1,)]
    }
    assert 0 < len(kept) < len(people)  # a real subset (fixed: cityHash64 is deterministic)
    whole = run(store, [e for e in events if e.person_id in kept], paths()).results
    sampled = run(store, events, {**paths(), "samplingFactor": factor}).results
    assert sampled == [{**edge, "value": float(round(edge["value"] / factor))} for edge in whole]
    assert sampled[0]["value"] == round(len(kept) / factor)
    weight = sampled[0]["value"]
    heavy = run(store, events, {**paths(minEdgeWeight=int(weight)), "samplingFactor": factor}).results
    assert [edge["value"] for edge in heavy] == [v for v in (e["value"] for e in sampled) if v >= weight]


def test_paths_of_groups_merge_their_members_events_and_skip_events_without_a_key(store: EventStore) -> None:
    """aggregation_group_type_index 0: one stream per `$group_0` key, whoever did the events; an
    event without the key (or with an empty one) is on no path."""
    events = [
        pv(at(5, 10, 0), "/a", "p1", **{"$group_0": "acme"}),
        pv(at(5, 10, 1), "/b", "p2", **{"$group_0": "acme"}),
        pv(at(5, 10, 2), "/x", "p2"),  # no group: skipped, so /b → /c
        pv(at(5, 10, 3), "/y", "p1", **{"$group_0": ""}),
        pv(at(5, 10, 4), "/c", "p1", **{"$group_0": "acme"}),
        pv(at(5, 10, 0), "/a", "p3", **{"$group_0": "globex"}),
        pv(at(5, 10, 2), "/c", "p3", **{"$group_0": "globex"}),
    ]
    got = run(store, events, {**paths(), "aggregation_group_type_index": 0}).results
    assert [(e["source"], e["target"], e["value"]) for e in got] == [
        ("1_/a", "2_/b", 1.0),
        ("1_/a", "2_/c", 1.0),
        ("2_/b", "3_/c", 1.0),
    ]
    by_person = run(store, events, paths()).results
    assert ("1_/a", "2_/y") in [(e["source"], e["target"]) for e in by_person]


def test_an_explicit_date_range_is_exact_not_whole_days(store: EventStore) -> None:
    """Paths count whole days from date_from's day (§8.1); explicitDate keeps the hour given."""
    events = [pv(at(5, 10, 0), "/a"), pv(at(5, 10, 1), "/b"), pv(at(5, 13, 0), "/c", "p2"), pv(at(5, 13, 1), "/d", "p2")]
    dates = {"date_from": "2024-01-05T12:00:00", "date_to": "2024-01-06"}
    whole_days = run(store, events, {**paths(), "dateRange": dates}).results
    assert [(e["source"], e["target"]) for e in whole_days] == [("1_/a", "2_/b"), ("1_/c", "2_/d")]
    exact = run(store, events, {**paths(), "dateRange": {**dates, "explicitDate": True}}).results
    assert [(e["source"], e["target"]) for e in exact] == [("1_/c", "2_/d")]


def test_hostile_values_are_bound_never_in_the_sql(store: EventStore) -> None:
    hostile = "x'); DROP TABLE events; --"
    events = [pv(at(5, 10, 0), hostile), pv(at(5, 10, 1), "/b")]
    cleaned = hostile.replace("DROP", hostile)
    rules = [{"regex": "DROP", "alias": hostile}]
    query = paths(
        startPoint=cleaned,
        localPathCleaningFilters=rules,
        excludeEvents=[hostile + "z"],
        pathGroupings=[hostile + "*DROP\\", "\\1'); DROP*"],
    )
    query["properties"] = [{"key": hostile, "operator": "is_not", "value": hostile}]
    result = run(store, events, query)
    assert "DROP" not in result.outcome.sql
    assert edges(result.results) == {(f"1_{cleaned}", "2_/b"): 1.0}


def test_a_cohort_filter_keeps_its_members_paths(store: EventStore) -> None:
    # Cohort 5: persons who signed up in the 30 days before now; only p1 did.
    signed_up = {"behavioral": {"event": "signup", "time_value": 30}}
    criteria = {"type": "OR", "values": [{"type": "AND", "values": [signed_up]}]}
    filters = from_reference_json({"properties": criteria}, cohorts_pb2.CohortFilters)
    cohorts = {5: CohortDefinition(5, "Signed up", 1, False, filters)}
    events = [
        pv(at(3), None, event="signup"),
        pv(at(5, 10, 0), "/a"),
        pv(at(5, 10, 1), "/b"),
        pv(at(5, 10, 0), "/x", person="p2"),
        pv(at(5, 10, 1), "/y", person="p2"),
    ]
    query = paths()
    query["properties"] = [{"type": "cohort", "key": "id", "value": 5}]
    assert edges(run(store, events, query, cohorts=cohorts).results) == {("1_/a", "2_/b"): 1.0}
    query["properties"] = [{"type": "cohort", "key": "id", "value": 6}]
    with pytest.raises(FailedPrecondition) as raised:
        run(store, events, query, cohorts=cohorts)
    assert raised.value.metadata["field"] == "properties[0].value"
