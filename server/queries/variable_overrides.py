"""A read's `variables_override`: new values for a saved SQL insight's variables, for that read only."""

from __future__ import annotations

from collections.abc import Mapping

from generated.insights.v1 import query_pb2
from server.errors import InvalidArgument
from server.queries.common.errors import QueryError
from server.queries.sql.bindings import typed


def check(variables: Mapping[str, query_pb2.HogQLVariable], field: str) -> None:
    """INVALID_ARGUMENT naming the override (at `field`) whose value cannot bind; reads nothing."""
    for key, variable in variables.items():
        path = f"{field}.{key}"
        if variable.HasField("variable_id") and variable.variable_id != key:
            raise InvalidArgument(f"variable_id {variable.variable_id!r} differs from its key {key!r}", field=f"{path}.variable_id")
        if variable.is_null:
            continue
        if not variable.HasField("value"):
            raise InvalidArgument("an override sets value or is_null", field=f"{path}.value")
        try:
            typed(variable.value, f"{path}.value")
        except QueryError as exc:
            raise InvalidArgument(exc.message, field=exc.path) from None


def _sql_node(query: query_pb2.QueryNode) -> query_pb2.HogQLQuery | None:
    member = query.WhichOneof("node")
    if member == "data_visualization_node":
        return query.data_visualization_node.source
    if member == "hogql_query":
        return query.hogql_query
    return None


def apply(
    query: query_pb2.QueryNode | None, variables: Mapping[str, query_pb2.HogQLVariable], field: str
) -> query_pb2.QueryNode | None:
    """A copy of `query` whose variables take the overrides' values (the saved code_name stays, as
    the reference merges them). An override of a variable the insight does not have, or on an insight
    that is not SQL, is refused: it would change nothing, and nothing asked is ignored."""
    if not variables:
        return query
    check(variables, field)
    merged = query_pb2.QueryNode()
    if query is not None:
        merged.CopyFrom(query)
    node = _sql_node(merged)
    if node is None:
        raise InvalidArgument("only SQL insights have variables", field=field)
    for key, override in variables.items():
        if key not in node.variables:
            raise InvalidArgument(f"the insight has no variable {key!r}", field=f"{field}.{key}")
        target = node.variables[key]
        if override.code_name and override.code_name != target.code_name:
            raise InvalidArgument(
                f"variable {key!r} is {{variables.{target.code_name}}}, not {override.code_name}",
                field=f"{field}.{key}.code_name",
            )
        target.ClearField("value")
        target.ClearField("is_null")
        if override.is_null:
            target.is_null = True
        else:
            target.value.CopyFrom(override.value)
    return merged
