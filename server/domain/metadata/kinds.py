"""The name and description of each query kind (trends, funnels, retention, ... SQL), from describe's words."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf.message import Message

from generated.insights.v1 import query_pb2
from server.domain.metadata import sql
from server.domain.metadata.describe import (
    MISSING,
    NAME_LIMIT,
    Labels,
    Metadata,
    breakdown,
    compare,
    date_range,
    filters,
    interval,
    invalid,
    joined,
    listed,
    plural,
)
from server.errors import InvalidArgument

M = query_pb2


def span(range_: M.DateRange, default: str = "-7d") -> str:
    """The date range as a phrase after a verb: "over the last 7 days", "from X to Y", "for today"."""
    text = date_range(range_, default)
    if text.startswith(("last ", "all ")):
        return f"over the {text}" if text.startswith("last ") else "over all time"
    if text in ("today", "yesterday") or text.startswith(("this ", "the ")):
        return f"for {text}"
    if text.startswith("since "):
        return text
    return f"from {text}"


def _cut(name: str) -> str:
    """The name within NAME_LIMIT characters, cut at a word."""
    if len(name) <= NAME_LIMIT:
        return name
    return name[: NAME_LIMIT - 1].rsplit(" ", 1)[0].rstrip(",") + "…"


def _actors(query: Any) -> str:
    return "groups" if query.HasField("aggregation_group_type_index") else "users"


# ------------------------------------------------------------------------------------ trends

_DISPLAYS: dict[int, str] = {
    M.CHART_DISPLAY_TYPE_ACTIONS_BAR: "as a bar chart",
    M.CHART_DISPLAY_TYPE_ACTIONS_UNSTACKED_BAR: "as a bar chart",
    M.CHART_DISPLAY_TYPE_ACTIONS_STACKED_BAR: "as a stacked bar chart",
    M.CHART_DISPLAY_TYPE_ACTIONS_AREA_GRAPH: "as an area chart",
    M.CHART_DISPLAY_TYPE_ACTIONS_LINE_GRAPH_CUMULATIVE: "as a cumulative line graph",
    M.CHART_DISPLAY_TYPE_BOLD_NUMBER: "as a single number",
    M.CHART_DISPLAY_TYPE_BOLD_NUMBER_VALUE: "as a single number",
    M.CHART_DISPLAY_TYPE_ACTIONS_PIE: "as a pie chart",
    M.CHART_DISPLAY_TYPE_ACTIONS_BAR_VALUE: "as a bar chart of totals",
    M.CHART_DISPLAY_TYPE_ACTIONS_TABLE: "as a table",
    M.CHART_DISPLAY_TYPE_WORLD_MAP: "on a world map",
    M.CHART_DISPLAY_TYPE_CALENDAR_HEATMAP: "as a calendar heatmap",
    M.CHART_DISPLAY_TYPE_TWO_DIMENSIONAL_HEATMAP: "as a heatmap",
}
_LETTER = re.compile(r"\b([A-Z])\b")


def _formulas(tf: M.TrendsFilter) -> list[tuple[str, str | None]]:
    """(formula, custom name) of every formula the query sets, in the order the engine shows them."""
    if tf.formula_nodes:
        return [(f.formula, f.custom_name or None) for f in tf.formula_nodes]
    if tf.formulas:
        return [(f, None) for f in tf.formulas]
    if tf.HasField("formula") and tf.formula:
        return [(tf.formula, None)]
    return []


def _substituted(formula: str, measures: list[str]) -> str:
    """ "A / B" with each series letter replaced by that series' label (unknown letters stay)."""

    def one(match: re.Match[str]) -> str:
        index = ord(match[1]) - ord("A")
        return measures[index] if index < len(measures) else match[1]

    return _LETTER.sub(one, formula)


