"""Throttles per API key and environment: a call over its class's rate is RESOURCE_EXHAUSTED with
RetryInfo, the reference's message, and nothing done; other keys, classes and health go on."""

from __future__ import annotations

from pathlib import Path

import grpc
from google.rpc import error_details_pb2

from generated.insights.v1 import actions_pb2 as apb
from generated.insights.v1 import actions_pb2_grpc as agrpc
from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qgrpc
from server.domain import accounts
from tests.integration.itkit import (
    bearer,
    dedicated_server,
    error_info,
    expect_error,
    health_status,
    rich_status,
)

LIMITS = {"throttle_default": "3/minute,100/hour", "throttle_compute": "2/minute", "throttle_ai": "off"}


def _retry_seconds(err: grpc.aio.AioRpcError) -> float:
    for detail in rich_status(err).details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    raise AssertionError("no RetryInfo")


def _trend(environment_id: int, refresh: int) -> qs.RunQueryRequest:
    node = qpb.QueryNode(
        trends_query=qpb.TrendsQuery(
            series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="throttled"))],
            date_range=qpb.DateRange(date_from="-7d"),
        )
    )
    return qs.RunQueryRequest(environment_id=environment_id, query=node, refresh=refresh)


async def test_a_key_over_its_rate_waits_and_others_do_not(tmp_path: Path, events_dsn: str) -> None:
    async with dedicated_server(tmp_path, events_dsn, scopes=("*",), **LIMITS) as served:
        actions = agrpc.ActionsServiceStub(served.channel)
        queries = qgrpc.QueryServiceStub(served.channel)
        mine = bearer(served.key)
        listing = apb.ListActionsRequest(environment_id=served.environment_id)
        for _ in range(3):
            await actions.ListActions(listing, metadata=mine, timeout=10)
        err = await expect_error(
            actions.CreateAction(
                apb.CreateActionRequest(
                    environment_id=served.environment_id,
                    action=apb.Action(name="never made", steps=[apb.ActionStep(event="$pageview")]),
                ),
                metadata=mine,
                timeout=10,
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert err.details() == "Request was throttled. Expected available in 20 seconds."
        assert error_info(err).reason == "THROTTLED"
        assert error_info(err).metadata["throttle_class"] == "default"
        assert 19.0 < _retry_seconds(err) <= 20.0
        # Refused before it did anything: no action was made (read with another key, as the
        # first one is still throttled).
        user_id = accounts.verify_api_key(served.app.db, served.key).user_id
        _, other = accounts.create_api_key(served.app.db, user_id, ["*"], label="second")
        theirs = bearer(other)
        assert not (await actions.ListActions(listing, metadata=theirs, timeout=10)).results

        # Computing calls have a class of their own; a call that only reads the cache is ordinary.
        for _ in range(2):
            await queries.RunQuery(
                _trend(served.environment_id, cpb.REFRESH_MODE_FORCE_BLOCKING), metadata=theirs, timeout=30
            )
        err = await expect_error(
            queries.RunQuery(
                _trend(served.environment_id, cpb.REFRESH_MODE_FORCE_BLOCKING), metadata=theirs, timeout=30
            ),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        assert error_info(err).metadata["throttle_class"] == "compute"
        assert 29.0 < _retry_seconds(err) <= 30.0
        cached = await queries.RunQuery(
            _trend(served.environment_id, cpb.REFRESH_MODE_FORCE_CACHE), metadata=theirs, timeout=30
        )
        assert cached.result.trends.series  # computed a moment ago, read from the cache

        # Environments the key cannot reach share one bucket: made-up ids cannot multiply its rate.
        def stranger(n: int) -> apb.ListActionsRequest:
            return apb.ListActionsRequest(environment_id=served.environment_id + n)

        for n in (1, 2, 3):
            await expect_error(
                actions.ListActions(stranger(n), metadata=theirs, timeout=10), grpc.StatusCode.PERMISSION_DENIED
            )
        await expect_error(
            actions.ListActions(stranger(4), metadata=theirs, timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        # Health has no caller to throttle.
        assert all([await health_status(served.channel) == 1 for _ in range(10)])
