"""Descriptor-driven, lossless conversion between the reference JSON query tree and the typed query protos."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from generated.insights.v1 import options_pb2

if TYPE_CHECKING:  # the stubs type descriptors as "pure-Python or upb"; accept both
    from google._upb import _message as _upb

    Desc: TypeAlias = Descriptor | _upb.Descriptor
    Field: TypeAlias = FieldDescriptor | _upb.FieldDescriptor
    Enum: TypeAlias = EnumDescriptor | _upb.EnumDescriptor

JsonValue = dict[str, Any] | list[Any] | str | int | float | bool
M = TypeVar("M", bound=Message)

_F = FieldDescriptor
_INT_TYPES = frozenset({_F.CPPTYPE_INT32, _F.CPPTYPE_INT64, _F.CPPTYPE_UINT32, _F.CPPTYPE_UINT64})
_FLOAT_TYPES = frozenset({_F.CPPTYPE_DOUBLE, _F.CPPTYPE_FLOAT})


class CodecError(ValueError):
    """Reference JSON that does not fit the proto (or a proto that has no JSON form); `path` names where."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path
        self.reason = message


# --- descriptor facts, cached because descriptors are immutable and looked up per node -------------


@cache
def _node_kind(desc: Desc) -> str:
    return desc.GetOptions().Extensions[options_pb2.node_kind]


@cache
def _is_union(desc: Desc) -> bool:
    return desc.GetOptions().Extensions[options_pb2.json_union]


