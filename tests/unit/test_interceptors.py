"""The error and logging interceptors on a real grpc.aio server: INTERNAL with a correlation id, and
one request line per call that names the key id but never the key."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from generated.insights.v1 import options_pb2
from interceptors.auth import AuthInterceptor, KeyCache
from interceptors.errors import ErrorInterceptor
from interceptors.logging import LoggingInterceptor
from interceptors.wrap import CallInterceptor
from server.errors import NotFound
from server.principal import Principal
from tests.support.loopback import loopback

METHOD = "/test.Probe/Call"
KEY = "phx_secret-key-material-that-must-not-be-logged"


def _handler(behaviour: Any) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        "test.Probe", {"Call": grpc.unary_unary_rpc_method_handler(behaviour)}
    )


async def _serve(behaviour: Any, interceptors: list[Any]) -> AsyncIterator[grpc.aio.Channel]:
    async with loopback(_handler(behaviour), interceptors) as channel:
        yield channel


async def _call(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await channel.unary_unary(METHOD)(b"x", metadata=metadata, timeout=5)
    return caught.value


async def test_an_unexpected_exception_is_internal_with_a_logged_correlation_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def explode(request: bytes, context: Any) -> bytes:
        raise RuntimeError("SELECT secret FROM table -- internal detail")

    caplog.set_level(logging.ERROR, logger="insights.errors")
    async for channel in _serve(explode, [ErrorInterceptor()]):
        error = await _call(channel)
    assert error.code() == grpc.StatusCode.INTERNAL
    match = re.fullmatch(r"internal error \(correlation id ([0-9a-f]{16})\)", error.details() or "")
    assert match, error.details()
    assert "SELECT" not in (error.details() or "") and "Traceback" not in (error.details() or "")
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback stays in the log


async def test_a_domain_error_keeps_its_code_and_error_info() -> None:
    async def missing(request: bytes, context: Any) -> bytes:
        raise NotFound("Insight 9 not found.", reason="INSIGHT_NOT_FOUND", metadata={"insight": "9"})

    async for channel in _serve(missing, [ErrorInterceptor()]):
        error = await _call(channel)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(error)
    assert status is not None and status.details[0].type_url.endswith("google.rpc.ErrorInfo")


async def test_one_log_line_per_call_names_the_key_id_never_the_key(caplog: pytest.LogCaptureFixture) -> None:
    async def verify(raw: str) -> Principal:
        assert raw == KEY
        return Principal(key_id=42, user_id=1, scopes=frozenset({"*"}), environments={})

    async def ok(request: bytes, context: Any) -> bytes:
        return request

    policies = {METHOD: options_pb2.MethodPolicy(required_scopes=["insight:read"])}
    interceptors = [LoggingInterceptor(), ErrorInterceptor(), AuthInterceptor(policies, verify, KeyCache(0))]
    caplog.set_level(logging.INFO, logger="insights.requests")
    async for channel in _serve(ok, interceptors):
        assert await channel.unary_unary(METHOD)(b"x", metadata=(("authorization", f"Bearer {KEY}"),)) == b"x"
        denied = await _call(channel)
    assert denied.code() == grpc.StatusCode.UNAUTHENTICATED
    lines = [r.getMessage() for r in caplog.records if r.name == "insights.requests"]
    assert len(lines) == 2
    assert f"method={METHOD}" in lines[0] and "code=OK" in lines[0] and "key_id=42" in lines[0]
    assert "duration_ms=" in lines[0]
    assert "code=UNAUTHENTICATED" in lines[1]
    assert all(KEY not in line for line in lines)


class _Arrivals(CallInterceptor):
    """Counts the calls that reached the next interceptor; `all_in` is set when `expected` have."""

    def __init__(self, expected: int):
        self.expected = expected
        self.count = 0
        self.all_in = asyncio.Event()

    async def unary(self, method: str, request: Any, context: Any, call: Any) -> Any:
        self.count += 1
        if self.count == self.expected:
            self.all_in.set()
        # No suspension point before the auth interceptor's wait on the key's verification.
        return await call()


async def test_concurrent_calls_with_a_cold_key_share_one_verification() -> None:
    checks = 0
    arrivals = _Arrivals(20)

    async def verify(raw: str) -> Principal:
        nonlocal checks
        checks += 1
        # The database round trip the calls would otherwise repeat lasts until every call has
        # arrived: each of them looks for the key while the first check is still pending.
        await asyncio.wait_for(arrivals.all_in.wait(), 10)
        return Principal(key_id=1, user_id=1, scopes=frozenset({"*"}), environments={})

    async def ok(request: bytes, context: Any) -> bytes:
        return request

    policies = {METHOD: options_pb2.MethodPolicy(required_scopes=["insight:read"])}
    interceptors = [ErrorInterceptor(), arrivals, AuthInterceptor(policies, verify, KeyCache(5.0))]
    async for channel in _serve(ok, interceptors):
        call = channel.unary_unary(METHOD)
        replies = await asyncio.gather(
            *(call(b"x", metadata=(("authorization", f"Bearer {KEY}"),), timeout=15) for _ in range(20))
        )
    assert replies == [b"x"] * 20
    assert arrivals.count == 20 and checks == 1


def test_settings_read_booleans_and_refuse_nonsense() -> None:
    from server.config import Settings
    from server.errors import InvalidArgument

    assert Settings.from_env({"INSIGHTS_COALESCING": "false"}).coalescing is False
    assert Settings.from_env({}).coalescing is True
    with pytest.raises(InvalidArgument) as caught:
        Settings.from_env({"INSIGHTS_COALESCING": "maybe"})
    assert caught.value.violations[0].field == "coalescing"
