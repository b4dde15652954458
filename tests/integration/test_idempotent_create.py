"""CreateInsight with a request_id: a retry answers the first call's insight and creates nothing."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from generated.insights.v1 import insight_pb2 as ipb
from tests.integration.itkit import Api, Tenant, assert_invalid, error_info, expect_error, trends_viz


async def _create(api: Api, request_id: str, name: str = "retried") -> ipb.Insight:
    request = ipb.CreateInsightRequest(
        environment_id=api.environment_id, insight=ipb.Insight(name=name, query=trends_viz()), request_id=request_id
    )
    return await api.stub.CreateInsight(request, metadata=api.metadata, timeout=30)  # type: ignore[no-any-return]


async def test_a_retried_create_answers_the_first_insight(api: Api) -> None:
    request_id = str(uuid.uuid4())
    first = await _create(api, request_id)
    again = await _create(api, request_id)
    assert again.id == first.id and again.short_id == first.short_id
    assert await api.list_ids() == [first.id]
    created = [e for e in (await api.activity(first.id)).results if e.activity == "created"]
    assert len(created) == 1
    # Without a request id every create is a new insight, as before.
    other = await _create(api, "")
    assert other.id != first.id


async def test_concurrent_twins_create_one_insight(api: Api) -> None:
    request_id = str(uuid.uuid4())
    answers = await asyncio.gather(*(_create(api, request_id) for _ in range(6)))
    assert len({a.id for a in answers}) == 1
    assert await api.list_ids() == [answers[0].id]


async def test_a_reused_request_id_with_other_fields_is_refused(api: Api) -> None:
    request_id = str(uuid.uuid4())
    first = await _create(api, request_id, name="first")
    err = await expect_error(_create(api, request_id, name="second"), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "request_id")
    assert error_info(err).reason == "REQUEST_ID_REUSED"
    assert await api.list_ids() == [first.id]


async def test_request_ids_belong_to_their_environment(api: Api, tenant: Tenant) -> None:
    request_id = str(uuid.uuid4())
    mine = await _create(api, request_id)
    second_env = tenant.add_environment("second")
    key = tenant.key("insight:write", "activity_log:read")
    theirs = await _create(api.as_key(key, second_env), request_id)
    assert theirs.id != mine.id


async def test_a_malformed_request_id_is_refused_and_creates_nothing(api: Api) -> None:
    for bad in ("x" * 65, "has space", "é"):
        err = await expect_error(_create(api, bad), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, "request_id")
    assert await api.list_ids() == []
