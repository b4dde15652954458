"""Every query kind has a typed result whose items carry the reference's result JSON (through the codec)."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from google.protobuf.message import Message

from generated.insights.v1 import query_pb2, results_pb2
from server.queries.common.codec import from_reference_json, to_reference_json

M = TypeVar("M", bound=Message)


def strip_empty(value: Any) -> Any:
    """The reference JSON as the codec gives it back: null and empty lists mean "not set" and vanish."""
    if isinstance(value, dict):
        return {k: strip_empty(v) for k, v in value.items() if v is not None and v != []}
    if isinstance(value, list):
        return [strip_empty(v) for v in value]
    return value


def round_trip(value: Any, cls: type[M]) -> M:
    """Decodes reference JSON, checks it encodes back to the same JSON, and returns the message."""
    message = from_reference_json(value, cls)
    assert to_reference_json(message) == strip_empty(value)
    assert from_reference_json(to_reference_json(message), cls) == message
    return message


# --- the oneof covers every kind ---------------------------------------------------------------------


def test_every_query_kind_has_a_result_member() -> None:
    # A kind added to InsightSource (or SQL) without a result member would have nowhere to put its result.
    # SQL and the drill-down (InsightActorsQuery, a QueryNode of its own) have theirs too.
    kinds = {f.name.removesuffix("_query") for f in query_pb2.InsightSource.DESCRIPTOR.fields} | {"hogql", "actors"}
    members = {f.name for f in results_pb2.InsightResult.DESCRIPTOR.oneofs_by_name["result"].fields}
    assert kinds == members


def test_result_members_are_typed_messages() -> None:
    for field in results_pb2.InsightResult.DESCRIPTOR.fields:
        assert field.message_type is not None and field.message_type.name.endswith("Result"), field.name


def test_actors_carry_the_person_keys_and_the_page() -> None:
    person = {
        "id": "0191c7c4-1b1e-7000-8000-000000000001",
        "distinct_ids": ["anna", "anna@phone"],
        "properties": '{"plan": "pro"}',
        "created_at": "2024-01-05T10:00:00Z",
    }
    result = round_trip({"results": [person, {"id": "org-a"}], "limit": 100, "offset": 0}, results_pb2.ActorsResult)
    assert result.actors[1].id == "org-a" and not result.actors[1].HasField("properties")
    assert result.HasField("offset")  # a zero offset is still in the JSON


# --- funnels (query-engine-semantics §4.5) -----------------------------------------------------------

STEP_0: dict[str, Any] = {
    "action_id": "$pageview",
    "name": "$pageview",
    "custom_name": None,
    "order": 0,
    "people": [],
    "count": 42,
    "type": "events",
    "average_conversion_time": None,
    "median_conversion_time": None,
}
STEP_1: dict[str, Any] = {
    "action_id": 7,
    "name": "Signed up",
    "custom_name": "Sign-up",
    "order": 1,
    "people": [],
    "count": 0,
    "type": "actions",
    "average_conversion_time": 123.4,
    "median_conversion_time": 98.0,
}


def test_funnel_steps_keep_the_reference_step_keys() -> None:
    result = round_trip({"results": [{"steps": [STEP_0, STEP_1]}]}, results_pb2.FunnelStepsResult)
    steps = result.breakdowns[0].steps
    assert steps[0].action_id.string_value == "$pageview"
    assert steps[1].action_id.int_value == 7  # an action's id stays a number, as the reference sends it
    assert steps[1].HasField("count") and steps[1].count == 0  # a zero count is still in the JSON
    assert not steps[0].HasField("average_conversion_time")  # the first step has none


def test_funnel_breakdown_steps_carry_display_and_raw_values() -> None:
    by_property = {**STEP_0, "breakdown": ["Chrome"], "breakdown_value": ["Chrome"]}
    by_cohort = {**STEP_0, "breakdown": "Paying users", "breakdown_value": 12}
    other = {**STEP_0, "breakdown": ["Other"], "breakdown_value": ["Other"]}
    value = {"results": [{"steps": [by_property]}, {"steps": [by_cohort]}, {"steps": [other]}]}
    result = round_trip(value, results_pb2.FunnelStepsResult)
    cohort_step = result.breakdowns[1].steps[0]
    assert cohort_step.breakdown.string_value == "Paying users"
    assert cohort_step.breakdown_value.int_value == 12


def test_funnel_time_to_convert_and_trends_shapes() -> None:
    ttc = {
        "bins": [{"bin_start_seconds": 0, "count": 3}, {"bin_start_seconds": 60, "count": 0}],
        "average_conversion_time": 12.5,
    }
    round_trip(ttc, results_pb2.FunnelTimeToConvertResult)
    trends = {
        "results": [
            {
                "count": 2,
                "data": [50.0, 0.0],
                "days": ["2024-01-01", "2024-01-02"],
                "labels": ["1-Jan-2024", "2-Jan-2024"],
                "breakdown_value": ["None"],
            }
        ]
    }
    round_trip(trends, results_pb2.FunnelTrendsResult)
    funnels = results_pb2.FunnelsResult(
        time_to_convert=from_reference_json(ttc, results_pb2.FunnelTimeToConvertResult), is_udf=True
    )
    assert to_reference_json(funnels) == {"time_to_convert": ttc, "isUdf": True}


# --- retention (§5.4) ---------------------------------------------------------------------------------


def test_retention_cohorts_keep_the_reference_keys() -> None:
    cohort = {
        "label": "Day 0",
        "date": "2024-01-04T00:00:00-05:00",
        "breakdown_value": None,
        "values": [{"count": 120, "label": "Day 0"}, {"count": 0, "label": "Day 1"}],
    }
    by_value = {**cohort, "breakdown_value": "$$_posthog_breakdown_other_$$"}
    summed = {**cohort, "values": [{"count": 3, "aggregation_value": 41.5, "label": "Day 0"}]}
    result = round_trip({"results": [cohort, by_value, summed]}, results_pb2.RetentionResult)
    empty = result.cohorts[0].values[1]
    assert empty.HasField("count") and empty.count == 0  # so "count": 0 is in the JSON, as in the reference


# --- paths (§8.3) -------------------------------------------------------------------------------------


def test_paths_edges_keep_the_reference_keys() -> None:
    edge = {"source": "1_/home", "target": "2_/pricing", "value": 17, "average_conversion_time": 45300.0}
    round_trip({"results": [edge]}, results_pb2.PathsResult)


# --- stickiness (§6.3) and lifecycle (§7.3) -----------------------------------------------------------


def test_stickiness_items_keep_the_reference_keys() -> None:
    item = {
        "count": 5.0,
        "data": [3.0, 2.0],
        "days": [1, 2],
        "labels": ["1 day", "2 days"],
        "label": "$pageview",
        "action": {"order": 0, "type": "events", "name": "$pageview", "id": "$pageview", "custom_name": None},
        "compare": True,
        "compare_label": "previous",
    }
    round_trip({"results": [item]}, results_pb2.StickinessResult)


def test_lifecycle_items_keep_the_reference_keys() -> None:
    action = {"id": "$pageview", "name": "$pageview", "type": "events", "order": 0, "math": "total"}
    items = [
        {
            "action": action,
            "data": [1.0, 0.0] if status != "dormant" else [0.0, -1.0],
            "count": 1.0 if status != "dormant" else -1.0,
            "labels": ["1-Jan-2024", "2-Jan-2024"],
            "days": ["2024-01-01", "2024-01-02"],
            "label": f"$pageview - {status}",
            "status": status,
        }
        for status in ("new", "returning", "resurrecting", "dormant")
    ]
    result = round_trip({"results": items}, results_pb2.LifecycleResult)
    assert result.series[3].status == query_pb2.LIFECYCLE_TOGGLE_DORMANT


# --- SQL (§9.1) ---------------------------------------------------------------------------------------


def test_sql_rows_hold_any_json_value_per_column() -> None:
    value = {
        "columns": ["n", "name", "missing", "tags", "props", "big"],
        "types": [
            {"name": "n", "type": "UInt64"},
            {"name": "name", "type": "String"},
            {"name": "missing", "type": "Nullable(String)"},
            {"name": "tags", "type": "Array(String)"},
            {"name": "props", "type": "Map(String, String)"},
            {"name": "big", "type": "UInt64"},
        ],
        # NULL stays null, arrays stay lists, maps objects; an integer beyond 2^53 travels as its digits.
        "results": [[3.0, "a", None, ["x", "y"], {"k": "v"}, "18446744073709551615"]],
        "limit": 100,
        "offset": 0,
        "clickhouse": "SELECT 1",
    }
    result = round_trip(value, results_pb2.HogQLResult)
    assert result.rows[0].values[2].WhichOneof("kind") == "null_value"
    assert result.HasField("offset") and result.offset == 0
    wrapped = results_pb2.InsightResult(hogql=result)
    assert to_reference_json(wrapped) == {"hogql": strip_empty(value)}


@pytest.mark.parametrize(
    "cls",
    [
        results_pb2.FunnelStepsResult,
        results_pb2.FunnelTrendsResult,
        results_pb2.RetentionResult,
        results_pb2.PathsResult,
        results_pb2.StickinessResult,
        results_pb2.LifecycleResult,
        results_pb2.HogQLResult,
    ],
)
def test_result_lists_use_the_reference_results_key(cls: type[Message]) -> None:
    # The reference's response carries these lists as `results`; so does the codec's JSON of each result.
    assert "results" in {f.json_name for f in cls.DESCRIPTOR.fields}
