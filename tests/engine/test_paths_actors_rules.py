"""The actors of a path node or edge (an InsightActorsQuery around a PathsQuery; docs/decisions.md,
"Actors of a path node or edge"), through the actors runner on chDB, against hand-worked actors
(none comes from the oracle); refusals name the field; keys stay bound."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from generated.insights.v1 import query_pb2
from server.errors import Unimplemented
from server.queries.actors.runner import ActorsRunner
from server.queries.base import QueryContext
from server.queries.common.codec import from_reference_json
from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.harness import event_rows, next_team_id, person_uuid
from tests.engine.paths_harness import ActorsRun, run_paths_actors_engine, run_paths_engine
from tests.engine.test_paths_rules import NOW, at, paths, pv
from tests.oracle import Event

HOSTILE = "1_x'); DROP TABLE events; --"


def journeys() -> list[Event]:
    """p1 /a /b /c; p2 /a /c; p3 /b /a, then after 40 minutes a new session /a; p4 /a alone."""
    return [
        pv(at(5, 10, 0), "/a", "p1"),
        pv(at(5, 10, 1), "/b", "p1"),
        pv(at(5, 10, 2), "/c", "p1"),
        pv(at(5, 10, 0), "/a", "p2"),
        pv(at(5, 10, 1), "/c", "p2"),
        pv(at(5, 10, 0), "/b", "p3"),
        pv(at(5, 10, 1), "/a", "p3"),
        pv(at(5, 10, 41), "/a", "p3"),
        pv(at(5, 11, 0), "/a", "p4", **{"$set": {"plan": "pro"}}),
    ]


def ids(*persons: str) -> list[str]:
    """The persons' UUIDs as the service lists them: ordered by their text."""
    return sorted(str(person_uuid(p)) for p in persons)


@pytest.fixture
def team(store: EventStore) -> int:
    team_id = next_team_id()
    store.insert_events(event_rows(team_id, journeys()))
    return team_id


def actors(store: EventStore, team: int, query: dict[str, Any], **kw: Any) -> ActorsRun:
    return run_paths_actors_engine(store, [], query, timezone="UTC", now=NOW, team_id=team, **kw)


@pytest.mark.parametrize(
    ("keys", "who"),
    [
        ({}, ("p1", "p2", "p3", "p4")),
        # Start only: they went on from the node (a path ending there does not count).
        ({"pathStartKey": "1_/a"}, ("p1", "p2")),
        ({"pathStartKey": "1_/b"}, ("p3",)),
        # End only: they reached the node, a first node included.
        ({"pathEndKey": "2_/a"}, ("p3",)),
        ({"pathEndKey": "1_/a"}, ("p1", "p2", "p3", "p4")),
        ({"pathEndKey": "3_/c"}, ("p1",)),
        # Both: the direct edge only (p1 reaches 3_/c from 1_/a through 2_/b).
        ({"pathStartKey": "1_/a", "pathEndKey": "2_/c"}, ("p2",)),
        ({"pathStartKey": "1_/a", "pathEndKey": "3_/c"}, ()),
        # Drop-off: their path (any session of theirs) ended at the node.
        ({"pathDropoffKey": "1_/a"}, ("p3", "p4")),
        ({"pathDropoffKey": "2_/c"}, ("p2",)),
        ({"pathDropoffKey": "2_/b"}, ()),
        # An empty key is no key (the reference tests them for truth).
        ({"pathStartKey": "", "pathDropoffKey": ""}, ("p1", "p2", "p3", "p4")),
        ({"pathEndKey": "", "pathDropoffKey": "2_/c"}, ("p2",)),
        # A key no path has: nobody.
        ({"pathEndKey": "9_/nowhere"}, ()),
        ({"pathStartKey": HOSTILE}, ()),
    ],
)
def test_each_key_picks_its_actors(store: EventStore, team: int, keys: dict[str, str], who: tuple[str, ...]) -> None:
    got = actors(store, team, paths(**keys))
    assert got.ids == ids(*who)
    assert not got.has_more


def test_the_edge_limit_and_weights_do_not_hide_actors(store: EventStore, team: int) -> None:
    """The drill-down reads the paths before the edges are limited (as the reference's rows): the
    edge into 3_/c, traversed once, is not shown under minEdgeWeight 2, its actor is listed."""
    shown = run_paths_engine(store, [], paths(minEdgeWeight=2), timezone="UTC", now=NOW, team_id=team).results
    assert [(e["source"], e["target"]) for e in shown] == []
    assert actors(store, team, paths(minEdgeWeight=2, edgeLimit=1, pathEndKey="3_/c")).ids == ids("p1")


def test_pages_follow_the_id_order(store: EventStore, team: int) -> None:
    everyone = ids("p1", "p2", "p3", "p4")
    first = actors(store, team, paths(), limit=3)
    assert (first.ids, first.has_more) == (everyone[:3], True)
    assert (first.result.limit, first.result.offset) == (3, 0)
    rest = actors(store, team, paths(), limit=3, offset=3)
    assert (rest.ids, rest.has_more) == (everyone[3:], False)
    beyond = actors(store, team, paths(), limit=3, offset=4)
    assert (beyond.ids, beyond.has_more) == ([], False)
    exact = actors(store, team, paths(), limit=4)
    assert (exact.ids, exact.has_more) == (everyone, False)


