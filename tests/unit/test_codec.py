"""Tests of the reference-JSON ⇄ proto query codec: seeds, enums, kinds, unions, errors, properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generated.insights.v1 import options_pb2, query_pb2
from server.queries.codec import CodecError, from_reference_json, to_reference_json
from tests.hypothesis_profiles import examples

# The seed's example bodies, copied from the reference (shared/reference/seed-examples).
SEED_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "seed-examples"


def strip_nulls(value: Any) -> Any:
    """The reference JSON as the codec gives it back: null means "not set", so null keys vanish."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def _seed_queries() -> list[Any]:
    found: list[Any] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "query" and isinstance(value, dict):
                    found.append(pytest.param(value, id=where + ".query"))
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    for path in sorted(SEED_DIR.glob("*.json")):
        walk(json.loads(path.read_text()), path.stem)
    return found


SEED_QUERIES = _seed_queries()


def decode_error(value: Any, cls: type[Any] = query_pb2.QueryNode) -> CodecError:
    with pytest.raises(CodecError) as info:
        from_reference_json(value, cls)
    return info.value


def trends(**fields: Any) -> dict[str, Any]:
    return {"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": "$pageview"}], **fields}


# --- seed fixtures ---------------------------------------------------------------------------------


def test_seed_has_query_fixtures() -> None:
    # Guards the parametrisation below against silently testing nothing.
    assert len(SEED_QUERIES) >= 4


@pytest.mark.parametrize("query", SEED_QUERIES)
def test_seed_query_round_trips(query: dict[str, Any]) -> None:
    message = from_reference_json(query, query_pb2.QueryNode)
    source = message.insight_viz_node.source.trends_query
    assert source.series[0].group_node.nodes[0].HasField("events_node")
    assert source.properties.HasField("list")  # "properties": [] is kept as a set, empty list
    assert to_reference_json(message) == strip_nulls(query)
    assert from_reference_json(to_reference_json(message), query_pb2.QueryNode) == message


# --- enums -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "json_value", "field", "number"),
    [
        (query_pb2.TrendsQuery, {"interval": "day"}, "interval", query_pb2.INTERVAL_TYPE_DAY),
        (query_pb2.EventsNode, {"math": "weekly_active"}, "math", query_pb2.MATH_TYPE_WEEKLY_ACTIVE),
        (query_pb2.PropertyGroupFilter, {"type": "AND"}, "type", query_pb2.FILTER_LOGICAL_OPERATOR_AND),
        (
            query_pb2.TrendsFilter,
            {"display": "ActionsLineGraph"},
            "display",
            query_pb2.CHART_DISPLAY_TYPE_ACTIONS_LINE_GRAPH,
        ),
        (query_pb2.RetentionFilter, {"period": "Week"}, "period", query_pb2.RETENTION_PERIOD_WEEK),
        (
            query_pb2.PropertyFilter,
            {"operator": "is_not_set"},
            "operator",
            query_pb2.PROPERTY_OPERATOR_IS_NOT_SET,
        ),
    ],
)
def test_enum_json_values_both_ways(cls: Any, json_value: dict[str, Any], field: str, number: int) -> None:
    message = from_reference_json(json_value, cls)
    assert getattr(message, field) == number
    out = to_reference_json(message)
    assert isinstance(out, dict)
    assert {k: v for k, v in out.items() if k != "kind"} == json_value


def test_repeated_enum_uses_json_values() -> None:
    value = {"includeEventTypes": ["$pageview", "custom_event"]}
    message = from_reference_json(value, query_pb2.PathsFilter)
    assert list(message.include_event_types) == [
        query_pb2.PATH_TYPE_PAGEVIEW,
        query_pb2.PATH_TYPE_CUSTOM_EVENT,
    ]
    assert to_reference_json(message) == value


def test_unspecified_enum_is_omitted() -> None:
    assert to_reference_json(query_pb2.TrendsQuery(interval=query_pb2.INTERVAL_TYPE_UNSPECIFIED)) == {
        "kind": "TrendsQuery"
    }


def test_unknown_enum_string_is_an_error() -> None:
    error = decode_error({"kind": "InsightVizNode", "source": trends(interval="fortnight")})
    assert error.path == "source.interval"
    assert "fortnight" in str(error)


