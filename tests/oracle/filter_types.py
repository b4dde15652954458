"""Property filters of type hogql and element evaluated in Python, written from
query-engine-semantics §2.5 and docs/decisions.md ("Property filter types"); shares no code with server/.

hogql: the key is an expression (tests/oracle/expressions.py's part of HogQL). A comparison
(`a = b`, `a != b` at the top level) or a whole number is a truth value: true when non-zero,
false when zero or NULL; anything else is a String, which the engine refuses (InvalidArgument).
element: `selector` / `tag_name` ask that an element of the chain match (exact) or none does
(is_not); `href` compares the chain's first href ('' without one), `text` holds when one of the
chain's texts passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.oracle import expressions
from tests.oracle.actions import _Wanted, parse_selector, selector_matches
from tests.oracle.elements import derived, parse_chain
from tests.oracle.trends import Event, InvalidArgument, value_text

Pred = Callable[[Event], bool]
_ELEMENT_KEYS = ("selector", "tag_name", "href", "text")
_TEXT_OPS = ("exact", "is_not", "icontains", "not_icontains", "regex", "not_regex")
_ALL_OF = ("is_not", "not_icontains", "not_regex")


def _top_level_comparison(text: str) -> bool:
    depth, quoted = 0, False
    i = 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == "'":
                quoted = text[i + 1 : i + 2] == "'"  # '' inside a literal stays in it
                i += 1 if quoted else 0
        elif char == "'":
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif depth == 0 and char == "=":
            return True
        i += 1
    return False


def hogql_filter(f: dict[str, Any]) -> Pred:
    """The predicate of a hogql filter (InvalidArgument as the engine refuses)."""
    if f.get("operator") or "value" in f:
        raise InvalidArgument("a hogql filter has no operator or value")
    text = f.get("key")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("a hogql filter needs an expression")
    value = expressions.evaluator(text)
    if not (_top_level_comparison(text) or text.strip().isdigit()):
        raise InvalidArgument("a String is no truth value")
    return lambda e: bool(value(e))


def _values(f: dict[str, Any]) -> list[str]:
    value = f.get("value")
    if value is None:
        raise InvalidArgument("an element filter needs a value")
    return [value_text(v) for v in (value if isinstance(value, list) else [value])]


def _text_test(op: str, value: str, compile_regex: Callable[[str], re.Pattern[str]]) -> Callable[[str], bool]:
    if op == "exact":
        return lambda t: t == value
    if op == "is_not":
        return lambda t: t != value
    if op in ("icontains", "not_icontains"):
        wanted = op == "icontains"
        return lambda t: (value.lower() in t.lower()) == wanted
    pattern = compile_regex(value)
    wanted = op == "regex"
    return lambda t: (pattern.search(t) is not None) == wanted


def element_filter(f: dict[str, Any], compile_regex: Callable[[str], re.Pattern[str]]) -> Pred:
    """The predicate of an element filter."""
    key, op = f.get("key"), f.get("operator") or "exact"
    if key not in _ELEMENT_KEYS:
        raise InvalidArgument("an element filter's key is selector, tag_name, href or text")
    values = _values(f)
    if key in ("selector", "tag_name"):
        if op not in ("exact", "is_not"):
            raise InvalidArgument("selector and tag_name take exact or is_not")
        wanted = [parse_selector(v) if key == "selector" else [_Wanted(tag=v.lower())] for v in values]
        found: Pred = lambda e: any(selector_matches(w, parse_chain(e.elements_chain)) for w in wanted)  # noqa: E731
        return found if op == "exact" else (lambda e: not found(e))
    if op not in _TEXT_OPS:
        raise InvalidArgument("href and text take the string comparisons")
    if not values:
        return lambda e: True
    tests = [_text_test(op, v, compile_regex) for v in values]
    combine = all if op in _ALL_OF else any

    def passes(t: str) -> bool:
        return combine(test(t) for test in tests)

    if key == "href":
        return lambda e: passes(derived(e.elements_chain)[0])
    return lambda e: any(passes(t) for t in derived(e.elements_chain)[1])