def trends(q: M.TrendsQuery, labels: Labels) -> Metadata:
    measures = [labels.measured(s) for s in q.series]
    formulas = _formulas(q.trends_filter)
    if formulas:
        subject = listed([custom or _substituted(f, measures) for f, custom in formulas])
    else:
        subject = listed(measures) or "Event count"
    by = breakdown(q.breakdown_filter)
    versus = compare(q.compare_filter)
    name = subject + (f" by {by}" if by else "") + f", {date_range(q.date_range)}"
    if versus:
        name += f", {versus}"
    # The description names every series; the name keeps to the first three.
    every = joined([custom or _substituted(f, measures) for f, custom in formulas] if formulas else measures)
    text = f"{every or subject} per {interval(q.interval)}" + (f", broken down by {by}" if by else "")
    text += f", {span(q.date_range)}" + (f", {versus}" if versus else "") + "."
    if formulas:
        where = [f"{chr(ord('A') + i)} is {m}" for i, m in enumerate(measures)]
        shown = joined([f for f, _ in formulas])
        text += f" Formula{'s' if len(formulas) > 1 else ''} {shown}, where {joined(where)}."
    text += filters(q.properties, q.filter_test_accounts)
    shown_as = _DISPLAYS.get(q.trends_filter.display)
    if shown_as:
        text += f" Shown {shown_as}."
    return Metadata(_cut(name), text)


# ------------------------------------------------------------------------------------ funnels

_WINDOW_UNITS: dict[int, str] = {
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_SECOND: "second",
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_MINUTE: "minute",
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_HOUR: "hour",
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_DAY: "day",
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_WEEK: "week",
    M.FUNNEL_CONVERSION_WINDOW_TIME_UNIT_MONTH: "month",
}
# The reference's conversion window when none is given: 14 days.
_DEFAULT_WINDOW = 14


def funnels(q: M.FunnelsQuery, labels: Labels) -> Metadata:
    ff = q.funnels_filter
    steps = [labels.node(s) for s in q.series] or ["(no steps)"]
    count = ff.funnel_window_interval if ff.HasField("funnel_window_interval") else _DEFAULT_WINDOW
    unit = _WINDOW_UNITS.get(ff.funnel_window_interval_unit, "day")
    chain = " → ".join(steps)
    by = breakdown(q.breakdown_filter)
    what = {
        M.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT: "time to convert",
        M.FUNNEL_VIZ_TYPE_TRENDS: "conversion trend",
    }.get(ff.funnel_viz_type, "conversion")
    order = {M.FUNNEL_ORDER_TYPE_STRICT: "strict order", M.FUNNEL_ORDER_TYPE_UNORDERED: "any order"}.get(
        ff.funnel_order_type
    )
    name = f"{chain} {what}" + (f" by {by}" if by else "") + f", {count}-{unit} window"
    if order:
        name += f", {order}"
    actors = _actors(q)
    sequence = " then ".join(steps)
    window = plural(count, unit)
    if ff.funnel_viz_type == M.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT:
        text = f"How long {actors} took to go from {steps[0]} to {steps[-1]} (within {window})"
    elif ff.funnel_viz_type == M.FUNNEL_VIZ_TYPE_TRENDS:
        text = f"Share of {actors} who did {sequence} within {window}, per {interval(q.interval)}"
    else:
        text = f"Share of {actors} who did {sequence} within {window}"
    if ff.funnel_order_type == M.FUNNEL_ORDER_TYPE_STRICT:
        text += ", with no other event between steps"
    elif ff.funnel_order_type == M.FUNNEL_ORDER_TYPE_UNORDERED:
        text += ", in any order"
    text += (f", broken down by {by}" if by else "") + f", {span(q.date_range)}."
    excluded = [_exclusion(e, labels) for e in ff.exclusions]
    if excluded:
        text += f" Excluding {actors} who did {joined(excluded, 'or')}."
    text += filters(q.properties, q.filter_test_accounts)
    return Metadata(_cut(name), text)


