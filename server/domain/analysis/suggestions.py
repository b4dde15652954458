"""Deterministic follow-up insights by the insight's kind, steered by optional free-text context.

Every target query is an InsightVizNode built from the insight's own series and filters, so it
computes wherever the insight does. The context moves suggestions sharing a word with it first
(stable otherwise) and "by <property>" in it names the breakdown property to suggest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from google.protobuf.message import Message

from generated.insights.v1 import insight_analysis_pb2 as apb
from generated.insights.v1 import query_pb2 as qpb
from server.errors import InvalidArgument

CONTEXT_MAX = 1000
# The breakdown suggested when neither the context nor the insight's filters name a property.
DEFAULT_BREAKDOWN = "$browser"
_WORD = re.compile(r"[\w$]+")
_CARRIED = ("date_range", "properties", "filter_test_accounts")
_BY = re.compile(r"\bby\s+([\w$.:-]+)", re.IGNORECASE)


def _viz(**source: object) -> qpb.QueryNode:
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=qpb.InsightSource(**source)))  # type: ignore[arg-type]


def _name(series: qpb.SeriesNode) -> str:
    """How a series reads in a title."""
    if series.HasField("events_node"):
        node = series.events_node
        return node.custom_name or node.name or node.event or "All events"
    if series.HasField("actions_node"):
        action = series.actions_node
        return action.custom_name or action.name or f"action {action.id}"
    return "series"


def _plain(series: Iterable[qpb.SeriesNode]) -> list[qpb.SeriesNode]:
    """The event and action series, their math reset (other kinds count actors their own way)."""
    out = []
    for s in series:
        if s.WhichOneof("node") not in ("events_node", "actions_node"):
            continue
        copy = qpb.SeriesNode()
        copy.CopyFrom(s)
        node = copy.events_node if copy.HasField("events_node") else copy.actions_node
        for name in ("math", "math_property", "math_hogql", "math_group_type_index"):
            node.ClearField(name)  # type: ignore[arg-type]
        out.append(copy)
    return out


def _entity(series: qpb.SeriesNode) -> qpb.RetentionEntity | None:
    """A series as a retention entity; None for all events (retention needs one event or action)."""
    if series.HasField("events_node") and series.events_node.HasField("event"):
        node = series.events_node
        return qpb.RetentionEntity(id=qpb.Scalar(string_value=node.event), type="events", name=node.event)
    if series.HasField("actions_node"):
        return qpb.RetentionEntity(id=qpb.Scalar(int_value=series.actions_node.id), type="actions")
    return None


def _series_of(entity: qpb.RetentionEntity) -> qpb.SeriesNode | None:
    """A retention entity as a series (the inverse of _entity); None for all events."""
    which = entity.id.WhichOneof("kind")
    if entity.type == "actions" and which == "int_value":
        return qpb.SeriesNode(actions_node=qpb.ActionsNode(id=entity.id.int_value))
    if which == "string_value":
        return qpb.SeriesNode(events_node=qpb.EventsNode(event=entity.id.string_value))
    return None


def _keys(message: Message) -> list[str]:
    """The keys of every property filter inside a message, in order."""
    if isinstance(message, qpb.PropertyFilter):
        return [message.key] if message.key else []
    keys: list[str] = []
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        items = value if field.is_repeated else [value]
        for item in items:
            if isinstance(item, Message):
                keys += _keys(item)
    return keys


def _filter_keys(properties: qpb.Properties, series: Iterable[qpb.SeriesNode]) -> list[str]:
    """Property keys the insight already filters on (what its author cares about), series first."""
    return [k for s in series for k in _keys(s)] + _keys(properties)


def _breakdown_property(context: str, keys: list[str], current: str) -> str:
    """The context's "by <property>", else the first filtered-on key, else $browser; never the current one."""
    named = [m.group(1) for m in _BY.finditer(context)]
    for key in [*named, *keys, DEFAULT_BREAKDOWN, "$os"]:
        if key != current:
            return key
    return DEFAULT_BREAKDOWN


