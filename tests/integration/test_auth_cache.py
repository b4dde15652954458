"""A server that caches verified keys: a revoked key works until its cache entry ends, then never."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from tests.integration.itkit import Tenant, bearer, error_info, expect_error, make_settings, wait_for_health

TTL = 30.0


class Clock:
    """Monotonic seconds for the server's key cache, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Cached:
    stub: igrpc.InsightsServiceStub
    clock: Clock


@pytest.fixture
async def cached(database_url: str, events_dsn: str) -> AsyncIterator[Cached]:
    """A second server on the session's database, caching verified keys for TTL seconds of its clock."""
    from server.app import App

    app = App(make_settings(database_url, events_dsn, grace_seconds=0.5, auth_cache_seconds=TTL))
    clock = Clock()
    app.key_cache.clock = clock
    port = await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await wait_for_health(channel)
        yield Cached(igrpc.InsightsServiceStub(channel), clock)
    finally:
        await channel.close()
        await app.stop(0.5)


async def test_a_revoked_key_is_refused_once_its_cache_entry_expires(cached: Cached, tenant: Tenant) -> None:
    key = tenant.key("insight:read")

    def listing() -> Any:
        request = ipb.ListInsightsRequest(environment_id=tenant.environment_id)
        return cached.stub.ListInsights(request, metadata=bearer(key), timeout=10)

    await listing()  # verified against the database and cached until 1000 + TTL
    tenant.revoke(key)
    # The documented trade-off: within the TTL the cached verification still answers.
    await listing()
    cached.clock.now += TTL
    await listing()
    # One moment later the key is verified again, and the database says it is revoked.
    cached.clock.now += 0.001
    err = await expect_error(listing(), grpc.StatusCode.UNAUTHENTICATED)
    assert error_info(err).reason == "INVALID_API_KEY"
    # A refusal is not cached as a success either: it stays refused.
    cached.clock.now += 0.001
    await expect_error(listing(), grpc.StatusCode.UNAUTHENTICATED)
