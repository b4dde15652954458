"""The server's connection policies as clients meet them: keepalive pings at the permitted interval
keep a connection (faster ones are told too_many_pings), the request size limit, and gzip-compressed
responses for callers that accept them."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from server.config import Settings
from server.transport import server_options
from tests.integration.itkit import Dedicated, Server, bearer, dedicated_server, length_delimited, trends_viz
from tests.support.h2proxy import FrameProxy
from tests.support.rawgrpc import unary_exchange

# The tuned server's minimum ping interval, and the request limit; scaled down from the defaults
# (4 s, 4 MiB) so that a test sees several pings in a few seconds. grpc-core clients ping at most
# about once a second whatever they are told, hence a client at 1 s here.
_MIN_PING_SECONDS = 0.4
_CLIENT_PING_MS = 1000
_MAX_REQUEST = 64 * 1024
_ENHANCE_YOUR_CALM = 0xB
_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


@pytest.fixture(scope="module")
async def tuned(tmp_path_factory: pytest.TempPathFactory, events_dsn: str) -> AsyncIterator[Dedicated]:
    async with dedicated_server(
        tmp_path_factory.mktemp("tuned"),
        events_dsn,
        scopes=("insight:read", "insight:write"),
        compression="gzip",
        keepalive_min_ping_interval_seconds=_MIN_PING_SECONDS,
        max_request_bytes=_MAX_REQUEST,
    ) as dedicated:
        yield dedicated


def _pinging(interval_ms: int) -> list[tuple[str, Any]]:
    """A client that pings like grpc-js with keepaliveTime set: also while idle, without a cap on
    pings between data (grpc-core clients otherwise stop after two)."""
    return [
        ("grpc.keepalive_time_ms", interval_ms),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


async def _serving(channel: grpc.aio.Channel) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    return int(response.status)


def test_the_default_policy_lets_a_client_ping_every_five_seconds_while_idle() -> None:
    options = dict(server_options(Settings()))
    assert options["grpc.keepalive_permit_without_calls"] == 1
    # Pings 5 s apart must not strike, with room for a late timer on either side.
    assert options["grpc.http2.min_ping_interval_without_data_ms"] <= 4000
    assert options["grpc.max_receive_message_length"] == 4 * 1024 * 1024


async def test_a_client_pinging_at_the_permitted_interval_keeps_its_connection(tuned: Dedicated) -> None:
    # Twice and a half the minimum: a ping delayed on this busy machine and the next one on time
    # still arrive further apart than the minimum.
    async with (
        FrameProxy(tuned.app.port) as proxy,
        grpc.aio.insecure_channel(proxy.target, options=_pinging(_CLIENT_PING_MS)) as channel,
    ):
        assert await _serving(channel) == health_pb2.HealthCheckResponse.SERVING
        seen = proxy.pings
        # Idle pings, more than the strikes a too-eager client is allowed before GOAWAY.
        await proxy.wait_until(lambda: proxy.pings >= seen + 5 or bool(proxy.goaways))
        assert proxy.goaways == []
        assert await _serving(channel) == health_pb2.HealthCheckResponse.SERVING
    assert proxy.connections == 1


async def test_a_client_pinging_faster_than_the_default_minimum_is_told_too_many_pings(server: Server) -> None:
    # The other side of the policy: the session's server runs the default minimum (4 s), which a
    # client pinging every second breaks; the tuned server above took the same client.
    async with (
        FrameProxy(server.port) as proxy,
        grpc.aio.insecure_channel(proxy.target, options=_pinging(_CLIENT_PING_MS)) as channel,
    ):
        assert await _serving(channel) == health_pb2.HealthCheckResponse.SERVING
        await proxy.wait_until(lambda: bool(proxy.goaways))
    assert [(g.error_code, g.debug) for g in proxy.goaways] == [(_ENHANCE_YOUR_CALM, b"too_many_pings")]


async def test_requests_above_the_limit_are_resource_exhausted(tuned: Dedicated) -> None:
    # A health check padded with an unknown field: the limit applies to bytes, before any handler.
    check = tuned.channel.unary_unary(
        _HEALTH_CHECK,
        request_serializer=lambda raw: raw,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    fits = await check(length_delimited(15, b"x" * (_MAX_REQUEST - 1024)), timeout=30)
    assert fits.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await check(length_delimited(15, b"x" * (_MAX_REQUEST + 1024)), timeout=30)
    assert failure.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert str(_MAX_REQUEST) in (failure.value.details() or "")


async def _insight(channel: grpc.aio.Channel, environment_id: int, key: str) -> tuple[bytes, ipb.Insight]:
    """A new insight with a long description, and the GetInsight request for it (serialized)."""
    stub = igrpc.InsightsServiceStub(channel)
    insight = ipb.Insight(name="compressed", description="pageviews by browser, " * 18, query=trends_viz())
    created = await stub.CreateInsight(
        ipb.CreateInsightRequest(environment_id=environment_id, insight=insight), metadata=bearer(key), timeout=30
    )
    request = ipb.GetInsightRequest(environment_id=environment_id, id=created.id)
    # What grpc's own client decodes (it accepts gzip by default).
    got = await stub.GetInsight(request, metadata=bearer(key), timeout=30)
    assert got.description == insight.description
    return request.SerializeToString(), got


def _get(port: int, request: bytes, key: str, accept: bytes) -> Any:
    headers = [(b"authorization", f"Bearer {key}".encode()), (b"grpc-accept-encoding", accept)]
    return unary_exchange(port, "/insights.v1.InsightsService/GetInsight", request, headers)


async def test_responses_are_gzip_compressed_for_callers_that_accept_it(tuned: Dedicated) -> None:
    request, decoded = await _insight(tuned.channel, tuned.environment_id, tuned.key)
    answer = await asyncio.to_thread(_get, tuned.app.port, request, tuned.key, b"identity,gzip")
    assert answer.trailers.get(b"grpc-status") == b"0", answer.trailers
    assert answer.headers.get(b"grpc-encoding") == b"gzip"
    [(compressed, body)] = answer.messages
    assert compressed == 1
    plain = gzip.decompress(body)
    assert len(body) < len(plain)
    assert ipb.Insight.FromString(plain) == decoded

    # Compression is negotiated per call: a caller that only takes deflate gets deflate.
    answer = await asyncio.to_thread(_get, tuned.app.port, request, tuned.key, b"identity,deflate")
    assert answer.headers.get(b"grpc-encoding") == b"deflate"
    [(compressed, body)] = answer.messages
    assert compressed == 1 and ipb.Insight.FromString(zlib.decompress(body)) == decoded
    # A caller that only accepts identity gets the same message as it is.
    answer = await asyncio.to_thread(_get, tuned.app.port, request, tuned.key, b"identity")
    assert answer.headers.get(b"grpc-encoding", b"identity") == b"identity"
    [(compressed, body)] = answer.messages
    assert compressed == 0 and ipb.Insight.FromString(body) == decoded


async def test_responses_are_not_compressed_by_default(server: Server, tuned: Dedicated) -> None:
    # The session's server runs the defaults: the compression above is the setting's.
    from tests.integration.itkit import new_tenant

    tenant = new_tenant(server)
    key = tenant.key("insight:read", "insight:write")
    request, decoded = await _insight(server.channel, tenant.environment_id, key)
    answer = await asyncio.to_thread(_get, server.port, request, key, b"identity,gzip")
    assert answer.trailers.get(b"grpc-status") == b"0", answer.trailers
    [(compressed, body)] = answer.messages
    assert compressed == 0 and ipb.Insight.FromString(body) == decoded
