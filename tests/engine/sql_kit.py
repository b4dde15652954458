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
    spec = [
        ("$pageview", 1, 0, {"$browser": "Chrome", "amount": 5}),
        ("$pageview", 1, 1, {"$browser": "Chrome", "$current_url": "https://a.io/x"}),
        ("$pageview", 2, 1, {"$browser": "Firefox", "amount": 2.5}),
        ("signup", 2, 2, {"plan": "pro", "amount": 10, "flag": True}),
        ("$pageview", 3, 2, {"$browser": "Safari", "nested": {"a": {"b": "deep"}}}),
        ("purchase", 3, 3, {"amount": 7, "$browser": ""}),
        ("purchase", 1, 4, {"amount": 3, "$browser": None}),
    ]
    for i, (event, person, day, props) in enumerate(spec):
        events.append(
            EventRow(
                team,
                uuid.UUID(int=team * 100_000 + i),
                event,
                f"d{person}",
                person_uuid(team, person),
                T0 + dt.timedelta(days=day, minutes=i),
                # Ingestion keeps persons current from the events' `$set`.
                json.dumps({**props, "marker": marker, "$set": json.loads(persons[person - 1].properties)}),
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
