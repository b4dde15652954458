"""Fixtures: one migrated database and one running server per metadata backend, a fresh tenant per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from generated.insights.v1 import insight_pb2_grpc as igrpc
from tests.integration.itkit import Api, Server, Tenant, bearer, make_settings, new_tenant, wait_for_health

BACKENDS = ["sqlite", "postgresql"]


def _url_text(url: Any) -> str:
    """A SQLAlchemy URL (object or text) as text, password included."""
    render = getattr(url, "render_as_string", None)
    return render(hide_password=False) if render else str(url)


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated metadata database of the parametrized backend."""
    from storage.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'insights.db'}"
    else:
        try:
            url = _url_text(request.getfixturevalue("postgres_url"))
        except pytest.FixtureLookupError:
            pytest.skip("no postgres_url fixture (tests/conftest.py) is available")
    upgrade(url)
    if request.param == "postgresql":
        # Both backends' servers share one chDB store (one path per process): keep their
        # environment ids apart so that events of one never show under the other's tenants.
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("ALTER SEQUENCE environments_id_seq RESTART WITH 1000000"))
        engine.dispose()
    return url


@pytest.fixture(scope="session")
async def server(database_url: str, events_dsn: str) -> AsyncIterator[Server]:
    """One server per backend for the whole session."""
    from server.app import App

    app = App(make_settings(database_url, events_dsn))
    port = await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await wait_for_health(channel)
        yield Server(app=app, port=port, channel=channel)
    finally:
        await channel.close()
        await app.stop(1.0)


@pytest.fixture
def stub(server: Server) -> igrpc.InsightsServiceStub:
    return igrpc.InsightsServiceStub(server.channel)


@pytest.fixture
def make_tenant(server: Server) -> Callable[[], Tenant]:
    """A factory of fresh tenants (organization + environment + user)."""

    def make() -> Tenant:
        return new_tenant(server)

    return make


@pytest.fixture
def tenant(make_tenant: Callable[[], Tenant]) -> Tenant:
    return make_tenant()


@pytest.fixture
def api(stub: igrpc.InsightsServiceStub, tenant: Tenant) -> Api:
    """The tenant's owner calling with a key holding the insight and activity scopes."""
    return Api(stub, tenant.environment_id, bearer(tenant.key("insight:write", "activity_log:read")))