def test_every_enum_value_has_a_unique_json_value() -> None:
    # The codec relies on this; a new enum value without the option would not round-trip.
    for enum in query_pb2.DESCRIPTOR.enum_types_by_name.values():
        names = [v.GetOptions().Extensions[options_pb2.json_value] for v in enum.values if v.number]
        assert all(names), enum.name
        assert len(set(names)) == len(names), enum.name


# --- kinds and unknown keys ------------------------------------------------------------------------


def test_kind_is_written_on_output() -> None:
    message = query_pb2.QueryNode(trends_query=query_pb2.TrendsQuery())
    assert to_reference_json(message) == {"kind": "TrendsQuery"}


def test_kind_mismatch_on_typed_field() -> None:
    error = decode_error({"kind": "DataVisualizationNode", "source": trends()})
    assert error.path == "source.kind"
    assert "HogQLQuery" in str(error)


def test_kind_mismatch_at_root() -> None:
    assert decode_error({"kind": "FunnelsQuery"}, query_pb2.TrendsQuery).path == "kind"


def test_unknown_kind_in_union() -> None:
    error = decode_error({"kind": "InsightVizNode", "source": trends(series=[{"kind": "PersonsNode"}])})
    assert error.path == "source.series[0].kind"
    assert decode_error({"kind": "EventsQuery"}).path == "kind"


def test_missing_kind_is_accepted_on_typed_field() -> None:
    message = from_reference_json({"source": {"query": "select 1"}}, query_pb2.DataVisualizationNode)
    assert message.source.query == "select 1"


def test_unknown_key_names_its_path() -> None:
    error = decode_error(
        {"kind": "InsightVizNode", "source": trends(series=[{"kind": "EventsNode", "bogus": 1}])}
    )
    assert error.path == "source.series[0].bogus"
    assert "bogus" in str(error)


def test_unknown_key_inside_union_list() -> None:
    error = decode_error(trends(properties=[{"key": "a"}, {"key": "b", "extra": True}]))
    assert error.path == "properties[1].extra"


def test_unknown_key_with_null_value_is_still_an_error() -> None:
    assert decode_error(trends(nonsense=None)).path == "nonsense"


def test_error_in_nested_group_reports_deepest_path() -> None:
    group = {"type": "AND", "values": [{"type": "OR", "values": [{"key": "a", "operator": "nah"}]}]}
    assert decode_error(trends(properties=group)).path == "properties.values[0].values[0].operator"


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"filterTestAccounts": "yes"}, "filterTestAccounts"),
        ({"aggregation_group_type_index": 2**40}, "aggregation_group_type_index"),
        ({"samplingFactor": "0.1"}, "samplingFactor"),
        ({"dateRange": "-7d"}, "dateRange"),
        ({"series": {"kind": "EventsNode"}}, "series"),
        ({"series": [None]}, "series[0]"),
        ({"response": [1, 2]}, "response"),
        ({"breakdownFilter": {"breakdown": True}}, "breakdownFilter.breakdown"),
        ({"properties": "x"}, "properties"),
    ],
)
def test_type_errors_name_the_field(fields: dict[str, Any], path: str) -> None:
    assert decode_error(trends(**fields)).path == path


def test_null_root_is_an_error() -> None:
    assert decode_error(None).path == ""


def test_empty_union_cannot_be_encoded_at_root() -> None:
    with pytest.raises(CodecError):
        to_reference_json(query_pb2.QueryNode())


def test_codec_error_is_a_value_error() -> None:
    assert issubclass(CodecError, ValueError)


# --- union picking ---------------------------------------------------------------------------------


def test_properties_list_versus_group() -> None:
    as_list = from_reference_json(
        trends(properties=[{"key": "$browser", "value": "Chrome"}]), query_pb2.TrendsQuery
    )
    assert as_list.properties.WhichOneof("kind") == "list"
    assert as_list.properties.list.values[0].value.string_value == "Chrome"

    group = {
        "type": "OR",
        "values": [
            {"type": "AND", "values": [{"key": "a", "value": 1, "operator": "gt", "type": "event"}]},
            {"type": "AND", "values": [{"type": "OR", "values": [{"key": "b", "type": "person"}]}]},
        ],
    }
    as_group = from_reference_json(trends(properties=group), query_pb2.TrendsQuery)
    assert as_group.properties.WhichOneof("kind") == "group"
    items = as_group.properties.group.values
    assert items[0].values[0].WhichOneof("item") == "filter"
    assert items[1].values[0].WhichOneof("item") == "group"
    assert to_reference_json(as_group) == trends(properties=group)


