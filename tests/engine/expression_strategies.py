"""Trends and retention cases with HogQL expressions: hogql breakdown dimensions and `math: hogql` series, drawn
from the part of HogQL the oracle evaluates (tests/oracle/expressions.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.engine.paths_strategies import PathsCase, paths_cases
from tests.engine.retention_strategies import RetentionCase, retention_cases
from tests.engine.strategies import Case, cases

# ASCII and non-ASCII values, quotes: lower/upper change ASCII letters only, quotes stay values.
_LITERALS = ("'x'", "'-'", "'Chrome'", "'it''s'", "'ü'")
_LEAVES = (
    "properties.browser",
    "properties.browser",
    "properties.plan",
    "person.properties.tier",
    "event",
    "distinct_id",
)
# Refused alike by the engine and the oracle: an aggregate, an unknown field, text that does not parse.
_INVALID_BREAKDOWNS = ("count()", "nosuchfield", "lower(properties.browser")
_INVALID_MATHS = ("properties.amount", "nosuchfield", "sum(properties.amount")
_NUMBERS = ("properties.amount", "properties.amount", "properties.plan", "properties.flag", "person.properties.age")


def _expression(draw: st.DrawFn, depth: int) -> str:
    """A text expression of the event: fields, literals and calls that mostly keep a value."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from([*_LEAVES, draw(st.sampled_from(_LITERALS))]))

    def sub() -> str:
        return _expression(draw, depth - 1)

    shape = draw(st.integers(0, 8))
    if shape <= 2:
        return f"{draw(st.sampled_from(['lower', 'upper', 'trim', 'toString']))}({sub()})"
    if shape <= 4:
        return f"concat({sub()}, {draw(st.sampled_from(_LITERALS))}, {sub()})" if draw(st.booleans()) else f"concat({sub()}, {sub()})"
    if shape <= 6:
        return f"{draw(st.sampled_from(['coalesce', 'ifNull', 'nullIf']))}({sub()}, {sub()})"
    return f"if({sub()} {draw(st.sampled_from(['=', '!=']))} {sub()}, {sub()}, {sub()})"


def _breakdown(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(_INVALID_BREAKDOWNS))
    return _expression(draw, draw(st.integers(0, 2)))


def _math(draw: st.DrawFn) -> str:
    """An aggregate of the bucket's events: a count, distinct values, or a number's sum/min/max/avg."""
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(_INVALID_MATHS))
    kind = draw(st.sampled_from(["sum", "count", "uniq", "max", "avg", "min", "count()"]))
    if kind == "count()":
        return kind
    if kind in ("count", "uniq"):
        return f"{kind}({_expression(draw, draw(st.integers(0, 1)))})"
    return f"{kind}(toFloat64OrNull({draw(st.sampled_from(_NUMBERS))}))"


@st.composite
def trends_expression_cases(draw: st.DrawFn) -> Case:
    """A dense trends case (always broken down) whose breakdown is mostly a hogql one (alone or
    beside a property), and whose EventsNode series mostly aggregate a `math_hogql` expression."""
    case = draw(cases(dense=True))
    query: dict[str, Any] = case.query
    roll = draw(st.integers(0, 3))
    if roll > 0:
        if roll == 1:
            keep = {k: v for k, v in query["breakdownFilter"].items() if k.startswith("breakdown_") and k != "breakdown_type"}
            query["breakdownFilter"] = {**keep, "breakdown": _breakdown(draw), "breakdown_type": "hogql"}
        else:
            dims = [{"property": _breakdown(draw), "type": "hogql"}]
            if roll == 3:
                dims.insert(0, {"property": "browser", "type": "event"})
            keep = {k: v for k, v in query["breakdownFilter"].items() if k in ("breakdown_limit", "breakdown_hide_other_aggregation")}
            query["breakdownFilter"] = {**keep, "breakdowns": dims}
    for node in query["series"]:
        if node.get("kind") == "EventsNode" and draw(st.integers(0, 2)):
            for key in ("math_property", "math_property_type", "math_multiplier"):
                node.pop(key, None)
            node["math"], node["math_hogql"] = "hogql", _math(draw)
    return case


@st.composite
def retention_expression_cases(draw: st.DrawFn) -> RetentionCase:
    """A retention case broken down by a drawn HogQL expression (as `breakdown` or the one
    `breakdowns` item), keeping its limit and hide-other; now and then one both refuse."""
    case = draw(retention_cases(breakdown=True))
    bf = case.query["breakdownFilter"]
    keep = {k: v for k, v in bf.items() if k in ("breakdown_limit", "breakdown_hide_other_aggregation")}
    if draw(st.booleans()):
        case.query["breakdownFilter"] = {**keep, "breakdown": _breakdown(draw), "breakdown_type": "hogql"}
    else:
        case.query["breakdownFilter"] = {**keep, "breakdowns": [{"property": _breakdown(draw), "type": "hogql"}]}
    return case


# Path items from expressions the oracle evaluates: names, URLs, screen names, group keys, NULLs.
_PATH_EXPRESSIONS = (
    "event",
    "lower(event)",
    "coalesce(properties.$screen_name, event)",
    "concat(event, '-', coalesce(properties.$group_0, 'none'))",
    "properties.$current_url",
    "upper(coalesce(properties.$current_url, event))",
    "nullIf(event, 'signup')",
    "if(event = '$pageview', 'page', event)",
)
_INVALID_PATH_EXPRESSIONS = ("count()", "nosuchfield", "lower(event")


@st.composite
def paths_expression_cases(draw: st.DrawFn) -> PathsCase:
    """A paths case whose items are mostly a drawn pathsHogQLExpression's values: "hogql" alone
    (every event), beside custom events or $pageviews, or no type listed; its start and end
    points left out (they name items of the other types)."""
    case = draw(paths_cases())
    pf = case.query.setdefault("pathsFilter", {})
    types = draw(st.sampled_from([["hogql"], ["hogql", "custom_event"], [], ["hogql", "$pageview", "custom_event"], ["custom_event"]]))
    pf["includeEventTypes"] = types
    for key in ("startPoint", "endPoint"):
        pf.pop(key, None)
    if draw(st.integers(0, 19)) == 19:  # the largest value: hypothesis favours the smallest
        pf["pathsHogQLExpression"] = draw(st.sampled_from(_INVALID_PATH_EXPRESSIONS))
    else:
        pf["pathsHogQLExpression"] = draw(st.sampled_from(_PATH_EXPRESSIONS))
    return case
