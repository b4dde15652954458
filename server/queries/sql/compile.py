"""From the caller's SQL text to the statement the engine runs: parse, check, rewrite, limit, print."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from server.queries.sql.dialect import render
from server.queries.sql.functions import check_functions
from server.queries.sql.guards import TEAM_PARAM
from server.queries.sql.limits import apply_limits
from server.queries.sql.names import check_names
from server.queries.sql.problems import invalid
from server.queries.sql.properties import Bound, rewrite_properties
from server.queries.sql.statement import parse_select
from server.queries.sql.tables import check_table_forms, rewrite_tables


@dataclass(frozen=True)
class Compiled:
    """The engine statement (printed from the checked tree), its bound parameters (the environment id
    and property keys), the row limit returned and the offset."""

    sql: str
    params: dict[str, Any]
    limit: int
    offset: int


def compile_sql(sql: str, team_id: int) -> Compiled:
    """QueryError (naming `query`) for SQL a caller may not run; Unimplemented for parts not built."""
    try:
        return _compile(sql, team_id)
    except RecursionError:
        # sqlglot walks and prints trees recursively: a statement nested thousands deep is refused.
        raise invalid("the SQL is nested too deeply") from None


def _compile(sql: str, team_id: int) -> Compiled:
    tree: exp.Expr = parse_select(sql)
    check_table_forms(tree)
    check_names(tree)
    check_functions(tree)
    bound = Bound()
    tree, with_person = rewrite_properties(tree, bound)
    tree = rewrite_tables(tree, with_person=with_person)
    limited = apply_limits(tree)  # type: ignore[arg-type]
    printed = render(limited.tree, copy=False)  # the tree is printed once and dropped
    # Only the parameters the statement uses (a SELECT of constants reads no table).
    params = {k: v for k, v in {TEAM_PARAM: team_id, **bound.values}.items() if "{" + k + ":" in printed}
    return Compiled(printed, params, limited.limit, limited.offset)
