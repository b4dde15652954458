"""Server reflection, v1 and v1alpha, answered from the published descriptor set (comments included)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

# Both protocols serve one service; v1 is what current tools (buf curl, grpc-js, Postman) ask for,
# v1alpha what older ones (grpcurl 1.8) ask for. Their messages are the same on the wire.
V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
SERVICE_NAMES = (V1, V1ALPHA)
_METHOD = "ServerReflectionInfo"
# Written by `make proto` beside the stubs: every file of protos/ and its imports, with source info.
DESCRIPTOR_SET = "insights.binpb"


def published_set() -> bytes:
    """The descriptor set `make proto` wrote into the generated package."""
    return resources.files("generated").joinpath(DESCRIPTOR_SET).read_bytes()


def _own_proto(descriptor: Any) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)
    return proto


def _v1_reflection_file() -> descriptor_pb2.FileDescriptorProto:
    """The v1 reflection proto: the v1alpha one under its v1 package (the upstream files differ only so)."""
    proto = _own_proto(reflection_pb2.DESCRIPTOR)
    old, new = "grpc.reflection.v1alpha", "grpc.reflection.v1"
    proto.name = "grpc/reflection/v1/reflection.proto"
    proto.package = new
    for message in proto.message_type:
        for field in message.field:
            field.type_name = field.type_name.replace(f".{old}.", f".{new}.")
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(f".{old}.", f".{new}.")
            method.output_type = method.output_type.replace(f".{old}.", f".{new}.")
    proto.options.java_package = "io.grpc.reflection.v1"
    proto.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    return proto


def _default_json_name(name: str) -> str:
    """protoc's JSON name of a field that declares none: lowerCamelCase of its name."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _drop_default_json_names(message: descriptor_pb2.DescriptorProto) -> None:
    """Leaves `json_name` only on fields that declare one. protoc writes every field's JSON name
    into a descriptor set; grpcurl prints a field by its descriptor's JSON name when there is one,
    so serving them all would turn its output from the proto names callers have always read
    (`access_token`, `short_id`, what the README's jq filters read) into camelCase."""
    for field in message.field:
        if field.json_name == _default_json_name(field.name):
            field.ClearField("json_name")
    for nested in message.nested_type:
        _drop_default_json_names(nested)


