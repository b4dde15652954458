"""Table references of a caller's statement: each virtual table, wherever it is referenced (FROM, JOIN,
subquery, CTE, UNION branch, IN (SELECT …), scalar subquery), becomes its guarded subquery; CTE
references get reserved names; anything else (table functions, database-qualified, system or unknown
tables) is refused."""

from __future__ import annotations

from functools import lru_cache

from sqlglot import exp

from server.queries.sql.dialect import render
from server.queries.sql.guards import VIRTUAL_TABLES, guard
from server.queries.sql.problems import invalid
from server.queries.sql.sessions import SESSIONS, sessions_guard

# Names a caller may not define: the virtual tables.
_TABLE_NAMES = (*VIRTUAL_TABLES, SESSIONS)
_READ = "read the events, persons and sessions tables"
# A Table node's parts that a plain reference has; any other (hints, versions, …) is refused.
_PLAIN_PARTS = {"this", "alias", "db", "catalog"}


def _cte_name(cte: exp.CTE) -> str:
    return str(cte.alias)


def _visible_ctes(table: exp.Table) -> dict[str, exp.CTE]:
    """The table CTEs in scope at `table`, innermost first: those of every enclosing WITH, except that
    inside a CTE's own body only the CTEs before it count (a CTE is not visible in itself). Stricter
    than the engine where they differ: a name it resolves otherwise becomes an unknown reserved name."""
    visible: dict[str, exp.CTE] = {}
    node: exp.Expr = table
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.With) and isinstance(node, exp.CTE):
            earlier = parent.expressions[: parent.expressions.index(node)]
            for cte in reversed(earlier):
                visible.setdefault(_cte_name(cte), cte)
        elif not isinstance(node, exp.With):
            found = parent.args.get("with_")
            if isinstance(found, exp.With):
                for cte in found.expressions:
                    visible.setdefault(_cte_name(cte), cte)
        node, parent = parent, parent.parent
    return {name: cte for name, cte in visible.items() if not cte.args.get("scalar")}


def _check_definitions(tree: exp.Expr) -> None:
    """Refuses a CTE or alias that would shadow a virtual table's name."""
    for node in tree.find_all(exp.CTE, exp.TableAlias, exp.Alias):
        if isinstance(node, exp.CTE):
            if _cte_name(node) in _TABLE_NAMES:
                raise invalid(f"the CTE {_cte_name(node)} would shadow the {_cte_name(node)} table: rename it")
        elif isinstance(node, exp.TableAlias):
            name = str(node.name)
            target = node.parent
            if name in _TABLE_NAMES and not (isinstance(target, exp.Table) and target.name == name):
                raise invalid(f"the alias {name} would shadow the {name} table: rename it")
        elif str(node.alias) in _TABLE_NAMES:
            raise invalid(f"the alias {node.alias} would shadow the {node.alias} table: rename it")


def _refuse_table(table: exp.Table) -> None:
    if not isinstance(table.this, exp.Identifier):
        name = table.this.name if isinstance(table.this, exp.Func) else type(table.this).__name__
        raise invalid(f"table functions are not allowed (FROM {name}(…)): {_READ}")
    if table.args.get("db") or table.args.get("catalog"):
        raise invalid(
            f"database-qualified tables are not allowed ({table.sql()}): {_READ}"
        )
    if table.args.get("sample"):
        raise invalid(f"SAMPLE on a table ({table.name}) is not supported in SQL insights")
    extra = sorted(k for k, v in table.args.items() if v and k not in _PLAIN_PARTS)
    if extra:
        raise invalid(f"this form of table reference is not allowed ({table.name}: {', '.join(extra)})")


@lru_cache(maxsize=8)
def _guard_text(name: str, with_person: bool) -> str:
    return sessions_guard() if name == SESSIONS else render(guard(name, with_person=with_person))


def _guarded(name: str, with_person: bool) -> exp.Subquery:
    """The guarded subquery of virtual table `name` (each filters on the caller's environment inside),
    printed once from its parsed tree of the service's own SQL and held as that text: the printer
    emits a string argument as it is, which spares copying and printing the guard's tree for every
    reference (most of a statement's compile time otherwise). No caller text ever takes this path."""
    return exp.Subquery(this=_guard_text(name, with_person))


def check_table_forms(tree: exp.Expr) -> None:
    """Refuses table functions and database-qualified tables (before any other check, so that the
    refusal names the table reference rather than a function inside it)."""
    for table in tree.find_all(exp.Table):
        _refuse_table(table)


def rewrite_tables(tree: exp.Expr, *, with_person: bool) -> exp.Expr:
    """`tree` with every virtual table guarded and every CTE renamed `__cte_N` (so that a reference
    the engine would not resolve to the CTE fails as unknown instead of reaching a stored table)."""
    _check_definitions(tree)
    ctes = list(tree.find_all(exp.CTE))
    renamed = {id(cte): f"__cte_{i}" for i, cte in enumerate(ctes)}
    plan: list[tuple[exp.Table, exp.Expr]] = []
    for table in list(tree.find_all(exp.Table)):
        _refuse_table(table)
        name = table.name
        alias = table.alias or name
        cte = _visible_ctes(table).get(name)
        if cte is not None:
            plan.append((table, exp.Table(this=exp.to_identifier(renamed[id(cte)]), alias=exp.TableAlias(this=exp.to_identifier(alias)))))
        elif name in _TABLE_NAMES:
            guarded = _guarded(name, with_person)
            guarded.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
            plan.append((table, guarded))
        else:
            raise invalid(f"unknown table {name}: SQL insights read the tables events, persons and sessions")
    for cte in ctes:
        cte.set("alias", exp.TableAlias(this=exp.to_identifier(renamed[id(cte)])))
    for table, replacement in plan:
        table.replace(replacement)
    return tree
