"""Descriptor-driven checks of any message: enum numbers the contract defines, string sizes in queries.

Protobuf enums are open: a caller may send any int32 where an enum is declared, and nothing in
the decoder refuses it. Code that maps enum values to names or behaviour would then fail deep
inside (a KeyError is an INTERNAL error) or, worse, silently pick a default. These checks walk a
message once, by its descriptors, and name every field that holds a number its enum does not
define, so no hand-written list of fields can fall behind the contract.

Paths are written as the API shows fields (docs/decisions.md, "Errors"): the declared JSON name
where the contract gives one (`trendsFilter.display`), else the field name (`refresh`); members
of the reference's union messages (`json_union`: QueryNode, SeriesNode, Properties, ...) add no
segment of their own (`query.source.series[0].math`), as in the reference JSON; list items as
`[i]`, map values as `.key`.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any, TypeAlias

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor
from google.protobuf.message import Message

from generated.insights.v1 import options_pb2, query_pb2

if TYPE_CHECKING:  # the stubs type descriptors as "pure-Python or upb"; accept both
    from google._upb import _message as _upb

    Desc: TypeAlias = Descriptor | _upb.Descriptor
    Field: TypeAlias = FieldDescriptor | _upb.FieldDescriptor
    Enum: TypeAlias = EnumDescriptor | _upb.EnumDescriptor
    File: TypeAlias = FileDescriptor | _upb.FileDescriptor

# Longest text any string field of a query node may hold. Names, events, property keys and
# values, formulas and HogQL all fit easily; a longer one is a mistake or an attack on the
# engine and the cache key, and the whole request is bounded by gRPC's 4 MiB anyway.
MAX_QUERY_STRING = 65_536
# Problems reported per request: enough to fix several at once, bounded so that an error
# never repeats an unbounded request back (status details travel in size-limited trailers).
MAX_PROBLEMS = 20
# Map keys are caller text: shown shortened in a path.
_MAX_KEY_IN_PATH = 40
_QUERY_NODE = query_pb2.QueryNode.DESCRIPTOR.full_name
_F = FieldDescriptor


def problems(message: Message, path: str = "") -> Iterator[tuple[str, str]]:
    """(field path, what is wrong) for each field of `message` the contract cannot accept.

    `path` prefixes every path (e.g. "query" when `message` is a request's query node). At most
    MAX_PROBLEMS are reported.
    """
    found = _walk(message, path, in_query=message.DESCRIPTOR.full_name == _QUERY_NODE)
    for count, problem in enumerate(found):
        if count >= MAX_PROBLEMS:
            return
        yield problem


def _walk(
    message: Message, path: str, *, in_query: bool, list_member: bool = False
) -> Iterator[tuple[str, str]]:
    desc = message.DESCRIPTOR
    if not in_query and not _can_hold_problems(desc):
        return  # e.g. a batch of events: nothing to check, and walking it would cost per event
    union = _is_union(desc)
    for field, value in message.ListFields():
        if list_member:
            # The list member of a union is the list itself in the reference JSON (`properties[0]`).
            fpath = path
        elif union or _is_transparent_wkt(desc):
            fpath = path
        else:
            fpath = _join(path, _segment(field))
        child_in_query = in_query or (
            field.message_type is not None and field.message_type.full_name == _QUERY_NODE
        )
        if field.message_type is not None and _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                yield from _value(value_field, item, _join(fpath, _key_text(key)), child_in_query)
        elif field.is_repeated:
            for index, item in enumerate(value):
                yield from _value(field, item, f"{fpath}[{index}]", child_in_query)
        else:
            inner_list = union and field.message_type is not None and _is_list_wrapper(field.message_type)
            yield from _value(field, value, fpath, child_in_query, list_member=inner_list)


def _value(
    field: Field, value: Any, path: str, in_query: bool, *, list_member: bool = False
) -> Iterator[tuple[str, str]]:
    if field.message_type is not None:
        yield from _walk(value, path, in_query=in_query, list_member=list_member)
    elif field.enum_type is not None:
        if value not in _numbers(field.enum_type):
            yield path, f"{value} is not a value of {field.enum_type.name}"
    elif in_query and field.cpp_type == _F.CPPTYPE_STRING and len(value) > MAX_QUERY_STRING:
        yield path, f"at most {MAX_QUERY_STRING} characters (got {len(value)})"


# --- descriptor facts, cached: descriptors are immutable ----------------------------------------------


@cache
def _numbers(enum: Enum) -> frozenset[int]:
    return frozenset(v.number for v in enum.values)


@cache
def _can_hold_problems(desc: Desc) -> bool:
    """Whether a message of this type can hold an enum field or a query node, at any depth."""
    seen: set[str] = set()
    pending = [desc]
    while pending:
        current = pending.pop()
        if current.full_name == _QUERY_NODE:
            return True
        for field in current.fields:
            if field.enum_type is not None:
                return True
            sub = field.message_type
            if sub is not None and sub.full_name not in seen:
                seen.add(sub.full_name)
                pending.append(sub)
    return False


@cache
def _is_union(desc: Desc) -> bool:
    return bool(desc.GetOptions().Extensions[options_pb2.json_union])


@cache
def _is_transparent_wkt(desc: Desc) -> bool:
    # Struct and Value are plain JSON on the wire: a path goes through them without their own fields.
    return desc.full_name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue")


def _is_map(field: Field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@cache
def _is_list_wrapper(desc: Desc) -> bool:
    return len(desc.fields) == 1 and desc.fields[0].is_repeated and not _is_map(desc.fields[0])


@cache
def _explicit_json_names(file: File) -> frozenset[str]:
    """Full names of the fields of `file` that declare a json_name (protoc keeps only those)."""
    proto = descriptor_pb2.FileDescriptorProto.FromString(file.serialized_pb)
    prefix = f"{proto.package}." if proto.package else ""
    found: set[str] = set()

    def visit(messages: Any, scope: str) -> None:
        for message in messages:
            name = f"{scope}{message.name}"
            found.update(f"{name}.{f.name}" for f in message.field if f.HasField("json_name"))
            visit(message.nested_type, f"{name}.")

    visit(proto.message_type, prefix)
    return frozenset(found)


@cache
def _segment(field: Field) -> str:
    owner = field.containing_type
    if owner is not None and field.full_name in _explicit_json_names(owner.file):
        return field.json_name
    return field.name


def _key_text(key: object) -> str:
    text = str(key)
    return text if len(text) <= _MAX_KEY_IN_PATH else text[: _MAX_KEY_IN_PATH - 1] + "…"


def _join(path: str, segment: str) -> str:
    return f"{path}.{segment}" if path else segment
