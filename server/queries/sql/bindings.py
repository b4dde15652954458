"""Values of `{variables.code_name}` and `{name}` placeholders: bound parameters typed by their JSON value
(String, Int64 or Float64, Bool, Array of one of them), NULL for null; never text in the SQL."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2
from sqlglot import exp

from generated.insights.v1 import query_pb2
from server.queries.common.errors import QueryError
from server.queries.sql.inputs import Inputs
from server.queries.sql.placeholders import NAME, Spot, markers
from server.queries.sql.properties import Bound

# A list value holds at most this many items, and a value at most this much text in all (a list
# travels to the engine as one parameter; multi-select variables hold a few dozen).
MAX_LIST_ITEMS = 1_000
MAX_VALUE_CHARS = 65_536
# Integers a JSON number holds exactly bind as Int64; any other number as Float64.
_EXACT = 2**53


def _scalar(value: struct_pb2.Value, path: str) -> tuple[Any, str]:
    kind = value.WhichOneof("kind")
    if kind == "bool_value":
        return value.bool_value, "Bool"
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise QueryError("a number value must be finite", path)
        if number.is_integer() and abs(number) <= _EXACT:
            return int(number), "Int64"
        return number, "Float64"
    if kind == "string_value":
        return value.string_value, "String"
    raise QueryError("a value is a string, a number, a boolean, null or a list of one of them", path)


def typed(value: struct_pb2.Value, path: str) -> tuple[Any, str] | None:
    """(the Python value, its engine type) of a JSON value, None for null; QueryError at `path` for an
    object, a list of mixed or nested items, non-finite numbers, or more than the bounds allow."""
    kind = value.WhichOneof("kind")
    if kind is None:
        raise QueryError("the value is missing", path)
    if kind == "null_value":
        return None
    if kind != "list_value":
        found = _scalar(value, path)
        if found[1] == "String" and len(found[0]) > MAX_VALUE_CHARS:
            raise QueryError(f"a value holds at most {MAX_VALUE_CHARS} characters", path)
        return found
    items = value.list_value.values
    if len(items) > MAX_LIST_ITEMS:
        raise QueryError(f"a list value holds at most {MAX_LIST_ITEMS} items (found {len(items)})", path)
    scalars = [_scalar(item, f"{path}[{i}]") for i, item in enumerate(items)]
    kinds = {t for _, t in scalars}
    if kinds == {"Int64", "Float64"}:
        kinds = {"Float64"}
    if len(kinds) > 1:
        raise QueryError("a list value holds items of one kind (strings, numbers or booleans)", path)
    if sum(len(v) for v, t in scalars if t == "String") > MAX_VALUE_CHARS:
        raise QueryError(f"a value holds at most {MAX_VALUE_CHARS} characters", path)
    item_type = next(iter(kinds), "String")
    if item_type == "Float64":
        return [float(v) for v, _ in scalars], "Array(Float64)"
    return [v for v, _ in scalars], f"Array({item_type})"


def bind(value: struct_pb2.Value, path: str, bound: Bound) -> exp.Expr:
    """The expression standing for `value`: a bound parameter of its type, or NULL."""
    found = typed(value, path)
    if found is None:
        return exp.Null()
    return bound.bind_as(found[0], found[1])


def check_values(values: Mapping[str, struct_pb2.Value]) -> None:
    """Refuses a `values` entry whose name no placeholder could have or whose value cannot bind."""
    for name, value in sorted(values.items()):
        if not NAME.fullmatch(name) or name in ("filters", "variables"):
            raise QueryError("a placeholder name is letters, digits and _ (not filters or variables)", f"values.{name}")
        typed(value, f"values.{name}")


def check_variables(variables: Mapping[str, query_pb2.HogQLVariable]) -> dict[str, str]:
    """code_name → variable id, every variable checked (a code_name to write as {variables.code_name},
    an id that agrees with its key, a value that binds, or is_null)."""
    names: dict[str, str] = {}
    # By id, so that which of two clashing variables is named does not depend on map order.
    for key, variable in sorted(variables.items()):
        path = f"variables.{key}"
        if variable.HasField("variable_id") and variable.variable_id != key:
            raise QueryError(f"variable_id {variable.variable_id!r} differs from its key {key!r}", f"{path}.variable_id")
        if not NAME.fullmatch(variable.code_name):
            raise QueryError("a code_name is letters, digits and _ (written {variables.code_name})", f"{path}.code_name")
        if variable.code_name in names:
            raise QueryError(
                f"variables {names[variable.code_name]!r} and {key!r} share the code_name {variable.code_name}",
                f"{path}.code_name",
            )
        names[variable.code_name] = key
        if not variable.is_null:
            if not variable.HasField("value"):
                raise QueryError(f"the variable {variable.code_name} has no value (set value or is_null)", f"{path}.value")
            typed(variable.value, f"{path}.value")
    return names


def value_of(
    spot: Spot,
    values: Mapping[str, struct_pb2.Value],
    variables: Mapping[str, query_pb2.HogQLVariable],
    names: Mapping[str, str],
    bound: Bound,
) -> exp.Expr:
    """The expression a `{variables.x}` or `{name}` placeholder stands for; QueryError naming
    `variables` or `values` when nothing gives it a value."""
    if spot.kind == "variable":
        code_name = spot.parts[1]
        key = names.get(code_name)
        if key is None:
            raise QueryError(f"{spot.text} at {spot.where} has no variable with code_name {code_name}", "variables")
        variable = variables[key]
        if variable.is_null:
            return exp.Null()
        return bind(variable.value, f"variables.{key}.value", bound)
    name = spot.parts[0]
    if name not in values:
        raise QueryError(f"{spot.text} at {spot.where} has no value in values", "values")
    return bind(values[name], f"values.{name}", bound)


def fill_values(tree: exp.Expr, spots: Mapping[str, Spot], inputs: Inputs, bound: Bound) -> list[tuple[exp.Expr, Spot]]:
    """Puts each `{variables.x}` and `{name}` value in place of its marker in `tree`; the `{filters}`
    markers, left for later. Refuses a `values` entry no placeholder uses (never ignored)."""
    check_values(inputs.values)
    names = check_variables(inputs.variables)
    used = {spot.parts[0] for spot in spots.values() if spot.kind == "value"}
    for name in sorted(inputs.values):
        if name not in used:
            raise QueryError(f"the query has no {{{name}}} placeholder for this value", f"values.{name}")
    filters: list[tuple[exp.Expr, Spot]] = []
    for node, spot in markers(tree, dict(spots)):
        if spot.kind == "filters":
            # A parameter-like stand-in (no call, so the function allowlist does not see it).
            stand_in = exp.Placeholder(this=exp.var(str(node.this)))
            node.replace(stand_in)
            filters.append((stand_in, spot))
        else:
            node.replace(value_of(spot, inputs.values, inputs.variables, names, bound))
    return filters
