"""Checks every query kind makes of its node alike: the contract, series nodes, breakdown limit, sampling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message

from generated.insights.v1 import query_pb2
from server.errors import Unimplemented
from server.queries.common.checks import problems
from server.queries.common.errors import QueryError

M = query_pb2

# The engine's name of each interval a query may ask for ("second" is refused by each kind).
INTERVAL_NAMES = {
    M.INTERVAL_TYPE_UNSPECIFIED: "day",
    M.INTERVAL_TYPE_MINUTE: "minute",
    M.INTERVAL_TYPE_HOUR: "hour",
    M.INTERVAL_TYPE_DAY: "day",
    M.INTERVAL_TYPE_WEEK: "week",
    M.INTERVAL_TYPE_MONTH: "month",
}


def check_contract(query: Message) -> None:
    """Raises QueryError for the first field of `query` holding what the contract does not define."""
    for path, problem in problems(query):
        # Undefined enum numbers (refused at the API's edge too) must never reach a kind's lookups.
        raise QueryError(problem, path)


def node_kind(node: Message, path: str, what: str = "series") -> str:
    """The member set in a node's `node` oneof; QueryError ("empty <what> node") at `path` when none is."""
    kind: str | None = node.WhichOneof("node")
    if kind is None:
        raise QueryError(f"empty {what} node", path)
    return kind


def check_breakdown_limit(query: Any, maximum: int) -> None:
    """Raises QueryError unless breakdownFilter.breakdown_limit is 0 (the default) up to `maximum`."""
    limit = query.breakdown_filter.breakdown_limit
    if not 0 <= limit <= maximum:
        # 0 (or unset) means the default of 25, as in the reference.
        raise QueryError(
            f"breakdown_limit must be between 1 and {maximum} (got {limit})",
            "breakdownFilter.breakdown_limit",
        )


def check_sampling_factor(query: Any) -> None:
    """Raises QueryError when the query sets a samplingFactor outside (0, 1]."""
    if query.HasField("sampling_factor") and not 0 < query.sampling_factor <= 1:
        raise QueryError("samplingFactor must be in (0, 1]", "samplingFactor")


def refuse_later(query: Message, later: Sequence[tuple[str, str]], kind: str, reason: str) -> None:
    """Raises Unimplemented naming the first option of `query` the kind does not compute yet: an
    engine modifier it carries, else the first of `later` ((field path, what it is)), so a query
    that may be saved is never computed without them."""
    later = [*_modifiers(query), *later]
    if later:
        path, what = later[0]
        raise Unimplemented(
            f"{path}: {what} {'are' if what.endswith('s') else 'is'} not implemented yet",
            reason=reason,
            metadata={"field": path, "kind": kind},
        )


def _modifiers(query: Message) -> list[tuple[str, str]]:
    """The engine modifiers (HogQLQueryModifiers) `query` sets: they tell the reference's SQL
    translator how to read persons, cohorts or sessions, which this engine does its own one way, so
    each set one is refused rather than ignored (an empty `modifiers` object is fine)."""
    modifiers = next((value for field, value in query.ListFields() if field.name == "modifiers"), None)
    if modifiers is None:
        return []
    return [
        (f"modifiers.{field.json_name}", "engine modifiers (the engine reads persons, cohorts and sessions one way)")
        for field, value in modifiers.ListFields()
        # Times in the environment's time zone is what every kind does: asking for it is no option.
        if not (field.name == "convert_to_project_timezone" and value is True)
    ]