def _is_map(field: Field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@cache
def _is_list_wrapper(desc: Desc) -> bool:
    return len(desc.fields) == 1 and desc.fields[0].is_repeated and not _is_map(desc.fields[0])


def _is_wkt(desc: Desc) -> bool:
    # Struct, Value, Timestamp, ...: their canonical proto3 JSON already is the reference form.
    return desc.file.package == "google.protobuf"


@cache
def _fields_by_json(desc: Desc) -> dict[str, Field]:
    return {f.json_name: f for f in desc.fields}


@cache
def _enum_maps(enum: Enum) -> tuple[dict[int, str], dict[str, int]]:
    out = {v.number: v.GetOptions().Extensions[options_pb2.json_value] for v in enum.values if v.number}
    return out, {s: n for n, s in out.items() if s}


def _sub(field: Field) -> Desc:
    desc = field.message_type
    if desc is None:  # unreachable: callers only pass message fields
        raise TypeError(f"{field.full_name} is not a message field")
    return desc


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@contextmanager
def _at(path: str) -> Iterator[None]:
    # protobuf's own checks (int32 range, a non-numeric map key) raise plain ValueError/TypeError.
    try:
        yield
    except CodecError:
        raise
    except (TypeError, ValueError) as exc:
        raise CodecError(str(exc), path) from exc


# --- proto -> reference JSON ------------------------------------------------------------------------


def to_reference_json(message: Message) -> JsonValue:
    """The reference JSON of `message`; raises CodecError for a union with no member set."""
    out = _encode_message(message, "")
    if out is None:
        raise CodecError(f"{message.DESCRIPTOR.name} has no member set", "")
    return out


def _encode_message(msg: Message, path: str) -> JsonValue | None:
    desc = msg.DESCRIPTOR
    if _is_wkt(desc):
        return json_format.MessageToDict(msg)
    if _is_union(desc):
        member = msg.WhichOneof(desc.oneofs[0].name)
        if member is None:
            return None  # an empty union is indistinguishable from null; the parent omits it
        field = desc.fields_by_name[member]
        value = getattr(msg, member)
        if field.message_type is not None and _is_list_wrapper(field.message_type):
            # The list is the member's JSON form, so [] must survive (TrendsQuery.properties=[]).
            inner = field.message_type.fields[0]
            items = getattr(value, inner.name)
            return [_encode_item(inner, v, f"{path}[{i}]") for i, v in enumerate(items)]
        encoded: JsonValue | None = _encode_value(field, value, path)
        return encoded
    out: dict[str, Any] = {"kind": _node_kind(desc)} if _node_kind(desc) else {}
    for field in desc.fields:
        fpath, value = _join(path, field.json_name), getattr(msg, field.name)
        if _is_map(field):
            vfield = _sub(field).fields_by_name["value"]
            entries = {str(k): _encode_item(vfield, v, _join(fpath, str(k))) for k, v in value.items()}
            if entries:
                out[field.json_name] = entries
        elif field.is_repeated:
            # An empty plain repeated field is omitted: proto cannot tell [] from absent, so a reference
            # `"properties": []` on a series comes back absent (same meaning). Union list members
            # (Properties, PropertyValue, BreakdownKey) keep [] above, where it differs from null.
            if value:
                out[field.json_name] = [_encode_item(field, v, f"{fpath}[{i}]") for i, v in enumerate(value)]
        elif not (msg.HasField(field.name) if field.has_presence else value != field.default_value):
            continue  # without presence (a plain scalar or enum) the default is indistinguishable from unset
        elif (encoded_value := _encode_value(field, value, fpath)) is not None:
            out[field.json_name] = encoded_value
    return out


def _encode_item(field: Field, value: Any, path: str) -> Any:
    # A list item or map value cannot be omitted, and JSON null would not decode back.
    out = _encode_value(field, value, path)
    if out is None:
        raise CodecError("a list item or map value is unset (empty union or UNSPECIFIED enum)", path)
    return out


def _encode_value(field: Field, value: Any, path: str) -> Any:
    if field.message_type is not None:
        return _encode_message(value, path)
    if field.enum_type is not None:
        if value == 0:
            return None  # UNSPECIFIED is the reference's null
        name = _enum_maps(field.enum_type)[0].get(value)
        if not name:
            raise CodecError(f"{field.enum_type.name} value {value} has no json_value", path)
        return name
    if field.type == _F.TYPE_BYTES:
        raise CodecError("bytes fields have no reference JSON form", path)
    return value


# --- reference JSON -> proto ------------------------------------------------------------------------


def from_reference_json(value: object, message_class: type[M]) -> M:
    """Parse reference JSON into a new `message_class`; raises CodecError naming the failing path."""
    if value is None:
        raise CodecError(f"expected a {message_class.DESCRIPTOR.name}, got null", "")
    msg = message_class()
    _decode_message(value, msg, "")
    return msg


def _decode_message(value: object, msg: Message, path: str) -> None:
    desc = msg.DESCRIPTOR
    msg.SetInParent()  # an empty object still means "set", as opposed to null
    if _is_wkt(desc):
        try:
            json_format.ParseDict(value, msg)  # type: ignore[arg-type]  # Value takes any JSON
        except (json_format.ParseError, TypeError, ValueError, AttributeError) as exc:
            raise CodecError(str(exc), path) from exc
        return
    if _is_union(desc):
        _decode_union(value, msg, path)
        return
    if not isinstance(value, dict):
        raise CodecError(f"expected an object ({desc.name}), got {type(value).__name__}", path)
    kind, fields = _node_kind(desc), _fields_by_json(desc)
    for key, item in value.items():
        kpath = _join(path, key)
        if key == "kind" and kind:
            # A missing kind is accepted (the reference defaults it), a different one is not.
            if item != kind:
                raise CodecError(f"expected kind {kind!r}, got {item!r}", kpath)
            continue
        field = fields.get(key)
        if field is None:
            raise CodecError(f"unknown field {key!r} for {desc.name}", kpath)
        if item is not None:
            _decode_field(item, msg, field, kpath)


def _decode_field(value: object, msg: Message, field: Field, path: str) -> None:
    target = getattr(msg, field.name)
    if _is_map(field):
        if not isinstance(value, dict):
            raise CodecError("expected an object", path)
        kfield, vfield = _sub(field).fields_by_name["key"], _sub(field).fields_by_name["value"]
        for k, v in value.items():
            kpath = _join(path, k)
            if v is None:
                continue
            with _at(kpath):
                key = _decode_scalar(int(k) if kfield.cpp_type in _INT_TYPES else k, kfield, kpath)
                if vfield.message_type is not None:
                    _decode_message(v, target[key], kpath)
                else:
                    target[key] = _decode_scalar(v, vfield, kpath)
    elif field.is_repeated:
        _decode_list(value, target, field, path)
    elif field.message_type is not None:
        _decode_message(value, target, path)
    else:
        with _at(path):
            setattr(msg, field.name, _decode_scalar(value, field, path))


def _decode_list(value: object, target: Any, field: Field, path: str) -> None:
    if not isinstance(value, list):
        raise CodecError(f"expected a list, got {type(value).__name__}", path)
    for i, item in enumerate(value):
        ipath = f"{path}[{i}]"
        if item is None:
            raise CodecError("null is not allowed in a list", ipath)
        if field.message_type is not None:
            _decode_message(item, target.add(), ipath)
        else:
            with _at(ipath):
                target.append(_decode_scalar(item, field, ipath))


def _decode_scalar(value: object, field: Field, path: str) -> Any:
    t = field.cpp_type
    if field.enum_type is not None:
        number = _enum_maps(field.enum_type)[1].get(value) if isinstance(value, str) else None
        if number is None:
            allowed = sorted(_enum_maps(field.enum_type)[1])
            raise CodecError(f"unknown {field.enum_type.name} {value!r}; expected one of {allowed}", path)
        return number
    if (t == _F.CPPTYPE_BOOL and isinstance(value, bool)) or (
        t == _F.CPPTYPE_STRING and isinstance(value, str)
    ):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if t in _INT_TYPES and (isinstance(value, int) or value.is_integer()):
            return int(value)  # 3.0 is a JSON integer too
        if t in _FLOAT_TYPES:
            return float(value)
    raise CodecError(f"{type(value).__name__} {value!r} does not fit {field.name}", path)


def _decode_union(value: object, msg: Message, path: str) -> None:
    members = msg.DESCRIPTOR.oneofs[0].fields

    def first(types: frozenset[int]) -> Field | None:
        return next((f for f in members if f.cpp_type in types and f.message_type is None), None)

    if isinstance(value, bool):
        pick = first(frozenset({_F.CPPTYPE_BOOL}))
    elif isinstance(value, str):
        pick = first(frozenset({_F.CPPTYPE_STRING}))
    elif isinstance(value, int):
        pick = first(_INT_TYPES) or first(_FLOAT_TYPES)
    elif isinstance(value, float):
        pick = first(_FLOAT_TYPES) or (first(_INT_TYPES) if value.is_integer() else None)
    elif isinstance(value, list):
        pick = next((f for f in members if f.message_type and _is_list_wrapper(f.message_type)), None)
        if pick is not None:
            wrapper = getattr(msg, pick.name)
            wrapper.SetInParent()  # [] is a set member, not null
            inner = _sub(pick).fields[0]
            _decode_list(value, getattr(wrapper, inner.name), inner, path)
            return
    elif isinstance(value, dict):
        objects = [f for f in members if f.message_type and not _is_list_wrapper(f.message_type)]
        if "kind" in value and any(_node_kind(f.message_type) for f in objects):
            pick = next((f for f in objects if _node_kind(f.message_type) == value["kind"]), None)
            if pick is None:
                raise CodecError(
                    f"unknown kind {value['kind']!r} for {msg.DESCRIPTOR.name}", _join(path, "kind")
                )
        else:
            # No discriminator: the first member the object decodes into wins (PropertyFilter before a
            # nested group); if none fits, report the failure that got deepest, the likeliest intent.
            errors: list[CodecError] = []
            for f in objects:
                trial = type(getattr(msg, f.name))()  # decode aside: a failed try must leave no trace
                try:
                    _decode_message(value, trial, path)
                except CodecError as exc:
                    errors.append(exc)
                    continue
                getattr(msg, f.name).CopyFrom(trial)
                return
            if errors:
                raise max(errors, key=lambda e: e.path.count(".") + e.path.count("["))
            pick = None
    else:
        pick = None
    if pick is None:
        raise CodecError(f"a {type(value).__name__} does not fit {msg.DESCRIPTOR.name}", path)
    _decode_field(value, msg, pick, path)
