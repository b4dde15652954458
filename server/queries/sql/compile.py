"""From the caller's SQL text to the statement the engine runs: parse, check, rewrite, limit, print."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from server.queries.common.sql import Params
from server.queries.sql.bindings import fill_values
from server.queries.sql.dialect import render
from server.queries.sql.filters import condition_sql, replace_filters
from server.queries.sql.functions import check_functions
from server.queries.sql.guards import TEAM_PARAM
from server.queries.sql.inputs import Inputs
from server.queries.sql.limits import apply_limits
from server.queries.sql.names import check_names
from server.queries.sql.problems import invalid
from server.queries.sql.properties import Bound, rewrite_properties
from server.queries.sql.statement import parse_select
from server.queries.sql.tables import check_table_forms, rewrite_tables

# Parameters of {filters} conditions (callers cannot write names starting with "__").
FILTER_PREFIX = "__f"


@dataclass(frozen=True)
class Compiled:
    """The engine statement (printed from the checked tree), its bound parameters (the environment id,
    property keys, placeholder values), the row limit returned and the offset."""

    sql: str
    params: dict[str, Any]
    limit: int
    offset: int
    # Whether the statement holds `{filters}` (so the node's date range applies to what it reads).
    filtered: bool = False


def compile_sql(sql: str, team_id: int, inputs: Inputs | None = None) -> Compiled:
    """QueryError (naming `query`, or the input at fault) for SQL a caller may not run; Unimplemented
    for parts not built. `inputs` fill the placeholders (none: a placeholder has no value)."""
    try:
        return _compile(sql, team_id, inputs or Inputs())
    except RecursionError:
        # sqlglot walks and prints trees recursively: a statement nested thousands deep is refused.
        raise invalid("the SQL is nested too deeply") from None


def _compile(sql: str, team_id: int, inputs: Inputs) -> Compiled:
    query, spots = parse_select(sql)
    tree: exp.Expr = query
    bound = Bound()
    # Values first (bound parameters, so the checks below see them as such); {filters} stays a
    # marker until property accesses are rewritten, so its own columns are not read as those.
    filters = fill_values(tree, spots, inputs, bound)
    check_table_forms(tree)
    check_names(tree)
    check_functions(tree)
    tree, with_person = rewrite_properties(tree, bound)
    conditions = Params(FILTER_PREFIX)
    for node, spot in filters:
        with_person |= replace_filters(node, spot, inputs, conditions)
    if not filters:
        # As the reference, filters without {filters} filter nothing (they are the context a
        # dashboard offers; the SQL decides where they apply), but a broken one is still refused.
        condition_sql(inputs.filters, Params(FILTER_PREFIX), inputs)
    bound.values.update(conditions.values)
    tree = rewrite_tables(tree, with_person=with_person)
    limited = apply_limits(tree)  # type: ignore[arg-type]
    printed = render(limited.tree, copy=False)  # the tree is printed once and dropped
    # Only the parameters the statement uses (a SELECT of constants reads no table).
    params = {k: v for k, v in {TEAM_PARAM: team_id, **bound.values}.items() if "{" + k + ":" in printed}
    return Compiled(printed, params, limited.limit, limited.offset, filtered=bool(filters))
