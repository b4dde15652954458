"""One HogQL expression of an event row (e.g. `funnelAggregateByHogQL`) compiled to the kinds' SQL.

The text is read by the SQL insights' parser (dialect.py) as one scalar expression: no statement,
subquery, table, alias, window, lambda or placeholder, and no aggregate unless the caller asks for
one. Calls pass the SQL insights' function allowlist (functions.py). Names are the event row's
fields (query-engine-semantics §1.1 "HogQL virtual fields on events"): `properties.<key>…` reads the
event property's text as the kinds do (common/properties.py), `person.properties.<key>` the
person's, and `event`, `timestamp`, `distinct_id`, `person_id`, `uuid`, `elements_chain`,
`created_at`, `$session_id`, `$window_id`, `$group_0`…`$group_4` their columns. Every literal and
key is a bound parameter: the printed SQL holds no text of the caller's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import TokenType

from server.queries.base import Execute
from server.queries.common.errors import QueryError
from server.queries.common.properties import property_text
from server.queries.common.sql import Params
from server.queries.sql.dialect import parse_tokens, render, tokens
from server.queries.sql.engine_errors import cleaned_message, engine_code, tripped_limit
from server.queries.sql.functions import AGGREGATES, ALLOWED, function_name
from storage.events import QueryCancelled, is_cancellation

MAX_EXPRESSION_CHARS = 4_000
# Nesting of parentheses (calls, groups) and of the parsed tree: far beyond any written expression,
# far below what the recursive parser and printer can take.
MAX_DEPTH = 48
_FIELDS = "event, timestamp, distinct_id, person_id, uuid, elements_chain, created_at, $session_id, properties.<key>, person.properties.<key>"
# Fields of the row read as they are (their columns on `events`); DateTime ones in the caller's time zone.
_COLUMNS = {"event": "event", "distinct_id": "distinct_id", "person_id": "person_id", "uuid": "uuid",
            "elements_chain": "elements_chain", "$session_id": "`$session_id`"}
_TIMES = ("timestamp", "created_at")
# Keys the reference keeps as String columns ('' when absent): read from the properties the same way.
_KEY_COLUMNS = ("$window_id", *(f"$group_{i}" for i in range(5)))
_PROPERTIES = "properties"
_PERSON = "person"
# Node kinds an expression may hold (anything else is refused by name). Binary covers arithmetic,
# comparisons, AND/OR, LIKE, `||`; Func every call (then checked against the allowlist).
_ALLOWED_NODES: tuple[type[exp.Expr], ...] = (
    exp.Column,
    exp.Identifier,
    exp.Literal,
    exp.Boolean,
    exp.Null,
    exp.Paren,
    exp.Neg,
    exp.Not,
    exp.BitwiseNot,
    exp.Binary,
    exp.In,
    exp.Between,
    exp.Func,
    exp.DataType,
    exp.DataTypeParam,
    exp.Interval,
    exp.Var,
    exp.Tuple,
)
# Binary kinds that are no operators of values: `a.b` on a computed value, `a := b`.
_DENIED_BINARY: tuple[type[exp.Expr], ...] = (exp.Dot, exp.PropertyEQ)
# Integers wider than this do not fit the engine's Int64 (UInt64 up to 2^64 - 1).
_INT64 = 2**63


def compile_expression(
    text: str, params: Params, *, path: str, timezone: str = "UTC", aggregate: bool = False
) -> str:
    """The SQL of expression `text` over a row of `events` (its values bound in `params`);
    QueryError naming `path` when it is not one allowed scalar expression (`aggregate`: aggregate
    calls allowed, as in a math expression)."""
    try:
        tree = _parse(text, path)
        _check(tree, path, aggregate)
        return render(_bind(tree, params, path, timezone), copy=False)
    except QueryError:
        raise
    except RecursionError:
        raise QueryError("the expression is nested too deeply", path) from None
    except (ParseError, TokenError, ValueError, IndexError, KeyError, TypeError, AttributeError):
        # The parser (or printer) stumbled on the text: still the caller's expression that cannot be
        # read, never an internal error.
        raise QueryError("the expression cannot be parsed", path) from None


def check_expression(text: str, *, path: str, aggregate: bool = False) -> None:
    """QueryError naming `path` unless `text` compiles (the checks of compile_expression)."""
    compile_expression(text, Params("__chk"), path=path, aggregate=aggregate)


def engine_refusal(error: BaseException, path: str) -> QueryError | None:
    """The caller's error for an engine error of a statement whose only caller-written part is an
    expression (`lower(1)`, `toInt64('abc')`, `intDiv(x, 0)`: types and values the checks cannot
    know): INVALID_ARGUMENT naming `path` with the engine's cleaned sentence. None for anything
    else (no engine code, or a tripped limit), which stays the service's."""
    if engine_code(error) is None or tripped_limit(error) is not None:
        return None
    return QueryError(f"the engine cannot compute the expression: {cleaned_message(error)}", path)


