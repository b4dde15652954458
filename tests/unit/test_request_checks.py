"""The descriptor-driven request checks: every enum field shape, paths as the API shows them, bounds."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2

from generated.insights.v1 import common_pb2
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from interceptors.validation import Undecodable, _decoder, check
from server.errors import InvalidArgument
from server.queries.common.checks import MAX_PROBLEMS, MAX_QUERY_STRING, problems

_FD = descriptor_pb2.FieldDescriptorProto


def _palette_class() -> Any:
    """A message outside our contract with every enum shape: singular, repeated, map value, nested."""
    file = descriptor_pb2.FileDescriptorProto(
        name="checks_test.proto", package="checks.test", syntax="proto3"
    )
    color = file.enum_type.add(name="Color")
    color.value.add(name="COLOR_UNSPECIFIED", number=0)
    color.value.add(name="COLOR_RED", number=1)
    palette = file.message_type.add(name="Palette")
    entry = palette.nested_type.add(name="ByNameEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_FD.TYPE_STRING, label=_FD.LABEL_OPTIONAL)
    entry.field.add(
        name="value", number=2, type=_FD.TYPE_ENUM, type_name=".checks.test.Color", label=_FD.LABEL_OPTIONAL
    )
    fields = [
        ("by_name", _FD.TYPE_MESSAGE, ".checks.test.Palette.ByNameEntry", _FD.LABEL_REPEATED, None),
        ("colors", _FD.TYPE_ENUM, ".checks.test.Color", _FD.LABEL_REPEATED, None),
        ("main_color", _FD.TYPE_ENUM, ".checks.test.Color", _FD.LABEL_OPTIONAL, "mainColour"),
        ("inner", _FD.TYPE_MESSAGE, ".checks.test.Palette", _FD.LABEL_OPTIONAL, None),
        ("note", _FD.TYPE_STRING, None, _FD.LABEL_OPTIONAL, None),
    ]
    for number, (name, kind, type_name, label, json_name) in enumerate(fields, start=1):
        field = palette.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name
        if json_name:
            field.json_name = json_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("checks.test.Palette"))


def test_every_enum_shape_is_checked_and_named() -> None:
    palette = _palette_class()()
    palette.main_color = 7
    palette.colors.extend([1, -3, 0])
    palette.by_name["sky"] = 1
    palette.by_name["sea"] = 42
    palette.inner.inner.main_color = 2
    palette.note = "n" * (MAX_QUERY_STRING + 1)  # not in a query node: strings are not bounded here

    found = dict(problems(palette))

    assert found == {
        "mainColour": "7 is not a value of Color",
        "colors[1]": "-3 is not a value of Color",
        "by_name.sea": "42 is not a value of Color",
        "inner.inner.mainColour": "2 is not a value of Color",
    }


def test_defined_numbers_pass() -> None:
    palette = _palette_class()(main_color=1, colors=[0, 1])
    palette.by_name["sky"] = 1

    assert list(problems(palette)) == []


def test_query_paths_skip_union_members_and_use_the_reference_json_names() -> None:
    node = qpb.QueryNode()
    trends = node.insight_viz_node.source.trends_query
    trends.series.add().group_node.nodes.add().events_node.math = 99
    trends.properties.list.values.add(operator=-1)
    trends.properties.group.values.add()  # replaces the list: a oneof
    trends.properties.group.values[0].values.add().filter.type = 50
    trends.trends_filter.display = 1000
    trends.breakdown_filter.breakdowns.add(type=77)
    request = ipb.CreateInsightRequest(
        insight=ipb.Insight(query=node), refresh=common_pb2.RefreshMode.Value("REFRESH_MODE_ASYNC")
    )

    assert {path for path, _ in problems(request)} == {
        "insight.query.source.series[0].nodes[0].math",
        "insight.query.source.properties.values[0].values[0].type",
        "insight.query.source.trendsFilter.display",
        "insight.query.source.breakdownFilter.breakdowns[0].type",
    }


def test_a_list_of_filters_is_the_json_array_itself() -> None:
    trends = qpb.TrendsQuery()
    trends.properties.list.values.add(operator=-1)

    assert [path for path, _ in problems(qpb.QueryNode(trends_query=trends), "query")] == [
        "query.properties[0].operator"
    ]


def test_struct_and_value_are_walked_as_json() -> None:
    hogql = qpb.HogQLQuery()
    hogql.values["x"].null_value = 3  # type: ignore[assignment]
    hogql.values["y"].list_value.values.add().null_value = 4  # type: ignore[assignment]

    assert dict(problems(qpb.QueryNode(hogql_query=hogql))) == {
        "values.x": "3 is not a value of NullValue",
        "values.y[0]": "4 is not a value of NullValue",
    }


def test_strings_in_query_nodes_are_bounded_and_elsewhere_left_to_the_domain() -> None:
    node = qpb.QueryNode(
        trends_query=qpb.TrendsQuery(
            series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="e" * (MAX_QUERY_STRING + 1)))]
        )
    )
    request = qs.RunQueryRequest(query=node, client_query_id="c" * (MAX_QUERY_STRING + 1))

    found = dict(problems(request))

    assert list(found) == ["query.series[0].event"]
    assert str(MAX_QUERY_STRING) in found["query.series[0].event"]
    node.trends_query.series[0].events_node.event = "e" * MAX_QUERY_STRING
    assert list(problems(node)) == []


def test_the_number_of_problems_reported_is_bounded() -> None:
    trends = qpb.TrendsQuery()
    for _ in range(MAX_PROBLEMS * 3):
        trends.series.add().events_node.math = 999

    assert len(list(problems(trends))) == MAX_PROBLEMS


def test_check_raises_invalid_argument_with_every_violation() -> None:
    request = qs.RunQueryRequest(refresh=999, query=qpb.QueryNode(trends_query=qpb.TrendsQuery(interval=77)))

    with pytest.raises(InvalidArgument) as caught:
        check(request)

    assert caught.value.message.startswith("query.interval: 77 is not a value of IntervalType")
    assert [v.field for v in caught.value.violations] == ["query.interval", "refresh"]


@pytest.mark.parametrize(
    ("raw", "cause"),
    [
        (b"\x22\x02\xff\xfe", "not valid UTF-8"),  # client_query_id (field 4): not UTF-8
        (b"\x12\x05ab", "not a valid message"),  # query (field 2): 5 bytes announced, 2 sent
    ],
)
def test_undecodable_bytes_become_a_refusal_without_exception_names(raw: bytes, cause: str) -> None:
    request = _decoder(qs.RunQueryRequest.FromString)(raw)

    assert isinstance(request, Undecodable)
    with pytest.raises(InvalidArgument) as caught:
        check(request)
    assert caught.value.reason == "UNDECODABLE_REQUEST"
    assert "insights.v1.RunQueryRequest" in caught.value.message and cause in caught.value.message
    assert "DecodeError" not in caught.value.message and "upb" not in caught.value.message


def test_too_deep_nesting_is_named_as_such() -> None:
    node = qpb.PropertyGroupFilterValue()
    group = node
    for _ in range(120):
        group = group.values.add().group

    request = _decoder(qpb.PropertyGroupFilterValue.FromString)(node.SerializeToString())

    assert isinstance(request, Undecodable) and "nested deeper" in request.cause


def test_value_kinds_other_than_enums_are_not_touched() -> None:
    value = struct_pb2.Value(number_value=float("nan"))

    assert list(problems(value)) == []
