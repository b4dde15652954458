"""Checks a FunnelsQuery and reduces it to what the SQL needs (no SQL here, nothing runs)."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

from generated.insights.v1 import query_pb2
from server.queries.common import nodes
from server.queries.common.actors import PERSONS, Aggregation, aggregation
from server.queries.common.breakdown_value import PLAIN, filter_shapes, shaped_field
from server.queries.common.cohort_breakdown import ListedCohorts, is_cohort_breakdown, listed_cohorts
from server.queries.common.errors import QueryError
from server.queries.sql.expression import check_expression

M = query_pb2

MIN_STEPS = 2
MAX_STEPS = 20  # the reference's funnel UDF keeps step numbers in a signed byte with room for exclusions
DEFAULT_WINDOW = 14
MAX_WINDOW_INTERVAL = 100_000
DEFAULT_BREAKDOWN_LIMIT = 25
MAX_BREAKDOWN_LIMIT = 1000
MAX_BREAKDOWNS = 3
MAX_EXCLUSIONS = 100
# Seconds per conversion-window unit. A month is 31 days, as the reference's funnel UDF counts it.
UNIT_SECONDS = {
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_UNSPECIFIED: 86400,
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_SECOND: 1,
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_MINUTE: 60,
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_HOUR: 3600,
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_DAY: 86400,
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_WEEK: 7 * 86400,
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_MONTH: 31 * 86400,
}
ORDER_NAMES = {
    M.FUNNEL_ORDER_TYPE_UNSPECIFIED: "ordered",
    M.FUNNEL_ORDER_TYPE_ORDERED: "ordered",
    M.FUNNEL_ORDER_TYPE_STRICT: "strict",
    M.FUNNEL_ORDER_TYPE_UNORDERED: "unordered",
}
ATTRIBUTION_NAMES = {
    M.BREAKDOWN_ATTRIBUTION_TYPE_UNSPECIFIED: "first_touch",
    M.BREAKDOWN_ATTRIBUTION_TYPE_FIRST_TOUCH: "first_touch",
    M.BREAKDOWN_ATTRIBUTION_TYPE_LAST_TOUCH: "last_touch",
    M.BREAKDOWN_ATTRIBUTION_TYPE_ALL_EVENTS: "all_events",
    M.BREAKDOWN_ATTRIBUTION_TYPE_STEP: "step",
}
_BREAKDOWN_SOURCES = {
    M.BREAKDOWN_TYPE_UNSPECIFIED: "event",
    M.BREAKDOWN_TYPE_EVENT: "event",
    M.BREAKDOWN_TYPE_PERSON: "person",
    M.BREAKDOWN_TYPE_HOGQL: "hogql",  # the key is a HogQL expression of the event (sql/expression.py)
}
# Breakdown types the reference computes for funnels and this service will: refused as not built
# yet (a cohort breakdown is computed; a cohort type inside `breakdowns` is not).
_LATER_BREAKDOWNS = frozenset({M.BREAKDOWN_TYPE_COHORT, M.BREAKDOWN_TYPE_GROUP})
# The source of a cohort breakdown's one dimension (its value is the cohort id, as text).
COHORT = "cohort"
_FIRST_TIME_MATHS = {
    M.MATH_TYPE_FIRST_TIME_FOR_USER: "first_time_for_user",
    M.MATH_TYPE_FIRST_TIME_FOR_USER_WITH_FILTERS: "first_time_for_user_with_filters",
}

StepNode = query_pb2.EventsNode | query_pb2.ActionsNode
ExclusionNode = query_pb2.FunnelExclusionEventsNode | query_pb2.FunnelExclusionActionsNode
AnyNode = StepNode | ExclusionNode


@dataclass(frozen=True)
class Step:
    """One step: its node (an EventsNode or an ActionsNode) and where it sits in the query."""

    node: StepNode
    optional: bool
    path: str
    # "first_time_for_user" / "first_time_for_user_with_filters": only the person's first-ever
    # event of the step's event (or action), respectively the first that passes the step's filters.
    first_time: str | None = None


@dataclass(frozen=True)
class Exclusion:
    """An event (or an action's event) that removes a person when it happens between steps `start` and `end`."""

    node: ExclusionNode
    start: int
    end: int
    path: str


@dataclass(frozen=True)
class FunnelSpec:
    """A checked funnel: everything the SQL and the result shaping need."""

    steps: tuple[Step, ...]
    order: str  # "ordered", "strict" or "unordered"
    window_seconds: int
    exclusions: tuple[Exclusion, ...]
    # (property key, "event" | "person") per breakdown dimension; None without a breakdown.
    breakdown: tuple[tuple[str, str], ...] | None
    attribution: str  # "first_touch", "last_touch", "all_events" or "step"
    attribution_step: int | None
    limit: int
    sampling: float
    interval: str
    # Options this service does not compute yet: (field path, what) — refused when computing, so
    # that such a funnel can still be saved.
    later: list[tuple[str, str]] = field(default_factory=list)
    viz: str = "steps"  # "steps", "time_to_convert" or "trends"
    # time_to_convert: the range of steps timed, trends: the conversion measured (defaults: first
    # to last); time_to_convert: funnelsFilter.binCount.
    from_step: int = 0
    to_step: int = 0
    bin_count: int | None = None
    # Who is counted: persons (default), a group type's keys or sessions (common/actors.py).
    aggregation: Aggregation = PERSONS
    # A cohort breakdown's cohorts (id, field; 0: all users), in the order listed; `breakdown` is
    # then (("cohort", "cohort"),). Each cohort's funnel is computed over its members' events alone,
    # so the attribution has no effect (it is first_touch here), and nothing is cut into "Other".
    cohorts: ListedCohorts | None = None
    # Field paths of the caller's HogQL expressions the statement computes (an aggregation, hogql
    # breakdowns): an engine error about them is the caller's (compute.py).
    expressions: tuple[str, ...] = ()


def funnel_spec(query: query_pb2.FunnelsQuery) -> FunnelSpec:
    """The checked form of `query`; QueryError (path relative to the query) when it is invalid.
    Actions are checked when the SQL is built (they are the environment's definitions)."""
    nodes.check_contract(query)
    later: list[tuple[str, str]] = []
    ff = query.funnels_filter
    order = ORDER_NAMES[ff.funnel_order_type]
    steps = _steps(query, order)
    n = len(steps)
    _check_step_range(ff, n)
    exclusions = _exclusions(query, order)
    if ff.HasField("funnel_window_interval") and not 0 <= ff.funnel_window_interval <= MAX_WINDOW_INTERVAL:
        raise QueryError(
            f"funnelWindowInterval must be between 0 and {MAX_WINDOW_INTERVAL:,} (got {ff.funnel_window_interval})",
            "funnelsFilter.funnelWindowInterval",
        )
    interval = ff.funnel_window_interval if ff.HasField("funnel_window_interval") else DEFAULT_WINDOW
    breakdown = _breakdown(query.breakdown_filter, later)
    expressions = _hogql_breakdowns(query.breakdown_filter, breakdown)
    cohorts = None
    if breakdown is not None and breakdown[0][1] == COHORT:
        cohorts = listed_cohorts(query.breakdown_filter.breakdown, "breakdownFilter.breakdown")
    nodes.check_breakdown_limit(query, MAX_BREAKDOWN_LIMIT)
    attribution = ATTRIBUTION_NAMES[ff.breakdown_attribution_type]
    attribution_step = None
    if attribution == "step":
        attribution_step = _attribution_step(ff, n, order)
    if cohorts is not None:
        # Every event of a cohort's walk carries that cohort: each attribution picks it.
        attribution, attribution_step = "first_touch", None
    nodes.check_sampling_factor(query)
    if query.interval == M.INTERVAL_TYPE_SECOND:
        raise QueryError("interval 'second' is not supported", "interval")
    viz = "steps"
    if ff.funnel_viz_type == M.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT:
        viz = "time_to_convert"
        if breakdown is not None:
            # The reference computes one histogram over every actor whatever the breakdown
            # (docs/decisions.md, "time_to_convert and breakdowns"): refused, not ignored.
            raise QueryError(
                "a breakdown does not apply to the time_to_convert visualisation (one histogram over all "
                "actors): remove breakdownFilter or use the steps or trends visualisation",
                "breakdownFilter",
            )
    elif ff.funnel_viz_type == M.FUNNEL_VIZ_TYPE_TRENDS:
        viz = "trends"
    agg = aggregation(
        query.aggregation_group_type_index if query.HasField("aggregation_group_type_index") else None,
        ff.funnel_aggregate_by_hogql if ff.HasField("funnel_aggregate_by_hogql") else None,
        group_path="aggregation_group_type_index",
        expression_path="funnelsFilter.funnelAggregateByHogQL",
        later=later,
        expressions=True,
    )
    return FunnelSpec(
        steps=steps,
        order=order,
        window_seconds=interval * UNIT_SECONDS[ff.funnel_window_interval_unit],
        exclusions=exclusions,
        breakdown=breakdown,
        attribution=attribution,
        attribution_step=attribution_step,
        # Cohorts are never cut (as the reference): the limit is the number listed.
        limit=len(cohorts) if cohorts is not None else query.breakdown_filter.breakdown_limit or DEFAULT_BREAKDOWN_LIMIT,
        sampling=query.sampling_factor if query.HasField("sampling_factor") else 1.0,
        interval=nodes.INTERVAL_NAMES[query.interval],
        later=later,
        viz=viz,
        from_step=ff.funnel_from_step if ff.HasField("funnel_from_step") else 0,
        to_step=ff.funnel_to_step if ff.HasField("funnel_to_step") else n - 1,
        bin_count=ff.bin_count if ff.HasField("bin_count") else None,
        aggregation=agg,
        cohorts=cohorts,
        expressions=((agg.path,) if agg.kind == "expression" else ()) + expressions,
    )


def _steps(query: query_pb2.FunnelsQuery, order: str) -> tuple[Step, ...]:
    if len(query.series) < MIN_STEPS:
        raise QueryError(f"a funnel needs at least {MIN_STEPS} steps (got {len(query.series)})", "series")
    if len(query.series) > MAX_STEPS:
        raise QueryError(f"a funnel has at most {MAX_STEPS} steps (got {len(query.series)})", "series")
    steps = []
    for index, node in enumerate(query.series):
        path = f"series[{index}]"
        kind = nodes.node_kind(node, path)
        if kind not in ("events_node", "actions_node"):
            raise QueryError("a funnel step is an EventsNode or an ActionsNode", path)
        step: StepNode = node.events_node if kind == "events_node" else node.actions_node
        if isinstance(step, query_pb2.ActionsNode) and step.id <= 0:
            raise QueryError("id must be a positive action id", f"{path}.id")
        first_time = _FIRST_TIME_MATHS.get(step.math)
        if first_time is None and step.math not in (M.MATH_TYPE_UNSPECIFIED, M.MATH_TYPE_TOTAL):
            raise QueryError("a funnel step's math is total, first_time_for_user or first_time_for_user_with_filters", f"{path}.math")
        steps.append(Step(step, step.optional_in_funnel, path, first_time))
    if any(step.optional for step in steps):
        if steps[0].optional:
            raise QueryError("the first step of a funnel cannot be optional", "series[0].optionalInFunnel")
        if order == "unordered":
            first = next(step for step in steps if step.optional)
            raise QueryError("unordered funnels have no optional steps", f"{first.path}.optionalInFunnel")
        for a, b in itertools.pairwise(steps):
            if a.optional and not b.optional and (_is_equal(a.node, b.node) or _covers(b.node, a.node)):
                raise QueryError(
                    "an optional step cannot be the same as the required step after it (it would never convert)",
                    f"{a.path}.optionalInFunnel",
                )
    return tuple(steps)


def _check_step_range(ff: query_pb2.FunnelsFilter, n: int) -> None:
    """funnelFromStep/funnelToStep are checked whatever the visualisation, as the reference does."""
    if ff.HasField("funnel_from_step") and not 0 <= ff.funnel_from_step <= n - 2:
        raise QueryError(f"funnelFromStep must be between 0 and {n - 2}", "funnelsFilter.funnelFromStep")
    if ff.HasField("funnel_to_step") and not 1 <= ff.funnel_to_step <= n - 1:
        raise QueryError(f"funnelToStep must be between 1 and {n - 1}", "funnelsFilter.funnelToStep")
    if ff.HasField("funnel_from_step") and ff.HasField("funnel_to_step") and ff.funnel_from_step >= ff.funnel_to_step:
        raise QueryError("funnelToStep must be after funnelFromStep", "funnelsFilter.funnelToStep")


def _exclusions(query: query_pb2.FunnelsQuery, order: str) -> tuple[Exclusion, ...]:
    ff = query.funnels_filter
    n = len(query.series)
    if len(ff.exclusions) > MAX_EXCLUSIONS:
        raise QueryError(f"at most {MAX_EXCLUSIONS} exclusions", "funnelsFilter.exclusions")
    found = []
    for index, item in enumerate(ff.exclusions):
        path = f"funnelsFilter.exclusions[{index}]"
        node: ExclusionNode = (
            item.actions_node if nodes.node_kind(item, path, "exclusion") == "actions_node" else item.events_node
        )
        if isinstance(node, query_pb2.FunnelExclusionActionsNode) and node.id <= 0:
            raise QueryError("id must be a positive action id", f"{path}.id")
        if not node.HasField("funnel_from_step") or not node.HasField("funnel_to_step"):
            raise QueryError("an exclusion needs funnelFromStep and funnelToStep", path)
        start, end = node.funnel_from_step, node.funnel_to_step
        if start >= end:
            raise QueryError("an exclusion's funnelToStep must be after its funnelFromStep", f"{path}.funnelToStep")
        if start < 0 or start >= n - 1:
            raise QueryError(f"an exclusion's funnelFromStep must be between 0 and {n - 2}", f"{path}.funnelFromStep")
        if end > n - 1:
            raise QueryError(f"an exclusion's funnelToStep must be at most {n - 1}", f"{path}.funnelToStep")
        for step_index in range(start, end + 1):
            step = spec_node(query.series[step_index])
            if _is_equal(step, node) or _covers(step, node):
                raise QueryError(
                    f"the exclusion matches step {step_index} of its range: an excluded event cannot be a step", path
                )
        if order == "unordered" and (start, end) != (0, n - 1):
            raise QueryError(
                f"unordered funnels take exclusions over every step only (funnelFromStep 0, funnelToStep {n - 1})", path
            )
        found.append(Exclusion(node, start, end, path))
    return tuple(found)


def _filter_key(f: query_pb2.PropertyFilter) -> tuple[int, str, int, bytes]:
    """A filter as the reference compares nodes: type, key, operator and value (defaults applied)."""
    kind = f.type or M.PROPERTY_FILTER_TYPE_EVENT
    operator = f.operator or M.PROPERTY_OPERATOR_EXACT
    return (kind, f.key, operator, f.value.SerializeToString(deterministic=True))


def spec_node(node: query_pb2.SeriesNode) -> StepNode:
    """The EventsNode or ActionsNode a series entry holds (an empty EventsNode for anything else)."""
    return node.actions_node if node.WhichOneof("node") == "actions_node" else node.events_node


def _filters(node: AnyNode) -> Counter[tuple[int, str, int, bytes]]:
    return Counter(_filter_key(f) for f in node.properties)


_ACTIONS = (query_pb2.ActionsNode, query_pb2.FunnelExclusionActionsNode)


def _same_event(a: AnyNode, b: AnyNode) -> bool:
    """The same event name (EventsNodes) or the same action id (ActionsNodes); an event and an
    action are never the same (docs/decisions.md, "Funnel steps that are actions")."""
    if isinstance(a, _ACTIONS) and isinstance(b, _ACTIONS):
        return a.id == b.id
    if isinstance(a, _ACTIONS) or isinstance(b, _ACTIONS):
        return False
    return a.HasField("event") == b.HasField("event") and a.event == b.event


def _is_equal(a: AnyNode, b: AnyNode) -> bool:
    return _same_event(a, b) and _filters(a) == _filters(b)


def _covers(a: AnyNode, b: AnyNode) -> bool:
    """Whether node `a` matches every event `b` matches: the same event (or action), a's filters among b's."""
    return _same_event(a, b) and not (_filters(a) - _filters(b))


def _breakdown(bf: query_pb2.BreakdownFilter, later: list[tuple[str, str]]) -> tuple[tuple[str, str], ...] | None:
    # Histograms and URL normalising, checked here, are applied by sql.py (breakdown_value).
    shaped = filter_shapes(bf) != (PLAIN,)
    if shaped and (not (bf.breakdowns or bf.HasField("breakdown")) or is_cohort_breakdown(bf)):
        raise QueryError("a histogram or URL normalising needs a property breakdown", shaped_field(bf))
    if is_cohort_breakdown(bf) and bf.HasField("breakdown"):
        return ((COHORT, COHORT),)
    if bf.breakdowns:
        if len(bf.breakdowns) > MAX_BREAKDOWNS:
            raise QueryError(f"at most {MAX_BREAKDOWNS} breakdowns", "breakdownFilter.breakdowns")
        dims = []
        for i, b in enumerate(bf.breakdowns):
            path = f"breakdownFilter.breakdowns[{i}]"
            source = _source(b.type, f"{path}.type", later)
            dims.append((_key(b.property, f"{path}.property", source is None), source or "event"))
        return tuple(dims)
    if not bf.HasField("breakdown"):
        return None
    source = _source(bf.breakdown_type, "breakdownFilter.breakdown_type", later)
    return ((_key(bf.breakdown, "breakdownFilter.breakdown", source is None), source or "event"),)


def _hogql_breakdowns(bf: query_pb2.BreakdownFilter, dims: tuple[tuple[str, str], ...] | None) -> tuple[str, ...]:
    """The field paths of the hogql breakdown dimensions, each expression checked (QueryError naming it)."""
    paths = []
    for i, (key, source) in enumerate(dims or ()):
        if source == "hogql":
            path = f"breakdownFilter.breakdowns[{i}].property" if bf.breakdowns else "breakdownFilter.breakdown"
            check_expression(key, path=path)
            paths.append(path)
    return tuple(paths)


def _source(kind: query_pb2.BreakdownType.ValueType, path: str, later: list[tuple[str, str]]) -> str | None:
    if kind in _BREAKDOWN_SOURCES:
        return _BREAKDOWN_SOURCES[kind]
    if kind in _LATER_BREAKDOWNS:
        later.append((path, f"{M.BreakdownType.Name(kind).removeprefix('BREAKDOWN_TYPE_').lower()} breakdowns of funnels"))
        return None
    raise QueryError("funnel breakdowns are by event, person, cohort, group or hogql", path)


def _key(key: query_pb2.BreakdownKey, path: str, lenient: bool) -> str:
    """The property name of a breakdown (cohort ids and expressions, refused later, pass as text)."""
    kind = key.WhichOneof("kind")
    if kind == "string_value" and key.string_value:
        return key.string_value
    if lenient:
        return ""
    raise QueryError("a breakdown is a property name", path)


def _attribution_step(ff: query_pb2.FunnelsFilter, n: int, order: str) -> int:
    path = "funnelsFilter.breakdownAttributionValue"
    if not ff.HasField("breakdown_attribution_value"):
        raise QueryError("step attribution needs breakdownAttributionValue (the step index)", path)
    value = ff.breakdown_attribution_value
    if not 0 <= value <= n - 1:
        raise QueryError(f"breakdownAttributionValue must be between 0 and {n - 1}", path)
    if order == "unordered" and value != 0:
        raise QueryError("unordered funnels attribute breakdowns to the first step only", path)
    return value
