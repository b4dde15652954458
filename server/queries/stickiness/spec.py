"""Checks a StickinessQuery and reduces it to what the SQL needs (no SQL here, nothing runs).

What a caller can send and this service does not compute is collected in `later` (field path,
what) and refused as UNIMPLEMENTED when computing, so that such a query can still be saved; an
invalid value is a QueryError naming the field. Display-only options of stickinessFilter (display,
showLegend, hiddenLegendIndexes, resultCustomizations...) shape nothing the engine computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generated.insights.v1 import query_pb2
from server.queries.common import nodes
from server.queries.common.errors import QueryError

M = query_pb2

MAX_SERIES = 100
MAX_INTERVAL_COUNT = 1000
MAX_CRITERIA_VALUE = 1_000_000
OPERATORS = ("gte", "lte", "exact")
# Intervals stickiness computes; minute is the reference's too but not built here.
_INTERVALS = {"hour", "day", "week", "month"}
# Maths that count actors (persons): the reference's default for stickiness.
_PERSON_MATHS = frozenset({M.MATH_TYPE_UNSPECIFIED, M.MATH_TYPE_TOTAL, M.MATH_TYPE_DAU})


@dataclass(frozen=True)
class Series:
    """One series: an event name (None: every event) or an action, with its own filters."""

    path: str  # "series[i]"
    index: int
    event: str | None
    action_id: int | None
    properties: tuple[query_pb2.PropertyFilter, ...]
    custom_name: str | None
    name: str | None


@dataclass(frozen=True)
class StickinessSpec:
    """A checked stickiness query: everything the SQL and the result shaping need."""

    interval: str  # "hour", "day", "week" or "month"
    interval_count: int
    series: tuple[Series, ...]
    operator: str  # "gte", "lte" or "exact"
    value: int  # events an actor needs in a period for it to count
    cumulative: bool
    sampling: float
    compare: bool  # also compute the previous period (compareFilter)
    compare_to: str | None  # its relative shift, e.g. "-1w" (None: the period before)
    later: list[tuple[str, str]] = field(default_factory=list)


def stickiness_spec(query: query_pb2.StickinessQuery) -> StickinessSpec:
    """The checked form of `query`; QueryError (path relative to the query) when it is invalid."""
    nodes.check_contract(query)
    later: list[tuple[str, str]] = []
    if not query.series:
        raise QueryError("a stickiness query needs at least one series", "series")
    if len(query.series) > MAX_SERIES:
        raise QueryError(f"a stickiness query has at most {MAX_SERIES} series (got {len(query.series)})", "series")
    if query.interval == M.INTERVAL_TYPE_SECOND:
        raise QueryError("interval 'second' is not supported for stickiness", "interval")
    interval = nodes.INTERVAL_NAMES[query.interval]
    if interval not in _INTERVALS:
        later.append(("interval", f"{interval} intervals of stickiness"))
    count = query.interval_count if query.HasField("interval_count") else 1
    if not 1 <= count <= MAX_INTERVAL_COUNT:
        raise QueryError(f"intervalCount must be between 1 and {MAX_INTERVAL_COUNT} (got {count})", "intervalCount")
    if count > 1 and interval == "week":
        # As the reference: weeks are not grouped (a group would straddle week starts ambiguously).
        raise QueryError("intervalCount above 1 is not allowed with interval week", "intervalCount")
    nodes.check_sampling_factor(query)
    sf = query.stickiness_filter
    operator, value = "gte", 1
    if sf.HasField("stickiness_criteria"):
        crit = sf.stickiness_criteria
        if crit.HasField("operator"):
            operator = crit.operator
            if operator not in OPERATORS:
                raise QueryError(
                    f"operator must be one of {', '.join(OPERATORS)} (got {operator!r})",
                    "stickinessFilter.stickinessCriteria.operator",
                )
        if crit.HasField("value"):
            value = crit.value
            if not 1 <= value <= MAX_CRITERIA_VALUE:
                raise QueryError(
                    f"value must be between 1 and {MAX_CRITERIA_VALUE:,} (got {value})",
                    "stickinessFilter.stickinessCriteria.value",
                )
    series = tuple(_series(node, i, later) for i, node in enumerate(query.series))
    return StickinessSpec(
        interval=interval,
        interval_count=count,
        series=series,
        operator=operator,
        value=value,
        cumulative=sf.computed_as == M.STICKINESS_COMPUTATION_CUMULATIVE,
        sampling=query.sampling_factor if query.HasField("sampling_factor") else 1.0,
        compare=query.compare_filter.compare,
        compare_to=query.compare_filter.compare_to if query.compare_filter.compare_to else None,
        later=later,
    )


def _series(node: query_pb2.SeriesNode, index: int, later: list[tuple[str, str]]) -> Series:
    path = f"series[{index}]"
    kind = nodes.node_kind(node, path)
    if kind in ("group_node", "data_warehouse_node"):
        later.append((path, f"{'GroupNode' if kind == 'group_node' else 'DataWarehouseNode'} series of stickiness"))
        return Series(path, index, None, None, (), None, None)
    source = node.events_node if kind == "events_node" else node.actions_node
    if source.math not in _PERSON_MATHS:
        # unique_group and hogql are the reference's too (actors other than persons): not built.
        later.append((f"{path}.math", f"math {M.MathType.Name(source.math).removeprefix('MATH_TYPE_').lower()} of stickiness"))
    if source.HasField("math_multiplier"):
        later.append((f"{path}.math_multiplier", "math multipliers of stickiness"))
    if source.fixed_properties:
        later.append((f"{path}.fixedProperties", "fixed properties of stickiness"))
    custom = source.custom_name if source.HasField("custom_name") and source.custom_name else None
    name = source.name if source.HasField("name") and source.name else None
    if kind == "actions_node":
        if node.actions_node.id <= 0:
            raise QueryError("id must be a positive action id", f"{path}.id")
        return Series(path, index, None, node.actions_node.id, tuple(source.properties), custom, name)
    event = node.events_node.event if node.events_node.HasField("event") else None
    return Series(path, index, event, None, tuple(source.properties), custom, name)
