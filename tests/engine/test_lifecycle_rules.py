"""The reference's lifecycle rules (query-engine-semantics §7), through the SQL engine on chDB, against
hand-worked values (none comes from the oracle); refusals name the field; hostile values stay bound."""

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
from tests.engine.harness import event_rows, next_team_id
from tests.engine.hostile import HOSTILE, assert_events_table_intact, assert_only_placeholders
from tests.engine.lifecycle_harness import LifecycleRun, data, run_lifecycle_engine
from tests.oracle import Event

NOW = dt.datetime(2024, 1, 10, 15, 0, tzinfo=dt.UTC)
# 4 … 8 January 2024 (Thursday to Monday), by day.
RANGE = {"date_from": "2024-01-04", "date_to": "2024-01-08"}
_ids = itertools.count(1)


def at(day: int, hour: int = 12, month: int = 1) -> dt.datetime:
    return dt.datetime(2024, month, day, hour, tzinfo=dt.UTC)


def ev(when: dt.datetime, person: str = "p1", event: str = "$pageview", **props: Any) -> Event:
    n = next(_ids)
    return Event(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        event=event,
        distinct_id=f"d-{person}",
        person_id=person,
        timestamp=when,
        properties=props,
        person_properties={"email": f"{person}@example.com"},
    )


def lifecycle(**fields: Any) -> dict[str, Any]:
    query: dict[str, Any] = {
        "kind": "LifecycleQuery",
        "series": [{"kind": "EventsNode", "event": "$pageview"}],
        "dateRange": RANGE,
    }
    query.update(fields)
    return query


def run(
    store: EventStore, events: list[Event], query: dict[str, Any], tz: str = "UTC", **kw: Any
) -> LifecycleRun:
    kw.setdefault("week_start_day", 0)
    return run_lifecycle_engine(store, events, query, timezone=tz, now=NOW, **kw)


def test_a_person_returns_goes_dormant_and_resurrects(store: EventStore) -> None:
    # Active on 3 (the period before the range), 4, 5 and 7 January.
    out = run(store, [ev(at(3)), ev(at(4)), ev(at(5)), ev(at(5, 18)), ev(at(7))], lifecycle())
    assert data(out.results) == {
        "new": [0, 0, 0, 0, 0],
        "returning": [1, 1, 0, 0, 0],
        "resurrecting": [0, 0, 0, 1, 0],
        "dormant": [0, 0, -1, 0, -1],
    }


def test_new_only_in_the_period_the_person_was_created(store: EventStore) -> None:
    out = run(store, [ev(at(5), "p2"), ev(at(6), "p2")], lifecycle())
    assert data(out.results)["new"] == [0, 1, 0, 0, 0]
    assert data(out.results)["returning"] == [0, 0, 1, 0, 0]
    assert data(out.results)["dormant"] == [0, 0, 0, -1, 0]


def test_a_first_activity_after_the_creation_period_resurrects(store: EventStore) -> None:
    # Created on 1 January by another event; the series' first event is on 6 January.
    out = run(store, [ev(at(1), "p3", "signup"), ev(at(6), "p3")], lifecycle())
    assert data(out.results)["new"] == [0, 0, 0, 0, 0]
    assert data(out.results)["resurrecting"] == [0, 0, 1, 0, 0]


def test_created_at_follows_an_earlier_event_ingested_later(store: EventStore) -> None:
    team_id = next_team_id()
    store.insert_events(event_rows(team_id, [ev(at(6), "p4")]))
    assert data(run(store, [], lifecycle(), team_id=team_id).results)["new"] == [0, 0, 1, 0, 0]
    store.insert_events(event_rows(team_id, [ev(at(2), "p4", "signup")]))
    out = run(store, [], lifecycle(), team_id=team_id)
    assert data(out.results)["new"] == [0, 0, 0, 0, 0]
    assert data(out.results)["resurrecting"] == [0, 0, 1, 0, 0]


