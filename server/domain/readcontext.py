"""What a read of an insight computes: its saved query under the dashboard's filters and the caller's overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from generated.insights.v1 import insight_pb2, query_pb2
from server.errors import Unimplemented
from server.queries import overrides


@dataclass(frozen=True)
class ReadContext:
    """Filter layers applied in order over the saved query (later layers win: dashboard < override).

    The effective query is what is computed and what keys the result cache, so a read with
    overrides never answers from, nor overwrites, the saved query's cached result. The insight
    itself is shown as saved.
    """

    layers: tuple[tuple[insight_pb2.DashboardFilter, str], ...] = ()

    def query(self, saved: query_pb2.QueryNode | None) -> query_pb2.QueryNode | None:
        for filters, field in self.layers:
            saved = overrides.apply(saved, filters, field)
        return saved


# A read of the insight as saved.
SAVED = ReadContext()


def checked(
    filters_override: insight_pb2.DashboardFilter | None, variables_override: Mapping[str, Any]
) -> ReadContext:
    """The caller's layers, refused (INVALID_ARGUMENT naming the field) before anything is read."""
    if variables_override:
        # SQL insights compute, but their variables are not built yet: refused, never ignored.
        raise Unimplemented(
            "variables_override: the variables of SQL insights are not implemented yet",
            reason="SQL_FEATURE_NOT_IMPLEMENTED",
            metadata={"field": "variables_override"},
        )
    if filters_override is None or overrides.is_empty(filters_override):
        return SAVED
    overrides.check(filters_override, "filters_override")
    return ReadContext(((filters_override, "filters_override"),))