def _common(query: Message) -> dict[str, object]:
    """The date range, properties and test-account switch of a query, those it sets, for another kind."""
    return {name: getattr(query, name) for name in _CARRIED if query.HasField(name)}


def _suggestion(title: str, description: str, query: qpb.QueryNode) -> apb.InsightSuggestion:
    return apb.InsightSuggestion(title=title, description=description, target_query=query)


def _trends(query: qpb.TrendsQuery, context: str) -> list[apb.InsightSuggestion]:
    series = _plain(query.series)
    out = []
    current = query.breakdown_filter.breakdown.string_value if query.HasField("breakdown_filter") else ""
    prop = _breakdown_property(context, _filter_keys(query.properties, query.series), current)
    broken = qpb.TrendsQuery()
    broken.CopyFrom(query)
    broken.breakdown_filter.CopyFrom(qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value=prop)))
    out.append(
        _suggestion(
            f"Trends broken down by {prop}",
            f"The same trend split by {prop}, to see which values drive it.",
            _viz(trends_query=broken),
        )
    )
    if len(series) >= 2:
        names = " → ".join(_name(s) for s in series)
        funnel = qpb.FunnelsQuery(series=series, **_common(query))  # type: ignore[arg-type]
        out.append(
            _suggestion(
                f"Funnel {names}", "How many actors go on through the series in order.", _viz(funnels_query=funnel)
            )
        )
    entity = _entity(series[0]) if series else None
    if entity is not None:
        out.append(_retention_suggestion(entity, query))
    if series:
        sticky = qpb.StickinessQuery(series=series[:1], **_common(query))  # type: ignore[arg-type]
        out.append(
            _suggestion(
                f"Stickiness of {_name(series[0])}",
                "On how many days of the range actors come back to it.",
                _viz(stickiness_query=sticky),
            )
        )
    return out


def _retention_suggestion(entity: qpb.RetentionEntity, source: Message) -> apb.InsightSuggestion:
    """Retention of one entity, under the source's properties (its date range means cohorts there: not carried)."""
    carried = {k: v for k, v in _common(source).items() if k != "date_range"}
    retention = qpb.RetentionQuery(
        retention_filter=qpb.RetentionFilter(target_entity=entity, returning_entity=entity), **carried  # type: ignore[arg-type]
    )
    name = entity.name or (entity.id.string_value if entity.type == "events" else f"action {entity.id.int_value}")
    return _suggestion(
        f"Retention of {name}", "How many actors who did it come back to do it again.", _viz(retention_query=retention)
    )


def _retention(query: qpb.RetentionQuery) -> list[apb.InsightSuggestion]:
    entity = query.retention_filter.target_entity
    series = _series_of(entity)
    if series is None:
        return []
    name = _name(series)
    common = {"series": [series], **{k: v for k, v in _common(query).items() if k != "date_range"}}
    return [
        _suggestion(
            f"Stickiness of {name}",
            "On how many days of the range actors do it.",
            _viz(stickiness_query=qpb.StickinessQuery(**common)),  # type: ignore[arg-type]
        ),
        _suggestion(
            f"Lifecycle of {name}",
            "New, returning, resurrecting and dormant actors per period.",
            _viz(lifecycle_query=qpb.LifecycleQuery(**common)),  # type: ignore[arg-type]
        ),
    ]


