"""Every call has a request id: the caller's x-request-id when usable (else a new one), sent back in
the response headers, on the call's log lines and in its error details; an unusable one is refused."""

from __future__ import annotations

import logging
import re

import grpc
import pytest

from generated.insights.v1 import insight_pb2 as ipb
from tests.integration.itkit import Api, assert_invalid, error_info, expect_error

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
GET = "/insights.v1.InsightsService/GetInsight"


def _header(metadata: grpc.aio.Metadata | None) -> list[str]:
    return [str(value) for key, value in metadata or () if key == "x-request-id"]


def _access_ids(caplog: pytest.LogCaptureFixture, method: str) -> list[str]:
    """The request ids on the access log lines of `method`."""
    return [
        str(getattr(r, "request_id", None))
        for r in caplog.records
        if r.name == "insights.requests" and f"method={method} " in r.getMessage()
    ]


def _get(api: Api, ref: int, *extra: tuple[str, str]) -> grpc.aio.UnaryUnaryCall:
    request = ipb.GetInsightRequest(environment_id=api.environment_id, id=ref)
    return api.stub.GetInsight(request, metadata=(*api.metadata, *extra), timeout=api.timeout)


@sqlite_only
async def test_a_call_without_one_gets_a_new_id_in_its_headers_and_its_log_line(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    made = await api.create(name="ids")
    first, second = _get(api, made.id), _get(api, made.id)
    assert (await first).id == (await second).id == made.id
    ids = [_header(await call.initial_metadata()) for call in (first, second)]
    assert all(len(found) == 1 and re.fullmatch(r"[0-9a-f]{32}", found[0]) for found in ids)
    assert ids[0] != ids[1]  # one per call
    assert set(_access_ids(caplog, GET)) >= {ids[0][0], ids[1][0]}


@sqlite_only
async def test_the_callers_id_comes_back_and_is_in_the_log_line_and_the_error(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    found = _get(api, 987_654_321, ("x-request-id", "edge-7f3a:42/b"))
    err = await expect_error(found, grpc.StatusCode.NOT_FOUND)
    assert _header(await found.initial_metadata()) == ["edge-7f3a:42/b"]
    assert error_info(err).metadata["request_id"] == "edge-7f3a:42/b"
    assert "edge-7f3a:42/b" in _access_ids(caplog, GET)


@sqlite_only
@pytest.mark.parametrize(
    "headers",
    [
        [("x-request-id", "has spaces in it")],
        [("x-request-id", "x" * 129)],
        [("x-request-id", "a"), ("x-request-id", "b")],
    ],
    ids=["characters", "length", "twice"],
)
async def test_an_unusable_id_is_refused_naming_the_header_and_changes_nothing(
    api: Api, headers: list[tuple[str, str]]
) -> None:
    before = await api.list_ids()
    request = ipb.CreateInsightRequest(environment_id=api.environment_id, insight=ipb.Insight(name="refused"))
    call = api.stub.CreateInsight(request, metadata=(*api.metadata, *headers), timeout=api.timeout)
    err = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "x-request-id")
    # The call still had an id of its own, which its error carries.
    generated = _header(await call.initial_metadata())
    assert len(generated) == 1 and error_info(err).metadata["request_id"] == generated[0]
    assert await api.list_ids() == before
