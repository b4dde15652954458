"""Checks a PathsQuery and reduces it to what the SQL needs (no SQL here, nothing runs).

What a caller can send and this service does not compute is collected in `later` (field path,
what) and refused as UNIMPLEMENTED when computing, so that such a query can still be saved; an
invalid value is a QueryError naming the field. showFullUrls is display-only (§8.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from generated.insights.v1 import query_pb2
from server.queries.common.actors import PERSONS, Aggregation, aggregation
from server.queries.common.checks import problems
from server.queries.common.errors import QueryError
from server.queries.common.properties import regex_problem
from server.queries.funnels.spec import FunnelSpec, funnel_spec
from server.queries.sql.expression import check_expression

M = query_pb2

FUNNEL_PATH_TYPES = {
    "funnel_path_before_step": "before",
    "funnel_path_after_step": "after",
    "funnel_path_between_steps": "between",
}

DEFAULT_STEP_LIMIT = 5
DEFAULT_EDGE_LIMIT = 50
# The reference's bounds of the UI; larger step limits only grow the statement.
MAX_STEP_LIMIT = 20
MAX_EDGE_LIMIT = 10_000
# Each grouping is one branch of the step expression; a bound on the statement's size.
MAX_GROUPINGS = 100
EXPRESSION_PATH = "pathsFilter.pathsHogQLExpression"


@dataclass(frozen=True)
class FunnelPaths:
    """A checked funnelPathsFilter: whose events, and which of their times, the paths follow."""

    source: FunnelSpec  # the funnel (funnelSource), checked as a funnel
    kind: str  # "before", "after" or "between"
    step: int  # funnelStep: N > 0 reached step N (1-based); -N dropped off at step N
    target: int  # the 0-based step: reached (funnelStep N > 0: N - 1), or dropped off at (-N: N - 1)
    window_seconds: int  # the funnel's conversion window: the paths' session gap
    # A drop-off's condition: the last step before the target that is not optional, which the
    # actor completed (the reference's "prior required step"); None for a step reached.
    required: int | None = None

    @property
    def dropped(self) -> bool:
        """Actors who dropped off at step |funnelStep| (completed the required step before, not it)."""
        return self.step < 0


@dataclass(frozen=True)
class PathsSpec:
    """A checked paths query: everything the SQL and the result shaping need."""

    pageview: bool
    screen: bool
    custom: bool
    start_point: str | None
    end_point: str | None
    step_limit: int
    edge_limit: int
    min_weight: int | None
    max_weight: int | None
    exclude: tuple[str, ...]
    cleaning: tuple[tuple[str, str], ...]  # (regex, alias), applied in order
    groupings: tuple[str, ...] = ()  # wildcard patterns, applied after the cleaning rules
    funnel: FunnelPaths | None = None  # funnelPathsFilter: the persons and times of a funnel step
    sampling: float = 1.0  # samplingFactor: the share of distinct ids kept, traversals scaled back
    # Whose paths: persons (default), or a group type's keys (aggregation_group_type_index).
    aggregation: Aggregation = PERSONS
    later: list[tuple[str, str]] = field(default_factory=list)
    # includeEventTypes is not empty: only the listed types name their items (URL, screen name).
    listed: bool = False
    # pathsHogQLExpression when it names the items (hogql listed, or no type listed); checked.
    expression: str | None = None

    @property
    def all_events(self) -> bool:
        """No event type chosen: every event, its item the event name."""
        return not (self.pageview or self.screen or self.custom)


def _point(value: str) -> str | None:
    # The reference strips one trailing "/" of the target (as of every $current_url item).
    if not value:
        return None
    return value[:-1] if len(value) > 1 and value.endswith("/") else value


def paths_spec(query: query_pb2.PathsQuery, *, drill_down: bool = False) -> PathsSpec:
    """The checked form of `query`; QueryError (path relative to the query) when it is invalid.
    `drill_down`: the query is an InsightActorsQuery's source, which reads the drill-down keys
    (server/queries/paths/actors.py); on a PathsQuery computed for its edges they are refused."""
    for path, problem in problems(query):
        raise QueryError(problem, path)
    later: list[tuple[str, str]] = []
    pf = query.paths_filter
    types = set(pf.include_event_types)
    expression = None
    if pf.paths_hogql_expression and (not types or M.PATH_TYPE_HOGQL in types):
        # The item of the events no other chosen type names (query-engine-semantics §8.2; the
        # reference uses it whenever "hogql" is listed or no type is): docs/decisions.md.
        expression = pf.paths_hogql_expression
        check_expression(expression, path=EXPRESSION_PATH)
    elif pf.paths_hogql_expression:
        # The reference passes over an expression when the listed types leave out "hogql"; here
        # what a caller sends is used or refused, never dropped.
        raise QueryError(
            'pathsHogQLExpression names the items of the "hogql" type: list "hogql" in includeEventTypes '
            "or leave the expression out",
            EXPRESSION_PATH,
        )
    if pf.path_replacements:
        later.append(("pathsFilter.pathReplacements", "the environment's path-cleaning rules"))
    for value, name in (
        (pf.path_start_key, "pathStartKey"),
        (pf.path_end_key, "pathEndKey"),
        (pf.path_dropoff_key, "pathDropoffKey"),
    ):
        # An empty key is no key (the reference tests them for truth).
        if value and not drill_down:
            # They pick the actors of a node or edge (an InsightActorsQuery around this query); the
            # reference's edges ignore them, which is no answer here (docs/decisions.md, "Actors
            # of a path node or edge"). UNIMPLEMENTED, not INVALID_ARGUMENT: such a query may be saved.
            later.append(
                (
                    f"pathsFilter.{name}",
                    "edges picked by a drill-down key (it picks the actors of an InsightActorsQuery "
                    "whose source is this PathsQuery)",
                )
            )
    funnel = _funnel(query.funnel_paths_filter, later) if query.HasField("funnel_paths_filter") else None
    group = query.aggregation_group_type_index if query.HasField("aggregation_group_type_index") else None
    agg = aggregation(
        group, None, group_path="aggregation_group_type_index", expression_path="", later=later
    )
    if query.HasField("sampling_factor") and not 0 < query.sampling_factor <= 1:
        raise QueryError("samplingFactor must be in (0, 1]", "samplingFactor")
    factor = query.sampling_factor if query.HasField("sampling_factor") else 1.0
    if funnel is not None:
        agg, factor = _follow_funnel(funnel, agg, group, factor)
    step_limit = pf.step_limit if pf.HasField("step_limit") else DEFAULT_STEP_LIMIT
    if not 1 <= step_limit <= MAX_STEP_LIMIT:
        raise QueryError(f"stepLimit must be between 1 and {MAX_STEP_LIMIT}", "pathsFilter.stepLimit")
    edge_limit = pf.edge_limit if pf.HasField("edge_limit") else DEFAULT_EDGE_LIMIT
    if not 1 <= edge_limit <= MAX_EDGE_LIMIT:
        raise QueryError(f"edgeLimit must be between 1 and {MAX_EDGE_LIMIT}", "pathsFilter.edgeLimit")
    min_weight = pf.min_edge_weight if pf.HasField("min_edge_weight") else None
    max_weight = pf.max_edge_weight if pf.HasField("max_edge_weight") else None
    if min_weight is not None and min_weight < 0:
        raise QueryError("minEdgeWeight must not be negative", "pathsFilter.minEdgeWeight")
    if max_weight is not None and max_weight < 0:
        raise QueryError("maxEdgeWeight must not be negative", "pathsFilter.maxEdgeWeight")
    cleaning: list[tuple[str, str]] = []
    for i, rule in enumerate(pf.local_path_cleaning_filters):
        where = f"pathsFilter.localPathCleaningFilters[{i}]"
        if not rule.regex:
            raise QueryError("a path-cleaning rule needs a regex", f"{where}.regex")
        bad = regex_problem(rule.regex)
        if bad is not None:
            raise QueryError(f"invalid regex: {bad}", f"{where}.regex")
        if "\\" in rule.alias:
            # The engine reads \1..\9 in a replacement as groups; the reference's aliases are plain text.
            raise QueryError("a path-cleaning alias is plain text (no backslash)", f"{where}.alias")
        cleaning.append((rule.regex, rule.alias))
    groupings = _groupings(pf)
    return PathsSpec(
        pageview=M.PATH_TYPE_PAGEVIEW in types,
        screen=M.PATH_TYPE_SCREEN in types,
        custom=M.PATH_TYPE_CUSTOM_EVENT in types,
        listed=bool(types),
        expression=expression,
        start_point=_point(pf.start_point) if pf.HasField("start_point") else None,
        end_point=_point(pf.end_point) if pf.HasField("end_point") else None,
        step_limit=step_limit,
        edge_limit=edge_limit,
        min_weight=min_weight,
        max_weight=max_weight,
        exclude=tuple(pf.exclude_events),
        cleaning=tuple(cleaning),
        groupings=groupings,
        funnel=funnel,
        sampling=factor,
        aggregation=agg,
        later=later,
    )


def _groupings(pf: query_pb2.PathsFilter) -> tuple[str, ...]:
    """The checked `pathGroupings`: non-empty wildcard patterns, at most MAX_GROUPINGS."""
    if len(pf.path_groupings) > MAX_GROUPINGS:
        raise QueryError(f"at most {MAX_GROUPINGS} path groupings", "pathsFilter.pathGroupings")
    for i, grouping in enumerate(pf.path_groupings):
        if not grouping:
            # An empty pattern would match, and so rename, every step.
            raise QueryError("a path grouping must not be empty", f"pathsFilter.pathGroupings[{i}]")
    return tuple(pf.path_groupings)


def wildcard_regex(grouping: str) -> str:
    """The RE2 pattern of a grouping: its text literal except `*` (any run of characters), found
    anywhere in the step as the reference's unanchored match; `(?s)` lets `*` span newlines."""
    return "(?s)" + ".*".join(re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\1", part) for part in grouping.split("*"))


def _funnel(fpf: query_pb2.FunnelPathsFilter, later: list[tuple[str, str]]) -> FunnelPaths:
    """The checked funnelPathsFilter (query-engine-semantics §8.1; docs/decisions.md, "Path
    groupings, drill-down keys and funnel paths"): the funnel is checked as a FunnelsQuery, its
    errors and refusals under its field."""
    where = "funnelPathsFilter"
    if not fpf.HasField("funnel_source"):
        raise QueryError("funnel paths need funnelSource (a FunnelsQuery)", f"{where}.funnelSource")
    try:
        source = funnel_spec(fpf.funnel_source)
    except QueryError as err:
        raise err.within(f"{where}.funnelSource") from None
    later.extend((f"{where}.funnelSource.{path}", what) for path, what in source.later)
    kind = FUNNEL_PATH_TYPES.get(fpf.funnel_path_type) if fpf.HasField("funnel_path_type") else None
    if kind is None:
        raise QueryError(f"funnelPathType is one of {', '.join(FUNNEL_PATH_TYPES)}", f"{where}.funnelPathType")
    n = len(source.steps)
    step = fpf.funnel_step if fpf.HasField("funnel_step") else 0
    if step == 0 or abs(step) > n:
        raise QueryError(f"funnelStep is a step 1..{n} or a drop-off -2..-{n}", f"{where}.funnelStep")
    if step == -1:
        raise QueryError("nobody drops off before the first step: the first drop-off is -2", f"{where}.funnelStep")
    # The reference's actors (docs/decisions.md, "Funnel paths of optional steps, breakdowns,
    # samples and groups"): step N bounds by step N's time; a drop-off at N by the last step the
    # actor completed before N.
    target = abs(step) - 1
    if kind == "between" and step in (1, -2):
        raise QueryError("paths between steps need a step after the first", f"{where}.funnelStep")
    required = None
    if step < 0:
        # Step 1 is never optional (the funnel's check), so a required step before N exists.
        required = max(k for k in range(target) if not source.steps[k].optional)
    # A breakdown does not split the paths (the reference's funnel actors take no breakdown value
    # here): an actor walked per value is on the paths of every value's walk at the step.
    if source.aggregation.kind in ("session", "expression"):
        # A session's key (or an expression's value) is no actor of the paths' events (they are
        # persons' or groups').
        later.append(
            (f"{where}.funnelSource.funnelsFilter.funnelAggregateByHogQL", "paths of a funnel of sessions or expression values")
        )
    ff = fpf.funnel_source.funnels_filter
    window = f"{where}.funnelSource.funnelsFilter.funnelWindowInterval"
    if source.window_seconds == 0:
        # The reference reads a zero window as 14 days for the paths, not for the funnel's actors.
        later.append((window, "paths of a funnel with a zero conversion window"))
    if kind == "after" and step < 0 and ff.funnel_window_interval_unit == M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_MONTH:
        # After a drop-off the reference starts one window later in calendar months (a month here is 31 days).
        later.append((f"{window}Unit", "paths after a drop-off with a window in months"))
    return FunnelPaths(source, kind, step, target, source.window_seconds, required)


def _follow_funnel(funnel: FunnelPaths, agg: Aggregation, group: int | None, factor: float) -> tuple[Aggregation, float]:
    """The paths' actors and sampling factor when they follow a funnel: its actors (persons, or
    its group type's keys), and the smaller of the two factors (the paths read the events of the
    distinct ids both samples keep, cityHash64 being one order, and scale by that factor)."""
    source = funnel.source.aggregation
    if group is not None and agg != source:
        # The paths follow the funnel's actors; another actor here would name nobody of the funnel.
        raise QueryError(
            "funnel paths follow the funnel's actors: set aggregation_group_type_index on funnelSource "
            "(or the same value on both)",
            "aggregation_group_type_index",
        )
    return (source if source.kind == "group" else agg), min(factor, funnel.source.sampling)