def test_empty_properties_list_is_kept() -> None:
    message = from_reference_json(trends(properties=[]), query_pb2.TrendsQuery)
    assert message.HasField("properties")
    assert to_reference_json(message) == trends(properties=[])
    # Unset and [] are different things for a union list member.
    assert "properties" not in to_reference_json(query_pb2.TrendsQuery())  # type: ignore[operator]


def test_empty_plain_repeated_field_is_omitted() -> None:
    # Documented exception: proto cannot tell [] from absent on an ordinary repeated field.
    message = from_reference_json({"kind": "EventsNode", "properties": []}, query_pb2.EventsNode)
    assert to_reference_json(message) == {"kind": "EventsNode"}


@pytest.mark.parametrize(
    ("value", "member"),
    [
        ("Chrome", "string_value"),
        (3, "int_value"),
        (2.5, "double_value"),
        (True, "bool_value"),
        (False, "bool_value"),
        (["a", 1, 2.5, True], "list_value"),
        ([], "list_value"),
    ],
)
def test_property_value_scalar_versus_list(value: Any, member: str) -> None:
    filt = {"key": "k", "value": value, "operator": "exact"}
    message = from_reference_json(filt, query_pb2.PropertyFilter)
    assert message.value.WhichOneof("kind") == member
    assert to_reference_json(message) == filt
    out = to_reference_json(message)
    assert isinstance(out, dict)
    assert type(out["value"]) is type(value)  # True stays a bool, 3 stays an int


def test_property_value_list_items_keep_their_types() -> None:
    message = from_reference_json({"value": ["a", 1, 2.5, False]}, query_pb2.PropertyFilter)
    kinds = [v.WhichOneof("kind") for v in message.value.list_value.values]
    assert kinds == ["string_value", "int_value", "double_value", "bool_value"]


@pytest.mark.parametrize(
    ("breakdown", "member"),
    [("$browser", "string_value"), (12, "int_value"), ([1, 2], "list_value"), (["a", 3], "list_value")],
)
def test_breakdown_string_int_or_list(breakdown: Any, member: str) -> None:
    value = {"breakdown": breakdown, "breakdown_type": "cohort"}
    message = from_reference_json(value, query_pb2.BreakdownFilter)
    assert message.breakdown.WhichOneof("kind") == member
    assert to_reference_json(message) == value


def test_breakdown_float_is_an_error() -> None:
    assert decode_error({"breakdown": 1.5}, query_pb2.BreakdownFilter).path == "breakdown"


@pytest.mark.parametrize(
    ("node", "member"),
    [
        ({"kind": "EventsNode", "event": "$pageview", "math": "dau"}, "events_node"),
        ({"kind": "ActionsNode", "id": 7, "math": "total"}, "actions_node"),
        (
            {
                "kind": "DataWarehouseNode",
                "id": "t",
                "table_name": "t",
                "id_field": "id",
                "distinct_id_field": "d",
                "timestamp_field": "ts",
            },
            "data_warehouse_node",
        ),
        (
            {"kind": "GroupNode", "operator": "OR", "nodes": [{"kind": "ActionsNode", "id": 3}]},
            "group_node",
        ),
    ],
)
def test_series_picked_by_kind(node: dict[str, Any], member: str) -> None:
    message = from_reference_json(trends(series=[node]), query_pb2.TrendsQuery)
    assert message.series[0].WhichOneof("node") == member
    assert to_reference_json(message) == trends(series=[node])


def test_series_without_kind_takes_first_member_that_fits() -> None:
    message = from_reference_json(trends(series=[{"event": "a"}, {"id": 5}]), query_pb2.TrendsQuery)
    assert [s.WhichOneof("node") for s in message.series] == ["events_node", "actions_node"]


def test_query_node_union_by_kind() -> None:
    for kind, member in [
        ("FunnelsQuery", "funnels_query"),
        ("RetentionQuery", "retention_query"),
        ("PathsQuery", "paths_query"),
        ("StickinessQuery", "stickiness_query"),
        ("LifecycleQuery", "lifecycle_query"),
        ("HogQLQuery", "hogql_query"),
    ]:
        assert from_reference_json({"kind": kind}, query_pb2.QueryNode).WhichOneof("node") == member