def test_the_period_before_the_range_gives_the_first_statuses_and_dormancy(store: EventStore) -> None:
    # p1 active on 3 January only: dormant on the 4th. p2 on 2 January only: nothing in the range.
    out = run(store, [ev(at(3), "p1"), ev(at(2), "p2")], lifecycle())
    assert data(out.results)["dormant"] == [-1, 0, 0, 0, 0]
    assert sum(sum(values) for values in data(out.results).values()) == -1


def test_dormancy_after_the_last_period_is_not_shown_and_later_events_change_nothing(
    store: EventStore,
) -> None:
    out = run(store, [ev(at(7)), ev(at(8)), ev(at(9)), ev(at(11))], lifecycle())
    assert data(out.results)["returning"] == [0, 0, 0, 0, 1]
    assert data(out.results)["dormant"] == [0, 0, 0, 0, 0]


def test_events_that_skip_the_person_profile_have_no_lifecycle(store: EventStore) -> None:
    quiet = ev(at(5), "p2")
    quiet.properties["$process_person_profile"] = False
    out = run(store, [ev(at(4), "p1"), quiet], lifecycle())
    assert data(out.results)["new"] == [1, 0, 0, 0, 0]


def test_periods_follow_the_time_zone(store: EventStore) -> None:
    # 02:00 UTC on 5 January is the evening of 4 January in New York.
    events = [ev(at(5, 2), "p1"), ev(at(5, 14), "p1")]
    utc = run(store, events, lifecycle())
    assert data(utc.results)["new"] == [0, 1, 0, 0, 0] and data(utc.results)["returning"] == [0, 0, 0, 0, 0]
    ny = run(store, events, lifecycle(), tz="America/New_York")
    assert data(ny.results)["new"] == [1, 0, 0, 0, 0]
    assert data(ny.results)["returning"] == [0, 1, 0, 0, 0]


def test_weeks_start_on_the_environments_week_start_day(store: EventStore) -> None:
    # Sunday 7 and Monday 8 January: one Sunday week, two Monday weeks.
    events = [ev(at(7), "p1"), ev(at(8), "p1")]
    query = lifecycle(interval="week", dateRange={"date_from": "2024-01-01", "date_to": "2024-01-14"})
    sunday = run(store, events, query, week_start_day=0)
    assert sunday.results[0]["days"] == ["2023-12-31", "2024-01-07", "2024-01-14"]
    assert data(sunday.results)["new"] == [0, 1, 0] and data(sunday.results)["returning"] == [0, 0, 0]
    monday = run(store, events, query, week_start_day=1)
    assert monday.results[0]["days"] == ["2024-01-01", "2024-01-08"]
    assert data(monday.results)["new"] == [1, 0] and data(monday.results)["returning"] == [0, 1]


def test_hour_and_month_intervals(store: EventStore) -> None:
    hours = lifecycle(
        interval="hour", dateRange={"date_from": "2024-01-05 10:00", "date_to": "2024-01-05 13:00"}
    )
    out = run(store, [ev(at(5, 9)), ev(at(5, 10)), ev(at(5, 12))], hours)
    assert out.results[0]["days"][0] == "2024-01-05 10:00:00"
    assert data(out.results)["returning"][:3] == [1, 0, 0]
    assert data(out.results)["dormant"][:3] == [0, -1, 0]
    assert data(out.results)["resurrecting"][:3] == [0, 0, 1]
    months = lifecycle(interval="month", dateRange={"date_from": "2023-11-01", "date_to": "2024-01-31"})
    out = run(
        store, [ev(at(15) - dt.timedelta(days=61)), ev(at(3) - dt.timedelta(days=31)), ev(at(5))], months
    )
    assert data(out.results)["new"] == [1, 0, 0] and data(out.results)["returning"] == [0, 1, 1]


