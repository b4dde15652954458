"""The coalescing interceptor on a real grpc.aio server behind the real auth and error interceptors:
identical concurrent calls run once, each caller is authorised on its own, a leaving caller ends
only itself, errors are shared but never kept, and the bounds send callers on their own."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from generated.insights.v1 import insight_pb2, options_pb2, query_service_pb2
from generated.insights.v1.common_pb2 import RefreshMode
from interceptors.auth import AuthInterceptor, KeyCache
from interceptors.coalescing import CoalescingInterceptor
from interceptors.errors import ErrorInterceptor
from server.errors import NotFound
from server.principal import EnvironmentInfo, Principal
from server.services.context import current_principal
from tests.support.loopback import loopback

RUN = "/test.Probe/Run"  # coalescable
GET = "/test.Probe/Get"  # coalescable, per user
PLAIN = "/test.Probe/Plain"  # not coalescable
POLICIES = {
    RUN: options_pb2.MethodPolicy(required_scopes=["query:read"], coalescable=True),
    GET: options_pb2.MethodPolicy(required_scopes=["insight:read"], coalescable=True, response_per_user=True),
    PLAIN: options_pb2.MethodPolicy(required_scopes=["query:read"]),
}


def _environments(*ids: int) -> dict[int, EnvironmentInfo]:
    return {i: EnvironmentInfo(id=i, organization_id=1, timezone="UTC", week_start_day=0) for i in ids}


PRINCIPALS = {
    "alice": Principal(key_id=1, user_id=1, scopes=frozenset({"*"}), environments=_environments(1, 2)),
    # Another key of the same user.
    "alice-2": Principal(
        key_id=2, user_id=1, scopes=frozenset({"insight:read", "query:read"}), environments=_environments(1)
    ),
    "bob": Principal(key_id=3, user_id=2, scopes=frozenset({"*"}), environments=_environments(1)),
    "no-scope": Principal(
        key_id=4, user_id=3, scopes=frozenset({"insight:read"}), environments=_environments(1, 2)
    ),
}


async def _verify(raw: str) -> Principal:
    return PRINCIPALS[raw]


class Probe:
    """A slow handler that counts its runs and finishes when the test releases it."""

    def __init__(self) -> None:
        self.executions = 0
        self.release = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.failures: list[Exception] = []

    async def handle(self, request: Any, context: Any) -> query_service_pb2.QueryResponse:
        self.executions += 1
        run = self.executions
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        if self.failures:
            raise self.failures.pop(0)
        principal = current_principal.get()
        assert principal is not None
        return query_service_pb2.QueryResponse(cache_key=f"run-{run}", hogql=f"user {principal.user_id}")


def _generic(probe: Probe) -> grpc.GenericRpcHandler:
    def method(request_type: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            probe.handle,
            request_deserializer=request_type.FromString,
            response_serializer=query_service_pb2.QueryResponse.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        "test.Probe",
        {
            "Run": method(query_service_pb2.RunQueryRequest),
            "Get": method(insight_pb2.GetInsightRequest),
            "Plain": method(query_service_pb2.RunQueryRequest),
        },
    )


class Client:
    def __init__(self, channel: grpc.aio.Channel):
        self._channel = channel

    def __call__(
        self, method: str, request: Any, key: str = "alice", timeout: float = 5
    ) -> grpc.aio.UnaryUnaryCall:
        stub = self._channel.unary_unary(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=query_service_pb2.QueryResponse.FromString,
        )
        return stub(request, metadata=(("authorization", f"Bearer {key}"),), timeout=timeout)


@asynccontextmanager
async def _serve(coalescing: CoalescingInterceptor, probe: Probe) -> AsyncIterator[Client]:
    interceptors = [ErrorInterceptor(), AuthInterceptor(POLICIES, _verify, KeyCache(0)), coalescing]
    async with loopback(_generic(probe), interceptors) as channel:
        try:
            yield Client(channel)
        finally:
            probe.release.set()


async def _until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Waits, boundedly, for the server side to reach a state."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def _error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def _run(
    environment_id: int = 1, refresh: int = RefreshMode.REFRESH_MODE_BLOCKING, client_query_id: str = ""
) -> query_service_pb2.RunQueryRequest:
    return query_service_pb2.RunQueryRequest(
        environment_id=environment_id, refresh=refresh, client_query_id=client_query_id
    )


async def test_fifty_identical_calls_run_once_and_all_get_the_response() -> None:
    now = [0.0]
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES, clock=lambda: now[0])
    async with _serve(coalescing, probe) as call:
        calls = [call(RUN, _run()) for _ in range(50)]
        await _until(lambda: coalescing.waiting == 50)
        now[0] = 10.0
        probe.release.set()
        responses = await asyncio.gather(*calls)
    assert probe.executions == 1
    assert all(r == responses[0] for r in responses) and responses[0].cache_key == "run-1"
    assert (coalescing.stats.leaders, coalescing.stats.followers, coalescing.stats.bypasses) == (1, 49, 0)
    assert coalescing.stats.wait_seconds == 500.0  # by the injected clock: 50 callers × 10 s
    assert coalescing.in_flight == 0


async def test_each_caller_passes_its_own_scope_and_environment_checks_before_joining() -> None:
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES)
    async with _serve(coalescing, probe) as call:
        allowed = [call(RUN, _run(environment_id=2)) for _ in range(3)]
        await _until(lambda: coalescing.waiting == 3)
        no_scope = await _error(call(RUN, _run(environment_id=2), key="no-scope"))
        other_environment = await _error(call(RUN, _run(environment_id=2), key="bob"))
        probe.release.set()
        responses = await asyncio.gather(*allowed)
    assert no_scope.code() == grpc.StatusCode.PERMISSION_DENIED and "query:read" in (no_scope.details() or "")
    assert other_environment.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "environment" in (other_environment.details() or "")
    assert [r.cache_key for r in responses] == ["run-1"] * 3
    assert probe.executions == 1 and coalescing.stats.followers == 2


# The leaving caller's deadline: the behaviour under test, not a wait. It must only outlast the
# arrival of the other callers (milliseconds), which the test checks before the caller leaves.
LEAVING_DEADLINE = 1.0


@pytest.mark.parametrize("leaves_by", ["cancel", "deadline"])
async def test_the_first_caller_leaving_ends_only_that_caller(leaves_by: str) -> None:
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES)
    async with _serve(coalescing, probe) as call:
        first = call(RUN, _run(), timeout=LEAVING_DEADLINE if leaves_by == "deadline" else 5)
        await _until(lambda: coalescing.waiting == 1)
        rest = [call(RUN, _run()) for _ in range(3)]
        await _until(lambda: coalescing.waiting == 4)
        if leaves_by == "cancel":
            first.cancel()
        await _until(lambda: coalescing.waiting == 3, timeout=LEAVING_DEADLINE + 5)
        probe.release.set()
        responses = await asyncio.gather(*rest)
        if leaves_by == "cancel":
            with pytest.raises(asyncio.CancelledError):
                await first
        else:
            assert (await _error(first)).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert [r.cache_key for r in responses] == ["run-1"] * 3
    assert probe.executions == 1 and not probe.cancelled.is_set()
    assert coalescing.stats.cancelled == 0


async def test_the_run_is_cancelled_when_every_caller_has_left_and_the_next_call_runs_afresh() -> None:
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES)
    async with _serve(coalescing, probe) as call:
        calls = [call(RUN, _run()) for _ in range(3)]
        await _until(lambda: coalescing.waiting == 3)
        for pending in calls:
            pending.cancel()
        async with asyncio.timeout(3):
            await probe.cancelled.wait()
        assert coalescing.stats.cancelled == 1 and coalescing.in_flight == 0
        probe.release.set()
        again = await call(RUN, _run())
    assert again.cache_key == "run-2" and probe.executions == 2


@pytest.mark.parametrize("failure", ["domain", "unexpected"])
async def test_an_error_reaches_every_waiter_and_is_never_reused(failure: str) -> None:
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES)
    probe.failures.append(
        NotFound("Query 7 not found.", reason="QUERY_NOT_FOUND")
        if failure == "domain"
        else RuntimeError("engine exploded")
    )
    async with _serve(coalescing, probe) as call:
        calls = [call(RUN, _run()) for _ in range(5)]
        await _until(lambda: coalescing.waiting == 5)
        probe.release.set()
        errors = [await _error(pending) for pending in calls]
        again = await call(RUN, _run())
    if failure == "domain":
        assert {e.code() for e in errors} == {grpc.StatusCode.NOT_FOUND}
        assert {e.details() for e in errors} == {"Query 7 not found."}
    else:
        # Mapped per caller by the error interceptor: each caller has its own correlation id.
        assert {e.code() for e in errors} == {grpc.StatusCode.INTERNAL}
        ids = {re.sub(r".*correlation id ([0-9a-f]+).*", r"\1", e.details() or "") for e in errors}
        assert len(ids) == 5
    assert again.cache_key == "run-2" and probe.executions == 2


async def test_different_requests_and_different_users_of_a_per_user_method_are_not_coalesced() -> None:
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES)
    get = insight_pb2.GetInsightRequest(environment_id=1, id=7)
    async with _serve(coalescing, probe) as call:
        calls = [
            call(RUN, _run()),
            call(RUN, _run(refresh=RefreshMode.REFRESH_MODE_FORCE_BLOCKING)),  # another request
            call(RUN, _run(), key="bob"),  # the same request, not per user: joins alice's
            call(GET, get),
            call(GET, get, key="bob"),  # per user: runs apart
            call(GET, get, key="alice-2"),  # the same user with another key: joins
        ]
        await _until(lambda: coalescing.waiting == 6)
        probe.release.set()
        run, other, bob_run, alice_get, bob_get, alice_2_get = await asyncio.gather(*calls)
    assert probe.executions == 4
    assert (coalescing.stats.leaders, coalescing.stats.followers) == (4, 2)
    assert bob_run == run and other.cache_key != run.cache_key
    assert alice_2_get == alice_get and alice_get.hogql == "user 1" and bob_get.hogql == "user 2"


async def test_calls_that_differ_only_in_client_query_id_are_coalesced() -> None:
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES)
    async with _serve(coalescing, probe) as call:
        calls = [
            call(RUN, _run(client_query_id="a")),
            call(RUN, _run(client_query_id="b")),
            call(GET, insight_pb2.GetInsightRequest(environment_id=1, id=7, client_query_id="c")),
            call(GET, insight_pb2.GetInsightRequest(environment_id=1, id=7)),
        ]
        await _until(lambda: coalescing.waiting == 4)
        probe.release.set()
        await asyncio.gather(*calls)
    assert probe.executions == 2 and coalescing.stats.followers == 2


async def test_past_the_bounds_callers_run_on_their_own() -> None:
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES, max_keys=1, max_waiters=2)
    async with _serve(coalescing, probe) as call:
        calls = [call(RUN, _run()) for _ in range(3)]  # the third is past max_waiters
        await _until(lambda: probe.executions == 2)
        calls.append(call(RUN, _run(environment_id=2)))  # a second key is past max_keys
        await _until(lambda: probe.executions == 3)
        probe.release.set()
        responses = await asyncio.gather(*calls)
    assert len(responses) == 4 and coalescing.waiting == 0
    assert (coalescing.stats.leaders, coalescing.stats.followers, coalescing.stats.bypasses) == (1, 1, 2)


async def test_methods_not_marked_coalescable_pass_through() -> None:
    probe, coalescing = Probe(), CoalescingInterceptor(POLICIES)
    async with _serve(coalescing, probe) as call:
        calls = [call(PLAIN, _run()) for _ in range(3)]
        await _until(lambda: probe.executions == 3)
        probe.release.set()
        responses = await asyncio.gather(*calls)
    assert sorted(r.cache_key for r in responses) == ["run-1", "run-2", "run-3"]
    assert coalescing.stats.leaders == coalescing.stats.followers == coalescing.stats.bypasses == 0