# --- well-known types, maps, numbers ---------------------------------------------------------------


def test_struct_is_plain_json() -> None:
    response = {"results": [{"label": "x", "ok": True, "none": None}], "n": 3}
    message = from_reference_json(trends(response=response), query_pb2.TrendsQuery)
    assert message.response["n"] == 3
    assert to_reference_json(message) == trends(response=response)  # 3 comes back as 3.0: equal


def test_maps_are_objects() -> None:
    value = {
        "kind": "HogQLQuery",
        "query": "select {a}",
        "values": {"a": 1, "b": "x"},
        "variables": {"v1": {"variableId": "v1", "code_name": "day", "value": "2024-01-01"}},
    }
    message = from_reference_json(value, query_pb2.QueryNode)
    assert message.hogql_query.values["a"].number_value == 1
    assert to_reference_json(message) == value


def test_int64_is_a_json_number() -> None:
    out = to_reference_json(query_pb2.TrendsQuery(data_color_theme=2**40))
    assert out == {"kind": "TrendsQuery", "dataColorTheme": 2**40}


def test_optional_scalars_keep_false_and_zero() -> None:
    value = trends(filterTestAccounts=False, aggregation_group_type_index=0, samplingFactor=0.0)
    assert to_reference_json(from_reference_json(value, query_pb2.TrendsQuery)) == value


def test_non_union_oneof_keeps_presence() -> None:
    value = trends(conversionGoal={"actionId": 0})
    assert to_reference_json(from_reference_json(value, query_pb2.TrendsQuery)) == value


def test_integral_float_accepted_for_int_field() -> None:
    message = from_reference_json(trends(aggregation_group_type_index=2.0), query_pb2.TrendsQuery)
    assert message.aggregation_group_type_index == 2


# --- property tests --------------------------------------------------------------------------------

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TEXT = st.text(max_size=8)
SCALAR = st.one_of(TEXT, INT64, st.floats(allow_nan=False, allow_infinity=False), st.booleans())


def enum_values(enum: Any) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [v.GetOptions().Extensions[options_pb2.json_value] for v in enum.DESCRIPTOR.values if v.number]
    )


def maybe(**optional: st.SearchStrategy[Any]) -> dict[str, st.SearchStrategy[Any]]:
    # Optional keys may be absent, present, or explicitly null (which the codec drops).
    return {k: st.one_of(st.none(), v) for k, v in optional.items()}