def test_four_items_in_reference_order_with_their_labels(store: EventStore) -> None:
    out = run(store, [ev(at(4))], lifecycle())
    assert [item["status"] for item in out.results] == ["new", "returning", "resurrecting", "dormant"]
    first = out.results[0]
    assert first["label"] == "$pageview - new"
    assert first["labels"] == ["4-Jan-2024", "5-Jan-2024", "6-Jan-2024", "7-Jan-2024", "8-Jan-2024"]
    assert first["days"][0] == "2024-01-04" and first["count"] == 1.0
    assert first["action"] == {
        "id": "$pageview",
        "name": "$pageview",
        "type": "events",
        "order": 0,
        "math": "total",
    }
    assert out.results[3]["count"] == -1.0
    every = run(store, [ev(at(4))], lifecycle(series=[{"kind": "EventsNode"}]))
    assert every.results[0]["label"] == " - new" and every.results[0]["action"]["name"] == "All events"


def test_an_action_series_counts_its_steps(store: EventStore) -> None:
    action = {
        "id": 7,
        "name": "Signed up",
        "steps": [{"event": "signup"}, {"event": "$pageview", "url": "/join"}],
    }
    events = [
        ev(at(4), "p1", "signup"),
        ev(at(5), "p1", "$pageview", **{"$current_url": "/join"}),
        ev(at(6), "p1"),
    ]
    out = run(store, events, lifecycle(series=[{"kind": "ActionsNode", "id": 7}]), actions={7: action})
    assert data(out.results)["new"] == [1, 0, 0, 0, 0]
    assert data(out.results)["returning"] == [0, 1, 0, 0, 0]
    assert data(out.results)["dormant"] == [0, 0, -1, 0, 0]
    assert out.results[0]["label"] == "Signed up - new"
    assert out.results[0]["action"]["id"] == "7" and out.results[0]["action"]["type"] == "actions"
    with pytest.raises(FailedPrecondition) as raised:
        run(store, events, lifecycle(series=[{"kind": "ActionsNode", "id": 8}]), actions={7: action})
    assert raised.value.metadata["field"] == "series[0].id"


def test_filters_and_test_accounts_drop_events(store: EventStore) -> None:
    events = [ev(at(4), "p1", browser="Chrome"), ev(at(4), "p2", browser="Firefox")]
    props = [{"key": "browser", "value": "Chrome", "operator": "exact"}]
    assert data(run(store, events, lifecycle(properties=props)).results)["new"][0] == 1
    series = [{"kind": "EventsNode", "event": "$pageview", "properties": props}]
    assert data(run(store, events, lifecycle(series=series)).results)["new"][0] == 1
    tests = [{"key": "browser", "value": "Firefox", "operator": "is_not"}]
    out = run(store, events, lifecycle(filterTestAccounts=True), test_account_filters=tests)
    assert data(out.results)["new"][0] == 1


def test_a_cohort_filter_keeps_its_members(store: EventStore) -> None:
    # Cohort 5: persons who signed up in the 30 days before now; only p1 did.
    signed_up = {"behavioral": {"event": "signup", "time_value": 30}}
    criteria = {"type": "OR", "values": [{"type": "AND", "values": [signed_up]}]}
    filters = from_reference_json({"properties": criteria}, cohorts_pb2.CohortFilters)
    cohorts = {5: CohortDefinition(5, "Signed up", 1, False, filters)}
    events = [ev(at(3), "p1", "signup"), ev(at(4), "p1"), ev(at(4), "p2"), ev(at(5), "p2")]
    props = [{"type": "cohort", "key": "id", "value": 5}]
    out = run(store, events, lifecycle(properties=props), cohorts=cohorts)
    assert data(out.results)["resurrecting"] == [1, 0, 0, 0, 0]
    assert data(out.results)["new"] == [0, 0, 0, 0, 0] and data(out.results)["dormant"] == [0, -1, 0, 0, 0]
    with pytest.raises(FailedPrecondition) as raised:
        run(
            store,
            events,
            lifecycle(properties=[{"type": "cohort", "key": "id", "value": 6}]),
            cohorts=cohorts,
        )
    assert raised.value.metadata["field"] == "properties[0].value"


