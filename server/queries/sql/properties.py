"""Property access: `properties.$browser` / `e.properties.a.b` on events and `person.properties.email`
become NULL-aware JSON extractions with the keys bound as parameters (never spliced into the SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from server.queries.sql.dialect import InsightSQL
from server.queries.sql.guards import PERSON_PROPERTIES
from server.queries.sql.problems import invalid

# Nested keys a property access may name (properties.a.b.c …), as far as a column name reaches.
_PROPERTIES = "properties"
_PERSON = "person"
# The type of a bound key, built once (building it parses the type's name).
_STRING = exp.DataType.build("String", dialect=InsightSQL)


@dataclass
class Bound:
    """Parameters the rewrite binds (property keys, placeholder values), by parameter name."""

    values: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: str) -> exp.Placeholder:
        name = f"__key_{len(self.values)}"
        self.values[name] = value
        return exp.Placeholder(this=exp.var(name), kind=_STRING.copy())

    def bind_as(self, value: Any, ch_type: str) -> exp.Placeholder:
        """A parameter of engine type `ch_type` (a type the service names, never the caller)."""
        name = f"__v_{len(self.values)}"
        self.values[name] = value
        return exp.Placeholder(this=exp.var(name), kind=exp.DataType.build(ch_type, dialect=InsightSQL))


def _text(source: exp.Column, keys: list[str], bound: Bound) -> exp.Expr:
    """The value's text: a string unescaped, a number or boolean as written, an object or array as
    JSON; NULL when the key is missing, JSON null or an empty string (the reference's rule)."""
    names = [bound.bind(k) for k in keys]

    def call(function: str, *more: exp.Expr) -> exp.Expr:
        return exp.Anonymous(this=function, expressions=[source.copy(), *[n.copy() for n in names], *more])

    is_string = exp.EQ(this=call("JSONType"), expression=exp.Literal.string("String"))
    raw = exp.Anonymous(this="nullIf", expressions=[call("JSONExtractRaw"), exp.Literal.string("null")])
    picked = exp.Anonymous(this="if", expressions=[is_string, call("JSONExtractString"), raw])
    return exp.Anonymous(this="nullIf", expressions=[picked, exp.Literal.string("")])


def rewrite_properties(tree: exp.Expr, bound: Bound) -> tuple[exp.Expr, bool]:
    """`tree` with property accesses replaced, and whether it reads person properties."""
    with_person = False
    for column in list(tree.find_all(exp.Column)):
        parts = [str(p.this) for p in column.parts]
        if len(parts) < 2:
            continue
        at = next((i for i, p in enumerate(parts[:-1]) if p == _PROPERTIES), None)
        if at is None:
            if len(parts) > 2:
                raise invalid(f"{'.'.join(parts)} is not a column: name a column, alias.column or properties.key")
            continue
        qualifier, keys = parts[:at], parts[at + 1 :]
        if qualifier and qualifier[-1] == _PERSON:
            with_person = True
            qualifier, name = qualifier[:-1], PERSON_PROPERTIES
        else:
            name = _PROPERTIES
        if len(qualifier) > 1:
            raise invalid(f"{'.'.join(parts)}: a property access names at most a table alias before it")
        source = exp.column(name, table=qualifier[0] if qualifier else None, quoted=True)
        column.replace(_text(source, keys, bound))
    return tree, with_person
