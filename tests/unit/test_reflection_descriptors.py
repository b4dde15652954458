"""Reflection answers from the published descriptor set: every symbol resolves, comments travel."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from server.reflection import V1, V1ALPHA, Descriptors, ReflectionServicer

GENERATED = Path(__file__).resolve().parents[2] / "generated" / "insights" / "v1"
DESCRIPTORS = Descriptors.for_server()


def _contract_files() -> list[Any]:
    modules = sorted(p.stem for p in GENERATED.glob("*_pb2.py"))
    return [importlib.import_module(f"generated.insights.v1.{m}").DESCRIPTOR for m in modules]


def _enum_symbols(enum: Any) -> Iterator[str]:
    yield enum.full_name
    scope = enum.full_name.rpartition(".")[0]
    for value in enum.values:
        yield f"{enum.full_name}.{value.name}"  # how grpcurl asks for a value
        yield f"{scope}.{value.name}"  # protobuf's own scope: beside the enum


def _message_symbols(message: Any) -> Iterator[str]:
    yield message.full_name
    for field in message.fields:
        yield field.full_name
    for oneof in message.oneofs:
        yield oneof.full_name
    for nested in message.nested_types:
        yield from _message_symbols(nested)
    for enum in message.enum_types:
        yield from _enum_symbols(enum)


def _symbols() -> Iterator[tuple[str, str]]:
    """Every symbol of the compiled contract (the runtime's view, independent of the set) and its file."""
    for file in _contract_files():
        for service in file.services_by_name.values():
            yield service.full_name, file.name
            for method in service.methods:
                yield method.full_name, file.name
        for message in file.message_types_by_name.values():
            for symbol in _message_symbols(message):
                yield symbol, file.name
        for enum in file.enum_types_by_name.values():
            for symbol in _enum_symbols(enum):
                yield symbol, file.name
        for extension in file.extensions_by_name.values():
            yield extension.full_name, file.name


SYMBOLS = sorted(set(_symbols()))


def _files(raw: list[bytes] | None) -> list[descriptor_pb2.FileDescriptorProto]:
    assert raw is not None
    return [descriptor_pb2.FileDescriptorProto.FromString(r) for r in raw]


def test_the_contract_has_symbols_of_every_kind() -> None:
    # Guards the test below: an empty walk would pass it without checking anything.
    names = {s for s, _ in SYMBOLS}
    assert {
        "insights.v1.InsightsService",
        "insights.v1.InsightsService.GetInsight",
        "insights.v1.Insight.short_id",
        "insights.v1.IntervalType.INTERVAL_TYPE_DAY",
        "insights.v1.policy",
    } <= names
    assert len(SYMBOLS) > 1000


def test_every_symbol_resolves_to_its_file_first() -> None:
    wrong = {}
    for symbol, file in SYMBOLS:
        raw = DESCRIPTORS.file_containing_symbol(symbol)
        first = _files(raw)[0].name if raw else None
        if first != file:
            wrong[symbol] = first
    assert not wrong, f"{len(wrong)} symbols resolve to the wrong file (or none): {dict(list(wrong.items())[:10])}"


def test_files_carry_their_comments_and_every_import() -> None:
    files = _files(DESCRIPTORS.file_containing_symbol("insights.v1.InsightsService.GetInsight"))
    names = [f.name for f in files]
    assert names[0] == "insights/v1/insight.proto"
    assert len(names) == len(set(names)), "a file sent twice in one answer"
    for proto in files:
        missing = [d for d in proto.dependency if d not in names]
        assert not missing, f"{proto.name} imports {missing}, not sent"
    comments = [loc.leading_comments for loc in files[0].source_code_info.location]
    assert " Returns one insight that is not deleted, by id or short id.\n" in comments


def test_extensions_are_found_by_number_and_listed_by_type() -> None:
    files = _files(DESCRIPTORS.file_containing_extension("google.protobuf.MethodOptions", 50001))
    assert files[0].name == "insights/v1/options.proto"
    assert DESCRIPTORS.extension_numbers("google.protobuf.MethodOptions") == [50001]
    assert DESCRIPTORS.extension_numbers("insights.v1.Insight") == []
    assert DESCRIPTORS.extension_numbers("insights.v1.NoSuchMessage") is None
    assert DESCRIPTORS.file_containing_extension("google.protobuf.MethodOptions", 50999) is None


def test_health_and_both_reflection_protocols_describe_themselves() -> None:
    for symbol in ("grpc.health.v1.Health", V1, V1ALPHA, "grpc.reflection.v1.ServerReflectionRequest"):
        assert DESCRIPTORS.file_containing_symbol(symbol) is not None, symbol
    [v1] = _files(DESCRIPTORS.file_by_name("grpc/reflection/v1/reflection.proto"))
    [method] = v1.service[0].method
    assert (method.input_type, method.output_type) == (
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert all(".v1alpha." not in f.type_name for m in v1.message_type for f in m.field)


def test_the_servicer_answers_each_kind_of_request() -> None:
    servicer = ReflectionServicer(DESCRIPTORS, ["insights.v1.InsightsService", V1, V1ALPHA, V1])
    request = reflection_pb2.ServerReflectionRequest
    listed = servicer.answer(request(host="h", list_services=""))
    assert listed.valid_host == "h" and listed.original_request.list_services == ""
    assert [s.name for s in listed.list_services_response.service] == sorted(
        ["insights.v1.InsightsService", V1, V1ALPHA]
    )
    found = servicer.answer(request(file_containing_symbol="insights.v1.Insight.short_id"))
    assert found.file_descriptor_response.file_descriptor_proto
    missing = servicer.answer(request(file_containing_symbol="insights.v1.Nope"))
    assert missing.error_response.error_code == 5  # NOT_FOUND
    assert "insights.v1.Nope" in missing.error_response.error_message
    assert servicer.answer(request(file_by_filename="nope.proto")).error_response.error_code == 5
    numbers = servicer.answer(request(all_extension_numbers_of_type="google.protobuf.EnumValueOptions"))
    assert list(numbers.all_extension_numbers_response.extension_number) == [50002]
    assert servicer.answer(request()).error_response.error_code == 3  # INVALID_ARGUMENT
