"""Stores an example's persons, events and cohorts for a fresh environment, as the engine reads them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

from generated.insights.v1 import cohorts_pb2
from server.queries.common.codec import from_reference_json
from server.queries.common.cohorts import CohortDefinition
from storage.cohort_members import CohortMembers
from storage.events import EventStore, PersonRow
from tests.engine.harness import event_rows, next_team_id, person_uuid
from tests.oracle import Event
from tests.oracle.cohorts import OracleCohort, Person


def store_cohort_example(
    store: EventStore,
    now: dt.datetime,
    events: Sequence[Event],
    persons: Sequence[Person],
    cohorts: Sequence[OracleCohort],
) -> tuple[int, dict[int, CohortDefinition]]:
    """Stores `persons` rows, `events` and the static cohorts' members for a fresh environment;
    returns its id and its cohorts as the execution layer hands them to a runner (deleted ones
    marked so)."""
    team_id = next_team_id()
    store.insert_persons(
        PersonRow(team_id, person_uuid(p.id), json.dumps(p.properties), now - dt.timedelta(days=50))
        for p in persons
    )
    if events:
        store.insert_events(event_rows(team_id, events))
    definitions: dict[int, CohortDefinition] = {}
    for c in cohorts:
        if c.is_static:
            CohortMembers(store).add(team_id, c.id, [person_uuid(p) for p in sorted(c.members)], now)
            definitions[c.id] = CohortDefinition(c.id, c.name, 1, True, deleted=c.deleted)
        else:
            filters = from_reference_json(c.filters, cohorts_pb2.CohortFilters)
            definitions[c.id] = CohortDefinition(c.id, c.name, 1, False, filters, deleted=c.deleted)
    return team_id, definitions
