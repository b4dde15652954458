"""The file options that name the stubs of other languages are set, and set alike, in every proto."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor
from google.protobuf.descriptor_pb2 import FileOptions

ROOT = Path(__file__).resolve().parents[2]
PROTOS = sorted((ROOT / "protos" / "insights" / "v1").glob("*.proto"))

# The values chosen in docs/decisions.md ("File options for other languages"). buf breaking leaves
# these options to this test (buf.yaml), so a rename of generated code is a deliberate edit here.
EXPECTED = {
    "csharp_namespace": "Example.Insights.V1",
    "go_package": "example.com/insights/gen/go/insights/v1;insightsv1",
    "java_multiple_files": True,
    "java_package": "com.example.insights.v1",
    "objc_class_prefix": "INS",
    "php_namespace": "Example\\Insights\\V1",
    "ruby_package": "Example::Insights::V1",
}


def _options(proto: Path) -> FileOptions:
    module = importlib.import_module(f"generated.insights.v1.{proto.stem}_pb2")
    options = module.DESCRIPTOR.GetOptions()
    assert isinstance(options, FileOptions)
    return options


def test_protos_are_found() -> None:
    # Guards the parametrized test: with no files it would check nothing.
    assert PROTOS


@pytest.mark.parametrize("proto", PROTOS, ids=lambda p: p.name)
def test_file_options_name_every_languages_stubs(proto: Path) -> None:
    options = _options(proto)
    got = {name: getattr(options, name) for name in EXPECTED}
    assert got == EXPECTED, f"{proto.name}: set the file options of docs/decisions.md"
    # One outer class per file, named after it, so Java never falls back to "<Message>OuterClass"
    # (insight.proto holds a message Insight) and renaming a message cannot rename the class.
    camel = "".join(part.capitalize() for part in proto.stem.split("_"))
    assert options.java_outer_classname == f"{camel}Proto"


def _enums(messages: Iterable[Descriptor]) -> Iterator[EnumDescriptor]:
    for message in messages:
        yield from message.enum_types
        yield from _enums(message.nested_types)


def test_no_new_enum_value_breaks_the_java_stubs() -> None:
    # protobuf-java gives every value X an int constant X_VALUE, so values X and X_VALUE in one enum
    # generate a Java enum that does not compile. Two released values already collide (README,
    # "Stubs for other languages"; renaming them would break JSON callers): no new one may.
    collisions = set()
    for proto in PROTOS:
        file = importlib.import_module(f"generated.insights.v1.{proto.stem}_pb2").DESCRIPTOR
        for enum in [*file.enum_types_by_name.values(), *_enums(file.message_types_by_name.values())]:
            names = set(enum.values_by_name)
            collisions |= {f"{enum.full_name}.{n}" for n in names if n.endswith("_VALUE") and n[:-6] in names}
            collisions |= {f"{enum.full_name}.{n}" for n in names & {"VALUES", "UNRECOGNIZED"}}
    assert collisions == {
        "insights.v1.ChartDisplayType.CHART_DISPLAY_TYPE_ACTIONS_BAR_VALUE",
        "insights.v1.ChartDisplayType.CHART_DISPLAY_TYPE_BOLD_NUMBER_VALUE",
    }
