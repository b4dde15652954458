"""The auth interceptor on a real grpc.aio server: what it remembers of a verified key, and what not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from generated.insights.v1 import options_pb2
from interceptors.auth import AuthInterceptor, KeyCache
from interceptors.errors import ErrorInterceptor
from server.errors import Unauthenticated, Unavailable
from server.principal import Principal
from tests.support.loopback import loopback

READ = "/test.Probe/Read"
WRITE = "/test.Probe/Write"
KEY = "phx_probe-key"
POLICIES = {
    READ: options_pb2.MethodPolicy(required_scopes=["insight:read"]),
    WRITE: options_pb2.MethodPolicy(required_scopes=["insight:write"]),
}
TTL = 60.0


class Clock:
    """Monotonic seconds that only the test moves."""

    now = 100.0

    def __call__(self) -> float:
        return self.now


class Keys:
    """The key check the server asks the database for, counted; `outcomes` are served in turn."""

    def __init__(self, *outcomes: Principal | Exception):
        self.outcomes = list(outcomes)
        self.checks: list[str] = []

    async def verify(self, raw: str) -> Principal:
        self.checks.append(raw)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def reader() -> Principal:
    return Principal(key_id=7, user_id=1, scopes=frozenset({"insight:read"}), environments={})


async def _serve(auth: AuthInterceptor) -> AsyncIterator[grpc.aio.Channel]:
    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handlers = {
        name: grpc.unary_unary_rpc_method_handler(echo) for name in ("Read", "Write")
    }
    handler = grpc.method_handlers_generic_handler("test.Probe", handlers)
    async with loopback(handler, [ErrorInterceptor(), auth]) as channel:
        yield channel


async def _call(channel: grpc.aio.Channel, method: str, key: str = KEY) -> grpc.StatusCode:
    try:
        await channel.unary_unary(method)(b"x", metadata=(("authorization", f"Bearer {key}"),), timeout=10)
    except grpc.aio.AioRpcError as err:
        return err.code()
    return grpc.StatusCode.OK


async def test_a_verified_key_is_served_from_the_cache_within_its_ttl() -> None:
    keys, clock = Keys(reader()), Clock()
    async for channel in _serve(AuthInterceptor(POLICIES, keys.verify, KeyCache(TTL, clock=clock))):
        assert await _call(channel, READ) == grpc.StatusCode.OK
        clock.now += TTL
        assert await _call(channel, READ) == grpc.StatusCode.OK
        assert keys.checks == [KEY], "one database check for calls within the TTL"
        # The cached principal's scopes still decide each method.
        assert await _call(channel, WRITE) == grpc.StatusCode.PERMISSION_DENIED
        assert keys.checks == [KEY]
        assert await _call(channel, READ, key="phx_other") == grpc.StatusCode.OK
        assert keys.checks == [KEY, "phx_other"], "entries are per key"


async def test_a_served_method_without_a_policy_is_refused_even_to_a_star_key() -> None:
    # Fail closed: a handler registered without a declared policy is unusable, whatever the key.
    star = Principal(key_id=1, user_id=1, scopes=frozenset({"*"}), environments={})
    keys = Keys(star)
    only_read = {READ: POLICIES[READ]}
    async for channel in _serve(AuthInterceptor(only_read, keys.verify, KeyCache(0, clock=Clock()))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await channel.unary_unary(WRITE)(b"x", metadata=(("authorization", f"Bearer {KEY}"),), timeout=10)
        assert await _call(channel, READ) == grpc.StatusCode.OK
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == f"method {WRITE} does not support API key access"
    status = rpc_status.from_call(caught.value)
    info = error_details_pb2.ErrorInfo()
    assert status is not None and status.details[0].Unpack(info) and info.reason == "METHOD_NOT_ALLOWED"
    assert keys.checks == [KEY], "refused before any key check"


async def test_a_sub_second_ttl_still_caches() -> None:
    keys, clock = Keys(reader()), Clock()
    async for channel in _serve(AuthInterceptor(POLICIES, keys.verify, KeyCache(0.5, clock=clock))):
        assert await _call(channel, READ) == grpc.StatusCode.OK
        clock.now += 0.5
        assert await _call(channel, READ) == grpc.StatusCode.OK
    assert keys.checks == [KEY]


async def test_without_a_ttl_every_call_checks_the_key() -> None:
    keys = Keys(reader())
    async for channel in _serve(AuthInterceptor(POLICIES, keys.verify, KeyCache(0, clock=Clock()))):
        for _ in range(3):
            assert await _call(channel, READ) == grpc.StatusCode.OK
    assert keys.checks == [KEY] * 3


@pytest.mark.parametrize(
    "failure",
    [Unauthenticated("Invalid API key."), Unavailable("the metadata database is unreachable")],
    ids=["refused", "database down"],
)
async def test_a_failed_check_is_not_remembered(failure: Exception) -> None:
    # A key refused once (not created yet, or the database briefly down) is checked again next time.
    keys = Keys(failure, reader())
    async for channel in _serve(AuthInterceptor(POLICIES, keys.verify, KeyCache(TTL, clock=Clock()))):
        assert await _call(channel, READ) != grpc.StatusCode.OK
        assert await _call(channel, READ) == grpc.StatusCode.OK
        assert await _call(channel, READ) == grpc.StatusCode.OK
    assert keys.checks == [KEY, KEY], "the failure was checked again, the success then cached"


async def test_a_full_cache_starts_over_instead_of_growing() -> None:
    keys, clock = Keys(reader()), Clock()
    cache = KeyCache(TTL, max_entries=2, clock=clock)
    async for channel in _serve(AuthInterceptor(POLICIES, keys.verify, cache)):
        for key in ("phx_a", "phx_b", "phx_c", "phx_a", "phx_c"):
            assert await _call(channel, READ, key=key) == grpc.StatusCode.OK
    # c found the cache full (a, b) and emptied it: a was checked again, c was still cached.
    assert keys.checks == ["phx_a", "phx_b", "phx_c", "phx_a"]