PROPERTY_FILTER = st.fixed_dictionaries(
    {"key": TEXT},
    optional=maybe(
        value=st.one_of(SCALAR, st.lists(SCALAR, max_size=3)),
        operator=enum_values(query_pb2.PropertyOperator),
        type=enum_values(query_pb2.PropertyFilterType),
        label=TEXT,
        group_type_index=st.integers(0, 4),
    ),
)
GROUP_VALUE = st.recursive(
    st.fixed_dictionaries(
        {
            "type": enum_values(query_pb2.FilterLogicalOperator),
            "values": st.lists(PROPERTY_FILTER, min_size=1),
        }
    ),
    lambda inner: st.fixed_dictionaries(
        {
            "type": enum_values(query_pb2.FilterLogicalOperator),
            "values": st.lists(st.one_of(PROPERTY_FILTER, inner), min_size=1, max_size=3),
        }
    ),
    max_leaves=4,
)
PROPERTIES = st.one_of(
    st.lists(PROPERTY_FILTER, max_size=3),  # a union list member: [] is kept
    st.fixed_dictionaries(
        {
            "type": enum_values(query_pb2.FilterLogicalOperator),
            "values": st.lists(GROUP_VALUE, min_size=1, max_size=2),
        }
    ),
)
SERIES_COMMON = maybe(
    name=TEXT,
    custom_name=TEXT,
    math=enum_values(query_pb2.MathType),
    math_property=TEXT,
    math_group_type_index=st.integers(0, 4),
    math_multiplier=st.floats(allow_nan=False, allow_infinity=False),
    # A plain repeated field: [] would come back absent, so generate non-empty lists only.
    properties=st.lists(PROPERTY_FILTER, min_size=1, max_size=2),
)
EVENTS_NODE = st.fixed_dictionaries(
    {"kind": st.just("EventsNode")}, optional={**SERIES_COMMON, **maybe(event=TEXT)}
)
# ActionsNode.id has no presence, so 0 would be dropped on output (reported to the lead).
ACTIONS_NODE = st.fixed_dictionaries(
    {"kind": st.just("ActionsNode"), "id": INT64.filter(bool)}, optional=SERIES_COMMON
)
GROUP_NODE = st.fixed_dictionaries(
    {
        "kind": st.just("GroupNode"),
        "operator": enum_values(query_pb2.FilterLogicalOperator),
        "nodes": st.lists(st.one_of(EVENTS_NODE, ACTIONS_NODE), min_size=1, max_size=3),
    },
    optional=SERIES_COMMON,
)
TRENDS_QUERY = st.fixed_dictionaries(
    {
        "kind": st.just("TrendsQuery"),
        "series": st.lists(st.one_of(EVENTS_NODE, ACTIONS_NODE, GROUP_NODE), min_size=1, max_size=3),
    },
    optional=maybe(
        interval=enum_values(query_pb2.IntervalType),
        dateRange=st.fixed_dictionaries(
            {}, optional=maybe(date_from=TEXT, date_to=TEXT, explicitDate=st.booleans())
        ),
        properties=PROPERTIES,
        breakdownFilter=st.fixed_dictionaries(
            {},
            optional=maybe(
                breakdown=st.one_of(TEXT, INT64, st.lists(st.one_of(TEXT, INT64), max_size=3)),
                breakdown_type=enum_values(query_pb2.BreakdownType),
                breakdown_limit=st.integers(1, 1000),
                breakdown_normalize_url=st.booleans(),
            ),
        ),
        compareFilter=st.fixed_dictionaries({}, optional=maybe(compare=st.booleans(), compare_to=TEXT)),
        trendsFilter=st.fixed_dictionaries(
            {},
            optional=maybe(
                display=enum_values(query_pb2.ChartDisplayType),
                formula=TEXT,
                formulas=st.lists(TEXT, min_size=1, max_size=2),
                showLegend=st.booleans(),
                decimalPlaces=st.integers(0, 10),
            ),
        ),
        filterTestAccounts=st.booleans(),
        samplingFactor=st.floats(0, 1),
        dataColorTheme=INT64,
    ),
)


@settings(max_examples=examples(300))
@given(TRENDS_QUERY)
def test_trends_query_round_trips(query: dict[str, Any]) -> None:
    message = from_reference_json(query, query_pb2.TrendsQuery)
    as_json = to_reference_json(message)
    assert as_json == strip_nulls(query)
    assert from_reference_json(as_json, query_pb2.TrendsQuery) == message
    # The same body also goes through the QueryNode and InsightVizNode unions.
    wrapped = {"kind": "InsightVizNode", "source": query}
    assert to_reference_json(from_reference_json(wrapped, query_pb2.QueryNode)) == strip_nulls(wrapped)


def test_plain_kind_field_of_a_non_node_message() -> None:
    # RetentionEntity has an ordinary "kind" field; only node_kind messages treat "kind" specially.
    value = {"retentionFilter": {"targetEntity": {"id": "$pageview", "kind": "EventsNode", "type": "events"}}}
    message = from_reference_json({"kind": "RetentionQuery", **value}, query_pb2.QueryNode)
    assert message.retention_query.retention_filter.target_entity.kind == "EventsNode"
    assert to_reference_json(message) == {"kind": "RetentionQuery", **value}


# --- shapes that once had no home in query.proto ---------------------------------------------------


def test_actions_node_id_zero_round_trips() -> None:
    node = {"kind": "ActionsNode", "id": 0}
    assert to_reference_json(from_reference_json(node, query_pb2.ActionsNode)) == node


def test_funnel_exclusion_is_flat_in_the_reference() -> None:
    exclusion = {"kind": "EventsNode", "event": "$pageleave", "funnelFromStep": 0, "funnelToStep": 1}
    value = {"exclusions": [exclusion]}
    assert to_reference_json(from_reference_json(value, query_pb2.FunnelsFilter)) == value
