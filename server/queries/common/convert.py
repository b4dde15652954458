"""Converts query JSON between the reference's form and our protobuf JSON form (the CLI's `query convert`)."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from generated.insights.v1 import query_pb2
from server.queries.common.codec import CodecError, from_reference_json, to_reference_json


def reference_to_proto_json(data: Any) -> str:
    """Reference JSON (a query node, or an insight object holding one under "query") → protobuf JSON.

    The output uses proto field names, as grpcurl prints and accepts them, so it can be pasted into
    the `query` field of a CreateInsight request.
    """
    if isinstance(data, dict) and "kind" not in data and isinstance(data.get("query"), dict):
        data = data["query"]
    message = from_reference_json(data, query_pb2.QueryNode)
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)


def proto_json_to_reference(text: str) -> str:
    """Protobuf JSON of a QueryNode → the reference's JSON."""
    try:
        message = json_format.Parse(text, query_pb2.QueryNode())
    except json_format.ParseError as exc:
        raise CodecError(f"not a QueryNode in protobuf JSON: {exc}", "") from None
    return json.dumps(to_reference_json(message), indent=2, ensure_ascii=False)


def convert(text: str, to: str) -> str:
    """Converts `text` to "proto" or to "reference" JSON; raises ValueError (CodecError has a path)."""
    if to == "proto":
        return reference_to_proto_json(json.loads(text))
    if to == "reference":
        return proto_json_to_reference(text)
    raise ValueError(f"unknown target {to!r}: use proto or reference")