def run_statement(execute: Execute, sql: str, params: Params, paths: Sequence[str] = ()) -> Any:
    """The rows of `sql`. With the caller's HogQL expressions in it (`paths`, then the hogql property
    filters `params` recorded), an engine error about the statement is theirs (the rest of the
    statement is the service's, checked): INVALID_ARGUMENT naming the first expression's field
    rather than an internal error."""
    try:
        return execute(sql, params.values)
    except QueryCancelled:
        raise
    except Exception as exc:
        named = [*paths, *params.expressions]
        refused = None if not named or is_cancellation(exc) else engine_refusal(exc, named[0])
        if refused is None:
            raise
        if len(named) > 1:
            refused = QueryError(f"{refused.message} (one of the expressions of {', '.join(named)})", named[0])
        raise refused from None


def _parse(text: str, path: str) -> exp.Expr:
    if not text.strip():
        raise QueryError("the expression is empty", path)
    if len(text) > MAX_EXPRESSION_CHARS:
        raise QueryError(f"the expression is longer than {MAX_EXPRESSION_CHARS} characters", path)
    try:
        found = tokens(text)
    except (TokenError, ValueError):
        raise QueryError("the expression cannot be read (an unclosed quote?)", path) from None
    depth = 0
    for token in found:
        if token.token_type in (TokenType.L_BRACE, TokenType.R_BRACE):
            raise QueryError("placeholders ({…}) are not allowed in an expression", path)
        if token.token_type == TokenType.SEMICOLON:
            raise QueryError("an expression is one expression (no ';')", path)
        if token.token_type in (TokenType.L_PAREN, TokenType.L_BRACKET):
            depth += 1
            if depth > MAX_DEPTH:
                raise QueryError(f"the expression is nested deeper than {MAX_DEPTH} levels", path)
        elif token.token_type in (TokenType.R_PAREN, TokenType.R_BRACKET):
            depth -= 1
    if not found:
        raise QueryError("the expression is empty", path)
    try:
        statements = [s for s in parse_tokens(found, text) if s is not None]
    except (ParseError, TokenError):
        raise QueryError("the expression cannot be parsed", path) from None
    if len(statements) != 1:
        raise QueryError("an expression is one expression", path)
    return statements[0]


def _depth(tree: exp.Expr) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.iter_expressions())
    return deepest


def _kind(node: exp.Expr) -> str:
    return type(node).__name__.upper()


def _check(tree: exp.Expr, path: str, aggregate: bool) -> None:
    """Refuses any node kind outside the allowlist, a call outside the function allowlist, an
    aggregate (unless `aggregate`), IN over a table or subquery, and a tree deeper than MAX_DEPTH."""
    if _depth(tree) > 2 * MAX_DEPTH:
        raise QueryError(f"the expression is nested deeper than {MAX_DEPTH} levels", path)
    for node in tree.walk():
        if isinstance(node, exp.Query | exp.Subquery | exp.Table):
            raise QueryError("an expression reads the event's own fields: no SELECT, subquery or table", path)
        if isinstance(node, exp.Window):
            raise QueryError("window functions (OVER) are not allowed in an expression", path)
        if isinstance(node, exp.Lambda):
            raise QueryError("lambdas (x -> …) are not supported in an expression", path)
        if isinstance(node, exp.Alias):
            raise QueryError("an expression has no alias (AS …)", path)
        if isinstance(node, exp.Distinct | exp.AggFunc) and not aggregate:
            raise QueryError("aggregate functions are not allowed here: the expression is one value per event", path)
        if isinstance(node, exp.Bracket):
            # The parser shifts a subscript to 0-based: written back from a bound value it would be off by one.
            raise QueryError("subscripts (x[i]) are not supported in an expression: write arrayElement(x, i)", path)
        if isinstance(node, exp.JSONPath):
            raise QueryError("JSON paths are not supported in an expression: read properties.<key>", path)
        if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star)):
            raise QueryError("* is not allowed in an expression", path)
        if isinstance(node, exp.Distinct):
            continue
        if not isinstance(node, _ALLOWED_NODES) or isinstance(node, _DENIED_BINARY):
            raise QueryError(f"{_kind(node)} is not allowed in an expression", path)
        if isinstance(node, exp.Var) and not isinstance(node.parent, exp.Interval | exp.DataType | exp.DataTypeParam):
            raise QueryError(f"{node.name} is not a field of the event: the fields are {_FIELDS}", path)
        if isinstance(node, exp.Identifier) and not isinstance(node.parent, exp.Column):
            raise QueryError(f"{node.name} is not allowed here in an expression", path)
        if isinstance(node, exp.In) and any(node.args.get(k) for k in ("query", "field", "unnest")):
            raise QueryError("IN takes a list of values in an expression", path)
        if isinstance(node, exp.Func):
            name = function_name(node)
            if name is not None:
                if name.lower() not in ALLOWED:
                    raise QueryError(f"function {name}() is not allowed", path)
                if name.lower() in AGGREGATES and not aggregate:
                    raise QueryError(
                        f"{name}() is an aggregate: the expression is one value per event", path
                    )


