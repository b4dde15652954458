"""The reference's retention rules (query-engine-semantics §5), through the SQL engine on chDB, against
hand-worked values (none comes from the oracle); refusals name the field; hostile values stay bound."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from server.errors import FailedPrecondition, Unimplemented
from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.harness import event_rows, next_team_id
from tests.engine.hostile import HOSTILE, assert_events_table_intact, assert_only_placeholders
from tests.engine.retention_harness import RetentionRun, counts, run_retention_engine
from tests.oracle import Event
from tests.oracle.retention import compute_retention

# Wednesday 10 January 2024, 15:00 UTC: the default 7 day cohorts are 4 … 10 January, the window
# ends (exclusive) on 11 January 00:00 (query-engine-semantics §5.2's example).
NOW = dt.datetime(2024, 1, 10, 15, 0, tzinfo=dt.UTC)
_ids = itertools.count(1)


def at(day: int, hour: int = 12, minute: int = 0, month: int = 1) -> dt.datetime:
    return dt.datetime(2024, month, day, hour, minute, tzinfo=dt.UTC)


def ev(when: dt.datetime, event: str = "$pageview", person: str = "p1", **props: Any) -> Event:
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


def retention(**rf: Any) -> dict[str, Any]:
    query: dict[str, Any] = {"kind": "RetentionQuery", "retentionFilter": {}}
    for key, value in rf.items():
        if key in (
            "dateRange",
            "breakdownFilter",
            "properties",
            "samplingFactor",
            "aggregation_group_type_index",
        ):
            query[key] = value
        else:
            query["retentionFilter"][key] = value
    return query


def run(
    store: EventStore,
    events: list[Event],
    query: dict[str, Any],
    tz: str = "UTC",
    week_start_day: int = 0,
    **kw: Any,
) -> RetentionRun:
    return run_retention_engine(
        store, events, query, timezone=tz, week_start_day=week_start_day, now=NOW, **kw
    )


def test_the_default_range_is_seven_day_cohorts_ending_with_today(store: EventStore) -> None:
    out = run(store, [ev(at(4)), ev(at(10, 23, 59))], retention())
    assert [c["date"] for c in out.results] == [f"2024-01-{d:02d}T00:00:00+00:00" for d in range(4, 11)]
    assert [c["label"] for c in out.results] == [f"Day {i}" for i in range(7)]
    assert [v["label"] for v in out.results[0]["values"]] == [f"Day {k}" for k in range(7)]
    assert counts(out.results)[0] == [1, 0, 0, 0, 0, 0, 1]
    assert out.outcome.dates.date_from == dt.datetime(2024, 1, 4, tzinfo=out.outcome.dates.date_from.tzinfo)
    assert out.outcome.dates.date_to.isoformat() == "2024-01-11T00:00:00+00:00"


def test_every_cohort_has_total_intervals_values_with_future_periods_zero(store: EventStore) -> None:
    events = [ev(at(d)) for d in (8, 9, 10)]
    out = run(store, events, retention(totalIntervals=4))
    # 4 cohorts (7 … 10 January); the last ones cannot have returned yet: zeros, not shorter lists.
    assert counts(out.results) == [[0, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]


def test_recurring_retention_puts_a_person_in_every_cohort_they_start(store: EventStore) -> None:
    events = [ev(at(d)) for d in (4, 6, 7)]
    assert counts(run(store, events, retention()).results)[:4] == [
        [1, 0, 1, 1, 0, 0, 0],
        [0] * 7,
        [1, 1, 0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0, 0, 0],
    ]


def test_a_return_in_the_start_period_adds_nothing(store: EventStore) -> None:
    events = [ev(at(5, 1)), ev(at(5, 23)), ev(at(5, 12), "signup")]
    out = run(store, events, retention(returningEntity={"id": "signup", "type": "events"}))
    assert counts(out.results)[1] == [1, 0, 0, 0, 0, 0, 0]


def test_first_time_retention_takes_the_first_target_event_of_all_time(store: EventStore) -> None:
    events = [ev(at(5)), ev(at(7)), ev(at(8)), ev(at(1), person="p2"), ev(at(6), person="p2")]
    out = run(store, events, retention(retentionType="retention_first_time"))
    # p1 starts on the 5th only (returns on 7 and 8); p2 started before the window: in no cohort.
    assert counts(out.results)[1] == [1, 0, 1, 1, 0, 0, 0]
    assert sum(c[0] for c in counts(out.results)) == 1


def test_first_time_with_filters_is_the_first_matching_event_first_ever_must_match_itself(
    store: EventStore,
) -> None:
    events = [ev(at(5), plan="free"), ev(at(6), plan="pro"), ev(at(8), plan="pro")]
    target = {"id": "$pageview", "type": "events", "properties": [{"key": "plan", "value": "pro"}]}
    first = run(store, events, retention(retentionType="retention_first_time", targetEntity=target))
    assert [c[0] for c in counts(first.results)] == [0, 0, 1, 0, 0, 0, 0]
    ever = run(store, events, retention(retentionType="retention_first_ever_occurrence", targetEntity=target))
    assert [c[0] for c in counts(ever.results)] == [0] * 7
    matching = [ev(at(5), plan="pro"), ev(at(8), plan="free")]
    ever = run(
        store, matching, retention(retentionType="retention_first_ever_occurrence", targetEntity=target)
    )
    assert counts(ever.results)[1] == [1, 0, 0, 1, 0, 0, 0]


def test_cumulative_counts_a_return_in_every_earlier_period(store: EventStore) -> None:
    events = [ev(at(4)), ev(at(7))]
    assert counts(run(store, events, retention()).results)[0] == [1, 0, 0, 1, 0, 0, 0]
    assert counts(run(store, events, retention(cumulative=True)).results)[0] == [1, 1, 1, 1, 0, 0, 0]


def test_minimum_occurrences_counts_periods_with_that_many_returning_events(store: EventStore) -> None:
    events = [ev(at(4)), ev(at(5)), ev(at(6, 1)), ev(at(6, 2))]
    assert counts(run(store, events, retention(minimumOccurrences=2)).results)[0] == [1, 0, 1, 0, 0, 0, 0]


def test_the_period_follows_the_time_zone(store: EventStore) -> None:
    # 23:30 UTC on the 5th is the 6th in Berlin: a return on day 1 there, in the start period in UTC.
    events = [ev(at(5, 10)), ev(at(5, 23, 30))]
    assert counts(run(store, events, retention()).results)[1][:2] == [1, 0]
    berlin = run(store, events, retention(), tz="Europe/Berlin")
    assert counts(berlin.results)[1][:2] == [1, 1]
    assert berlin.results[1]["date"] == "2024-01-05T00:00:00+01:00"


def test_weeks_start_on_the_environments_week_start_day(store: EventStore) -> None:
    # Sunday 7 January: with Sunday weeks it starts a new week, with Monday weeks it ends one.
    events = [ev(at(6)), ev(at(7))]
    sunday = run(store, events, retention(period="Week", totalIntervals=2), week_start_day=0)
    monday = run(store, events, retention(period="Week", totalIntervals=2), week_start_day=1)
    assert [c["date"][:10] for c in sunday.results] == ["2023-12-31", "2024-01-07"]
    assert counts(sunday.results) == [[1, 1], [1, 0]]
    assert [c["date"][:10] for c in monday.results] == ["2024-01-01", "2024-01-08"]
    assert counts(monday.results) == [[1, 0], [0, 0]]


def test_hour_and_month_periods(store: EventStore) -> None:
    hours = run(store, [ev(at(10, 12, 5)), ev(at(10, 14, 59))], retention(period="Hour", totalIntervals=4))
    assert [c["label"] for c in hours.results] == ["Hour 0", "Hour 1", "Hour 2", "Hour 3"]
    assert hours.results[0]["date"] == "2024-01-10T12:00:00+00:00"
    assert counts(hours.results)[0] == [1, 0, 1, 0]
    months = run(
        store,
        [ev(at(3, month=1) - dt.timedelta(days=40)), ev(at(9))],
        retention(period="Month", totalIntervals=3),
    )
    assert [c["date"][:10] for c in months.results] == ["2023-11-01", "2023-12-01", "2024-01-01"]
    assert counts(months.results) == [[1, 0, 1], [0, 0, 0], [1, 0, 0]]


def test_a_date_range_sets_the_cohorts_and_its_end_is_exclusive_after_the_last_period(
    store: EventStore,
) -> None:
    events = [ev(at(2)), ev(at(3)), ev(at(4, 0, 0))]
    out = run(
        store,
        events,
        retention(dateRange={"date_from": "2024-01-02", "date_to": "2024-01-03"}, totalIntervals=3),
    )
    assert [c["date"][:10] for c in out.results] == ["2024-01-02", "2024-01-03"]
    # The event at 4 January 00:00 is the window's end: not counted.
    assert counts(out.results) == [[1, 1, 0], [1, 0, 0]]


def test_breakdown_values_rank_by_cohort_size_and_the_rest_go_to_other(store: EventStore) -> None:
    events = [
        ev(at(4), person="p1", browser="Chrome"),
        ev(at(5), person="p1", browser="Chrome"),
        ev(at(4), person="p2", browser="Chrome"),
        ev(at(4), person="p3", browser="Firefox"),
        ev(at(4), person="p4", browser="Safari"),
        ev(at(4), person="p5"),
    ]
    query = retention(totalIntervals=2, dateRange={"date_from": "2024-01-04", "date_to": "2024-01-05"})
    query["breakdownFilter"] = {"breakdown": "browser", "breakdown_limit": 2}
    out = run(store, events, query)
    # Sizes: Chrome 2 + 1 (p1 again on the 5th), the rest 1 each, ties by value ("$" first).
    assert [(c["breakdown_value"], c["date"][:10]) for c in out.results[:2]] == [
        ("Chrome", "2024-01-04"),
        ("Chrome", "2024-01-05"),
    ]
    assert [(c["breakdown_value"], counts([c])[0]) for c in out.results[::2]] == [
        ("Chrome", [2, 1]),
        ("$$_posthog_breakdown_null_$$", [1, 0]),
        ("$$_posthog_breakdown_other_$$", [2, 0]),
    ]
    assert out.has_more
    query["breakdownFilter"]["breakdown_hide_other_aggregation"] = True
    hidden = run(store, events, query)
    assert [c["breakdown_value"] for c in hidden.results[::2]] == ["Chrome", "$$_posthog_breakdown_null_$$"]
    assert hidden.has_more


def test_a_stored_action_is_an_entity(store: EventStore) -> None:
    actions = {
        7: {
            "id": 7,
            "name": "Bought",
            "steps": [
                {"event": "purchase"},
                {"event": "signup", "properties": [{"key": "plan", "value": "pro"}]},
            ],
        }
    }
    events = [
        ev(at(4)),
        ev(at(5), "signup", plan="pro"),
        ev(at(6), "signup", plan="free"),
        ev(at(7), "purchase"),
    ]
    query = retention(returningEntity={"id": 7, "type": "actions", "kind": "ActionsNode"})
    out = run(store, events, query, actions=actions)
    assert counts(out.results)[0] == [1, 1, 0, 1, 0, 0, 0]
    missing = retention(targetEntity={"id": 8, "type": "actions"})
    with pytest.raises(FailedPrecondition) as raised:
        run(store, events, missing, actions=actions)
    assert raised.value.metadata["field"] == "retentionFilter.targetEntity.id"


def test_sampling_scales_the_counts_of_the_persons_it_keeps(store: EventStore) -> None:
    events = [ev(at(4), person=f"p{i}") for i in range(40)] + [
        ev(at(5), person=f"p{i}") for i in range(0, 40, 2)
    ]
    factor = 0.5
    threshold = int(factor * 2**64)
    kept = {
        p
        for p in {e.person_id for e in events}
        if store.query("SELECT cityHash64({d:String}) < {t:UInt64}", {"d": f"d-{p}", "t": threshold})
        == [(1,)]
    }
    assert 0 < len(kept) < 40  # the sample is a real subset (fixed: cityHash64 is deterministic)
    expected = compute_retention(
        [e for e in events if e.person_id in kept], retention(), timezone="UTC", week_start_day=0, now=NOW
    )
    sampled = run(store, events, retention(samplingFactor=factor))
    assert counts(sampled.results) == [[round(c / factor) for c in row] for row in counts(expected.results)]
    assert counts(run(store, events, retention(samplingFactor=1.0)).results)[0][:2] == [40, 20]


def test_retention_of_groups_counts_group_keys_whoever_of_their_members_returns(store: EventStore) -> None:
    """aggregation_group_type_index 0: the actor is the event's `$group_0` key; a group returns
    when any member does; events without the key (or with an empty one) count for nobody."""
    acme, globex, blank = {"$group_0": "acme"}, {"$group_0": "globex"}, {"$group_0": ""}
    events = [
        ev(at(4), person="p1", **acme),
        ev(at(5), person="p2", **acme),  # another member: acme returns on day 1
        ev(at(4), person="p3", **globex),
        ev(at(6), person="p3"),  # no key: globex does not return on day 2
        ev(at(4), person="p4", **blank),  # empty key: no group
    ]
    by_group = counts(run(store, events, retention(aggregation_group_type_index=0)).results)
    assert by_group[0][:3] == [2, 1, 0]
    assert counts(run(store, events, retention()).results)[0][:3] == [3, 0, 1]  # p1, p3, p4; p3 on day 2


LATER = [
    ("retentionFilter.aggregationType", {"aggregationType": "sum", "aggregationProperty": "amount"}),
    ("breakdownFilter.breakdown_type", {"breakdownFilter": {"breakdown": 3, "breakdown_type": "cohort"}}),
    (
        "breakdownFilter.breakdown_path_cleaning",
        {"breakdownFilter": {"breakdown": "$current_url", "breakdown_path_cleaning": True}},
    ),
    ("retentionFilter.targetEntity.kind", {"targetEntity": {"kind": "DataWarehouseNode", "id": "t"}}),
]


@pytest.mark.parametrize(("field", "fields"), LATER, ids=[f for f, _ in LATER])
def test_options_not_built_yet_are_unimplemented_naming_the_field(
    store: EventStore, field: str, fields: dict[str, Any]
) -> None:
    with pytest.raises(Unimplemented) as raised:
        run(store, [ev(at(4))], retention(**fields))
    assert raised.value.metadata["field"] == field and raised.value.message.startswith(field)


INVALID = [
    ("retentionFilter.totalIntervals", {"totalIntervals": -1}),
    ("retentionFilter.totalIntervals", {"totalIntervals": 1001}),
    ("retentionFilter.minimumOccurrences", {"minimumOccurrences": -2}),
    ("retentionFilter.meanRetentionCalculation", {"meanRetentionCalculation": "median"}),
    ("retentionFilter.retentionReference", {"retentionReference": "first"}),
    ("retentionFilter.timeWindowMode", {"timeWindowMode": "rolling"}),
    ("retentionFilter.cumulative", {"timeWindowMode": "24_hour_windows", "cumulative": True}),
    ("retentionFilter.aggregationProperty", {"aggregationProperty": "amount"}),
    ("retentionFilter.targetEntity.kind", {"targetEntity": {"kind": "PersonsNode"}}),
    ("retentionFilter.returningEntity.id", {"returningEntity": {"id": "signup", "type": "actions"}}),
    ("retentionFilter.returningEntity.id", {"returningEntity": {"id": 3, "type": "events"}}),
    (
        "retentionFilter.targetEntity.type",
        {"targetEntity": {"kind": "EventsNode", "type": "actions", "id": 3}},
    ),
    (
        "retentionFilter.targetEntity.properties[0].key",
        {"targetEntity": {"id": "a", "properties": [{"value": "x"}]}},
    ),
    (
        "breakdownFilter.breakdowns",
        {"breakdownFilter": {"breakdowns": [{"property": "a"}, {"property": "b"}]}},
    ),
    ("breakdownFilter.breakdown_limit", {"breakdownFilter": {"breakdown": "a", "breakdown_limit": 1001}}),
    ("samplingFactor", {"samplingFactor": 0}),
    ("dateRange.date_from", {"dateRange": {"date_from": "yesterday-ish"}}),
    ("dateRange", {"totalIntervals": 1000, "dateRange": {"date_from": "-3y"}, "period": "Day"}),
]


@pytest.mark.parametrize(("field", "fields"), INVALID, ids=[f"{i}-{f}" for i, (f, _) in enumerate(INVALID)])
def test_invalid_queries_name_the_field(store: EventStore, field: str, fields: dict[str, Any]) -> None:
    with pytest.raises(QueryError) as raised:
        run(store, [], retention(**fields))
    assert raised.value.path == field


@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v[:16]) for v in HOSTILE])
def test_hostile_names_keys_and_values_are_bound_never_sql_text(store: EventStore, value: str) -> None:
    team_id = next_team_id()
    events = [
        Event(
            uuid=f"00000000-0000-4000-8000-{9000 + n:012d}",
            event=value,
            distinct_id=value,
            person_id="p1",
            timestamp=at(4 + n),
            properties={value: value},
            person_properties={value: value},
        )
        for n in range(2)
    ]
    store.insert_events(event_rows(team_id, events))
    entity = {"id": value, "type": "events", "properties": [{"key": value, "value": value}]}
    query = retention(
        targetEntity=entity,
        returningEntity=entity,
        properties=[{"key": value, "value": [value], "operator": "exact", "type": "person"}],
    )
    query["breakdownFilter"] = {"breakdown": value, "breakdown_type": "event"}
    out = run(store, [], query, team_id=team_id)
    assert [(c["breakdown_value"], counts([c])[0][:2]) for c in out.results[:2]] == [
        (value, [1, 1]),
        (value, [1, 0]),
    ]
    assert_only_placeholders(out.outcome.sql, value)
    assert_events_table_intact(store)
