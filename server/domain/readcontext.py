"""What a read of an insight computes: its saved query under the dashboard's filters and the caller's overrides."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from generated.insights.v1 import insight_pb2, query_pb2
from server.errors import InvalidArgument
from server.queries import overrides, variable_overrides
from server.queries.common.codec import CodecError, from_reference_json


@dataclass(frozen=True)
class ReadContext:
    """Filter layers applied in order over the saved query (later layers win: dashboard < override).

    The effective query is what is computed and what keys the result cache, so a read with
    overrides never answers from, nor overwrites, the saved query's cached result. The insight
    itself is shown as saved.
    """

    layers: tuple[tuple[insight_pb2.DashboardFilter, str], ...] = ()
    # A SQL insight's variable values for this read (`variables_override`), by variable id.
    variables: tuple[tuple[str, query_pb2.HogQLVariable], ...] = ()

    def query(self, saved: query_pb2.QueryNode | None) -> query_pb2.QueryNode | None:
        for filters, field in self.layers:
            saved = overrides.apply(saved, filters, field)
        return variable_overrides.apply(saved, dict(self.variables), "variables_override")


# A read of the insight as saved.
SAVED = ReadContext()


def checked(
    filters_override: insight_pb2.DashboardFilter | None,
    variables_override: Mapping[str, query_pb2.HogQLVariable],
) -> ReadContext:
    """The caller's layers, refused (INVALID_ARGUMENT naming the field) before anything is read;
    whether the insight has the overridden variables is checked on the saved query."""
    variable_overrides.check(variables_override, "variables_override")
    variables = tuple(sorted(variables_override.items()))
    if filters_override is None or overrides.is_empty(filters_override):
        return ReadContext(variables=variables) if variables else SAVED
    overrides.check(filters_override, "filters_override")
    return ReadContext(((filters_override, "filters_override"),), variables)


def in_dashboard(
    read: ReadContext,
    filters: insight_pb2.DashboardFilter,
    tile_filters: insight_pb2.DashboardFilter | None = None,
) -> ReadContext:
    """`read` under a dashboard's stored filters and then its tile's (the first layers, in that
    order: the tile's win over the dashboard's, the caller's override over both). Empty filters
    add no layer, so the query and its cache key stay as saved."""
    layers = [(filters, "from_dashboard.filters"), (tile_filters, "from_dashboard.tile.filters")]
    added = tuple((f, name) for f, name in layers if f is not None and not overrides.is_empty(f))
    if not added:
        return read
    return ReadContext((*added, *read.layers), read.variables)


# The reference's dashboard-filter keys (snake case) to the message's JSON names.
_FILTER_KEYS = {f.name: f.json_name for f in insight_pb2.DashboardFilter.DESCRIPTOR.fields}


def filters_from_json(text: str, field: str) -> insight_pb2.DashboardFilter | None:
    """A filters override given as JSON text (the reference's query-parameter form: `date_from`,
    `date_to`, `properties`, `breakdown_filter`; the parts in the reference's query JSON); None for
    blank text. INVALID_ARGUMENT naming `field` with the reference's message otherwise."""
    if not text.strip():
        return None
    message = f"Invalid JSON passed in {field} parameter"
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidArgument(message, field=field) from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{message}: expected an object", field=field)
    try:
        return from_reference_json(
            {_FILTER_KEYS.get(k, k): v for k, v in value.items()}, insight_pb2.DashboardFilter
        )
    except CodecError as exc:
        raise InvalidArgument(f"{message}: {exc}", field=field) from None