def _exclusion(exclusion: M.FunnelExclusion, labels: Labels) -> str:
    kind = exclusion.WhichOneof("node")
    if kind == "actions_node":
        node = exclusion.actions_node
        label = node.custom_name or labels.action(node.id if node.HasField("id") else None)
    elif kind == "events_node":
        e = exclusion.events_node
        label = e.custom_name or (labels.node(M.SeriesNode(events_node=M.EventsNode(event=e.event))) if e.event else "All events")
    else:
        return "an excluded event"
    inner = getattr(exclusion, kind)
    if inner.HasField("funnel_from_step") and inner.HasField("funnel_to_step"):
        return f"{label} between steps {inner.funnel_from_step + 1} and {inner.funnel_to_step + 1}"
    return label


# ------------------------------------------------------------------------------------ retention

_PERIODS: dict[int, tuple[str, str]] = {
    M.RETENTION_PERIOD_HOUR: ("hour", "hourly"),
    M.RETENTION_PERIOD_DAY: ("day", "daily"),
    M.RETENTION_PERIOD_WEEK: ("week", "weekly"),
    M.RETENTION_PERIOD_MONTH: ("month", "monthly"),
}
# The retention runner's default number of cohorts (retention.spec.DEFAULT_TOTAL_INTERVALS).
_DEFAULT_INTERVALS = 7


def retention(q: M.RetentionQuery, labels: Labels) -> Metadata:
    rf = q.retention_filter
    period, adjective = _PERIODS.get(rf.period, ("day", "daily"))
    target = labels.entity(rf.target_entity) if rf.HasField("target_entity") else "All events"
    returning = labels.entity(rf.returning_entity) if rf.HasField("returning_entity") else target
    total = rf.total_intervals if rf.HasField("total_intervals") and rf.total_intervals else _DEFAULT_INTERVALS
    by = breakdown(q.breakdown_filter)
    subject = target if target == returning else f"{target} → {returning}"
    name = f"{subject} {adjective} retention" + (f" by {by}" if by else "") + f", {plural(total, period)}"
    first = {
        M.RETENTION_TYPE_FIRST_TIME: " for the first time",
        M.RETENTION_TYPE_FIRST_EVER_OCCURRENCE: " for the first time ever",
    }.get(rf.retention_type, "")
    actors = _actors(q)
    again = "on or after" if rf.cumulative else "in"
    text = (
        f"Of the {actors} who did {target}{first} in each of {plural(total, period)}, the share who did "
        f"{returning} {again} each following {period}"
    )
    text += (f", broken down by {by}" if by else "") + "."
    if q.date_range.HasField("date_from"):
        text += f" Cohorts {span(q.date_range)}."
    text += filters(q.properties, q.filter_test_accounts)
    return Metadata(_cut(name), text)


# ------------------------------------------------------------------------------------ stickiness

_CRITERIA = {"gte": "at least", "lte": "at most", "exact": "exactly"}


def stickiness(q: M.StickinessQuery, labels: Labels) -> Metadata:
    subjects = [labels.node(s) for s in q.series] or ["All events"]
    unit = interval(q.interval)
    name = f"{listed(subjects)} stickiness, {date_range(q.date_range)}"
    cumulative = q.stickiness_filter.computed_as == M.STICKINESS_COMPUTATION_CUMULATIVE
    count = f"{'at least ' if cumulative else ''}N {unit}s"
    text = f"How many users did {joined(subjects, 'or')} on {count} of the period, for each N"
    criteria = q.stickiness_filter.stickiness_criteria
    if criteria.HasField("value") and criteria.HasField("operator"):
        times = plural(criteria.value, "time")
        text += f" (a {unit} counts when it was done {_CRITERIA.get(criteria.operator, criteria.operator)} {times})"
    versus = compare(q.compare_filter)
    text += f", {span(q.date_range)}" + (f", {versus}" if versus else "") + "."
    text += filters(q.properties, q.filter_test_accounts)
    return Metadata(_cut(name), text)


# ------------------------------------------------------------------------------------ lifecycle

