"""Share-password guesses: limited per client address first, under a per-link ceiling, in the database.

Clients with distinct addresses reach the real server through a relay bound to 127.0.0.N
(tests/integration/addresses.py); time moves through the sharing domain's injected clock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from generated.insights.v1 import sharing_pb2 as spb
from generated.insights.v1 import sharing_pb2_grpc as sgrpc
from tests.integration.addresses import channel_from
from tests.integration.itkit import (
    Clock,
    Server,
    Tenant,
    bearer,
    error_info,
    expect_error,
    make_settings,
    sharing_clock,
    wait_for_health,
)

PASSWORD = "correct horse battery"
WRONG = "not the password"


@pytest.fixture
def clock(server: Server) -> Iterator[Clock]:
    with sharing_clock(server) as fake:
        yield fake


@dataclass
class Link:
    """A password-protected public link of a fresh insight."""

    access_token: str


async def protected_link(channel: grpc.aio.Channel, tenant: Tenant, stub: Any) -> Link:
    """Creates an insight, enables sharing with a password (PASSWORD) and returns its link."""
    from generated.insights.v1 import insight_pb2 as ipb

    key = bearer(tenant.key("insight:write", "sharing_configuration:write"))
    insight = await stub.CreateInsight(
        ipb.CreateInsightRequest(environment_id=tenant.environment_id, insight=ipb.Insight(name="Guarded")),
        metadata=key,
        timeout=10,
    )
    sharing = sgrpc.SharingServiceStub(channel)
    request = spb.UpdateSharingConfigurationRequest(
        environment_id=tenant.environment_id,
        insight_id=insight.id,
        sharing_configuration=spb.SharingConfiguration(enabled=True, password_required=True),
    )
    request.update_mask.paths.extend(["enabled", "password_required"])
    config = await sharing.UpdateSharingConfiguration(request, metadata=key, timeout=10)
    await sharing.CreateSharePassword(
        spb.CreateSharePasswordRequest(
            environment_id=tenant.environment_id, insight_id=insight.id, raw_password=PASSWORD
        ),
        metadata=key,
        timeout=10,
    )
    return Link(config.access_token)


async def unlock(channel: grpc.aio.Channel, link: Link, password: str) -> spb.UnlockSharedInsightResponse:
    request = spb.UnlockSharedInsightRequest(access_token=link.access_token, password=password)
    return await sgrpc.SharingServiceStub(channel).UnlockSharedInsight(request, timeout=10)


async def fail(channel: grpc.aio.Channel, link: Link, times: int) -> None:
    for _ in range(times):
        await expect_error(unlock(channel, link, WRONG), grpc.StatusCode.UNAUTHENTICATED)


async def refused(channel: grpc.aio.Channel, link: Link, password: str = PASSWORD) -> str:
    """Asserts the attempt is refused by a limit; returns what was limited ("address" or "link")."""
    err = await expect_error(unlock(channel, link, password), grpc.StatusCode.RESOURCE_EXHAUSTED)
    info = error_info(err)
    assert info.reason == "TOO_MANY_UNLOCK_ATTEMPTS"
    return info.metadata["limited"]


# --------------------------------------------------------------- the service's default limits


async def test_one_address_cannot_lock_a_link_for_everyone(
    server: Server, tenant: Tenant, stub: Any, clock: Clock
) -> None:
    link = await protected_link(server.channel, tenant, stub)
    async with (
        channel_from("127.0.0.2", server.port) as attacker,
        channel_from("127.0.0.3", server.port) as viewer,
    ):
        # The default: 10 failures per address within 5 minutes.
        await fail(attacker, link, 10)
        # Another address still unlocks with the right password...
        assert (await unlock(viewer, link, PASSWORD)).share_token
        # ...while this one is refused, even with the right password.
        assert await refused(attacker, link) == "address"
        await fail(viewer, link, 1)
        assert (await unlock(viewer, link, PASSWORD)).share_token

        # The lock ends when the oldest failure leaves the window.
        clock.advance(301)
        assert (await unlock(attacker, link, PASSWORD)).share_token


async def test_a_success_on_one_link_does_not_reset_guesses_at_another(
    server: Server, tenant: Tenant, stub: Any, clock: Clock
) -> None:
    victim = await protected_link(server.channel, tenant, stub)
    own = await protected_link(server.channel, tenant, stub)  # a link whose password the caller knows
    third = await protected_link(server.channel, tenant, stub)
    async with channel_from("127.0.0.4", server.port) as caller:
        await fail(caller, victim, 9)
        await unlock(caller, own, PASSWORD)
        await fail(caller, victim, 1)
        assert await refused(caller, third) == "address", "the address is locked, whatever link it names"
        assert await refused(caller, own) == "address"


# ------------------------------------------------------ configured limits, two replicas, a restart


@pytest.fixture
async def replicas(
    database_url: str, events_dsn: str, clock: Clock
) -> AsyncIterator[Callable[[], Any]]:
    """Starts servers on the session's database with small limits, all on the test's clock."""
    from server.app import App

    started: list[Any] = []

    async def start() -> Any:
        settings = make_settings(
            database_url,
            events_dsn,
            grace_seconds=0.5,
            sharing_unlock_window_seconds=60,
            sharing_unlock_failures_per_address=2,
            sharing_unlock_failures_per_link=5,
        )
        app = App(settings)
        port = await asyncio.wait_for(app.start(), 30)
        started.append(app)
        app.sharing.clock = clock
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await wait_for_health(channel)
        await channel.close()
        return app

    try:
        yield start
    finally:
        for app in started:
            await app.stop(0.5)


async def test_a_link_has_a_ceiling_over_all_addresses(
    server: Server, tenant: Tenant, stub: Any, clock: Clock, replicas: Callable[[], Any]
) -> None:
    app = await replicas()
    link = await protected_link(server.channel, tenant, stub)
    other = await protected_link(server.channel, tenant, stub)
    async with (
        channel_from("127.0.0.5", app.port) as a,
        channel_from("127.0.0.6", app.port) as b,
        channel_from("127.0.0.7", app.port) as c,
        channel_from("127.0.0.8", app.port) as d,
    ):
        await fail(a, link, 2)
        clock.advance(10)
        await fail(b, link, 2)
        await fail(c, link, 1)  # 5 failures on the link: its ceiling
        # d has no failure of its own, but the link is closed to every address...
        assert await refused(d, link) == "link"
        err = await expect_error(unlock(d, link, PASSWORD), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert error_info(err).metadata["retry_after_seconds"] == "50", "until the first failures age out"
        # ...and only that link.
        assert (await unlock(d, other, PASSWORD)).share_token
        clock.advance(50)
        # a's two failures left the window: 3 remain, so the link opens again.
        assert (await unlock(d, link, PASSWORD)).share_token


async def test_rotating_addresses_cannot_grow_the_counters(
    server: Server, tenant: Tenant, stub: Any, clock: Clock, replicas: Callable[[], Any]
) -> None:
    app = await replicas()
    link = await protected_link(server.channel, tenant, stub)
    outcomes = []
    for n in range(20):
        async with channel_from(f"127.0.1.{n + 1}", app.port) as caller:
            try:
                await unlock(caller, link, WRONG)
            except grpc.aio.AioRpcError as err:
                outcomes.append(err.code())
    assert outcomes.count(grpc.StatusCode.UNAUTHENTICATED) == 5, "the link's ceiling"
    assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 15
    with app.db.session() as session:
        rows = session.scalar(sa.text("SELECT count(*) FROM share_unlock_failures"))
    assert rows == 5, "refused attempts leave nothing behind: a link holds at most its ceiling"
    # Past the window, the next write drops the old counters.
    clock.advance(61)
    async with channel_from("127.0.1.1", app.port) as caller:
        await fail(caller, link, 1)
    with app.db.session() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM share_unlock_failures")) == 1


async def test_counters_are_shared_by_replicas_and_survive_a_restart(
    server: Server, tenant: Tenant, stub: Any, clock: Clock, replicas: Callable[[], Any]
) -> None:
    first, second = await replicas(), await replicas()
    link = await protected_link(server.channel, tenant, stub)
    async with channel_from("127.0.0.9", first.port) as on_first:
        await fail(on_first, link, 2)
    async with channel_from("127.0.0.9", second.port) as on_second:
        assert await refused(on_second, link) == "address", "the other replica knows"
    await second.stop(0.5)
    restarted = await replicas()
    async with (
        channel_from("127.0.0.9", restarted.port) as again,
        channel_from("127.0.0.10", restarted.port) as viewer,
    ):
        assert await refused(again, link) == "address", "a restart forgets nothing"
        assert (await unlock(viewer, link, PASSWORD)).share_token
        clock.advance(61)
        assert (await unlock(again, link, PASSWORD)).share_token


async def test_waiting_exactly_the_advertised_retry_after_is_enough(
    server: Server, tenant: Tenant, stub: Any, clock: Clock, replicas: Callable[[], Any]
) -> None:
    app = await replicas()  # 2 failures per address within 60 s
    link = await protected_link(server.channel, tenant, stub)
    async with channel_from("127.0.0.11", app.port) as caller:
        await fail(caller, link, 1)
        clock.advance(20)
        await fail(caller, link, 1)

        async def retry_after() -> str:
            err = await expect_error(unlock(caller, link, PASSWORD), grpc.StatusCode.RESOURCE_EXHAUSTED)
            assert error_info(err).metadata["limited"] == "address"
            return error_info(err).metadata["retry_after_seconds"]

        assert await retry_after() == "40", "until the first failure is 60 s old"
        clock.advance(39.5)
        assert await retry_after() == "1", "half a second is announced as a whole one"
        clock.advance(0.5)
        # The first failure is exactly a window old: it no longer counts.
        assert (await unlock(caller, link, PASSWORD)).share_token


async def test_an_attempt_that_raced_past_the_address_check_is_still_refused(
    server: Server, tenant: Tenant, stub: Any, clock: Clock
) -> None:
    # Two guesses from one address arrive together: both pass the address check (nothing
    # recorded yet), then each is counted with the other one in. The limiter's second count is
    # what refuses them; here the other attempts are already recorded when this one is counted.
    from server.domain.unlocks import UnlockLimiter, UnlockLimits
    from server.errors import ResourceExhausted

    configuration = _configuration_id(server, await protected_link(server.channel, tenant, stub))
    limiter = UnlockLimiter(server.app.db, clock, UnlockLimits(window=dt.timedelta(seconds=60), per_address=2))
    limiter.begin(configuration, "ipv4:192.0.2.1")
    clock.advance(5)
    limiter.begin(configuration, "ipv4:192.0.2.1")
    with pytest.raises(ResourceExhausted) as caught:
        limiter.begin(configuration, "ipv4:192.0.2.1")
    refusal = caught.value
    assert refusal.reason == "TOO_MANY_UNLOCK_ATTEMPTS"
    assert refusal.metadata == {"retry_after_seconds": "55", "limited": "address"}
    assert str(refusal) == "too many failed unlock attempts from this address; retry in 55 s"
    limiter.begin(configuration, "ipv4:192.0.2.2")  # another address is not refused


async def test_the_retry_after_follows_the_oldest_failure_whatever_order_replicas_wrote_them(
    server: Server, tenant: Tenant, stub: Any, clock: Clock
) -> None:
    # Replicas' clocks differ a little: a failure written later can carry an earlier time.
    from server.domain.unlocks import UnlockLimiter, UnlockLimits
    from server.errors import ResourceExhausted

    configuration = _configuration_id(server, await protected_link(server.channel, tenant, stub))
    limiter = UnlockLimiter(server.app.db, clock, UnlockLimits(window=dt.timedelta(seconds=60), per_address=2))
    start = clock.now
    clock.set(start + dt.timedelta(seconds=20))
    limiter.begin(configuration, "ipv4:192.0.2.3")
    clock.set(start)  # the other replica's clock is 20 s behind
    limiter.begin(configuration, "ipv4:192.0.2.3")
    clock.set(start + dt.timedelta(seconds=30))
    with pytest.raises(ResourceExhausted) as caught:
        limiter.check_address("ipv4:192.0.2.3")
    assert caught.value.metadata["retry_after_seconds"] == "30", "when the earliest failure is 60 s old"


def _configuration_id(server: Server, link: Link) -> int:
    from storage.models import SharingConfiguration

    with server.db.session() as session:
        return int(
            session.scalars(
                sa.select(SharingConfiguration.id).where(SharingConfiguration.access_token == link.access_token)
            ).one()
        )