def test_sampling_keeps_whole_distinct_ids_and_scales_the_counts_back(store: EventStore) -> None:
    """As trends and retention: the persons whose distinct id falls in the sample (a fixed hash),
    their statuses counted as by everyone, each count divided by the factor and rounded."""
    people = [f"p{i}" for i in range(40)]
    events = [ev(at(4), p) for p in people] + [ev(at(5), p) for p in people[::2]] + [ev(at(7), p) for p in people[::3]]
    factor = 0.5
    bound = int(factor * 2**64)
    kept = {
        p for p in people if store.query("SELECT cityHash64({d:String}) < {t:UInt64}", {"d": f"d-{p}", "t": bound}) == [(1,)]
    }
    assert 0 < len(kept) < len(people)  # a real subset (fixed: cityHash64 is deterministic)
    whole = data(run(store, [e for e in events if e.person_id in kept], lifecycle()).results)
    sampled = data(run(store, events, lifecycle(samplingFactor=factor)).results)
    assert sampled == {status: [round(c / factor) for c in counts] for status, counts in whole.items()}
    assert any(c != 0 for counts in sampled.values() for c in counts)
    assert data(run(store, events, lifecycle(samplingFactor=1.0)).results)["new"][0] == len(people)


def test_lifecycles_of_groups_follow_group_keys_created_with_their_first_event(store: EventStore) -> None:
    """aggregation_group_type_index 0: the actor is the event's `$group_0` key, created with its
    first event whoever did it; a group is active when any member is; keyless events count for
    nobody."""
    acme, globex = {"$group_0": "acme"}, {"$group_0": "globex"}
    events = [
        ev(at(3), "p1", **acme),  # acme is created on the 3rd (before the range)
        ev(at(4), "p2", **acme),  # another member keeps acme active: returning on the 4th
        ev(at(6), "p3", **globex),  # globex is new on the 6th
        ev(at(7), "p4", **{"$group_0": ""}),  # no group
        ev(at(8), "p5"),  # no group
    ]
    assert data(run(store, events, lifecycle(aggregation_group_type_index=0)).results) == {
        "new": [0, 0, 1, 0, 0],
        "returning": [1, 0, 0, 0, 0],
        "resurrecting": [0, 0, 0, 0, 0],
        "dormant": [0, -1, 0, -1, 0],
    }


def test_an_exact_range_counts_only_its_events_inside_the_grid_and_the_margin_whole(store: EventStore) -> None:
    """explicitDate: 4 January 12:00 to 8 January 06:00, by day (the same five periods). Inside the
    grid only the events of the exact range are activity; the period before it is read whole."""
    exact = {"date_from": "2024-01-04T12:00:00", "date_to": "2024-01-08T06:00:00", "explicitDate": True}
    events = [
        ev(at(3), "p1"),  # the margin: seen
        ev(at(4, 9), "p1"),  # before the exact start: not activity on the 4th
        ev(at(7), "p2"),
        ev(at(8, 10), "p2"),  # after the exact end: not activity on the 8th
    ]
    assert data(run(store, events, lifecycle(dateRange=exact)).results) == {
        "new": [0, 0, 0, 1, 0],
        "returning": [0, 0, 0, 0, 0],
        "resurrecting": [0, 0, 0, 0, 0],
        "dormant": [-1, 0, 0, 0, -1],
    }
    # The same ends without explicitDate: whole days from the 4th to the 8th.
    whole = {"date_from": "2024-01-04T12:00:00", "date_to": "2024-01-08T06:00:00"}
    assert data(run(store, events, lifecycle(dateRange=whole)).results) == {
        "new": [0, 0, 0, 1, 0],
        "returning": [1, 0, 0, 0, 1],
        "resurrecting": [0, 0, 0, 0, 0],
        "dormant": [0, -1, 0, 0, 0],
    }