def _funnels(query: qpb.FunnelsQuery, context: str) -> list[apb.InsightSuggestion]:
    out = []
    for viz, title, description in (
        (qpb.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT, "Time to convert", "How long actors take from the first step to the last."),
        (qpb.FUNNEL_VIZ_TYPE_TRENDS, "Conversion trend", "The funnel's conversion rate over time."),
    ):
        if query.funnels_filter.funnel_viz_type == viz:
            continue
        variant = qpb.FunnelsQuery()
        variant.CopyFrom(query)
        variant.funnels_filter.funnel_viz_type = viz
        out.append(_suggestion(title, description, _viz(funnels_query=variant)))
    current = query.breakdown_filter.breakdown.string_value if query.HasField("breakdown_filter") else ""
    prop = _breakdown_property(context, _filter_keys(query.properties, query.series), current)
    broken = qpb.FunnelsQuery()
    broken.CopyFrom(query)
    broken.funnels_filter.funnel_viz_type = qpb.FUNNEL_VIZ_TYPE_STEPS
    broken.breakdown_filter.CopyFrom(qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value=prop)))
    out.append(
        _suggestion(
            f"Funnel broken down by {prop}", f"Which values of {prop} convert best.", _viz(funnels_query=broken)
        )
    )
    series = _plain(query.series)
    trend = qpb.TrendsQuery(series=series, **_common(query))  # type: ignore[arg-type]
    out.append(
        _suggestion("Trends of the funnel's steps", "How often each step happens over time.", _viz(trends_query=trend))
    )
    return out


def _series_kinds(query: qpb.StickinessQuery | qpb.LifecycleQuery, kind: str) -> list[apb.InsightSuggestion]:
    """Stickiness and lifecycle insights: their trends, the other of the two, retention of the first series."""
    plain = _plain(query.series)
    if not plain:
        return []
    name, common = _name(plain[0]), _common(query)
    out = [
        _suggestion(
            f"Trends of {name}",
            "How often it happens over time.",
            _viz(trends_query=qpb.TrendsQuery(series=plain, **common)),  # type: ignore[arg-type]
        )
    ]
    if kind == "stickiness":
        lifecycle = qpb.LifecycleQuery(series=plain[:1], **common)  # type: ignore[arg-type]
        out.append(
            _suggestion(
                f"Lifecycle of {name}",
                "New, returning, resurrecting and dormant actors.",
                _viz(lifecycle_query=lifecycle),
            )
        )
    else:
        sticky = qpb.StickinessQuery(series=plain[:1], **common)  # type: ignore[arg-type]
        out.append(
            _suggestion(
                f"Stickiness of {name}", "On how many days of the range actors do it.", _viz(stickiness_query=sticky)
            )
        )
    entity = _entity(plain[0])
    if entity is not None:
        out.append(_retention_suggestion(entity, query))
    return out


def _score(suggestion: apb.InsightSuggestion, words: set[str]) -> int:
    """How many context words the suggestion's title, description and kind contain."""
    source = suggestion.target_query.insight_viz_node.source.WhichOneof("query") or ""
    text = f"{suggestion.title} {suggestion.description} {source.replace('_query', '')}".lower()
    return len(words & set(_WORD.findall(text)))


def check_context(context: str) -> None:
    """INVALID_ARGUMENT naming `context` when it is too long."""
    if len(context) > CONTEXT_MAX:
        raise InvalidArgument(f"context must be at most {CONTEXT_MAX} characters", field="context")


def suggest(query: qpb.QueryNode | None, context: str = "") -> list[apb.InsightSuggestion]:
    """The suggestions for an insight's query, most relevant to `context` first; none for a kind
    without suggestions (paths, SQL) or a query that is not an InsightVizNode."""
    check_context(context)
    if query is None or query.WhichOneof("node") != "insight_viz_node":
        return []
    source = query.insight_viz_node.source
    which = source.WhichOneof("query")
    found: list[apb.InsightSuggestion] = []
    if which == "trends_query":
        found = _trends(source.trends_query, context)
    elif which == "funnels_query":
        found = _funnels(source.funnels_query, context)
    elif which == "retention_query":
        found = _retention(source.retention_query)
    elif which == "stickiness_query":
        found = _series_kinds(source.stickiness_query, "stickiness")
    elif which == "lifecycle_query":
        found = _series_kinds(source.lifecycle_query, "lifecycle")
    words = {w.lower() for w in _WORD.findall(context)}
    return sorted(found, key=lambda s: -_score(s, words))
