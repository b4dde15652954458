"""The outline of a SQL query for its description: selected columns, tables read, GROUP BY terms (no full parse)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`|\(|\)|,|[A-Za-z_][\w.$]*|\S")
_CLAUSE_ENDS = {"where", "group", "order", "having", "limit", "union", "settings", "window", "qualify"}
_AFTER_TABLE = {"as", "final", "sample", "prewhere"} | _CLAUSE_ENDS | {"join", "inner", "left", "right", "full", "cross", "on", "using", "array", "any", "all", "semi", "anti", "outer", "asof", "global"}
# A column text longer than this is shown as its alias or cut: names stay short.
_COLUMN_LIMIT = 40


@dataclass(frozen=True)
class Shape:
    columns: list[str]
    tables: list[str]
    grouped: list[str]


def _split_top(tokens: list[str]) -> list[list[str]]:
    """Tokens split at commas outside parentheses."""
    parts: list[list[str]] = [[]]
    depth = 0
    for token in tokens:
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        if token == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def _render(tokens: list[str]) -> str:
    text = ""
    for token in tokens:
        if text and not (token in "(),." or text.endswith(("(", "."))):
            text += " "
        text += token
    return text


def _column(tokens: list[str]) -> str:
    """A select item shown by its alias when it has one (`count() AS views` → views)."""
    if len(tokens) >= 3 and tokens[-2].lower() == "as":
        return tokens[-1].strip('`"')
    text = _render(tokens)
    return text if len(text) <= _COLUMN_LIMIT else text[: _COLUMN_LIMIT - 1] + "…"


def shape(query: str) -> Shape:
    """Columns of the outermost SELECT, every table after FROM/JOIN at any depth, outer GROUP BY."""
    tokens = _TOKEN.findall(query)
    lowered = [t.lower() for t in tokens]
    depth = 0
    select_at = from_at = group_at = end_group = None
    for i, token in enumerate(lowered):
        if token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0:
            if token == "select" and select_at is None:
                select_at = i
            elif token == "from" and select_at is not None and from_at is None:
                from_at = i
            elif token == "group" and i + 1 < len(lowered) and lowered[i + 1] == "by" and group_at is None:
                group_at = i + 2
            elif group_at is not None and end_group is None and i >= group_at and token in _CLAUSE_ENDS - {"group"}:
                end_group = i
    columns: list[str] = []
    if select_at is not None:
        items = tokens[select_at + 1 : from_at if from_at is not None else len(tokens)]
        if items and items[0].lower() == "distinct":
            items = items[1:]
        columns = [_column(part) for part in _split_top(items)]
    tables: list[str] = []
    for i, token in enumerate(lowered[:-1]):
        if token in ("from", "join"):
            name = tokens[i + 1]
            call = i + 2 < len(tokens) and tokens[i + 2] == "("  # `extract(day FROM now())`, table functions
            if name != "(" and not call and name.lower() not in _AFTER_TABLE and name.lower() != "select":
                name = name.strip('`"')
                if name not in tables:
                    tables.append(name)
    grouped: list[str] = []
    if group_at is not None:
        grouped = [_column(part) for part in _split_top(tokens[group_at : end_group or len(tokens)])]
    return Shape(columns, tables, grouped)