def _raw(sql: str) -> exp.Expr:
    """A node printing `sql` as it is, in parentheses: only the service's SQL takes this path."""
    return exp.Paren(this=exp.Var(this=sql))


def _bind(tree: exp.Expr, params: Params, path: str, timezone: str) -> exp.Expr:
    """`tree` with every field read and every literal replaced by the service's SQL for it."""
    for node in list(tree.walk()):
        if isinstance(node, exp.Column):
            replacement = _field(node, params, path, timezone)
        elif isinstance(node, exp.Literal):
            replacement = _literal(node, params, path)
        else:
            continue
        if node is tree:
            return replacement
        node.replace(replacement)
    return tree


def _literal(node: exp.Literal, params: Params, path: str) -> exp.Expr:
    text = str(node.this)
    if isinstance(node.parent, exp.DataTypeParam | exp.Interval):
        # A type's size or an interval's count is part of the statement's shape, not a value.
        if not text.isdigit() or len(text) > 9:
            raise QueryError("a type argument or interval count is a whole number", path)
        return exp.Literal.number(int(text))
    if node.is_string:
        return _raw(params.bind(text, "String"))
    if text.isdigit():
        value = int(text)
        if value >= 2 * _INT64:
            raise QueryError(f"the number {text[:30]} is too large", path)
        return _raw(params.bind(value, "Int64" if value < _INT64 else "UInt64"))
    number = float(text)
    if not math.isfinite(number):
        raise QueryError(f"the number {text[:30]} is not finite", path)
    return _raw(params.bind(number, "Float64"))


def _keys_text(params: Params, keys: list[str], source: str) -> str:
    """The property text of nested keys, as property_text for one key."""
    if len(keys) == 1:
        return property_text(params, keys[0], source)
    column = "properties" if source == "event" else "person_properties"
    bound = ", ".join(params.bind(k, "String") for k in keys)
    return f"nullIf(JSONExtract({column}, {bound}, 'Nullable(String)'), '')"


def _field(column: exp.Column, params: Params, path: str, timezone: str) -> exp.Expr:
    parts = [str(p.this) for p in column.parts]
    if len(parts) > 1 and parts[0] == "events":
        parts = parts[1:]  # `events.x` is the row's own field
    head, rest = parts[0], parts[1:]
    if head == _PROPERTIES:
        return _raw(_keys_text(params, rest, "event") if rest else "properties")
    if head == _PERSON and rest[:1] == [_PROPERTIES]:
        return _raw(_keys_text(params, rest[1:], "person") if rest[1:] else "person_properties")
    if head == _PERSON and rest == ["id"]:
        return _raw("person_id")
    if not rest:
        if head in _COLUMNS:
            return _raw(_COLUMNS[head])
        if head in _TIMES:
            return _raw(f"toTimeZone({head}, {params.bind(timezone, 'String')})")
        if head in _KEY_COLUMNS:
            return _raw(f"JSONExtractString(properties, {params.bind(head, 'String')})")
    name = ".".join(parts)
    shown = name if len(name) <= 60 else name[:60] + "…"
    raise QueryError(f"{shown} is not a field of the event: the fields are {_FIELDS}", path)
