"""The reference's stickiness rules (query-engine-semantics §6), through the SQL engine on chDB, against
hand-worked values (none comes from the oracle); refusals name the field; hostile values stay bound."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from generated.insights.v1 import query_pb2, results_pb2
from server.errors import FailedPrecondition
from server.queries.base import ActionDefinition, Definitions
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition
from server.queries.common.errors import QueryError
from server.queries.stickiness.runner import StickinessRunner
from storage.cohort_members import CohortMembers
from storage.events import EventStore
from tests.engine.harness import event_rows, next_team_id, person_uuid
from tests.engine.stickiness_harness import StickinessRun, run_stickiness_engine
from tests.oracle import Event

# Wednesday 10 January 2024, 15:00 UTC: the default range is 3 … 10 January (8 days).
NOW = dt.datetime(2024, 1, 10, 15, 0, tzinfo=dt.UTC)
HOSTILE = "x'); DROP TABLE events; --"
_ids = itertools.count(1)


def at(day: int, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, day, hour, minute, tzinfo=dt.UTC)


def ev(when: dt.datetime, event: str = "$pageview", person: str = "p1", **props: Any) -> Event:
    n = next(_ids)
    return Event(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        event=event,
        distinct_id=f"d-{person}",
        person_id=person,
        timestamp=when,
        properties=props,
    )


def sticky(**fields: Any) -> dict[str, Any]:
    return {"kind": "StickinessQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}], **fields}


def run(store: EventStore, events: list[Event], query: dict[str, Any], **kwargs: Any) -> StickinessRun:
    options: dict[str, Any] = {"timezone": "UTC", "week_start_day": 0, "now": NOW} | kwargs
    return run_stickiness_engine(store, events, query, **options)


def data(result: StickinessRun, series: int = 0) -> list[float]:
    return list(result.results[series]["data"])


def test_data_holds_one_value_per_interval_count_zero_filled(store: EventStore) -> None:
    events = [ev(at(3)), ev(at(5)), ev(at(10)), ev(at(4), person="p2"), ev(at(2), person="p3")]
    got = run(store, events, sticky())
    # 8 days (3 … 10 January); p1 on 3 of them, p2 on 1; p3 before the range is not counted.
    assert data(got) == [1, 0, 1, 0, 0, 0, 0, 0]
    assert got.results[0]["days"] == list(range(1, 9)) and got.results[0]["count"] == 2
    assert got.results[0]["labels"][:3] == ["1 day", "2 days", "3 days"]


def test_cumulative_counts_actors_active_at_least_n_intervals(store: EventStore) -> None:
    events = [ev(at(3)), ev(at(5)), ev(at(10)), ev(at(4), person="p2")]
    got = run(store, events, sticky(stickinessFilter={"computedAs": "cumulative"}))
    assert data(got)[:4] == [2, 1, 1, 0] and got.results[0]["count"] == 2
    assert got.results[0]["labels"][0] == "1 day or more"


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [("gte", 2, [1, 1]), ("lte", 1, [1, 0]), ("exact", 2, [2, 0])],
)
def test_criteria_count_the_events_of_a_period(
    store: EventStore, operator: str, value: int, expected: list[int]
) -> None:
    # p1: 3 events on the 4th, 2 on the 6th; p2: 1 event on the 5th and 2 on the 8th.
    events = [ev(at(4, h)) for h in (1, 2, 3)] + [ev(at(6, h)) for h in (1, 2)]
    events += [ev(at(5), person="p2"), ev(at(8, 1), person="p2"), ev(at(8, 2), person="p2")]
    criteria = {"stickinessCriteria": {"operator": operator, "value": value}}
    got = run(store, events, sticky(stickinessFilter=criteria))
    # gte 2: p1 both days, p2 the 8th only. lte 1: p2 the 5th only. exact 2: p1 the 6th, p2 the 8th.
    assert data(got)[:2] == expected


def test_interval_count_groups_buckets_back_from_the_last_one(store: EventStore) -> None:
    # 5 days (1 … 5 January) in periods of 2 days counted back from the 5th: {4,5}, {2,3}, {1}.
    query = sticky(intervalCount=2, dateRange={"date_from": "2024-01-01", "date_to": "2024-01-05"})
    got = run(store, [ev(at(2)), ev(at(3)), ev(at(1), person="p2"), ev(at(3), person="p2")], query)
    assert data(got) == [1, 1, 0]
    assert got.results[0]["labels"] == ["1 period of 2 days", "2 periods of 2 days", "3 periods of 2 days"]


def test_compare_interleaves_each_series_current_then_previous(store: EventStore) -> None:
    # 8 … 10 January against 5 … 7 January: p1 on the 5th, 6th and 9th; p2 signs up on the 6th.
    events = [ev(at(5)), ev(at(6)), ev(at(9)), ev(at(6), event="signup", person="p2")]
    query = sticky(
        series=[{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}],
        dateRange={"date_from": "2024-01-08", "date_to": "2024-01-10"},
        compareFilter={"compare": True},
    )
    got = run(store, events, query)
    shown = [(r["label"], r["compare_label"], r["data"]) for r in got.results]
    assert shown == [
        ("$pageview", "current", [1, 0, 0]),
        ("$pageview", "previous", [0, 1, 0]),
        ("signup", "current", [0, 0, 0]),
        ("signup", "previous", [1, 0, 0]),
    ]
    # date_from "all" disables compare, as the reference.
    alltime = run(store, events, sticky(dateRange={"date_from": "all"}, compareFilter={"compare": True}))
    assert [r.get("compare_label") for r in alltime.results] == [None]


def test_week_start_and_time_zone_decide_the_period(store: EventStore) -> None:
    # Sunday 7 January and Monday 8 January: one week when weeks start on Sunday, two on Monday.
    events = [ev(at(7)), ev(at(8))]
    week = sticky(interval="week", dateRange={"date_from": "2023-12-31", "date_to": "2024-01-13"})
    assert data(run(store, events, week, week_start_day=0))[:2] == [1, 0]
    assert data(run(store, events, week, week_start_day=1))[:2] == [0, 1]
    # 23:30 and 00:30 UTC: two days in UTC, one evening in New York.
    late = [ev(at(5, 23, 30)), ev(at(6, 0, 30))]
    assert data(run(store, late, sticky()))[:2] == [0, 1]
    assert data(run(store, late, sticky(), timezone="America/New_York"))[:2] == [1, 0]


def test_hour_and_month_intervals_name_their_unit(store: EventStore) -> None:
    hourly = run(store, [ev(at(10, 12)), ev(at(10, 14))], sticky(interval="hour", dateRange={"date_from": "-5h"}))
    assert data(hourly)[:2] == [0, 1] and hourly.results[0]["labels"][1] == "2 hours"
    monthly = run(store, [ev(at(10))], sticky(interval="month", dateRange={"date_from": "-2m"}))
    assert data(monthly) == [1, 0, 0] and monthly.results[0]["labels"] == ["1 month", "2 months", "3 months"]


def test_sampling_scales_the_counts_back(store: EventStore) -> None:
    events = [ev(at(5), person=f"p{i}") for i in range(200)]
    got = run(store, events, sticky(samplingFactor=0.5))
    first = data(got)[0]
    # Persons kept by the sample (a fixed hash of distinct_id: not all of them), each counted twice.
    assert first % 2 == 0 and 100 <= first <= 300 and first != 200
    assert got.results[0]["count"] == first
    assert "cityHash64(distinct_id)" in got.outcome.sql


def test_hostile_values_are_bound_never_sql_text(store: EventStore) -> None:
    events = [ev(at(5), event=HOSTILE, **{HOSTILE: HOSTILE}), ev(at(6), event=HOSTILE, person="p2")]
    query = sticky(
        series=[
            {
                "kind": "EventsNode",
                "event": HOSTILE,
                "custom_name": HOSTILE,
                "properties": [{"key": HOSTILE, "value": HOSTILE, "operator": "exact"}],
            }
        ],
        properties=[{"key": HOSTILE, "operator": "is_set"}],
    )
    got = run(store, events, query)
    assert data(got)[:2] == [1, 0] and got.results[0]["label"] == HOSTILE
    assert HOSTILE not in got.outcome.sql and "DROP" not in got.outcome.sql


def test_a_cohort_filter_keeps_its_members_and_a_missing_cohort_is_named(store: EventStore) -> None:
    CohortMembers(store).ensure_schema()
    team_id = next_team_id()
    store.insert_events(event_rows(team_id, [ev(at(5)), ev(at(6)), ev(at(5), person="p2")]))
    CohortMembers(store).add(team_id, 5, [person_uuid("p1")], NOW)
    cohorts = {5: CohortDefinition(5, "Loyal", 1, True)}
    query = sticky(properties=[{"type": "cohort", "key": "id", "value": 5}])
    got = run(store, [], query, team_id=team_id, cohorts=cohorts)
    # p1 (a member) on 2 days; p2 is not in the cohort.
    assert data(got)[:2] == [0, 1]
    with pytest.raises(FailedPrecondition) as caught:
        run(store, [], query, team_id=team_id)
    assert caught.value.metadata["field"] == "properties[0].value" and caught.value.metadata["cohort"] == "5"


def test_a_missing_action_is_a_failed_precondition_naming_the_series(store: EventStore) -> None:
    query = sticky(series=[{"kind": "EventsNode", "event": "$pageview"}, {"kind": "ActionsNode", "id": 99}])
    with pytest.raises(FailedPrecondition) as caught:
        run(store, [ev(at(5))], query)
    assert caught.value.metadata["field"] == "series[1].id"


def test_invalid_values_name_their_field(store: EventStore) -> None:
    for query, field in [
        (sticky(series=[]), "series"),
        (sticky(intervalCount=-1), "intervalCount"),
        (sticky(stickinessFilter={"stickinessCriteria": {"operator": "gt"}}), "stickinessFilter.stickinessCriteria.operator"),
    ]:
        with pytest.raises(QueryError) as caught:
            run(store, [], query)
        assert caught.value.path == field


def test_a_custom_name_is_relabelled_on_a_cached_result() -> None:
    # custom_name is not part of the cache key: a result computed under another name is relabelled.
    runner = StickinessRunner()
    node = from_reference_json(
        sticky(series=[{"kind": "ActionsNode", "id": 7, "custom_name": "Mine"}, {"kind": "EventsNode"}]),
        query_pb2.StickinessQuery,
    )
    result = results_pb2.InsightResult(
        stickiness=results_pb2.StickinessResult(
            series=[
                results_pb2.StickinessSeries(label="Old", action=results_pb2.SeriesAction(order=0, custom_name="Old")),
                results_pb2.StickinessSeries(label="Old", action=results_pb2.SeriesAction(order=1, custom_name="Old")),
            ]
        )
    )
    runner.relabel(result, node, Definitions(actions={7: ActionDefinition(7, "Signed up", 1)}))
    first, second = result.stickiness.series
    assert first.label == "Mine" and first.action.custom_name == "Mine"
    assert second.label == "All events" and not second.action.HasField("custom_name")