def test_persons_come_with_their_distinct_ids_properties_and_first_seen(store: EventStore, team: int) -> None:
    found = {a.id: a for a in actors(store, team, paths(pathDropoffKey="1_/a")).result.actors}
    p4 = found[str(person_uuid("p4"))]
    assert list(p4.distinct_ids) == ["d-p4"]
    assert json.loads(p4.properties) == {"plan": "pro"}
    assert p4.created_at.ToDatetime(tzinfo=dt.UTC) == at(5, 11, 0)


def test_groups_are_listed_by_their_key(store: EventStore) -> None:
    events = [
        pv(at(5, 10, 0), "/a", "p1", **{"$group_0": "org-b"}),
        pv(at(5, 10, 1), "/b", "p2", **{"$group_0": "org-b"}),
        pv(at(5, 10, 0), "/a", "p3", **{"$group_0": "org-a"}),
        pv(at(5, 10, 5), "/a", "p4"),  # no group: on no group's path
    ]
    query = paths(pathEndKey="1_/a") | {"aggregation_group_type_index": 0}
    got = run_paths_actors_engine(store, events, query, timezone="UTC", now=NOW)
    assert got.ids == ["org-a", "org-b"]
    assert got.result.group_type_index == 0
    assert all(not a.distinct_ids and not a.HasField("properties") for a in got.result.actors)


def test_the_keys_count_the_steps_the_paths_result_shows(store: EventStore) -> None:
    """A start point renumbers the steps from it; the actors' keys are those of the edges shown."""
    events = [pv(at(5, 10, 0), "/x", "p1"), pv(at(5, 10, 1), "/a", "p1"), pv(at(5, 10, 2), "/b", "p1")]
    query = paths(startPoint="/a")
    shown = run_paths_engine(store, events, query, timezone="UTC", now=NOW).results
    assert [(e["source"], e["target"]) for e in shown] == [("1_/a", "2_/b")]
    got = run_paths_actors_engine(store, events, paths(startPoint="/a", pathStartKey="1_/a", pathEndKey="2_/b"), timezone="UTC", now=NOW)
    assert got.ids == ids("p1")


@pytest.mark.parametrize("other", ["pathStartKey", "pathEndKey"])
def test_a_drop_off_with_another_key_is_invalid_naming_the_other(store: EventStore, team: int, other: str) -> None:
    with pytest.raises(QueryError) as err:
        actors(store, team, paths(pathDropoffKey="1_/a", **{other: "1_/a"}))
    assert err.value.path == f"source.pathsFilter.{other}"


@pytest.mark.parametrize(("page", "field"), [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"offset": -1}, "offset")])
def test_a_page_out_of_bounds_is_invalid_naming_the_field(store: EventStore, team: int, page: dict[str, int], field: str) -> None:
    with pytest.raises(QueryError) as err:
        actors(store, team, paths(), **page)
    assert err.value.path == field


def test_source_errors_and_refusals_name_the_field_under_source(store: EventStore, team: int) -> None:
    with pytest.raises(QueryError) as err:
        actors(store, team, paths(stepLimit=0))
    assert err.value.path == "source.pathsFilter.stepLimit"
    with pytest.raises(Unimplemented) as refused:
        actors(store, team, paths(pathReplacements=True))
    assert refused.value.metadata["field"] == "source.pathsFilter.pathReplacements"
    assert refused.value.message.startswith("source.pathsFilter.pathReplacements:")


def test_other_source_kinds_and_other_kinds_drill_downs_are_unimplemented(store: EventStore, team: int) -> None:
    trends = {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}]}
    with pytest.raises(Unimplemented) as refused:
        actors(store, team, trends)
    assert refused.value.metadata == {"field": "source", "kind": "TrendsQuery"}
    for extra, field in (({"day": "2024-01-05"}, "day"), ({"includeRecordings": True}, "includeRecordings"), ({"funnelStep": 2}, "funnelStep")):
        node = from_reference_json({"kind": "InsightActorsQuery", "source": paths(), **extra}, query_pb2.InsightActorsQuery)
        ctx = QueryContext(team_id=team, timezone="UTC", week_start_day=0, now=NOW)
        with pytest.raises(Unimplemented) as other:
            ActorsRunner().compute(node, ctx, store.query)
        assert other.value.metadata["field"] == field


def test_a_bare_paths_query_with_a_key_still_points_to_the_actors_query(store: EventStore) -> None:
    with pytest.raises(Unimplemented) as refused:
        run_paths_engine(store, [], paths(pathEndKey="2_/a"), timezone="UTC", now=NOW)
    assert refused.value.metadata["field"] == "pathsFilter.pathEndKey"
    assert "InsightActorsQuery" in refused.value.message


@pytest.mark.parametrize("key", ["pathStartKey", "pathEndKey", "pathDropoffKey"])
def test_a_hostile_key_is_bound_never_sql_text(store: EventStore, team: int, key: str) -> None:
    got = actors(store, team, paths(**{key: HOSTILE}))
    assert got.ids == []
    assert HOSTILE not in got.sql
