"""Bad input is INVALID_ARGUMENT naming the field on every RPC, never INTERNAL, UNKNOWN or silence.

Undefined enum numbers, undecodable bytes (nesting too deep, invalid UTF-8), hostile regexes,
deep property groups and out-of-range sizes, sent through the real server's stubs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import common_pb2
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qsgrpc
from generated.insights.v1 import sharing_pb2 as spb
from generated.insights.v1 import sharing_pb2_grpc as sgrpc
from server.queries.properties import MAX_GROUP_DEPTH, MAX_REGEX_DEPTH, MAX_REGEX_LENGTH
from server.queries.trends.compute import MAX_BREAKDOWN_LIMIT, MAX_SERIES
from tests.integration.itkit import (
    Api,
    Metadata,
    Server,
    Tenant,
    assert_invalid,
    bearer,
    error_info,
    expect_error,
    field_violations,
    length_delimited,
    trends_query,
    trends_viz,
    viz,
)

TIMEOUT = 20.0


@pytest.fixture
def key(tenant: Tenant) -> Metadata:
    return bearer(tenant.key("*"))


@pytest.fixture
def queries(server: Server) -> qsgrpc.QueryServiceStub:
    return qsgrpc.QueryServiceStub(server.channel)


Mutate = Callable[[qpb.TrendsQuery], None]


class Send:
    """A TrendsQuery sent through RunQuery (bare, at `query.`) or CreateInsight (in a viz node)."""

    def __init__(self, api: Api, queries: qsgrpc.QueryServiceStub, key: Metadata, rpc: str):
        self.api, self.queries, self.key, self.rpc = api, queries, key, rpc

    @property
    def prefix(self) -> str:
        return "query." if self.rpc == "RunQuery" else "insight.query.source."

    async def __call__(self, mutate: Mutate, **request: Any) -> Any:
        # Built in place: copying a message decodes it again, which a too-deep one cannot survive.
        if self.rpc == "RunQuery":
            run = qs.RunQueryRequest(environment_id=self.api.environment_id, **request)
            run.query.trends_query.CopyFrom(trends_query())
            mutate(run.query.trends_query)
            return await self.queries.RunQuery(run, metadata=self.key, timeout=TIMEOUT)
        create = ipb.CreateInsightRequest(environment_id=self.api.environment_id, **request)
        create.insight.name = "bad"
        source = create.insight.query.insight_viz_node.source.trends_query
        source.CopyFrom(trends_query())
        mutate(source)
        return await self.api.stub.CreateInsight(create, metadata=self.key, timeout=TIMEOUT)


@pytest.fixture(params=["RunQuery", "CreateInsight"])
def send(request: pytest.FixtureRequest, api: Api, queries: qsgrpc.QueryServiceStub, key: Metadata) -> Send:
    return Send(api, queries, key, request.param)


def _filter(**fields: Any) -> qpb.PropertyFilter:
    fields.setdefault("key", "browser")
    fields.setdefault("value", qpb.PropertyValue(string_value="Chrome"))
    return qpb.PropertyFilter(**fields)


def _set_properties(query: qpb.TrendsQuery, *filters: qpb.PropertyFilter) -> None:
    query.properties.list.values.extend(filters)


def _nest(depth: int, leaf: qpb.PropertyFilter) -> Mutate:
    """Sets the query's properties to groups `depth` deep (the outer PropertyGroupFilter not counted)."""

    def mutate(query: qpb.TrendsQuery) -> None:
        group = query.properties.group.values.add()
        for _ in range(depth - 1):
            group = group.values.add().group
        group.values.add().filter.CopyFrom(leaf)

    return mutate


def _set_series_math(math: int) -> Mutate:
    return lambda q: setattr(q.series[0].events_node, "math", math)


