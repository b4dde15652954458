"""Names in a caller's statement: reserved ones are refused (`team_id`, the `__` prefix the rewrite
uses), and so is a bare name on the right of IN, which the engine would read as a table."""

from __future__ import annotations

from sqlglot import exp

from server.queries.sql.problems import invalid

RESERVED_PREFIX = "__"
RESERVED = ("team_id",)


def check_names(tree: exp.Expr) -> None:
    """Refuses reserved identifiers and `x IN name` / `x IN (name)`."""
    for ident in tree.find_all(exp.Identifier):
        name = str(ident.this)
        if name.startswith(RESERVED_PREFIX) or name.lower() in RESERVED:
            raise invalid(
                f"the name {name} is reserved (rows are always the caller's environment; "
                f"names starting with {RESERVED_PREFIX} belong to the service)"
            )
    for node in tree.find_all(exp.In):
        right = node.args.get("field")
        items = node.expressions
        if right is None and len(items) == 1 and isinstance(items[0], (exp.Column, exp.Identifier, exp.Dot)):
            right = items[0]
        # A bound parameter (a list variable) is a value: only the service writes parameters.
        if right is not None and not isinstance(right, (exp.Subquery, exp.Query, exp.Placeholder)):
            raise invalid(
                f"IN {right.sql()}: a name on the right of IN reads a table; write IN (SELECT …) or a list of values"
            )
