"""Cohorts a query names: the references to load, and their membership compiled from what was loaded.

A cohort filter or a cohort breakdown becomes `person_id GLOBAL IN (<membership>)`, the membership
computed as of the query's `now` (docs/decisions.md, "Cohorts in queries"), with the actions its
behavioural criteria count compiled by server/queries/common/actions.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from generated.insights.v1 import query_pb2
from server.queries.base import DefinitionUnavailable, QueryContext, Reference
from server.queries.common.actions import action_sql
from server.queries.common.cohorts import ActionSql, CohortUnavailable, membership_sql
from server.queries.common.errors import QueryError
from server.queries.common.properties import cohort_id_of
from server.queries.common.sql import Params

_COHORT = query_pb2.PropertyFilterType.PROPERTY_FILTER_TYPE_COHORT


class CohortCompiler:
    """Compiles the membership of the cohorts a query names, from `ctx.definitions` (a CohortSql).

    A cohort that was not loaded or is deleted, or whose stored definition no longer compiles (a
    nested cohort gone, a bound lowered since it was saved), is COHORT_UNAVAILABLE naming the
    query's field; an action it counts that is gone, ACTION_UNAVAILABLE (DefinitionUnavailable,
    whose path the execution layer prefixes). Those are kept rather than raised, and
    `raise_unavailable` raises the first once the whole query is compiled, so that an invalid query
    is INVALID_ARGUMENT whatever cohorts it names.
    """

    def __init__(self, ctx: QueryContext):
        self.ctx = ctx
        self.unavailable: list[DefinitionUnavailable] = []

    def __call__(self, params: Params, cohort_id: int, path: str) -> str:
        try:
            return self._membership(params, cohort_id, path)
        except DefinitionUnavailable as exc:
            self.unavailable.append(exc)
            return "SELECT toUUID(NULL) AS person_id WHERE 0"  # never runs: raise_unavailable comes first

    def raise_unavailable(self) -> None:
        """Raises the first cohort (or action) found unavailable, if any."""
        if self.unavailable:
            raise self.unavailable[0]

    def _membership(self, params: Params, cohort_id: int, path: str) -> str:
        ctx = self.ctx
        cohort = ctx.definitions.cohorts.get(cohort_id)
        if cohort is None or cohort.deleted:
            raise DefinitionUnavailable("cohort", cohort_id, path)
        try:
            return membership_sql(
                params,
                cohort,
                team_id=ctx.team_id,
                timezone=ctx.timezone,
                now=ctx.now,
                resolve=ctx.definitions.cohorts.get,
                action_sql=self._actions(cohort_id, path),
                path="filters.properties",
            )
        except QueryError as exc:
            # The stored definition is at fault, not the query: fixing the cohort fixes the query.
            message = f"cohort {cohort_id} cannot be computed: {exc.path}: {exc.message}"
            raise DefinitionUnavailable("cohort", cohort_id, path, message=message) from None
        except CohortUnavailable as exc:
            # A cohort it refers to is gone: that one named in metadata, the query's field kept.
            message = f"cohort {cohort_id} cannot be computed: {exc.message}"
            raise DefinitionUnavailable("cohort", exc.cohort_id, path, message=message) from None

    def _actions(self, cohort_id: int, path: str) -> ActionSql:
        actions, timezone = self.ctx.definitions.actions, self.ctx.timezone

        def compile_action(action_id: int, params: Params) -> str:
            action = actions.get(action_id)
            problem = "does not exist or is deleted"
            if action is not None:
                try:
                    return action_sql(params, action, timezone)
                except QueryError as exc:
                    problem = f"cannot be computed: {exc.path}: {exc.message}"
            raise DefinitionUnavailable(
                "action",
                action_id,
                path,
                message=f"cohort {cohort_id} counts action {action_id}, which {problem}",
                metadata={"cohort": str(cohort_id)},
            )

        return compile_action


def filter_references(filters: Iterable[query_pb2.PropertyFilter], path: str) -> list[Reference]:
    """The cohorts a repeated PropertyFilter field names (item i at `path[i].value`)."""
    return [r for i, f in enumerate(filters) if (r := _reference(f, f"{path}[{i}]")) is not None]


def properties_references(props: query_pb2.Properties, path: str) -> list[Reference]:
    """The cohorts a `Properties` message names, with the paths properties_sql reports."""
    kind = props.WhichOneof("kind")
    if kind == "list":
        return filter_references(props.list.values, path)
    if kind == "group":
        found: list[Reference] = []
        for i, value in enumerate(props.group.values):
            found += _group_references(value, f"{path}.values[{i}]")
        return found
    return []


def _group_references(group: query_pb2.PropertyGroupFilterValue, path: str) -> list[Reference]:
    found: list[Reference] = []
    for i, item in enumerate(group.values):
        which = item.WhichOneof("item")
        if which == "filter" and (ref := _reference(item.filter, f"{path}.values[{i}]")) is not None:
            found.append(ref)
        elif which == "group":
            found += _group_references(item.group, f"{path}.values[{i}]")
    return found


def _reference(f: query_pb2.PropertyFilter, path: str) -> Reference | None:
    """The cohort one filter names; None for another filter, or a malformed cohort filter (the
    compiler refuses it, naming its field)."""
    if f.type != _COHORT:
        return None
    try:
        return Reference("cohort", cohort_id_of(f, path), f"{path}.value")
    except QueryError:
        return None