UNDEFINED_ENUMS: list[tuple[str, Mutate, str]] = [
    ("interval", lambda q: setattr(q, "interval", 77), "interval"),
    ("math", _set_series_math(12345), "series[0].math"),
    ("operator", lambda q: _set_properties(q, _filter(operator=-3)), "properties[0].operator"),
    (
        "filter type",
        lambda q: q.series[0].events_node.properties.append(_filter(type=99)),
        "series[0].properties[0].type",
    ),
    ("display", lambda q: setattr(q.trends_filter, "display", 555), "trendsFilter.display"),
    (
        "breakdown type",
        lambda q: setattr(q.breakdown_filter, "breakdown_type", 40),
        "breakdownFilter.breakdown_type",
    ),
    (
        "group type",
        lambda q: q.properties.CopyFrom(qpb.Properties(group=qpb.PropertyGroupFilter(type=8))),
        "properties.type",
    ),
    (
        "nested filter operator",
        _nest(3, _filter(operator=1000)),
        "properties.values[0].values[0].values[0].values[0].operator",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "field"), [(m, f) for _, m, f in UNDEFINED_ENUMS], ids=[n for n, _, _ in UNDEFINED_ENUMS]
)
async def test_an_undefined_enum_number_in_a_query_names_its_field(
    send: Send, mutate: Mutate, field: str
) -> None:
    err = await expect_error(send(mutate), grpc.StatusCode.INVALID_ARGUMENT)

    assert_invalid(err, send.prefix + field)
    assert "is not a value of" in (err.details() or "")
    assert (await send.api.list()).count == 0  # nothing was stored


async def test_every_undefined_enum_of_a_request_is_reported(
    queries: qsgrpc.QueryServiceStub, api: Api, key: Metadata
) -> None:
    query = trends_query()
    query.interval = 77
    query.series[0].events_node.math = 12345
    request = qs.RunQueryRequest(
        environment_id=api.environment_id, query=qpb.QueryNode(trends_query=query), refresh=999
    )

    err = await expect_error(
        queries.RunQuery(request, metadata=key, timeout=TIMEOUT), grpc.StatusCode.INVALID_ARGUMENT
    )

    assert {v.field for v in field_violations(err)} == {"query.interval", "query.series[0].math", "refresh"}


async def test_a_repeated_enum_item_is_named_by_its_index(api: Api, key: Metadata) -> None:
    paths = qpb.PathsQuery()
    paths.paths_filter.include_event_types.extend([qpb.PATH_TYPE_PAGEVIEW, 99])
    request = ipb.CreateInsightRequest(
        environment_id=api.environment_id,
        insight=ipb.Insight(name="paths", query=viz(qpb.InsightSource(paths_query=paths))),
    )

    err = await expect_error(
        api.stub.CreateInsight(request, metadata=key, timeout=TIMEOUT), grpc.StatusCode.INVALID_ARGUMENT
    )

    assert_invalid(err, "insight.query.source.pathsFilter.includeEventTypes[1]")


async def test_an_undefined_refresh_is_refused_not_ignored(send: Send) -> None:
    err = await expect_error(send(lambda q: None, refresh=999), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "refresh")


