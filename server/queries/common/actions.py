"""An action's predicate as SQL over one `events` row: OR over its steps, each an AND of its parts,
every user value bound (selectors become a regular expression with every value escaped, itself bound).

Parts (docs/decisions.md, "Actions in queries"): `event` the event name; `url` on `$current_url`
(exact, literal substring, or regex); `href` on the chain's first href (`elements_chain_href`);
`text` on any of the chain's texts (`elements_chain_texts`); `tag_name` and `selector` over
`elements_chain` (an element of the chain matches the selector's last element and its ancestors the
ones before it, `>` asking for the direct parent); the step's property filters as a query's.
"""

from __future__ import annotations

from generated.insights.v1 import actions_pb2
from server.queries.base import ActionDefinition
from server.queries.common.errors import QueryError
from server.queries.common.properties import filters_sql, property_text
from server.queries.common.selectors import Element, SelectorError, parse_selector
from server.queries.common.sql import Params

_M = actions_pb2.ActionStepMatching
# RE2 metacharacters: a user's text is matched literally by putting a backslash before each.
_META = frozenset("\\.+*?()|[]{}^$")
# One whole element of the chain (quoted values may hold `;`, and `\"` does not end them).
_ANY = r'[^;"]*(?:"(?:[^"\\]|\\.)*"[^;"]*)*'
# One attribute `key="value"` (keys hold no `;`, `"` or `=`).
_ATTRIBUTE = r'[^;"=]*="(?:[^"\\]|\\.)*"'
_CLASS = r'\.[^.;"]*'


def re2_literal(text: str) -> str:
    """`text` as an RE2 pattern matching exactly it."""
    return "".join("\\" + c if c in _META else c for c in text)


def _element_pattern(element: Element) -> str:
    """A pattern matching one whole element of a chain that has every part `element` asks for."""
    head = re2_literal(element.tag) if element.tag else r'[^.:;"]*'
    if element.classes:
        for name in sorted(set(element.classes)):
            head += f"(?:{_CLASS})*?" + r"\." + re2_literal(name.replace('"', ""))
    head += f"(?:{_CLASS})*:"
    wanted = set(element.attributes and [(f"attr__{k}", v) for k, v in element.attributes])
    if element.id is not None:
        wanted.add(("attr_id", element.id))
    body = ""
    for key, value in sorted(wanted):
        body += f"(?:{_ATTRIBUTE})*?" + re2_literal(f'{key}="' + value.replace('"', '\\"') + '"')
    return head + body + f"(?:{_ATTRIBUTE})*"


def tag_regex(tag: str) -> str:
    """The RE2 pattern an `elements_chain` matches when one of its elements has tag `tag`."""
    return f"^(?:{_ANY};)*?" + _element_pattern(Element(tag=tag.lower())) + "(?:;|$)"


def selector_regex(text: str, path: str) -> str:
    """The RE2 pattern an `elements_chain` matches when one of its elements matches the selector."""
    try:
        elements = parse_selector(text).elements
    except SelectorError as exc:
        raise QueryError(f"the stored selector cannot be read: {exc}", path) from None
    # The chain lists the clicked element first, then its ancestors: the selector's last element
    # first, then the ones before it, outward.
    pattern = f"^(?:{_ANY};)*?" + _element_pattern(elements[-1])
    for inner, outer in zip(reversed(elements[1:]), reversed(elements[:-1]), strict=True):
        skip = "" if inner.combinator == "child" else f"(?:;{_ANY})*?"
        pattern += skip + ";" + _element_pattern(outer)
    return pattern + "(?:;|$)"


def _compare(params: Params, column: str, value: str, matching: int) -> str:
    bound = params.bind(value, "String")
    if matching == _M.ACTION_STEP_MATCHING_REGEX:
        return f"match({column}, {bound})"
    if matching == _M.ACTION_STEP_MATCHING_EXACT:
        return f"{column} = {bound}"
    return f"position({column}, {bound}) > 0"


def step_sql(params: Params, step: actions_pb2.ActionStep, path: str, timezone: str) -> str:
    """SQL (0/1) for "the event matches the step"."""
    parts = []
    if step.event:
        parts.append(f"event = {params.bind(step.event, 'String')}")
    if step.url:
        url = f"ifNull({property_text(params, '$current_url', 'event')}, '')"
        matching = step.url_matching or _M.ACTION_STEP_MATCHING_CONTAINS
        parts.append(_compare(params, url, step.url, matching))
    if step.href:
        matching = step.href_matching or _M.ACTION_STEP_MATCHING_EXACT
        parts.append(_compare(params, "elements_chain_href", step.href, matching))
    if step.text:
        matching = step.text_matching or _M.ACTION_STEP_MATCHING_EXACT
        parts.append(f"arrayExists(t -> {_compare(params, 't', step.text, matching)}, elements_chain_texts)")
    if step.tag_name:
        parts.append(f"match(elements_chain, {params.bind(tag_regex(step.tag_name), 'String')})")
    if step.selector:
        pattern = selector_regex(step.selector, f"{path}.selector")
        parts.append(f"match(elements_chain, {params.bind(pattern, 'String')})")
    if step.properties:
        parts.append(filters_sql(params, step.properties, f"{path}.properties", timezone))
    return " AND ".join(f"({p})" for p in parts) if parts else "1"


def action_sql(params: Params, action: ActionDefinition, timezone: str) -> str:
    """SQL (0/1) for "the event matches the action": OR over its steps; no steps match every event."""
    if not action.steps:
        return "1"
    steps = [step_sql(params, s, f"action {action.id} steps[{i}]", timezone) for i, s in enumerate(action.steps)]
    return "(" + " OR ".join(f"({s})" for s in steps) + ")"
