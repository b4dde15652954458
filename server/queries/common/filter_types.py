"""Property filters of the types beyond event, person and cohort (hogql, element), and
the refusal of the rest, per query-engine-semantics §2.5 and docs/decisions.md ("Property filter types").

Every value is a bound parameter; each filter is 0/1, never NULL.
"""

from __future__ import annotations

from typing import TypeAlias

from generated.insights.v1 import query_pb2
from server.errors import Unimplemented
from server.queries.common.actions import selector_regex, tag_regex
from server.queries.common.errors import QueryError
from server.queries.common.properties import Scalar, regex_problem, scalar_of, value_text
from server.queries.common.sql import Params
from server.queries.sql.expression import compile_expression

_Op = query_pb2.PropertyOperator
_Type = query_pb2.PropertyFilterType
_OpValue: TypeAlias = query_pb2.PropertyOperator.ValueType
_TypeValue: TypeAlias = query_pb2.PropertyFilterType.ValueType

# Types the reference computes for these insights (session, group), or that name the event row's own
# columns (event_metadata), which this service could compute later.
LATER = frozenset(
    {_Type.PROPERTY_FILTER_TYPE_SESSION, _Type.PROPERTY_FILTER_TYPE_GROUP, _Type.PROPERTY_FILTER_TYPE_EVENT_METADATA}
)
_ELEMENT_KEYS = ("selector", "tag_name", "href", "text")
# Operators of an element filter's href and text (the string comparisons); selector and tag_name
# take exact and is_not only.
_TEXT_OPS = frozenset(
    {
        _Op.PROPERTY_OPERATOR_EXACT,
        _Op.PROPERTY_OPERATOR_IS_NOT,
        _Op.PROPERTY_OPERATOR_ICONTAINS,
        _Op.PROPERTY_OPERATOR_NOT_ICONTAINS,
        _Op.PROPERTY_OPERATOR_REGEX,
        _Op.PROPERTY_OPERATOR_NOT_REGEX,
    }
)
# With several values these combine with AND (each must hold); the others with OR.
_ALL_OF = frozenset({_Op.PROPERTY_OPERATOR_IS_NOT, _Op.PROPERTY_OPERATOR_NOT_ICONTAINS, _Op.PROPERTY_OPERATOR_NOT_REGEX})


def type_name(kind: _TypeValue) -> str:
    """The filter type as the JSON spells it (`data_warehouse`)."""
    return _Type.Name(kind).removeprefix("PROPERTY_FILTER_TYPE_").lower() if kind in _Type.values() else str(kind)


def refuse(kind: _TypeValue, path: str) -> None:
    """Raises for a filter type no insight here computes: Unimplemented naming `.type` for those the
    reference computes (session, group) and event_metadata, INVALID_ARGUMENT for the other products' types."""
    if kind in LATER:
        raise Unimplemented(
            f"{path}.type: {type_name(kind)} property filters are not implemented yet",
            reason="PROPERTY_FILTER_TYPE_NOT_IMPLEMENTED",
            metadata={"field": f"{path}.type"},
        )
    raise QueryError(
        f"{type_name(kind)} filters belong to another product: an insight filters by event, person, "
        "cohort, hogql or element",
        f"{path}.type",
    )


def hogql_sql(params: Params, f: query_pb2.PropertyFilter, path: str, timezone: str) -> str:
    """The filter `key` (a HogQL expression of the event) as 0/1: true when its value is non-zero
    (a comparison's 1, any non-zero number), false when zero or NULL; a value that is no number
    (a String) is the engine's type error, INVALID_ARGUMENT naming `.key`."""
    if f.operator or f.HasField("value"):
        raise QueryError("a hogql filter is its key, an expression: it has no operator or value", f"{path}.operator" if f.operator else f"{path}.value")
    if not f.HasField("key") or not f.key.strip():
        raise QueryError("a hogql filter needs an expression as its key", f"{path}.key")
    sql = compile_expression(f.key, params, path=f"{path}.key", timezone=timezone)
    params.expressions.append(f"{path}.key")
    return f"ifNull(({sql}) != 0, 0)"