async def test_undefined_enums_are_refused_on_reads_and_updates_too(api: Api, key: Metadata) -> None:
    insight = await api.create(name="kept", query=trends_viz())

    err = await expect_error(
        api.stub.GetInsight(
            ipb.GetInsightRequest(environment_id=api.environment_id, id=insight.id, refresh=999),
            metadata=key,
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "refresh")

    broken = trends_query()
    broken.trends_filter.display = 555
    err = await expect_error(
        api.update(insight.id, ["query"], query=viz(qpb.InsightSource(trends_query=broken))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "insight.query.source.trendsFilter.display")
    stored = await api.get(insight.id)
    assert stored.query.insight_viz_node.source.trends_query.trends_filter.display == 0

    err = await expect_error(api.list(format=7), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "format")
    err = await expect_error(api.bulk_tags([insight.id], 9, ["x"]), grpc.StatusCode.INVALID_ARGUMENT)  # type: ignore[arg-type]
    assert_invalid(err, "action")


async def test_undefined_enums_are_refused_by_the_alert_and_sharing_services(
    server: Server, api: Api, key: Metadata
) -> None:
    insight = await api.create(name="alerting", query=trends_viz())
    alerts = agrpc.AlertsServiceStub(server.channel)
    alert = apb.Alert(insight=insight.id, name="a", calculation_interval=50)
    err = await expect_error(
        alerts.CreateAlert(
            apb.CreateAlertRequest(environment_id=api.environment_id, alert=alert),
            metadata=key,
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "alert.calculation_interval")

    sharing = sgrpc.SharingServiceStub(server.channel)
    enabled = await sharing.UpdateSharingConfiguration(
        spb.UpdateSharingConfigurationRequest(
            environment_id=api.environment_id,
            insight_id=insight.id,
            sharing_configuration=spb.SharingConfiguration(enabled=True),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        ),
        metadata=key,
        timeout=TIMEOUT,
    )
    request = spb.GetSharedInsightRequest(refresh=4242)
    err = await expect_error(
        sharing.GetSharedInsight(request, metadata=(("x-sharing-access-token", "nope"),), timeout=TIMEOUT),
        grpc.StatusCode.UNAUTHENTICATED,
    )  # auth comes first: a caller with an unknown link learns nothing about its request
    err = await expect_error(
        sharing.GetSharedInsight(
            request, metadata=(("x-sharing-access-token", enabled.access_token),), timeout=TIMEOUT
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "refresh")


async def test_a_server_stream_refuses_an_undefined_enum(
    queries: qsgrpc.QueryServiceStub, api: Api, key: Metadata
) -> None:
    query = trends_query()
    query.interval = 77
    request = qs.StreamQueryRequest(
        environment_id=api.environment_id, query=qpb.QueryNode(trends_query=query)
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in queries.StreamQuery(request, metadata=key, timeout=TIMEOUT):
            pass

    assert_invalid(caught.value, "query.interval")


# --------------------------------------------------------------------------------- decoding


def _raw_call(server: Server, method: str) -> Any:
    """A unary method that sends bytes as they are (the stubs would refuse to encode bad ones)."""
    return server.channel.unary_unary(method, request_serializer=None, response_deserializer=None)


async def test_invalid_utf8_in_a_string_field_is_invalid_argument(
    server: Server, api: Api, key: Metadata
) -> None:
    body = ipb.CreateInsightRequest(environment_id=api.environment_id).SerializeToString()
    body += length_delimited(2, length_delimited(3, b"bad \xff\xfe name"))  # insight.name

    err = await expect_error(
        _raw_call(server, "/insights.v1.InsightsService/CreateInsight")(body, metadata=key, timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
    )

    details = err.details() or ""
    assert "could not be decoded" in details and "UTF-8" in details, details
    assert "DecodeError" not in details and "Error parsing" not in details, details
    assert error_info(err).reason == "UNDECODABLE_REQUEST"


async def test_property_groups_nested_past_the_decoder_limit_are_invalid_argument(
    send: Send,
) -> None:
    err = await expect_error(send(_nest(60, _filter())), grpc.StatusCode.INVALID_ARGUMENT)

    details = err.details() or ""
    assert "could not be decoded" in details and "nested deeper" in details, details
    assert "DecodeError" not in details


async def test_an_undecodable_message_in_a_request_stream_is_invalid_argument(
    server: Server, api: Api, tenant: Tenant
) -> None:
    call = server.channel.stream_unary(
        "/insights.v1.EventsService/IngestEvents", request_serializer=None, response_deserializer=None
    )
    good = epb.IngestEventsRequest(environment_id=api.environment_id).SerializeToString()
    bad = good + length_delimited(2, length_delimited(1, b"\xc3\x28"))  # events[0].event

    async def messages() -> Any:
        yield good
        yield bad

    err = await expect_error(
        call(messages(), metadata=bearer(tenant.key("event:write")), timeout=TIMEOUT),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "could not be decoded" in (err.details() or "")


async def test_a_decodable_request_without_a_key_is_still_unauthenticated(server: Server) -> None:
    body = length_delimited(2, length_delimited(3, b"\xff"))

    await expect_error(
        _raw_call(server, "/insights.v1.InsightsService/CreateInsight")(body, timeout=TIMEOUT),
        grpc.StatusCode.UNAUTHENTICATED,
    )


# ---------------------------------------------------------------------------------- bounds


async def test_a_regex_of_deeply_nested_groups_is_refused_before_the_engine(send: Send) -> None:
    pattern = "(" * 500 + "a" + ")" * 500
    filter_ = _filter(operator=qpb.PROPERTY_OPERATOR_REGEX, value=qpb.PropertyValue(string_value=pattern))

    err = await expect_error(send(lambda q: _set_properties(q, filter_)), grpc.StatusCode.INVALID_ARGUMENT)

    assert_invalid(err, send.prefix + "properties[0].value", mentions=f"{MAX_REGEX_DEPTH}")


async def test_a_regex_nested_up_to_the_limit_is_accepted(send: Send) -> None:
    pattern = "(" * MAX_REGEX_DEPTH + "a" + ")" * MAX_REGEX_DEPTH
    filter_ = _filter(operator=qpb.PROPERTY_OPERATOR_NOT_REGEX, value=qpb.PropertyValue(string_value=pattern))

    await send(lambda q: _set_properties(q, filter_))


async def test_an_overlong_regex_is_refused(send: Send) -> None:
    pattern = "a" * (MAX_REGEX_LENGTH + 1)
    filter_ = _filter(operator=qpb.PROPERTY_OPERATOR_REGEX, value=qpb.PropertyValue(string_value=pattern))

    err = await expect_error(
        send(lambda q: q.series[0].events_node.properties.append(filter_)), grpc.StatusCode.INVALID_ARGUMENT
    )

    assert_invalid(err, send.prefix + "series[0].properties[0].value", mentions=f"{MAX_REGEX_LENGTH}")


async def test_property_groups_nested_past_the_limit_are_refused(send: Send) -> None:
    err = await expect_error(
        send(_nest(MAX_GROUP_DEPTH + 1, _filter())),
        grpc.StatusCode.INVALID_ARGUMENT,
    )

    details = err.details() or ""
    assert details.startswith(send.prefix + "properties.values[0]"), details
    assert f"at most {MAX_GROUP_DEPTH}" in details, details


async def test_property_groups_nested_up_to_the_limit_are_accepted(send: Send) -> None:
    await send(_nest(MAX_GROUP_DEPTH, _filter()))


@pytest.mark.parametrize("limit", [-1, -5, MAX_BREAKDOWN_LIMIT + 1])
async def test_a_breakdown_limit_out_of_range_is_refused(send: Send, limit: int) -> None:
    def mutate(q: qpb.TrendsQuery) -> None:
        q.breakdown_filter.breakdown.string_value = "browser"
        q.breakdown_filter.breakdown_limit = limit

    err = await expect_error(send(mutate), grpc.StatusCode.INVALID_ARGUMENT)

    assert_invalid(err, send.prefix + "breakdownFilter.breakdown_limit", mentions=str(MAX_BREAKDOWN_LIMIT))


async def test_too_many_series_are_refused_at_once(send: Send) -> None:
    def mutate(q: qpb.TrendsQuery) -> None:
        del q.series[:]
        q.series.extend(qpb.SeriesNode(events_node=qpb.EventsNode(event=f"e{i}")) for i in range(10_000))

    err = await expect_error(send(mutate), grpc.StatusCode.INVALID_ARGUMENT)

    assert_invalid(err, send.prefix + "series", mentions=str(MAX_SERIES))


async def test_the_most_series_are_accepted(send: Send) -> None:
    def mutate(q: qpb.TrendsQuery) -> None:
        del q.series[:]
        q.series.extend(qpb.SeriesNode(events_node=qpb.EventsNode(event=f"e{i}")) for i in range(MAX_SERIES))

    await send(
        mutate, **({"refresh": common_pb2.REFRESH_MODE_FORCE_CACHE} if send.rpc == "CreateInsight" else {})
    )


async def test_an_overlong_string_in_a_query_is_refused(send: Send) -> None:
    from server.queries.checks import MAX_QUERY_STRING

    err = await expect_error(
        send(lambda q: setattr(q.series[0].events_node, "event", "e" * (MAX_QUERY_STRING + 1))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )

    assert_invalid(err, send.prefix + "series[0].event", mentions=str(MAX_QUERY_STRING))
