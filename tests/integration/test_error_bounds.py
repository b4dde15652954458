"""An error repeats a bounded part of the caller's input, so its status always reaches the caller."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from tests.integration.itkit import (
    Api,
    Server,
    Tenant,
    assert_invalid,
    bearer,
    error_info,
    expect_error,
    rich_status,
)

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Far more than a client accepts in trailers (8 KiB), in one-byte and in multi-byte characters.
HUGE = ["x" * 8000, "ü" * 5000]


def _assert_bounded(err: grpc.aio.AioRpcError) -> None:
    assert len((err.details() or "").encode()) <= 1024
    status = rich_status(err)
    assert status.ByteSize() <= 3 * 1024
    for value in error_info(err).metadata.values():
        assert len(value.encode()) <= 256


@sqlite_only
@pytest.mark.parametrize("short_id", HUGE, ids=["ascii", "utf8"])
async def test_an_unknown_huge_short_id_is_not_found(api: Api, short_id: str) -> None:
    err = await expect_error(api.get(short_id), grpc.StatusCode.NOT_FOUND)
    assert error_info(err).reason == "INSIGHT_NOT_FOUND"
    assert short_id[:20] in (err.details() or "")  # still says which one, shortened
    _assert_bounded(err)


@sqlite_only
async def test_unknown_huge_ids_of_queries_and_alerts_are_not_found(server: Server, tenant: Tenant) -> None:
    metadata = bearer(tenant.key("query:read", "alert:read"))
    queries = qs_grpc.QueryServiceStub(server.channel)
    alerts = agrpc.AlertsServiceStub(server.channel)
    for huge in HUGE:
        query = queries.GetQueryStatus(
            qs.GetQueryStatusRequest(environment_id=tenant.environment_id, query_id=huge),
            metadata=metadata,
            timeout=10,
        )
        alert = alerts.GetAlert(
            apb.GetAlertRequest(environment_id=tenant.environment_id, id=huge), metadata=metadata, timeout=10
        )
        for call in (query, alert):
            _assert_bounded(await expect_error(call, grpc.StatusCode.NOT_FOUND))


@sqlite_only
@pytest.mark.parametrize("path", HUGE, ids=["ascii", "utf8"])
async def test_a_huge_update_mask_path_is_invalid_argument_naming_the_mask(api: Api, path: str) -> None:
    insight = await api.create(name="bounded")
    request = ipb.UpdateInsightRequest(
        environment_id=api.environment_id,
        id=insight.id,
        insight=ipb.Insight(name="renamed"),
        update_mask=field_mask_pb2.FieldMask(paths=["name", path]),
    )
    err = await expect_error(
        api.stub.UpdateInsight(request, metadata=api.metadata, timeout=10), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "update_mask")
    _assert_bounded(err)
