"""Deadlines and cancels on a real grpc.aio server behind the service's interceptors: never logged as an
internal error, and the access log records the code the client saw."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from generated.insights.v1 import options_pb2, query_service_pb2
from interceptors.auth import AuthInterceptor, KeyCache
from interceptors.coalescing import CoalescingInterceptor
from interceptors.errors import ErrorInterceptor
from interceptors.logging import LoggingInterceptor
from server.principal import EnvironmentInfo, Principal
from tests.support.loopback import loopback

SHARED = "/test.Probe/Shared"  # coalescable
OWN = "/test.Probe/Own"  # not coalescable
POLICIES = {
    SHARED: options_pb2.MethodPolicy(required_scopes=["query:read"], coalescable=True),
    OWN: options_pb2.MethodPolicy(required_scopes=["query:read"]),
}
PRINCIPAL = Principal(
    key_id=7,
    user_id=1,
    scopes=frozenset({"*"}),
    environments={1: EnvironmentInfo(id=1, organization_id=1, timezone="UTC", week_start_day=0)},
)


async def _verify(raw: str) -> Principal:
    return PRINCIPAL


class Stuck:
    """A handler that never answers; on cancellation it fails as a library would (not CancelledError)."""

    def __init__(self, *, converts_cancellation: bool) -> None:
        self.converts_cancellation = converts_cancellation
        self.started = 0

    async def handle(self, request: Any, context: Any) -> query_service_pb2.QueryResponse:
        self.started += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            if self.converts_cancellation:
                # E.g. an engine client that reports its killed query as its own error.
                raise RuntimeError("query was cancelled") from None
            raise
        raise AssertionError("unreachable")


@asynccontextmanager
async def _serve(
    stuck: Stuck, coalescing: CoalescingInterceptor | None = None
) -> AsyncIterator[Callable[..., grpc.aio.UnaryUnaryCall]]:
    method = grpc.unary_unary_rpc_method_handler(
        stuck.handle,
        request_deserializer=query_service_pb2.RunQueryRequest.FromString,
        response_serializer=query_service_pb2.QueryResponse.SerializeToString,
    )
    interceptors = [
        LoggingInterceptor(),
        ErrorInterceptor(),
        AuthInterceptor(POLICIES, _verify, KeyCache(0)),
        coalescing or CoalescingInterceptor(POLICIES),
    ]
    handler = grpc.method_handlers_generic_handler("test.Probe", {"Shared": method, "Own": method})
    async with loopback(handler, interceptors) as channel:
        yield _caller(channel)


def _caller(channel: grpc.aio.Channel) -> Callable[..., grpc.aio.UnaryUnaryCall]:
    """Calls a probe method by name over `channel`, authenticated, with a RunQueryRequest."""

    def call(name: str, timeout: float, client_query_id: str = "") -> grpc.aio.UnaryUnaryCall:
        stub = channel.unary_unary(
            name,
            request_serializer=query_service_pb2.RunQueryRequest.SerializeToString,
            response_deserializer=query_service_pb2.QueryResponse.FromString,
        )
        request = query_service_pb2.RunQueryRequest(environment_id=1, client_query_id=client_query_id)
        return stub(request, metadata=(("authorization", "Bearer k"),), timeout=timeout)

    return call


def _logged_codes(caplog: pytest.LogCaptureFixture) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.name == "insights.requests"]
    return [m.group(1) for line in lines if (m := re.search(r" code=(\S+)", line))]


async def _lines(caplog: pytest.LogCaptureFixture, count: int) -> list[str]:
    """The access log's codes once `count` calls have been logged (grpc ends them after the client)."""
    async with asyncio.timeout(10):
        while len(_logged_codes(caplog)) < count:
            await asyncio.sleep(0.01)
    return _logged_codes(caplog)


def _complaints(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


async def test_callers_whose_deadline_passes_while_waiting_on_a_shared_run_are_no_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    coalescing = CoalescingInterceptor(POLICIES)
    rounds, callers = 5, 30
    async with _serve(Stuck(converts_cancellation=False), coalescing) as call:
        for _ in range(rounds):
            # Deadlines spread over a few milliseconds, so that they expire while others still wait.
            calls = [call(SHARED, 0.05 + 0.001 * i, client_query_id=str(i)) for i in range(callers)]
            for pending in calls:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await pending
                assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        async with asyncio.timeout(10):
            while coalescing.waiting or coalescing.in_flight:
                await asyncio.sleep(0.01)
        waited = coalescing.stats.leaders + coalescing.stats.followers
        # A call whose deadline passed before grpc handed it to the interceptors is not logged at all.
        codes = await _lines(caplog, waited)
    assert waited > callers
    assert codes == ["DEADLINE_EXCEEDED"] * len(codes)
    assert not _complaints(caplog)


async def test_work_cut_short_by_the_deadline_is_logged_as_the_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with _serve(Stuck(converts_cancellation=True)) as call:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(OWN, 0.2)
        codes = await _lines(caplog, 1)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert codes == ["DEADLINE_EXCEEDED"]
    assert not _complaints(caplog)


async def test_a_call_the_client_cancels_is_logged_cancelled_not_ok_nor_internal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    stuck = Stuck(converts_cancellation=True)
    async with _serve(stuck) as call:
        pending = call(OWN, 30)
        async with asyncio.timeout(10):
            while not stuck.started:
                await asyncio.sleep(0.01)
        pending.cancel()
        codes = await _lines(caplog, 1)
    assert codes == ["CANCELLED"]
    assert not _complaints(caplog)
