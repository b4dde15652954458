"""Dashboard-shaped filters (a dashboard's, or a read's `filters_override`) applied over a saved query."""

from __future__ import annotations

from collections.abc import Sequence

from generated.insights.v1 import insight_pb2, query_pb2
from server import utc
from server.errors import InvalidArgument
from server.queries.common.dates import resolve_date_range
from server.queries.common.errors import QueryError
from server.queries.common.properties import filters_sql
from server.queries.common.sql import Params
from server.queries.registry import source_of

_AND = query_pb2.FilterLogicalOperator.FILTER_LOGICAL_OPERATOR_AND
_OR = query_pb2.FilterLogicalOperator.FILTER_LOGICAL_OPERATOR_OR


def is_empty(filters: insight_pb2.DashboardFilter) -> bool:
    """True when applying `filters` changes nothing (the query and its cache key stay as saved)."""
    return filters.ByteSize() == 0


def check(filters: insight_pb2.DashboardFilter, field: str) -> None:
    """INVALID_ARGUMENT naming the part of `filters` (at `field`) no query could use; runs nothing."""
    if filters.HasField("date_from") or filters.HasField("date_to"):
        try:
            resolve_date_range(
                filters.date_from if filters.HasField("date_from") else None,
                filters.date_to if filters.HasField("date_to") else None,
                explicit_date=False,
                interval="day",
                timezone="UTC",
                week_start_day=0,
                now=utc.now(),
            )
        except QueryError as exc:
            # The range's own path ("dateRange.date_from") maps onto the override's field.
            raise InvalidArgument(exc.message, field=f"{field}.{exc.path.rpartition('.')[2]}") from None
    try:
        filters_sql(Params("o"), filters.properties, f"{field}.properties", "UTC")
    except QueryError as exc:
        raise InvalidArgument(exc.message, field=exc.path) from None


def apply(
    query: query_pb2.QueryNode | None, filters: insight_pb2.DashboardFilter, field: str
) -> query_pb2.QueryNode | None:
    """A copy of `query` with `filters` applied as the reference merges dashboard filters.

    A date bound replaces the query's whole range (both ends, as the reference does: a dashboard's
    "-7d" with no end means up to now); properties are ANDed with the query's; a breakdown replaces
    the query's. A part the query's kind has no field for is refused, never dropped.
    """
    if query is None or is_empty(filters):
        return query
    check(filters, field)
    merged = query_pb2.QueryNode()
    merged.CopyFrom(query)
    source = source_of(merged)
    if source is None:
        return merged
    node = source.node
    if source.kind in ("hogql_query", "data_visualization_node"):
        hogql = merged.hogql_query if source.kind == "hogql_query" else merged.data_visualization_node.source
        _apply_to_sql(hogql, filters, field)
        return merged
    fields = node.DESCRIPTOR.fields_by_name
    wanted = {
        "date_range": filters.HasField("date_from") or filters.HasField("date_to"),
        "properties": len(filters.properties) > 0,
        "breakdown_filter": filters.HasField("breakdown_filter"),
    }
    for name, given in wanted.items():
        if given and name not in fields:
            part = "date_from" if name == "date_range" else name
            raise InvalidArgument(f"a {source.name} has no {part} to override", field=f"{field}.{part}")
    if wanted["date_range"]:
        node.date_range.Clear()  # type: ignore[attr-defined]
        if filters.HasField("date_from"):
            node.date_range.date_from = filters.date_from  # type: ignore[attr-defined]
        if filters.HasField("date_to"):
            node.date_range.date_to = filters.date_to  # type: ignore[attr-defined]
    if wanted["properties"]:
        _and_properties(node.properties, filters.properties)  # type: ignore[attr-defined]
    if wanted["breakdown_filter"]:
        node.breakdown_filter.CopyFrom(filters.breakdown_filter)  # type: ignore[attr-defined]
    return merged


def _apply_to_sql(node: query_pb2.HogQLQuery, filters: insight_pb2.DashboardFilter, field: str) -> None:
    """Dashboard filters over a SQL insight, as the reference merges them: into the HogQLQuery's
    `filters` (what its `{filters}` placeholder stands for; SQL without the placeholder filters
    nothing, as there). A date bound replaces the whole range, properties are ANDed with the
    node's; a SQL insight has no breakdown to replace (refused, never dropped)."""
    if filters.HasField("breakdown_filter"):
        raise InvalidArgument("a SQL insight has no breakdown_filter to override", field=f"{field}.breakdown_filter")
    if filters.HasField("date_from") or filters.HasField("date_to"):
        node.filters.date_range.Clear()
        if filters.HasField("date_from"):
            node.filters.date_range.date_from = filters.date_from
        if filters.HasField("date_to"):
            node.filters.date_range.date_to = filters.date_to
    node.filters.properties.extend(filters.properties)


def _and_properties(props: query_pb2.Properties, extra: Sequence[query_pb2.PropertyFilter]) -> None:
    """ANDs `extra` into a query's properties, keeping the form it has (a flat list stays a list)."""
    if props.WhichOneof("kind") != "group":
        props.list.values.extend(extra)
        return
    added = query_pb2.PropertyGroupFilterValue(
        type=_AND, values=[query_pb2.PropertyGroupItem(filter=f) for f in extra]
    )
    if props.group.type != _OR:
        props.group.values.append(added)
        return
    # An OR of groups keeps its meaning only nested: (g1 OR g2 ...) AND extra.
    either = query_pb2.PropertyGroupFilterValue(
        type=_OR, values=[query_pb2.PropertyGroupItem(group=g) for g in props.group.values]
    )
    props.group.CopyFrom(query_pb2.PropertyGroupFilter(type=_AND, values=[either, added]))
