"""Random query nodes through CreateInsight and RunQuery: never INTERNAL or UNKNOWN, never past a deadline.

Each example is a QueryNode, either a valid trends query with a few random fields overwritten or
a node of any kind filled at random from the descriptors: enum numbers defined or not, strings of
odd Unicode or past every size limit, repeated fields from empty to past their bound, property
groups nested from a few levels to past the decoder's limit. The node is sent as raw bytes, so
messages the Python runtime would refuse to copy still reach the server.

Examples and seed follow the suite's hypothesis profile (tests/hypothesis_profiles.py): `make test`
explores new examples every run and prints the seed that replays a failure; `thorough` explores
longer.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from generated.insights.v1 import common_pb2
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from server.queries.codec import from_reference_json
from tests.engine.strategies import trends_query
from tests.hypothesis_profiles import examples
from tests.integration.itkit import Server, Tenant, bearer, length_delimited

# Each call must answer within this: a hang, or work that does not stop, fails the example.
DEADLINE = 20.0
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}
FUZZ = settings(
    max_examples=examples(150),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

_F = FieldDescriptor
_INT32 = st.one_of(st.integers(-3, 40), st.sampled_from([-(2**31), 2**31 - 1, 101, 1000, 1001, 100_000]))
_INT64 = st.one_of(_INT32, st.sampled_from([-(2**63), 2**63 - 1]))
_UINT = st.one_of(st.integers(0, 40), st.sampled_from([2**32 - 1]))
_DOUBLE = st.one_of(
    st.sampled_from([0.0, 0.5, 1.0, -1.0, 1e300]), st.floats(allow_nan=True, allow_infinity=True)
)
# Surrogates cannot be encoded as UTF-8 at all, so no client can send them.
_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=24)
_STRING = st.one_of(
    st.sampled_from(
        [
            "$pageview",
            "signup",
            "browser",
            "Chrome",
            "-7d",
            "-1mStart",
            "all",
            "dStart",
            "2024-02-30",
            "event_properties",
            "A+B",
            "A/0",
            "Z*2",
            "^Ch(rome|romium)+$",
            "(?=x)",
            "\\1",
            "'); DROP TABLE events; --",
            "{p0:String}",
            "",
        ]
    ),
    _TEXT,
    st.sampled_from(["x" * 70_000, "(" * 500 + "a" + ")" * 500, "(" * 101 + ")" * 101, "a" * 10_001]),
)


def _enum(field: Any) -> st.SearchStrategy[int]:
    defined = [v.number for v in field.enum_type.values]
    return st.one_of(st.sampled_from(defined), st.integers(-(2**31), 2**31 - 1))


def _scalar(field: Any) -> st.SearchStrategy[Any]:
    if field.enum_type is not None:
        return _enum(field)
    return {
        _F.CPPTYPE_INT32: _INT32,
        _F.CPPTYPE_INT64: _INT64,
        _F.CPPTYPE_UINT32: _UINT,
        _F.CPPTYPE_UINT64: _UINT,
        _F.CPPTYPE_DOUBLE: _DOUBLE,
        _F.CPPTYPE_FLOAT: st.floats(width=32, allow_nan=True),
        _F.CPPTYPE_BOOL: st.booleans(),
        _F.CPPTYPE_STRING: st.binary(max_size=8) if field.type == _F.TYPE_BYTES else _STRING,
    }[field.cpp_type]


def fill(draw: st.DrawFn, message: Message, depth: int) -> None:
    """Sets a few random fields of `message` in place (never copying: deep messages cannot be)."""
    desc = message.DESCRIPTOR
    if desc.full_name.startswith("google.protobuf."):
        # Well-known types: a plain JSON-ish value is enough; they are passed through, not read.
        if desc.full_name == "google.protobuf.Struct":
            message.update({draw(_TEXT): draw(st.one_of(st.none(), st.booleans(), _TEXT))})  # type: ignore[attr-defined]
        return
    chosen = (
        draw(st.lists(st.sampled_from(list(desc.fields)), max_size=4, unique_by=lambda f: f.name))
        if desc.fields
        else []
    )
    for field in chosen:
        if field.containing_oneof is not None and message.WhichOneof(field.containing_oneof.name):
            continue  # at most one member of a oneof
        target = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            for _ in range(draw(st.integers(0, 2))):
                key = draw(_TEXT)
                if value_field.message_type is not None:
                    if depth > 0:
                        fill(draw, target[key], depth - 1)
                else:
                    target[key] = draw(_scalar(value_field))
        elif field.is_repeated:
            count = draw(st.one_of(st.integers(0, 3), st.sampled_from([101, 300])))
            for index in range(count):
                if field.message_type is not None:
                    item = target.add()
                    if depth > 0 and index < 3:  # past the first few, empty items: size is the point
                        fill(draw, item, depth - 1)
                elif index < 3:
                    target.append(draw(_scalar(field)))
                else:
                    target.append(target[0])
        elif field.message_type is not None:
            target.SetInParent()
            if depth > 0:
                fill(draw, target, depth - 1)
        else:
            setattr(message, field.name, draw(_scalar(field)))


def nest_groups(properties: qpb.Properties, depth: int) -> None:
    """Property groups `depth` deep, built in place, with one filter at the bottom."""
    group = properties.group.values.add()
    for _ in range(depth - 1):
        group = group.values.add().group
    group.values.add().filter.CopyFrom(
        qpb.PropertyFilter(key="browser", value=qpb.PropertyValue(string_value="x"))
    )


@st.composite
def query_nodes(draw: st.DrawFn) -> qpb.QueryNode:
    node = qpb.QueryNode()
    shape = draw(st.sampled_from(["mutated trends", "mutated trends", "any node"]))
    if shape == "any node":
        fill(draw, node, depth=draw(st.integers(1, 8)))
        return node
    trends = node.insight_viz_node.source.trends_query if draw(st.booleans()) else node.trends_query
    trends.CopyFrom(from_reference_json(draw(trends_query()), qpb.TrendsQuery))
    targets: list[Message] = [trends, trends.trends_filter, trends.breakdown_filter, trends.date_range]
    targets += [getattr(s, s.WhichOneof("node") or "events_node") for s in trends.series]
    for _ in range(draw(st.integers(0, 3))):
        fill(draw, draw(st.sampled_from(targets)), depth=draw(st.integers(0, 4)))
    if draw(st.integers(0, 5)) == 0:
        nest_groups(trends.properties, draw(st.sampled_from([3, 11, 30, 60])))
    return node


_REFRESH = st.one_of(
    st.sampled_from(
        [
            common_pb2.REFRESH_MODE_UNSPECIFIED,
            common_pb2.REFRESH_MODE_BLOCKING,
            common_pb2.REFRESH_MODE_FORCE_CACHE,
        ]
    ),
    st.integers(-(2**31), 2**31 - 1),
)
_QUERY = ipb.Insight.DESCRIPTOR.fields_by_name["query"].number


async def _code(call: Any, body: bytes, metadata: Any) -> grpc.StatusCode:
    try:
        await call(body, metadata=metadata, timeout=DEADLINE)
    except grpc.aio.AioRpcError as err:
        assert err.code() not in NEVER, f"{err.code()}: {err.details()}"
        return err.code()
    return grpc.StatusCode.OK


@FUZZ
@given(node=query_nodes(), refresh=_REFRESH)
async def test_random_query_nodes_are_answered_or_refused_never_internal(
    server: Server, tenant: Tenant, node: qpb.QueryNode, refresh: int
) -> None:
    metadata = bearer(await _prepared(server, tenant))
    raw = node.SerializeToString()
    run = server.channel.unary_unary("/insights.v1.QueryService/RunQuery")
    create = server.channel.unary_unary("/insights.v1.InsightsService/CreateInsight")
    env = tenant.environment_id

    ran = await _code(
        run,
        qs.RunQueryRequest(environment_id=env, refresh=refresh).SerializeToString()
        + length_delimited(2, raw),
        metadata,
    )
    insight = ipb.Insight(name="fuzzed").SerializeToString() + length_delimited(_QUERY, raw)
    created = await _code(
        create,
        ipb.CreateInsightRequest(environment_id=env, refresh=refresh).SerializeToString()
        + length_delimited(2, insight),
        metadata,
    )
    event(f"RunQuery {ran.name}, CreateInsight {created.name}")


_KEYS: dict[int, str] = {}


async def _prepared(server: Server, tenant: Tenant) -> str:
    """A key for the tenant, whose environment gets a few events first (once for all examples)."""
    if tenant.environment_id not in _KEYS:
        key = tenant.key("insight:write", "query:read", "event:write")
        now = dt.datetime.now(dt.UTC)
        events = []
        for i in range(40):
            stamp = timestamp_pb2.Timestamp()
            stamp.FromDatetime(now - dt.timedelta(hours=7 * i))
            events.append(
                epb.Event(
                    event=("$pageview", "signup", "it's odd")[i % 3],
                    distinct_id=f"person-{i % 5}",
                    timestamp=stamp,
                    properties=json.dumps(
                        {
                            "browser": ("Chrome", "Firefox", "ü", "5")[i % 4],
                            "amount": i / 2,
                            "$session_id": f"s{i % 7}",
                        }
                    ),
                    person_properties=json.dumps({"email": f"p{i % 5}@example.com", "age": 20 + i % 5}),
                )
            )
        stub = egrpc.EventsServiceStub(server.channel)
        request = epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)
        answer = await stub.IngestEvents(iter([request]), metadata=bearer(key), timeout=DEADLINE)
        assert answer.accepted == len(events), answer
        _KEYS[tenant.environment_id] = key
    return _KEYS[tenant.environment_id]
