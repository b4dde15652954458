"""A fixed small dataset for SQL insights in two environments, and a runner call on the real store."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from generated.insights.v1 import query_pb2
from server.queries.base import QueryContext
from server.queries.sql.runner import HogQLRunner, SqlLimits
from storage.events import EventRow, EventStore, PersonRow
from tests.engine.harness import next_team_id

T0 = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def person_uuid(team: int, n: int) -> uuid.UUID:
    return uuid.UUID(int=team * 1000 + n)


def dataset(team: int, marker: str) -> tuple[list[EventRow], list[PersonRow]]:
    """Events and persons of one environment; `marker` tags every row's properties (so a leak is seen)."""
    persons = [
        PersonRow(team, person_uuid(team, n), json.dumps({"email": f"p{n}@{marker}.io", "plan": plan}), T0)
        for n, plan in ((1, "free"), (2, "pro"), (3, "pro"))
    ]
    events: list[EventRow] = []
    site = f"https://{marker}.io"
    day, minute, second = dt.timedelta(days=1), dt.timedelta(minutes=1), dt.timedelta(seconds=1)
    # (event, person, time after T0, $session_id or None, properties). Sessions: s1 one pageview
    # (a bounce), s2 two pageviews 40 s apart, s3 a pageview and an autocapture, s4 a pageview and
    # a custom event 3 s later (a bounce), s5 no pageview, s6 two pageviews at the same instant.
    spec: list[tuple[str, int, dt.timedelta, str | None, dict[str, Any]]] = [
        ("$pageview", 1, 0 * day, "s1", {"$browser": "Chrome", "amount": 5, "$current_url": f"{site}/"}),
        ("$pageview", 1, day + minute, "s2", {"$browser": "Chrome", "$current_url": f"{site}/x"}),
        ("$pageview", 2, day + 2 * minute, "s3", {"$browser": "Firefox", "amount": 2.5, "$current_url": f"{site}/pricing"}),
        ("signup", 2, 2 * day + 3 * minute, None, {"plan": "pro", "amount": 10, "flag": True}),
        ("$pageview", 3, 2 * day + 4 * minute, "s4", {"$browser": "Safari", "nested": {"a": {"b": "deep"}}, "$current_url": f"{site}/blog"}),
        ("purchase", 3, 3 * day + 5 * minute, None, {"amount": 7, "$browser": ""}),
        ("purchase", 1, 4 * day + 6 * minute, None, {"amount": 3, "$browser": None}),
        ("$pageview", 1, day + minute + 40 * second, "s2", {"$browser": "Chrome", "$current_url": f"{site}/pricing"}),
        ("$autocapture", 2, day + 2 * minute + 5 * second, "s3", {"$browser": "Firefox"}),
        ("scroll", 3, 2 * day + 4 * minute + 3 * second, "s4", {"$browser": "Safari"}),
        ("api_call", 2, 3 * day, "s5", {}),
        ("api_call", 2, 3 * day + 20 * second, "s5", {}),
        ("$pageview", 3, 4 * day + 30 * minute, "s6", {"$browser": "Safari", "$current_url": f"{site}/a"}),
        ("$pageview", 3, 4 * day + 30 * minute, "s6", {"$browser": "Safari", "$current_url": f"{site}/b"}),
    ]
    for i, (event, person, after, session, props) in enumerate(spec):
        with_session = {**props, "$session_id": session} if session else props
        events.append(
            EventRow(
                team,
                uuid.UUID(int=team * 100_000 + i),
                event,
                f"d{person}",
                person_uuid(team, person),
                T0 + after,
                # Ingestion keeps persons current from the events' `$set`.
                json.dumps({**with_session, "marker": marker, "$set": json.loads(persons[person - 1].properties)}),
                "{}",
            )
        )
    return events, persons


def two_environments(store: EventStore) -> tuple[int, int, list[EventRow], list[PersonRow]]:
    """Loads the dataset for a caller's environment and another one; (caller, other, caller's rows)."""
    mine, other = next_team_id(), next_team_id()
    for team, marker in ((mine, "mine"), (other, "theirs")):
        events, persons = dataset(team, marker)
        store.insert_events(events)
    events, persons = dataset(mine, "mine")
    return mine, other, events, persons


def context(team: int) -> QueryContext:
    return QueryContext(team_id=team, timezone="UTC", week_start_day=0, now=T0 + dt.timedelta(days=7))


def run(store: EventStore, team: int, sql: str, limits: SqlLimits | None = None) -> Any:
    """The HogQLResult of `sql` for `team`, computed by the runner on the real store."""
    return run_node(store, team, query_pb2.HogQLQuery(query=sql), limits=limits)


def run_node(
    store: EventStore,
    team: int,
    node: query_pb2.HogQLQuery,
    *,
    ctx: QueryContext | None = None,
    limits: SqlLimits | None = None,
) -> Any:
    """The outcome of a whole HogQLQuery (filters, values, variables) for `team` on the real store."""

    def execute(sql: str, params: dict[str, Any], settings: Any = None) -> list[tuple[Any, ...]]:
        return store.query(sql, params, settings=settings)

    return HogQLRunner(limits).compute(node, ctx or context(team), execute)
