"""The caller's SQL as one SELECT: parsed, and refused when it is anything else or carries a clause
that only the service may set (SETTINGS, FORMAT, INTO OUTFILE, placeholders)."""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from server.queries.sql.dialect import parse, tokens
from server.queries.sql.problems import invalid, later

# Longest SQL text accepted (the reference's saved queries are far shorter).
MAX_SQL_CHARS = 100_000
# sqlglot underlines the offending token with terminal escapes: not for a caller's message.
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
# The parser's own class names in its messages: not the caller's vocabulary.
_INTERNALS = re.compile(r"\s*for <class '[^']*'>")


def _where(sql: str, offset: int) -> str:
    """Where a character offset is ("line L, column C"), for messages that point at a construct."""
    line = sql.count("\n", 0, offset) + 1
    column = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


def check_placeholders(sql: str) -> list[Token]:
    """Refuses `{…}` (the reference's placeholders, or ClickHouse query parameters and map literals:
    parameters are the service's alone) and `?`; `{filters}` and `{variables.x}` are not built yet."""
    try:
        found = tokens(sql)
    except (TokenError, ValueError) as exc:
        raise invalid(f"the SQL cannot be read: {_ESCAPES.sub('', str(exc))}") from None
    for i, token in enumerate(found):
        if token.token_type == TokenType.L_BRACE:
            name = found[i + 1].text if i + 1 < len(found) else ""
            if name.lower() == "filters":
                raise later("the {filters} placeholder")
            if name.lower() == "variables":
                raise later("{variables.…} placeholders")
            raise invalid(
                f"'{{' at {_where(sql, token.start)}: placeholders and query parameters are not allowed "
                "(write a map with map(…))"
            )
        if token.token_type in (TokenType.PLACEHOLDER, TokenType.PARAMETER):
            raise invalid(f"'{token.text}' at {_where(sql, token.start)}: placeholders are not allowed")
    return found


def _statement_name(tree: exp.Expr) -> str:
    if isinstance(tree, exp.Command):
        return str(tree.this).upper()
    return type(tree).__name__.upper()


# Statement and clause kinds that must never run, wherever they appear in the tree.
_DENIED: tuple[type[exp.Expr], ...] = (
    exp.Command,
    exp.Insert,
    exp.Update,
    exp.Delete,
    exp.Create,
    exp.Drop,
    exp.Alter,
    exp.Set,
    exp.Use,
    exp.Describe,
    exp.Into,
    exp.Pragma,
    exp.Transaction,
    exp.Commit,
    exp.Rollback,
    exp.Copy,
    exp.Kill,
    exp.Show,
    exp.Placeholder,
    exp.Parameter,
    exp.SessionParameter,
)


def parse_select(sql: str) -> exp.Query:
    """The one SELECT (or UNION/INTERSECT/EXCEPT of SELECTs) `sql` holds; QueryError otherwise."""
    if not sql.strip():
        raise invalid("the SQL is empty: write one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise invalid(f"the SQL is longer than {MAX_SQL_CHARS} characters")
    found = check_placeholders(sql)
    if not found:
        raise invalid("the SQL is empty: write one SELECT statement")
    if found[0].text.upper() not in ("SELECT", "WITH", "("):
        raise invalid(f"only SELECT statements are allowed (found {found[0].text.upper()})")
    try:
        statements = [s for s in parse(sql) if s is not None]
    except RecursionError:
        raise invalid("the SQL is nested too deeply") from None
    except (ParseError, TokenError) as exc:
        first = _ESCAPES.sub("", str(exc)).splitlines()[0]
        raise invalid(f"the SQL cannot be parsed: {_INTERNALS.sub('', first)}") from None
    if len(statements) != 1:
        raise invalid(f"exactly one statement is allowed (found {len(statements)})")
    tree = statements[0]
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        raise invalid(f"only SELECT statements are allowed (found {_statement_name(tree)})")
    for node in tree.walk():
        check_node(node)
    return tree


def check_node(node: exp.Expr) -> None:
    """Refuses a node of a kind or with a clause a caller may not write."""
    if isinstance(node, _DENIED):
        raise invalid(f"{_statement_name(node)} is not allowed inside a SELECT")
    if isinstance(node, exp.Query):
        for clause, name in (("settings", "SETTINGS"), ("format", "FORMAT"), ("into", "INTO")):
            if node.args.get(clause):
                raise invalid(f"the {name} clause is not allowed (the service sets the engine settings)")
    if isinstance(node, exp.Final):
        raise invalid("FINAL is not allowed: the tables already read each row once")
    if isinstance(node, exp.With) and node.args.get("recursive"):
        raise invalid("WITH RECURSIVE is not allowed")

