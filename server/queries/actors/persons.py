"""The persons behind actor ids: their distinct ids, properties and creation time, from the event store."""

from __future__ import annotations

import datetime as dt

from generated.insights.v1 import results_pb2
from server.queries.base import Execute
from server.queries.common.sql import Params

# As ListCohortPersons: a person with many devices is shown with a bounded list.
DISTINCT_IDS_SHOWN = 100


def person_actors(execute: Execute, team_id: int, ids: list[str]) -> list[results_pb2.Actor]:
    """One Actor per id (person UUIDs as text), in the order given; a person without a row in
    `persons` yet has properties "{}" and no creation time."""
    if not ids:
        return []
    params = Params()
    team = params.bind(team_id, "Int64")
    wanted = params.bind(ids, "Array(UUID)")
    # The highest version of each person (merges may not have collapsed the rows yet).
    rows = execute(
        "SELECT toString(id), argMax(properties, version), argMax(created_at, version) FROM persons "
        f"WHERE team_id = {team} AND has({wanted}, id) GROUP BY id",
        params.values,
    )
    persons = {str(pid): (str(properties or "{}"), created) for pid, properties, created in rows}
    distinct = {
        str(pid): sorted(str(d) for d in found)
        for pid, found in execute(
            f"SELECT toString(person_id), groupUniqArray({DISTINCT_IDS_SHOWN})(distinct_id) FROM events "
            f"WHERE team_id = {team} AND has({wanted}, person_id) GROUP BY person_id",
            params.values,
        )
    }
    out = []
    for pid in ids:
        properties, created = persons.get(pid, ("{}", None))
        actor = results_pb2.Actor(id=pid, distinct_ids=distinct.get(pid, []), properties=properties)
        if isinstance(created, dt.datetime):
            actor.created_at.FromDatetime(created if created.tzinfo else created.replace(tzinfo=dt.UTC))
        out.append(actor)
    return out
