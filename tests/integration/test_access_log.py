"""The access log records the code the client saw: DEADLINE_EXCEEDED, CANCELLED, UNAVAILABLE at shutdown;
and a caller's deadline is never logged as an internal error."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from tests.integration.engineprobe import EngineProbe, Gate, eventually, probing
from tests.integration.itkit import Metadata, Server, Tenant, bearer, make_settings, unique, wait_for_health

RUN_QUERY = "/insights.v1.QueryService/RunQuery"
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _run(environment_id: int, event: str) -> qs.RunQueryRequest:
    """A blocking trend run that computes (each test uses its own event, so nothing is cached)."""
    return qs.RunQueryRequest(
        environment_id=environment_id,
        refresh=cpb.REFRESH_MODE_FORCE_BLOCKING,
        query=qpb.QueryNode(
            trends_query=qpb.TrendsQuery(
                series=[qpb.SeriesNode(events_node=qpb.EventsNode(event=event))],
                interval=qpb.INTERVAL_TYPE_DAY,
                date_range=qpb.DateRange(date_from="-7d"),
            )
        ),
    )


def _codes(caplog: pytest.LogCaptureFixture, method: str) -> list[str]:
    found = []
    for record in caplog.records:
        if record.name == "insights.requests":
            match = re.search(r"method=(\S+) code=(\S+)", record.getMessage())
            if match and match.group(1) == method:
                found.append(match.group(2))
    return found


@pytest.fixture
async def probe(server: Server, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[EngineProbe]:
    """The session server's engine seen through an EngineProbe that can hold runs."""
    async with probing(server.app.execution, monkeypatch) as probe:
        yield probe


@sqlite_only
async def test_a_deadline_and_a_cancel_are_logged_as_the_client_saw_them_never_as_internal(
    server: Server, tenant: Tenant, probe: EngineProbe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    stub = qs_grpc.QueryServiceStub(server.channel)
    metadata = bearer(tenant.key("query:read"))
    with probe.gate():
        # Held in the engine until after the deadline: the caller waits on the shared run.
        late = stub.RunQuery(_run(tenant.environment_id, unique("late")), metadata=metadata, timeout=1.0)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await late
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await eventually(lambda: _codes(caplog, RUN_QUERY), what="the access log line of the late call")
        assert _codes(caplog, RUN_QUERY) == ["DEADLINE_EXCEEDED"]

        before = len(probe.run_ids)
        left = stub.RunQuery(_run(tenant.environment_id, unique("left")), metadata=metadata, timeout=30)
        await eventually(
            lambda: set(probe.run_ids[before:]) & probe.held, what="the second run to be held in the engine"
        )
        left.cancel()
        await eventually(lambda: len(_codes(caplog, RUN_QUERY)) == 2, what="the cancelled call's line")
        assert _codes(caplog, RUN_QUERY) == ["DEADLINE_EXCEEDED", "CANCELLED"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


class _OpenWhenLogged(logging.Handler):
    """Opens a gate when a call's access-log line is written."""

    def __init__(self, gate: Gate) -> None:
        super().__init__()
        self._gate = gate

    def emit(self, record: logging.LogRecord) -> None:
        if RUN_QUERY in record.getMessage():
            self._gate.open()


async def test_a_call_cut_off_by_shutdown_is_logged_unavailable(
    events_dsn: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from server.app import App
    from server.domain import accounts
    from storage.migrate import upgrade

    database_url = f"sqlite:///{tmp_path / 'insights.db'}"
    await asyncio.to_thread(upgrade, database_url)
    app = App(make_settings(database_url, events_dsn))
    port = await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    probe = EngineProbe(app.execution.events)
    app.execution.events = probe  # type: ignore[assignment]
    caplog.set_level(logging.INFO, logger="insights.requests")
    stopping: asyncio.Task[None] | None = None
    release: _OpenWhenLogged | None = None
    try:
        await wait_for_health(channel)
        organization = accounts.create_organization(app.db, "shutdown")
        environment = accounts.create_environment(app.db, organization, "shutdown")
        user = accounts.create_user(app.db, "shutdown@example.com")
        accounts.add_membership(app.db, user, organization)
        _, raw = accounts.create_api_key(app.db, user, ["query:read"])
        metadata: Metadata = bearer(raw)
        with probe.gate() as gate:
            # Closing the server waits for the engine's worker threads: the held run is let go as soon
            # as its call has been logged, so that stopping does not wait for the gate's own limit.
            release = _OpenWhenLogged(gate)
            logging.getLogger("insights.requests").addHandler(release)
            call = qs_grpc.QueryServiceStub(channel).RunQuery(
                _run(environment, unique("shutdown")), metadata=metadata, timeout=30
            )
            await eventually(lambda: probe.held, what="the run to reach the engine")
            stopping = asyncio.create_task(app.stop(0.2))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        await asyncio.wait_for(stopping, 30)
        assert _codes(caplog, RUN_QUERY) == ["UNAVAILABLE"]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not errors, [r.getMessage() for r in errors]
    finally:
        if release is not None:
            logging.getLogger("insights.requests").removeHandler(release)
        await channel.close()
        if stopping is None:
            await app.stop(0.1)
