"""Cohort breakdowns (breakdown_type "cohort"), shared by the kinds that take them: the cohorts a
breakdown lists, the references to load, and how a cohort is shown.

`breakdown` is a cohort id, "all" (or 0: all users) or a list of them (query-engine-semantics
§3.6, §4.4); each listed cohort keeps its field path, so that a missing or deleted one is
FAILED_PRECONDITION naming it.
"""

from __future__ import annotations

from collections.abc import Mapping

from generated.insights.v1 import query_pb2
from server.queries.base import Reference
from server.queries.common.cohorts import CohortDefinition
from server.queries.common.errors import QueryError

# Cohorts one cohort breakdown lists at most: each is computed over its own members (a branch of
# the statement, or a copy of each member's events).
MAX_BREAKDOWN_COHORTS = 20
# What a cohort breakdown's id 0 ("all") is called, as the reference.
ALL_USERS = "all users"

# (cohort id, the field that names it); id 0 is all users.
ListedCohorts = tuple[tuple[int, str], ...]


def is_cohort_breakdown(bf: query_pb2.BreakdownFilter) -> bool:
    """Whether `bf` breaks down by cohorts (a `breakdowns` list is by properties whatever the type)."""
    return bf.breakdown_type == query_pb2.BREAKDOWN_TYPE_COHORT and not bf.breakdowns


def listed_cohorts(key: query_pb2.BreakdownKey, path: str) -> ListedCohorts:
    """The cohorts of a cohort breakdown (`breakdown`: an id, "all", or a list of them), each with
    the field that names it; QueryError for an empty, too long or repeating list or a value that
    is no cohort id."""
    if key.WhichOneof("kind") == "list_value":
        given: list[tuple[query_pb2.Scalar | query_pb2.BreakdownKey, str]] = [
            (value, f"{path}[{i}]") for i, value in enumerate(key.list_value.values)
        ]
    else:
        given = [(key, path)]
    if not given:
        raise QueryError("a cohort breakdown lists at least one cohort id", path)
    if len(given) > MAX_BREAKDOWN_COHORTS:
        raise QueryError(f"a cohort breakdown lists at most {MAX_BREAKDOWN_COHORTS} cohorts", path)
    cohorts: list[tuple[int, str]] = []
    for value, item_path in given:
        cohort_id = _cohort_of(value, item_path)
        if any(cohort_id == seen for seen, _ in cohorts):
            raise QueryError(f"cohort {cohort_id} is listed twice", item_path)
        cohorts.append((cohort_id, item_path))
    return tuple(cohorts)


def _cohort_of(value: query_pb2.Scalar | query_pb2.BreakdownKey, path: str) -> int:
    kind = value.WhichOneof("kind")
    if kind == "int_value" and value.int_value >= 0:
        return int(value.int_value)
    if kind == "string_value":
        text = value.string_value.strip()
        if text == "all":
            return 0
        if text.isascii() and text.isdigit() and len(text) <= 18:
            return int(text)
    raise QueryError('a cohort breakdown value is a cohort id (0 or "all": all users)', path)


def breakdown_references(bf: query_pb2.BreakdownFilter) -> list[Reference]:
    """The cohorts a cohort breakdown lists (all users, id 0, is none); a malformed one names none
    (the check refuses it, naming its field)."""
    if not is_cohort_breakdown(bf):
        return []
    try:
        cohorts = listed_cohorts(bf.breakdown, "breakdownFilter.breakdown")
    except QueryError:
        return []
    return [Reference("cohort", cohort_id, path) for cohort_id, path in cohorts if cohort_id != 0]


def cohort_name(cohort_id: int, cohorts: Mapping[int, CohortDefinition]) -> str:
    """A breakdown cohort as results show it: its name, "all users" for id 0 (its id as text if it
    was not loaded, which a computed query never meets: a missing cohort is refused first)."""
    if cohort_id == 0:
        return ALL_USERS
    cohort = cohorts.get(cohort_id)
    return cohort.name if cohort is not None else str(cohort_id)
