"""Pure-Python evaluation of a small part of HogQL: one expression of an event (the oracle's
`funnelAggregateByHogQL`), written from query-engine-semantics §1.1/§1.3 and ClickHouse's NULL rules.

Grammar: string literals ('…', with '' or \\' inside), whole numbers, NULL, the fields `event`,
`distinct_id`, `properties.<key>…` and `person.properties.<key>` (the property text: missing, JSON
null and '' are NULL), calls of lower, upper, trim, concat, coalesce, ifNull, nullIf, toString,
substring(s, offset, length) and if(a = b, x, y) / if(a != b, x, y), and `=` / `!=` between two
of those (1/0, NULL when a side is NULL). Values are str, int or None.

An aggregate, an unknown field or text it cannot read raises InvalidArgument (as the engine
refuses them); a function outside the list raises NotImplementedError (the strategies draw none).
It shares no code with server/.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from tests.oracle.trends import Event, InvalidArgument, prop_text, to_float_or_null

Value = str | int | None
Evaluator = Callable[[Event], Value]

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^'\\]|\\.|'')*')|(?P<number>[0-9]+)|(?P<name>[A-Za-z_$][A-Za-z0-9_$]*)"
    r"|(?P<op>!=|=|\(|\)|,|\.))"
)
_AGGREGATES = {"count", "sum", "avg", "min", "max", "uniq", "any", "countif", "sumif", "groupuniqarray"}


def _tokens(text: str) -> list[tuple[str, str]]:
    found, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        match = _TOKEN.match(text, at)
        if match is None:
            raise InvalidArgument(f"cannot read the expression at {at}")
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        at = match.end()
    return found


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"''|\\(.)", lambda m: "'" if m.group(0) == "''" else m.group(1), body)


def _lower(v: Value) -> Value:
    # ClickHouse's lower/upper change ASCII letters only (lowerUTF8 is the Unicode one).
    return None if v is None else re.sub("[A-Z]+", lambda m: m.group(0).lower(), str(v))


def _upper(v: Value) -> Value:
    return None if v is None else re.sub("[a-z]+", lambda m: m.group(0).upper(), str(v))


def _trim(v: Value) -> Value:
    return None if v is None else str(v).strip(" ")


def _concat(*vs: Value) -> Value:
    return None if any(v is None for v in vs) else "".join(str(v) for v in vs)


def _coalesce(*vs: Value) -> Value:
    return next((v for v in vs if v is not None), None)


def _null_if(a: Value, b: Value) -> Value:
    return None if a is not None and b is not None and a == b else a


def _to_string(v: Value) -> Value:
    return None if v is None else str(v)


def _substring(s: Value, offset: Value, length: Value) -> Value:
    if s is None or offset is None or length is None:
        return None
    assert isinstance(offset, int) and isinstance(length, int) and offset >= 1
    return str(s)[offset - 1 : offset - 1 + length]


def _to_float(v: Value) -> Value:
    """toFloat64OrNull of a text (the oracle's reading of a number, trends.to_float_or_null)."""
    if v is None:
        return None
    number = to_float_or_null(str(v))
    return None if number is None else number  # type: ignore[return-value]


_FUNCTIONS: dict[str, Callable[..., Value]] = {
    "lower": _lower,
    "upper": _upper,
    "trim": _trim,
    "concat": _concat,
    "coalesce": _coalesce,
    "ifnull": _coalesce,
    "nullif": _null_if,
    "tostring": _to_string,
    "substring": _substring,
    "tofloat64ornull": _to_float,
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _tokens(text)
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.items[self.at] if self.at < len(self.items) else None

    def take(self, text: str | None = None) -> tuple[str, str]:
        item = self.peek()
        if item is None or (text is not None and item[1] != text):
            raise InvalidArgument(f"expected {text or 'more'} in the expression")
        self.at += 1
        return item

    def expression(self) -> Evaluator:
        left = self.primary()
        item = self.peek()
        if item is not None and item[1] in ("=", "!="):
            self.take()
            right = self.primary()
            equal = item[1] == "="

            def compare(e: Event) -> Value:
                a, b = left(e), right(e)
                if a is None or b is None:
                    return None
                return int((a == b) == equal)

            return compare
        return left

    def primary(self) -> Evaluator:
        kind, text = self.take()
        if kind == "string":
            value = _unquote(text)
            return lambda e: value
        if kind == "number":
            number = int(text)
            return lambda e: number
        if kind != "name":
            if text == "(":
                inner = self.expression()
                self.take(")")
                return inner
            raise InvalidArgument(f"unexpected {text} in the expression")
        if text.upper() == "NULL":
            return lambda e: None
        item = self.peek()
        if item is not None and item[1] == "(":
            return self.call(text)
        parts = [text]
        while self.peek() is not None and self.peek() == ("op", "."):
            self.take(".")
            parts.append(self.take()[1])
        return _field(parts)

    def call(self, name: str) -> Evaluator:
        self.take("(")
        args: list[Evaluator] = []
        if self.peek() != ("op", ")"):
            args.append(self.expression())
            while self.peek() == ("op", ","):
                self.take(",")
                args.append(self.expression())
        self.take(")")
        lowered = name.lower()
        if lowered in _AGGREGATES:
            raise InvalidArgument(f"{name}() is an aggregate")
        if lowered == "if":
            if len(args) != 3:
                raise InvalidArgument("if() takes three arguments")
            cond, yes, no = args
            return lambda e: yes(e) if cond(e) else no(e)
        function = _FUNCTIONS.get(lowered)
        if function is None:
            raise NotImplementedError(f"the oracle does not evaluate {name}()")
        return lambda e: function(*(a(e) for a in args))


def _field(parts: list[str]) -> Evaluator:
    if parts == ["event"]:
        return lambda e: e.event
    if parts == ["distinct_id"]:
        return lambda e: e.distinct_id
    if len(parts) == 2 and parts[0] == "properties":
        key = parts[1]
        return lambda e: prop_text(e.properties, key)
    if len(parts) == 3 and parts[:2] == ["person", "properties"]:
        key = parts[2]
        return lambda e: prop_text(e.person_properties, key)
    raise InvalidArgument(f"{'.'.join(parts)} is not a field of the event")


@functools.lru_cache(maxsize=256)
def evaluator(text: str) -> Evaluator:
    """The value of expression `text` for an event; InvalidArgument when the engine refuses it."""
    parser = _Parser(text)
    if parser.peek() is None:
        raise InvalidArgument("the expression is empty")
    found = parser.expression()
    if parser.peek() is not None:
        raise InvalidArgument("the expression goes on after its end")
    return found


def actor_text(value: Any) -> str:
    """The actor an expression's value makes: its text, '' (no actor) for NULL."""
    return "" if value is None else str(value)


Aggregator = Callable[[Sequence[Event]], float]


@functools.lru_cache(maxsize=256)
def aggregator(text: str) -> Aggregator:
    """The value of aggregate expression `text` (trends' `math_hogql`) over a bucket's events:
    `count()`, `count(x)` / `uniq(x)` (values that are not NULL; distinct ones), or
    sum/min/max/avg(x) of numbers (NULLs skipped). A bucket with no value is 0 (the engine's
    ifNull). A scalar expression (no aggregate around it) is InvalidArgument: it has no one value
    per bucket."""
    parser = _Parser(text)
    kind, name = parser.take()
    lowered = name.lower()
    if kind != "name" or lowered not in _AGGREGATES or parser.peek() != ("op", "("):
        evaluator(text)  # refused when it does not parse either
        raise InvalidArgument("a math expression aggregates the events")
    parser.take("(")
    inner: Evaluator | None = None
    if parser.peek() != ("op", ")"):
        inner = parser.expression()
    parser.take(")")
    if parser.peek() is not None:
        raise NotImplementedError("the oracle evaluates one aggregate call")

    def values(events: Sequence[Event]) -> list[Any]:
        assert inner is not None
        return [v for v in (inner(e) for e in events) if v is not None]

    if lowered == "count":
        return (lambda events: float(len(events))) if inner is None else (lambda events: float(len(values(events))))
    if inner is None:
        raise InvalidArgument(f"{name}() takes an argument")
    if lowered == "uniq":
        return lambda events: float(len(set(values(events))))
    if lowered in ("sum", "min", "max", "avg"):

        def numeric(events: Sequence[Event]) -> float:
            found = values(events)
            if any(not isinstance(v, int | float) for v in found):
                raise NotImplementedError("the oracle aggregates numbers only")
            if not found:
                return 0.0
            if lowered == "sum":
                return math.fsum(found)
            if lowered == "avg":
                return math.fsum(found) / len(found)
            return float(min(found) if lowered == "min" else max(found))

        return numeric
    raise NotImplementedError(f"the oracle does not evaluate {name}()")