def element_sql(params: Params, f: query_pb2.PropertyFilter, path: str) -> str:
    """An autocapture element filter: `selector` / `tag_name` match an element of `elements_chain`
    (exact, or is_not: none does); `href` compares the chain's first href, `text` any of its texts."""
    key = f.key if f.HasField("key") else ""
    if key not in _ELEMENT_KEYS:
        raise QueryError(f"an element filter's key is one of {', '.join(_ELEMENT_KEYS)}", f"{path}.key")
    op = f.operator or _Op.PROPERTY_OPERATOR_EXACT
    values = _values(f, f"{path}.value")
    if key in ("selector", "tag_name"):
        if op not in (_Op.PROPERTY_OPERATOR_EXACT, _Op.PROPERTY_OPERATOR_IS_NOT):
            raise QueryError(f"an element filter on {key} takes exact or is_not", f"{path}.operator")
        found = [
            f"match(elements_chain, {params.bind(_chain_pattern(key, text, f'{path}.value'), 'String')})"
            for text in values
        ]
        anyone = "(" + " OR ".join(found) + ")" if found else "0"
        return anyone if op == _Op.PROPERTY_OPERATOR_EXACT else f"(NOT {anyone})"
    if op not in _TEXT_OPS:
        raise QueryError(
            f"an element filter on {key} takes exact, is_not, icontains, not_icontains, regex or not_regex",
            f"{path}.operator",
        )
    if not values:
        return "1"
    column = "t" if key == "text" else "elements_chain_href"
    parts = [_compare(params, column, op, text, f"{path}.value") for text in values]
    test = "(" + f" {'AND' if op in _ALL_OF else 'OR'} ".join(parts) + ")"
    # As the reference: a text filter holds when one of the chain's texts passes the comparison.
    return f"arrayExists(t -> {test}, elements_chain_texts)" if key == "text" else test


def _values(f: query_pb2.PropertyFilter, path: str) -> list[str]:
    """The filter's value as texts: one scalar, or each item of a list."""
    if f.value.WhichOneof("kind") == "list_value":
        items: list[Scalar] = []
        for i, item in enumerate(f.value.list_value.values):
            scalar = scalar_of(item)
            if scalar is None:
                raise QueryError("a list value holds strings, numbers or booleans", f"{path}[{i}]")
            items.append(scalar)
        return [value_text(item) for item in items]
    scalar = scalar_of(f.value)
    if scalar is None:
        raise QueryError("an element filter needs a value", path)
    return [value_text(scalar)]


def _chain_pattern(key: str, text: str, path: str) -> str:
    if key == "selector":
        return selector_regex(text, path)
    if not text:
        raise QueryError("a tag_name filter needs a tag name", path)
    return tag_regex(text)


def _compare(params: Params, column: str, op: _OpValue, text: str, path: str) -> str:
    if op in (_Op.PROPERTY_OPERATOR_REGEX, _Op.PROPERTY_OPERATOR_NOT_REGEX):
        problem = regex_problem(text)
        if problem is not None:
            raise QueryError(problem, path)
    bound = params.bind(text, "String")
    test = {
        _Op.PROPERTY_OPERATOR_EXACT: f"{column} = {bound}",
        _Op.PROPERTY_OPERATOR_IS_NOT: f"{column} != {bound}",
        _Op.PROPERTY_OPERATOR_ICONTAINS: f"positionCaseInsensitiveUTF8({column}, {bound}) > 0",
        _Op.PROPERTY_OPERATOR_NOT_ICONTAINS: f"positionCaseInsensitiveUTF8({column}, {bound}) = 0",
        _Op.PROPERTY_OPERATOR_REGEX: f"match({column}, {bound})",
        _Op.PROPERTY_OPERATOR_NOT_REGEX: f"NOT match({column}, {bound})",
    }[op]
    return f"({test})"
