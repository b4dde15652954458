"""Loads the stored definitions (actions, cohorts) a query names, for the execution layer."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.domain.actions import parse_steps
from server.domain.cohorts import definition_of
from server.queries.base import ActionDefinition, Definitions, DefinitionUnavailable, Reference
from server.queries.common.cohorts import CohortDefinition, referenced_cohorts
from storage.db import Database
from storage.models import Action, Cohort


class DefinitionLoader:
    """Reads a query's definitions in one transaction: the named ones must be live; the ones they
    refer to are loaded as they are (deleted included), and the compiler refuses what it cannot use."""

    def __init__(self, db: Database):
        self.db = db

    def __call__(self, environment_id: int, references: Sequence[Reference]) -> Definitions:
        actions: dict[int, ActionDefinition] = {}
        cohorts: dict[int, CohortDefinition] = {}
        with self.db.session() as session:
            pending: list[tuple[str, int]] = []
            for ref in references:
                if ref.kind == "action":
                    found = _action(session, environment_id, ref.id)
                    if found is None or found[1]:
                        raise DefinitionUnavailable("action", ref.id, ref.path)
                    actions[ref.id] = found[0]
                elif ref.kind == "cohort":
                    cohort = _cohort(session, environment_id, ref.id)
                    if cohort is None or cohort.deleted:
                        raise DefinitionUnavailable("cohort", ref.id, ref.path)
                    cohorts[ref.id] = cohort
                    pending += _refers_to(cohort)
            # Each definition is read once, so a cycle of cohorts ends the walk (the compiler names it).
            while pending:
                kind, item = pending.pop()
                if kind == "cohort" and item not in cohorts:
                    nested = _cohort(session, environment_id, item)
                    if nested is not None:
                        cohorts[item] = nested
                        pending += _refers_to(nested)
                elif kind == "action" and item not in actions:
                    found = _action(session, environment_id, item)
                    if found is not None and not found[1]:
                        actions[item] = found[0]
        return Definitions(actions=actions, cohorts=cohorts)


def _action(session: Session, environment_id: int, action_id: int) -> tuple[ActionDefinition, bool] | None:
    row = session.scalars(
        select(Action).where(Action.environment_id == environment_id, Action.id == action_id)
    ).first()
    if row is None:
        return None
    return ActionDefinition(row.id, row.name, row.version, parse_steps(row.steps)), row.deleted


def _cohort(session: Session, environment_id: int, cohort_id: int) -> CohortDefinition | None:
    row = session.scalars(
        select(Cohort).where(Cohort.environment_id == environment_id, Cohort.id == cohort_id)
    ).first()
    return definition_of(row) if row is not None else None


def _refers_to(cohort: CohortDefinition) -> list[tuple[str, int]]:
    """The cohorts and actions a cohort's criteria name."""
    found = [("cohort", cohort_id) for _, cohort_id in referenced_cohorts(cohort.filters)]
    for group in cohort.filters.properties.values:
        for item in group.values:
            if item.WhichOneof("kind") == "behavioral" and item.behavioral.WhichOneof("target") == "action_id":
                found.append(("action", item.behavioral.action_id))
    return found