_STATUSES: dict[int, str] = {
    M.LIFECYCLE_TOGGLE_NEW: "new",
    M.LIFECYCLE_TOGGLE_RETURNING: "returning",
    M.LIFECYCLE_TOGGLE_RESURRECTING: "resurrecting",
    M.LIFECYCLE_TOGGLE_DORMANT: "dormant",
}


def lifecycle(q: M.LifecycleQuery, labels: Labels) -> Metadata:
    subject = listed([labels.node(s) for s in q.series]) or "All events"
    name = f"{subject} lifecycle, {date_range(q.date_range)}"
    text = (
        f"New, returning, resurrecting and dormant {_actors(q)} of {subject} per {interval(q.interval)}, "
        f"{span(q.date_range)}."
    )
    shown = [_STATUSES[t] for t in q.lifecycle_filter.toggled_lifecycles if t in _STATUSES]
    if shown:
        text += f" Showing {joined(shown)} only."
    text += filters(q.properties, q.filter_test_accounts)
    return Metadata(_cut(name), text)


# ------------------------------------------------------------------------------------ paths

_PATH_TYPES: dict[int, str] = {
    M.PATH_TYPE_PAGEVIEW: "Pageview",
    M.PATH_TYPE_SCREEN: "Screen",
    M.PATH_TYPE_CUSTOM_EVENT: "Custom event",
    M.PATH_TYPE_HOGQL: "Expression",
}
_FUNNEL_PATHS = {
    "funnel_path_before_step": "before",
    "funnel_path_between_steps": "between the previous step and",
    "funnel_path_after_step": "after",
}
# paths.spec.DEFAULT_STEP_LIMIT
_DEFAULT_STEPS = 5


def paths(q: M.PathsQuery, labels: Labels) -> Metadata:
    pf = q.paths_filter
    types = [_PATH_TYPES[t] for t in pf.include_event_types if t in _PATH_TYPES]
    kinds = joined(types) if types else "Event"
    ends = ""
    if pf.start_point:
        ends += f" from {pf.start_point}"
    if pf.end_point:
        ends += f" to {pf.end_point}"
    name = f"{kinds} paths{ends}"
    steps = pf.step_limit if pf.HasField("step_limit") else _DEFAULT_STEPS
    things = "events" if not types else joined([t.lower() + "s" for t in types])
    text = f"The most common sequences of up to {plural(steps, 'step')} through {things}{ends}"
    fp = q.funnel_paths_filter
    if q.HasField("funnel_paths_filter") and fp.HasField("funnel_source"):
        chain = " → ".join(labels.node(s) for s in fp.funnel_source.series)
        where = _FUNNEL_PATHS.get(fp.funnel_path_type, "around")
        step = f"step {fp.funnel_step}" if fp.HasField("funnel_step") else "a step"
        name += f" {where.split(' ')[-1] if where != 'around' else 'around'} {step} of {chain}"
        text += f", of users {where} {step} of the funnel {chain}"
    name += f", {date_range(q.date_range)}"
    text += f", {span(q.date_range)}."
    if pf.exclude_events:
        text += f" Ignoring {joined(list(pf.exclude_events), 'and')}."
    text += filters(q.properties, q.filter_test_accounts)
    return Metadata(_cut(name), text)


# ------------------------------------------------------------------------------------ SQL


def hogql(q: M.HogQLQuery, field: str, display: int = M.CHART_DISPLAY_TYPE_UNSPECIFIED) -> Metadata:
    if not q.query.strip():
        raise invalid("the SQL query is empty", f"{field}.query")
    shape = sql.shape(q.query)
    columns = listed(shape.columns) if shape.columns else "rows"
    tables = joined(shape.tables) if shape.tables else None
    name = q.name if q.HasField("name") and q.name else f"SQL: {columns}" + (f" from {tables}" if tables else "")
    text = f"SQL query selecting {columns}" + (f" from {tables}" if tables else "")
    if shape.grouped:
        text += f", grouped by {joined(shape.grouped)}"
    text += "."
    if q.variables:
        text += f" Uses the variable{'s' if len(q.variables) > 1 else ''} {joined(sorted(q.variables))}."
    shown_as = _DISPLAYS.get(display) or ("as a line graph" if display == M.CHART_DISPLAY_TYPE_ACTIONS_LINE_GRAPH else None)
    if shown_as:
        text += f" Shown {shown_as}."
    return Metadata(_cut(name), text)


