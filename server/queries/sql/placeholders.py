"""The reference's placeholders in a caller's SQL (`{filters}`, `{variables.name}`, `{name}`): found in
the tokens, parsed as opaque markers, and checked to stand where an expression may (never a name)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.tokenizer_core import Token, TokenType

from server.queries.sql.problems import invalid, later

# A placeholder's parts are plain names as written (no quotes, no unicode, no `$`).
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FILTERS = "filters"
VARIABLES = "variables"


@dataclass(frozen=True)
class Spot:
    """One placeholder as written: its parts (`("variables", "plan")`) and where it is."""

    parts: tuple[str, ...]
    where: str

    @property
    def text(self) -> str:
        return "{" + ".".join(self.parts) + "}"

    @property
    def kind(self) -> str:
        """"filters", "variable" or "value"."""
        if self.parts[0] == FILTERS:
            return "filters"
        return "variable" if self.parts[0] == VARIABLES else "value"


@dataclass(frozen=True)
class Marked:
    """The caller's tokens with each placeholder replaced by a call of a marker function (a name the
    caller cannot know), and the placeholder each marker stands for."""

    tokens: list[Token]
    spots: dict[str, Spot]


def where(sql: str, offset: int) -> str:
    """Where a character offset is ("line L, column C"), for messages that point at a construct."""
    line = sql.count("\n", 0, offset) + 1
    column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def _name_at(sql: str, token: Token) -> str | None:
    """The plain name a token is, as written (a quoted name or a string is no placeholder part)."""
    written = sql[token.start : token.end + 1]
    return written if NAME.fullmatch(written) else None


def _spot(sql: str, found: list[Token], start: int) -> tuple[Spot, int] | None:
    """The placeholder whose `{` is found[start] and the index of its `}`, or None when the braces
    hold something else (a query parameter `{x:Type}`, a map literal)."""
    parts: list[str] = []
    i = start + 1
    while i < len(found):
        name = _name_at(sql, found[i])
        if name is None:
            return None
        parts.append(name)
        i += 1
        if i < len(found) and found[i].token_type == TokenType.R_BRACE:
            return Spot(tuple(parts), where(sql, found[start].start)), i
        if i >= len(found) or found[i].token_type != TokenType.DOT:
            return None
        i += 1
    return None


def _check_form(spot: Spot) -> None:
    """Refuses placeholder forms that mean nothing here (or are not built: `{filters.dateRange.from}`)."""
    head, rest = spot.parts[0], spot.parts[1:]
    if head == FILTERS and rest:
        raise later(f"the {spot.text} placeholder (at {spot.where}; write {{filters}})")
    if head == VARIABLES and len(rest) != 1:
        raise invalid(f"{spot.text} at {spot.where}: a variable is written {{variables.code_name}}")
    if head != VARIABLES and rest:
        raise invalid(f"{spot.text} at {spot.where}: a placeholder value is written {{name}}")


def mark(sql: str, found: list[Token]) -> Marked:
    """Replaces each placeholder's tokens by `marker()`; refuses `{` that opens anything else, `?`
    and `@x` (query parameters are the service's alone)."""
    nonce = secrets.token_hex(8)
    out: list[Token] = []
    spots: dict[str, Spot] = {}
    i = 0
    while i < len(found):
        token = found[i]
        if token.token_type in (TokenType.PLACEHOLDER, TokenType.PARAMETER):
            raise invalid(f"'{token.text}' at {where(sql, token.start)}: placeholders are not allowed")
        if token.token_type != TokenType.L_BRACE:
            out.append(token)
            i += 1
            continue
        got = _spot(sql, found, i)
        if got is None:
            raise invalid(
                f"'{{' at {where(sql, token.start)}: a placeholder is {{filters}}, {{variables.name}} or {{name}}; "
                "query parameters {x:Type} are not allowed (write a map with map(…))"
            )
        spot, end = got
        _check_form(spot)
        _check_neighbours(sql, found, i, end, spot)
        marker = f"__ph_{nonce}_{len(spots)}"
        spots[marker] = spot
        close = found[end]
        out.append(Token(TokenType.VAR, marker, token.line, token.col, token.start, close.end))
        out.append(Token(TokenType.L_PAREN, "(", close.line, close.col, close.end, close.end))
        out.append(Token(TokenType.R_PAREN, ")", close.line, close.col, close.end, close.end))
        i = end + 1
    return Marked(out, spots)


def _not_a_name(spot: Spot) -> Exception:
    return invalid(f"{spot.text} at {spot.where}: a placeholder stands for a value, never for a name")


def _check_neighbours(sql: str, found: list[Token], start: int, end: int, spot: Spot) -> None:
    """Refuses a placeholder written where a name goes (after AS or a dot, before a dot or a call)."""
    before = found[start - 1] if start > 0 else None
    after = found[end + 1] if end + 1 < len(found) else None
    if before is not None and before.token_type in (TokenType.ALIAS, TokenType.DOT):
        raise _not_a_name(spot)
    if after is not None and after.token_type in (TokenType.DOT, TokenType.L_PAREN):
        raise _not_a_name(spot)


def markers(tree: exp.Expr, spots: dict[str, Spot]) -> list[tuple[exp.Anonymous, Spot]]:
    """The marker calls of `tree`, each checked to stand where an expression may: not as a table
    (FROM {x}), a part of a name (e.{x}, {x}.y) or a LIMIT/OFFSET (which must be written numbers)."""
    found: list[tuple[exp.Anonymous, Spot]] = []
    for node in tree.find_all(exp.Anonymous):
        spot = spots.get(str(node.this))
        if spot is None:
            continue
        if node.expressions:
            raise _not_a_name(spot)
        parent = node.parent
        if isinstance(parent, (exp.Table, exp.Dot, exp.Column, exp.TableAlias)):
            raise _not_a_name(spot)
        if isinstance(parent, (exp.Limit, exp.Offset)):
            raise invalid(f"{spot.text} at {spot.where}: LIMIT and OFFSET take a number written in the SQL")
        found.append((node, spot))
    seen = [str(node.this) for node, _ in found]
    for marker, spot in spots.items():
        if seen.count(marker) != 1:
            # The parser placed a marker where no expression stands (never seen; refused, not run).
            raise invalid(f"{spot.text} at {spot.where}: a placeholder stands for a value")
    return found
