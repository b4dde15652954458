"""Bounded memory and answers through the real server: every held result counts against one budget,
a finished run's status does not pin its result, and no response exceeds what its caller accepts."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from interceptors.limits import OPT_IN_HEADER
from server.services.convert.common import RESULTS_EVICTED
from storage.events import EventRow
from tests.integration.engineprobe import eventually
from tests.integration.itkit import Dedicated, bearer, dedicated_server, error_info, expect_error, rich_status

VALUES = 300  # distinct breakdown values: a breakdown answer of some tens of kilobytes


async def _insert(dedicated: Dedicated) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        EventRow(
            dedicated.environment_id,
            uuid.uuid4(),
            "$pageview",
            f"person-{i}",
            uuid.uuid4(),
            now - dt.timedelta(hours=i % 48),
            json.dumps({"kind": f"value-{i:04d}"}),
            "{}",
        )
        for i in range(VALUES)
    ]
    await asyncio.to_thread(dedicated.app.events.insert_events, rows)


def _breakdown(date_from: str = "-3d", limit: int = VALUES) -> qpb.QueryNode:
    query = qpb.TrendsQuery(
        series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))],
        interval=qpb.INTERVAL_TYPE_DAY,
        date_range=qpb.DateRange(date_from=date_from),
    )
    query.breakdown_filter.breakdown.string_value = "kind"
    query.breakdown_filter.breakdown_limit = limit
    return qpb.QueryNode(trends_query=query)


def _run(dedicated: Dedicated, query: qpb.QueryNode, refresh: Any, metadata: Any = (), **fields: Any) -> Any:
    stub = qs_grpc.QueryServiceStub(dedicated.channel)
    request = qs.RunQueryRequest(
        environment_id=dedicated.environment_id, query=query, refresh=refresh, **fields
    )
    return stub.RunQuery(request, metadata=(*bearer(dedicated.key), *metadata), timeout=30)


@pytest.fixture
async def limited(tmp_path_factory: pytest.TempPathFactory, events_dsn: str) -> Any:
    async with dedicated_server(
        tmp_path_factory.mktemp("limited"),
        events_dsn,
        scopes=("query:read", "insight:write"),
        max_response_bytes=4096,
        max_response_opt_in_bytes=1024 * 1024,
    ) as dedicated:
        await _insert(dedicated)
        yield dedicated


async def test_a_response_over_the_default_limit_is_refused_naming_the_limit(limited: Dedicated) -> None:
    err = await expect_error(_run(limited, _breakdown(), cpb.REFRESH_MODE_BLOCKING), grpc.StatusCode.RESOURCE_EXHAUSTED)
    info = error_info(err)
    assert info.reason == "RESPONSE_TOO_LARGE"
    assert info.metadata["limit_bytes"] == "4096" and int(info.metadata["response_bytes"]) > 4096
    assert OPT_IN_HEADER in (err.details() or "")
    # The same request always hits the limit: no RetryInfo invites a pointless retry.
    assert not any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in rich_status(err).details)
    # A small answer passes, and a caller that accepts more gets the large one.
    small = await _run(limited, _breakdown(limit=3), cpb.REFRESH_MODE_BLOCKING)
    assert len(small.result.trends.series) == 4  # three values and "Other"
    large = await _run(limited, _breakdown(), cpb.REFRESH_MODE_BLOCKING, ((OPT_IN_HEADER, "1048576"),))
    assert len(large.result.trends.series) == VALUES and large.ByteSize() > 4096


async def test_insight_reads_are_bounded_too(limited: Dedicated) -> None:
    stub = igrpc.InsightsServiceStub(limited.channel)
    metadata = bearer(limited.key)
    created = await stub.CreateInsight(
        ipb.CreateInsightRequest(
            environment_id=limited.environment_id,
            insight=ipb.Insight(name="wide", query=_breakdown()),
        ),
        metadata=metadata,
        timeout=30,
    )
    read = stub.GetInsight(
        ipb.GetInsightRequest(
            environment_id=limited.environment_id, id=created.id, refresh=cpb.REFRESH_MODE_BLOCKING
        ),
        metadata=metadata,
        timeout=30,
    )
    assert error_info(await expect_error(read, grpc.StatusCode.RESOURCE_EXHAUSTED)).reason == "RESPONSE_TOO_LARGE"


@pytest.mark.parametrize("asked", ["0", "-5", "lots", str(2 * 1024 * 1024)])
async def test_an_opt_in_outside_the_ceiling_is_invalid(limited: Dedicated, asked: str) -> None:
    call = _run(limited, _breakdown(limit=3), cpb.REFRESH_MODE_BLOCKING, ((OPT_IN_HEADER, asked),))
    err = await expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
    assert (err.details() or "").startswith(OPT_IN_HEADER)


async def test_every_held_result_stays_within_one_budget(
    tmp_path_factory: pytest.TempPathFactory, events_dsn: str
) -> None:
    async with dedicated_server(
        tmp_path_factory.mktemp("budget"),
        events_dsn,
        result_cache_mb=1,
        max_response_opt_in_bytes=8 * 1024 * 1024,
    ) as dedicated:
        await _insert(dedicated)
        budget = dedicated.app.memory
        opt_in = ((OPT_IN_HEADER, str(8 * 1024 * 1024)),)
        # Distinct queries (each a date range of its own), each result read twice: the second read
        # is answered from memory and rebuilt answers are memoised.
        first_id = "budget-first"
        await _run(dedicated, _breakdown("-3d"), cpb.REFRESH_MODE_ASYNC, opt_in, client_query_id=first_id)
        status = qs_grpc.QueryServiceStub(dedicated.channel)

        async def first_status() -> Any:
            request = qs.GetQueryStatusRequest(environment_id=dedicated.environment_id, query_id=first_id)
            return await status.GetQueryStatus(request, metadata=(*bearer(dedicated.key), *opt_in), timeout=10)

        done = await eventually_async(first_status, lambda s: s.complete)
        assert done.HasField("results") and RESULTS_EVICTED not in done.labels
        for days in range(4, 60):
            for refresh in (cpb.REFRESH_MODE_BLOCKING, cpb.REFRESH_MODE_FORCE_CACHE):
                answer = await _run(dedicated, _breakdown(f"-{days}d"), refresh, opt_in)
                assert len(answer.result.trends.series) == VALUES
            assert budget.used <= budget.limit, f"{budget.used} bytes held, budget {budget.limit}"
        stats = dedicated.app.execution.cache.stats()
        assert stats["evictions"] > 0 and stats["bytes"] <= budget.limit
        # The first run's result was evicted long ago: its status no longer holds it, and says so.
        evicted = await first_status()
        assert evicted.complete and not evicted.error and not evicted.HasField("results")
        assert RESULTS_EVICTED in evicted.labels
        await eventually(lambda: budget.used <= budget.limit)


async def eventually_async(fetch: Any, predicate: Any, attempts: int = 500) -> Any:
    for _ in range(attempts):
        found = await fetch()
        if predicate(found):
            return found
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")
