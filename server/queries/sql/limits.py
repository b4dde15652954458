"""Row limits of a SQL insight: LIMIT 100 when the statement has none, at most 50,000, and one row
more fetched than returned so that the answer knows whether more rows exist (has_more)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from server.queries.sql.problems import invalid

DEFAULT_LIMIT = 100
MAX_LIMIT = 50_000
MAX_OFFSET = 1_000_000


@dataclass(frozen=True)
class Limited:
    """The statement to run (fetching limit + 1 rows), the limit returned, and the offset."""

    tree: exp.Query
    limit: int
    offset: int


def _constant(node: exp.Expr | None, clause: str) -> int | None:
    if node is None:
        return None
    value = node.args.get("expression") if isinstance(node, (exp.Limit, exp.Offset)) else node
    if isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit():
        return int(value.this)
    raise invalid(f"{clause} must be a whole number (found {value.sql() if value else '?'})")


def _limit(count: int) -> exp.Limit:
    """A LIMIT node built directly (a number given to the builder is printed and parsed again)."""
    return exp.Limit(expression=exp.Literal.number(count))


def apply_limits(tree: exp.Query) -> Limited:
    """`tree` with its top-level LIMIT set to min(its LIMIT or 100, 50,000) + 1. A set operation
    (whose LIMIT belongs to its last branch, as the engine reads it) or a LIMIT … BY is wrapped in
    SELECT * FROM (…) instead."""
    limit_node = tree.args.get("limit")
    plain = isinstance(tree, exp.Select) and (
        limit_node is None or (isinstance(limit_node, exp.Limit) and not limit_node.expressions)
    )
    if not plain:
        rows = exp.Subquery(this=tree, alias=exp.TableAlias(this=exp.to_identifier("__rows")))
        outer = exp.Select(expressions=[exp.Star()]).from_(rows, copy=False)
        return Limited(outer.limit(_limit(DEFAULT_LIMIT + 1), copy=False), DEFAULT_LIMIT, 0)
    if isinstance(limit_node, exp.Limit) and limit_node.args.get("offset"):
        raise invalid("LIMIT offset, count: write LIMIT count OFFSET offset")
    asked = _constant(limit_node, "LIMIT")
    offset = _constant(tree.args.get("offset"), "OFFSET") or 0
    if offset > MAX_OFFSET:
        raise invalid(f"OFFSET must be at most {MAX_OFFSET} (found {offset})")
    limit = min(DEFAULT_LIMIT if asked is None else asked, MAX_LIMIT)
    return Limited(tree.limit(_limit(limit + 1), copy=False), limit, offset)