LATER = [
    ("interval", {"interval": "minute"}),
    ("series[0]", {"series": [{"kind": "DataWarehouseNode", "id": "t", "table_name": "t"}]}),
]


@pytest.mark.parametrize(("field", "fields"), LATER, ids=[f for f, _ in LATER])
def test_options_not_built_yet_are_unimplemented_naming_the_field(
    store: EventStore, field: str, fields: dict[str, Any]
) -> None:
    with pytest.raises(Unimplemented) as raised:
        run(store, [ev(at(4))], lifecycle(**fields))
    assert raised.value.metadata["field"] == field and raised.value.message.startswith(field)


INVALID = [
    ("series", {"series": []}),
    ("series", {"series": [{"kind": "EventsNode"}, {"kind": "EventsNode"}]}),
    ("series[0].math", {"series": [{"kind": "EventsNode", "math": "dau"}]}),
    ("series[0].id", {"series": [{"kind": "ActionsNode", "id": 0}]}),
    ("samplingFactor", {"samplingFactor": 0}),
    ("dateRange.date_from", {"dateRange": {"date_from": "yesterday-ish"}}),
    ("properties[0].key", {"properties": [{"value": "x"}]}),
]


@pytest.mark.parametrize(("field", "fields"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
def test_invalid_queries_name_the_field(store: EventStore, field: str, fields: dict[str, Any]) -> None:
    with pytest.raises(QueryError) as raised:
        run(store, [], lifecycle(**fields))
    assert raised.value.path == field


@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v[:16]) for v in HOSTILE])
def test_hostile_names_keys_and_values_are_bound_never_sql_text(store: EventStore, value: str) -> None:
    events = [
        Event(
            uuid=f"00000000-0000-4000-8000-{9100 + n:012d}",
            event=value,
            distinct_id=value,
            person_id="p1",
            timestamp=at(4 + n),
            properties={value: value},
            person_properties={value: value},
        )
        for n in range(2)
    ]
    query = lifecycle(
        series=[{"kind": "EventsNode", "event": value, "properties": [{"key": value, "value": value}]}],
        properties=[{"key": value, "value": [value], "operator": "exact", "type": "person"}],
    )
    out = run(store, events, query)
    assert data(out.results)["new"] == [1, 0, 0, 0, 0] and data(out.results)["returning"] == [0, 1, 0, 0, 0]
    assert_only_placeholders(out.outcome.sql, value)
    assert_events_table_intact(store)


def test_a_fall_back_night_has_two_one_oclock_hours_and_they_follow_each_other(store: EventStore) -> None:
    # New York, 3 November 2024: 01:00-02:00 happens twice (EDT, then EST).
    events = [
        ev(dt.datetime(2024, 11, 3, 5, 30, tzinfo=dt.UTC)),
        ev(dt.datetime(2024, 11, 3, 6, 30, tzinfo=dt.UTC)),
    ]
    query = lifecycle(
        interval="hour", dateRange={"date_from": "2024-11-03 00:00", "date_to": "2024-11-03 02:00"}
    )
    out = run_lifecycle_engine(
        store,
        events,
        query,
        timezone="America/New_York",
        week_start_day=0,
        now=dt.datetime(2024, 11, 4, tzinfo=dt.UTC),
    )
    assert out.results[0]["days"] == [
        "2024-11-03 00:00:00",
        "2024-11-03 01:00:00",
        "2024-11-03 01:00:00",
        "2024-11-03 02:00:00",
    ]
    assert data(out.results)["new"] == [0, 1, 0, 0]
    assert data(out.results)["returning"] == [0, 0, 1, 0]
    assert data(out.results)["dormant"] == [0, 0, 0, -1]
