"""Trends formulas over series letters (A, B, ...): a tokenizer and recursive-descent parser, never eval."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from server.queries.common.errors import QueryError

_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)|(?P<letter>[A-Za-z])|(?P<op>[-+*/()]))"
)
_MAX_LENGTH = 2000


@dataclass(frozen=True)
class _Number:
    value: float


@dataclass(frozen=True)
class _Series:
    index: int


@dataclass(frozen=True)
class _Negate:
    operand: Node


@dataclass(frozen=True)
class _Binary:
    op: str
    left: Node
    right: Node


Node: TypeAlias = _Number | _Series | _Negate | _Binary


@dataclass(frozen=True)
class Formula:
    """A parsed formula; `evaluate` applies it element-wise to the series' data."""

    text: str
    root: Node
    letters: frozenset[str]

    def evaluate(self, series: Sequence[Sequence[float]]) -> list[float]:
        """The formula per position over the series (A = series[0], ...); x / 0 = 0; length = the longest series.

        A position beyond a series' end reads 0.
        """
        length = max((len(values) for values in series), default=0)
        return [_eval(self.root, series, i) for i in range(length)]


def _eval(node: Node, series: Sequence[Sequence[float]], i: int) -> float:
    if isinstance(node, _Number):
        return node.value
    if isinstance(node, _Series):
        values = series[node.index] if node.index < len(series) else ()
        return float(values[i]) if i < len(values) else 0.0
    if isinstance(node, _Negate):
        return -_eval(node.operand, series, i)
    left, right = _eval(node.left, series, i), _eval(node.right, series, i)
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    if right == 0:
        return 0.0
    return left / right


def parse_formula(text: str, series_count: int, path: str) -> Formula:
    """Parses `text`; raises QueryError at `path` for bad syntax or a letter beyond `series_count`."""
    if len(text) > _MAX_LENGTH:
        raise QueryError(f"a formula has at most {_MAX_LENGTH} characters", path)
    tokens = _tokenize(text, path)
    if not tokens:
        raise QueryError("the formula is empty", path)
    parser = _Parser(tokens, series_count, path)
    root = parser.expression()
    if parser.position != len(tokens):
        raise QueryError(f"unexpected {tokens[parser.position]!r} in the formula", path)
    return Formula(text=text, root=root, letters=frozenset(parser.letters))


def _tokenize(text: str, path: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:
            bad = text[position:].lstrip()[:1]
            raise QueryError(
                f"unexpected {bad!r} in the formula (use series letters, numbers, + - * / and parentheses)",
                path,
            )
        tokens.append(match.group(match.lastgroup or "op"))
        position = match.end()
    return tokens


class _Parser:
    """expression := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*; unary := '-' unary | '+' unary | atom."""

    def __init__(self, tokens: list[str], series_count: int, path: str) -> None:
        self.tokens = tokens
        self.position = 0
        self.series_count = series_count
        self.path = path
        self.letters: set[str] = set()
        self.depth = 0

    def _peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise QueryError("the formula ends too early", self.path)
        self.position += 1
        return token

    def expression(self) -> Node:
        node = self.term()
        while self._peek() in ("+", "-"):
            op = self._take()
            node = _Binary(op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self._peek() in ("*", "/"):
            op = self._take()
            node = _Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        self.depth += 1
        if self.depth > 200:
            raise QueryError("the formula nests too deeply", self.path)
        try:
            token = self._peek()
            if token == "-":
                self._take()
                return _Negate(self.unary())
            if token == "+":
                self._take()
                return self.unary()
            return self.atom()
        finally:
            self.depth -= 1

    def atom(self) -> Node:
        token = self._take()
        if token == "(":
            node = self.expression()
            if self._take() != ")":
                raise QueryError("a parenthesis is not closed in the formula", self.path)
            return node
        if token.isalpha():
            letter = token.upper()
            index = ord(letter) - ord("A")
            if index >= self.series_count:
                raise QueryError(
                    f"the formula uses {letter} but there are only {self.series_count} series", self.path
                )
            self.letters.add(letter)
            return _Series(index)
        if token[0].isdigit() or token[0] == ".":
            value = float(token)
            if not math.isfinite(value):
                raise QueryError(f"the number {token} is too large", self.path)
            return _Number(value)
        raise QueryError(f"unexpected {token!r} in the formula", self.path)