class Descriptors:
    """Serialized files by name, the file defining each symbol, and the extensions of each message."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]):
        self._raw: dict[str, bytes] = {}
        self._imports: dict[str, list[str]] = {}
        self.symbols: dict[str, str] = {}
        self._extensions: dict[str, dict[int, str]] = {}
        for proto in files:
            self._add(proto)

    @classmethod
    def for_server(cls, descriptor_set: bytes | None = None) -> Descriptors:
        """The contract from the published set, then health and both reflection protocols."""
        published = descriptor_pb2.FileDescriptorSet.FromString(
            published_set() if descriptor_set is None else descriptor_set
        )
        for proto in published.file:
            for message in proto.message_type:
                _drop_default_json_names(message)
        extra = [_own_proto(health_pb2.DESCRIPTOR), _own_proto(reflection_pb2.DESCRIPTOR), _v1_reflection_file()]
        return cls([*published.file, *extra])

    def _add(self, proto: descriptor_pb2.FileDescriptorProto) -> None:
        if proto.name in self._raw:  # the first source of a file wins (the published set comes first)
            return
        self._raw[proto.name] = proto.SerializeToString()
        self._imports[proto.name] = list(proto.dependency)
        package = f"{proto.package}." if proto.package else ""
        for message in proto.message_type:
            self._add_message(proto.name, package, message)
        for enum in proto.enum_type:
            self._add_enum(proto.name, package, enum)
        for extension in proto.extension:
            self._add_extension(proto.name, package, extension)
        for service in proto.service:
            self.symbols[package + service.name] = proto.name
            for method in service.method:
                self.symbols[f"{package}{service.name}.{method.name}"] = proto.name

    def _add_message(self, file: str, scope: str, message: descriptor_pb2.DescriptorProto) -> None:
        name = scope + message.name
        self.symbols[name] = file
        for field in message.field:
            self.symbols[f"{name}.{field.name}"] = file
        for oneof in message.oneof_decl:
            self.symbols[f"{name}.{oneof.name}"] = file
        for nested in message.nested_type:
            self._add_message(file, f"{name}.", nested)
        for enum in message.enum_type:
            self._add_enum(file, f"{name}.", enum)
        for extension in message.extension:
            self._add_extension(file, f"{name}.", extension)

    def _add_enum(self, file: str, scope: str, enum: descriptor_pb2.EnumDescriptorProto) -> None:
        self.symbols[scope + enum.name] = file
        for value in enum.value:
            # Protobuf scopes a value beside its enum (insights.v1.INTERVAL_TYPE_DAY); tools also
            # ask with the enum in the name, so both resolve.
            self.symbols[scope + value.name] = file
            self.symbols[f"{scope}{enum.name}.{value.name}"] = file

    def _add_extension(self, file: str, scope: str, field: descriptor_pb2.FieldDescriptorProto) -> None:
        self.symbols[scope + field.name] = file
        self._extensions.setdefault(field.extendee.lstrip("."), {})[field.number] = file

    def file_by_name(self, name: str) -> list[bytes] | None:
        """The file and every file it imports, transitively (the file first), or None if unknown."""
        if name not in self._raw:
            return None
        order: list[str] = []
        pending = [name]
        while pending:
            current = pending.pop()
            if current in order or current not in self._raw:
                continue
            order.append(current)
            pending.extend(reversed(self._imports[current]))
        return [self._raw[f] for f in order]

    def file_containing_symbol(self, symbol: str) -> list[bytes] | None:
        file = self.symbols.get(symbol.lstrip("."))
        return None if file is None else self.file_by_name(file)

    def file_containing_extension(self, message: str, number: int) -> list[bytes] | None:
        file = self._extensions.get(message, {}).get(number)
        return None if file is None else self.file_by_name(file)

    def extension_numbers(self, message: str) -> list[int] | None:
        """The extension numbers declared for a known message type, or None if it is unknown."""
        if message not in self.symbols:
            return None
        return sorted(self._extensions.get(message, {}))


class ReflectionServicer:
    """Answers ServerReflectionInfo for either protocol version from one Descriptors."""

    def __init__(self, descriptors: Descriptors, service_names: Iterable[str]):
        self.descriptors = descriptors
        self.service_names = sorted(set(service_names))

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[reflection_pb2.ServerReflectionRequest], context: Any
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        async for request in requests:
            yield self.answer(request)

    def answer(self, request: reflection_pb2.ServerReflectionRequest) -> reflection_pb2.ServerReflectionResponse:
        """The response to one request of the stream."""
        response = reflection_pb2.ServerReflectionResponse(valid_host=request.host, original_request=request)
        kind = request.WhichOneof("message_request")
        files: list[bytes] | None = None
        if kind == "list_services":
            response.list_services_response.service.extend(
                reflection_pb2.ServiceResponse(name=name) for name in self.service_names
            )
            return response
        if kind == "all_extension_numbers_of_type":
            numbers = self.descriptors.extension_numbers(request.all_extension_numbers_of_type)
            if numbers is None:
                return _error(response, grpc.StatusCode.NOT_FOUND, f"type {request.all_extension_numbers_of_type}")
            response.all_extension_numbers_response.base_type_name = request.all_extension_numbers_of_type
            response.all_extension_numbers_response.extension_number.extend(numbers)
            return response
        if kind == "file_by_filename":
            files = self.descriptors.file_by_name(request.file_by_filename)
            missing = f"file {request.file_by_filename}"
        elif kind == "file_containing_symbol":
            files = self.descriptors.file_containing_symbol(request.file_containing_symbol)
            missing = f"symbol {request.file_containing_symbol}"
        elif kind == "file_containing_extension":
            wanted = request.file_containing_extension
            files = self.descriptors.file_containing_extension(wanted.containing_type, wanted.extension_number)
            missing = f"extension {wanted.extension_number} of {wanted.containing_type}"
        else:
            return _error(response, grpc.StatusCode.INVALID_ARGUMENT, "message_request is not set")
        if files is None:
            return _error(response, grpc.StatusCode.NOT_FOUND, f"{missing} not found")
        response.file_descriptor_response.file_descriptor_proto.extend(files)
        return response


def _error(
    response: reflection_pb2.ServerReflectionResponse, code: grpc.StatusCode, message: str
) -> reflection_pb2.ServerReflectionResponse:
    response.error_response.error_code = code.value[0]
    response.error_response.error_message = message
    return response


def enable(server: grpc.aio.Server, service_names: Iterable[str], descriptors: Descriptors | None = None) -> None:
    """Adds reflection under both protocol names; it lists `service_names` and itself."""
    servicer = ReflectionServicer(descriptors or Descriptors.for_server(), [*service_names, *SERVICE_NAMES])
    for name in SERVICE_NAMES:
        handlers = {
            _METHOD: grpc.stream_stream_rpc_method_handler(
                servicer.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
            )
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
        server.add_registered_method_handlers(name, handlers)