# ------------------------------------------------------------------------------------ any node

_KINDS: dict[str, Callable[[Any, Labels], Metadata]] = {
    "trends_query": trends,
    "funnels_query": funnels,
    "retention_query": retention,
    "paths_query": paths,
    "stickiness_query": stickiness,
    "lifecycle_query": lifecycle,
}


def generate(query: M.QueryNode | None, action_names: Mapping[int, str]) -> Metadata:
    """The deterministic name and description of `query`; InvalidArgument naming the field when it
    is missing or holds no node to describe."""
    if query is None:
        raise InvalidArgument(MISSING, field="query", reason="MISSING_QUERY")
    labels = Labels(action_names)
    node = query.WhichOneof("node")
    if node is None:
        raise invalid("no query node is set", "query")
    if node == "insight_viz_node":
        member = query.insight_viz_node.source.WhichOneof("query")
        if member is None:
            raise invalid("the InsightVizNode has no source query", "query.insight_viz_node.source")
        return _KINDS[member](getattr(query.insight_viz_node.source, member), labels)
    if node == "data_visualization_node":
        dv = query.data_visualization_node
        if not dv.HasField("source"):
            raise invalid("the DataVisualizationNode has no source query", "query.data_visualization_node.source")
        return hogql(dv.source, "query.data_visualization_node.source", dv.display)
    if node == "hogql_query":
        return hogql(query.hogql_query, "query.hogql_query")
    if node == "insight_actors_query":
        return actors(query.insight_actors_query, labels)
    return _KINDS[node](getattr(query, node), labels)


def actors(q: M.InsightActorsQuery, labels: Labels) -> Metadata:
    """A drill-down is named after the insight it drills into: "Persons of <that insight's name>",
    and, for a path, the node or edge it picks."""
    member = q.source.WhichOneof("query")
    if member is None:
        raise invalid("the InsightActorsQuery has no source query", "query.insight_actors_query.source")
    inner = _KINDS[member](getattr(q.source, member), labels)
    picked = ""
    if member == "paths_query":
        pf = q.source.paths_query.paths_filter
        if pf.path_dropoff_key:
            picked = f" who dropped off at {pf.path_dropoff_key}"
        elif pf.path_start_key and pf.path_end_key:
            picked = f" who went from {pf.path_start_key} to {pf.path_end_key}"
        elif pf.path_start_key:
            picked = f" who went on from {pf.path_start_key}"
        elif pf.path_end_key:
            picked = f" who reached {pf.path_end_key}"
    return Metadata(_cut(f"Persons{picked} in {inner.name}"), f"The persons{picked} in: {inner.description}")


def action_ids(query: M.QueryNode) -> set[int]:
    """Ids of every action the query names (series, group members, exclusions, retention entities,
    funnel-paths sources), so their stored names can be read at once."""
    found: set[int] = set()

    def walk(message: Any) -> None:
        name = message.DESCRIPTOR.name
        if name in ("ActionsNode", "FunnelExclusionActionsNode") and message.HasField("id"):
            found.add(int(message.id))
        if name == "RetentionEntity" and (message.type == "actions" or message.kind == "ActionsNode"):
            which = message.id.WhichOneof("kind")
            value = getattr(message.id, which) if which else None
            if value is not None and str(value).lstrip("-").isdigit():
                found.add(int(value))
        for field, value in message.ListFields():
            if field.message_type is None or field.message_type.GetOptions().map_entry:
                continue  # scalars, and maps (SQL values and variables name no action)
            for item in [value] if isinstance(value, Message) else value:
                walk(item)

    walk(query)
    return found
