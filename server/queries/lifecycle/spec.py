"""Checks a LifecycleQuery and reduces it to what the SQL needs (no SQL here, nothing runs).

What a caller can send and this service does not compute is collected in `later` (field path,
what) and refused as UNIMPLEMENTED when computing, so that such a query can still be saved; an
invalid value is a QueryError naming the field. lifecycleFilter (showLegend, showValuesOnSeries,
stacked, toggledLifecycles) is display-only in the reference (§7.1): the four series are computed
whatever it says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generated.insights.v1 import query_pb2
from server.queries.common import nodes
from server.queries.common.actors import PERSONS, Aggregation, aggregation
from server.queries.common.checks import problems
from server.queries.common.errors import QueryError
from server.queries.common.nodes import INTERVAL_NAMES

M = query_pb2


@dataclass(frozen=True)
class Series:
    """The one series: an event name (None: every event) or an action, and its own filters."""

    event: str | None = None
    action_id: int | None = None
    custom_name: str | None = None
    properties: tuple[query_pb2.PropertyFilter, ...] = ()


@dataclass(frozen=True)
class LifecycleSpec:
    """A checked lifecycle query: everything the SQL and the result shaping need."""

    interval: str  # "hour", "day", "week" or "month"
    series: Series
    sampling: float = 1.0  # samplingFactor: the share of distinct ids kept, counts scaled back
    later: list[tuple[str, str]] = field(default_factory=list)
    # Whose lifecycle: persons (default), or a group type's keys (aggregation_group_type_index).
    aggregation: Aggregation = PERSONS
    # dateRange.explicitDate: activity inside the grid counts from the exact date_from to the exact
    # date_to (the period before the grid, the margin, is read whole).
    exact: bool = False


def lifecycle_spec(query: query_pb2.LifecycleQuery) -> LifecycleSpec:
    """The checked form of `query`; QueryError (path relative to the query) when it is invalid."""
    for path, problem in problems(query):
        raise QueryError(problem, path)
    later: list[tuple[str, str]] = []
    interval = INTERVAL_NAMES[query.interval]
    if interval == "minute":
        later.append(("interval", "minute lifecycles"))
    if not query.series:
        raise QueryError("a lifecycle query needs one series", "series")
    if len(query.series) > 1:
        # The reference silently uses the first; refusing says so instead of ignoring the rest.
        raise QueryError(f"a lifecycle query takes one series (got {len(query.series)})", "series")
    series = _series(query.series[0], later)
    nodes.check_sampling_factor(query)
    group = query.aggregation_group_type_index if query.HasField("aggregation_group_type_index") else None
    agg = aggregation(group, None, group_path="aggregation_group_type_index", expression_path="", later=later)
    sampling = query.sampling_factor if query.HasField("sampling_factor") else 1.0
    return LifecycleSpec(
        interval=interval,
        series=series,
        sampling=sampling,
        later=later,
        aggregation=agg,
        exact=query.date_range.explicit_date,
    )


def _series(node: query_pb2.SeriesNode, later: list[tuple[str, str]]) -> Series:
    kind = node.WhichOneof("node")
    path = "series[0]"
    if kind is None:
        raise QueryError("empty series node", path)
    if kind not in ("events_node", "actions_node"):
        later.append((path, f"{kind.replace('_node', '').replace('_', ' ')} series of lifecycles"))
        return Series()
    inner = getattr(node, kind)
    if inner.math not in (M.MATH_TYPE_UNSPECIFIED, M.MATH_TYPE_TOTAL):
        # Lifecycle counts actors; the reference ignores the series' math, so another one is a mistake.
        raise QueryError("a lifecycle series counts actors: its math is total (or unset)", f"{path}.math")
    custom = inner.custom_name if inner.HasField("custom_name") and inner.custom_name else None
    props = tuple(inner.properties)
    if kind == "actions_node":
        if inner.id <= 0:
            raise QueryError("an actions series names a positive action id", f"{path}.id")
        return Series(action_id=inner.id, custom_name=custom, properties=props)
    event = inner.event if inner.HasField("event") else None
    return Series(event=event, custom_name=custom, properties=props)
