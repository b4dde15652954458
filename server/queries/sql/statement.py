"""The caller's SQL as one SELECT: parsed, and refused when it is anything else or carries a clause
that only the service may set (SETTINGS, FORMAT, INTO OUTFILE, query parameters)."""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import Token

from server.queries.sql.dialect import parse_tokens, tokens
from server.queries.sql.placeholders import Spot, mark
from server.queries.sql.problems import invalid

# Longest SQL text accepted (the reference's saved queries are far shorter).
MAX_SQL_CHARS = 100_000
# sqlglot underlines the offending token with terminal escapes: not for a caller's message.
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
# The parser's own class names in its messages: not the caller's vocabulary.
_INTERNALS = re.compile(r"\s*for <class '[^']*'>")
# A placeholder's marker (placeholders.mark), should the parser name one: the caller wrote a placeholder.
_MARKER = re.compile(r"__ph_[0-9a-f]+_[0-9]+(\(\))?")


def read_tokens(sql: str) -> list[Token]:
    """The tokens of `sql`; QueryError when it cannot be tokenized."""
    try:
        return tokens(sql)
    except (TokenError, ValueError) as exc:
        raise invalid(f"the SQL cannot be read: {_ESCAPES.sub('', str(exc))}") from None


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


def parse_select(sql: str) -> tuple[exp.Query, dict[str, Spot]]:
    """The one SELECT (or UNION/INTERSECT/EXCEPT of SELECTs) `sql` holds, with each placeholder a
    marker call, and what each marker stands for; QueryError otherwise."""
    if not sql.strip():
        raise invalid("the SQL is empty: write one SELECT statement")
    if len(sql) > MAX_SQL_CHARS:
        raise invalid(f"the SQL is longer than {MAX_SQL_CHARS} characters")
    found = read_tokens(sql)
    if not found:
        raise invalid("the SQL is empty: write one SELECT statement")
    if found[0].text.upper() not in ("SELECT", "WITH", "("):
        raise invalid(f"only SELECT statements are allowed (found {found[0].text.upper()})")
    marked = mark(sql, found)
    try:
        statements = [s for s in parse_tokens(marked.tokens, sql) if s is not None]
    except RecursionError:
        raise invalid("the SQL is nested too deeply") from None
    except (ParseError, TokenError) as exc:
        first = _MARKER.sub("{…}", _ESCAPES.sub("", str(exc)).splitlines()[0])
        raise invalid(f"the SQL cannot be parsed: {_INTERNALS.sub('', first)}") from None
    except (IndexError, KeyError, TypeError, ValueError, AttributeError):
        # The parser itself stumbled on the text (`SELECT map(x)` raises IndexError inside
        # sqlglot): still the caller's SQL that cannot be read, never an INTERNAL error.
        raise invalid("the SQL cannot be parsed (near a construct the parser cannot read)") from None
    if len(statements) != 1:
        raise invalid(f"exactly one statement is allowed (found {len(statements)})")
    tree = statements[0]
    if not isinstance(tree, (exp.Select, exp.SetOperation)):
        raise invalid(f"only SELECT statements are allowed (found {_statement_name(tree)})")
    for node in tree.walk():
        check_node(node)
    return tree, marked.spots


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

