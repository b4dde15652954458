"""Helpers shared by the integration tests: a typed client facade, query builders and status parsing."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import datetime as dt
import itertools
import random
import socket
import string
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_pb2_grpc as igrpc
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc

SERVICE_NAME = "insights.v1.InsightsService"
STATUS_DETAILS_KEY = "grpc-status-details-bin"
Metadata = tuple[tuple[str, str], ...]
_counter = itertools.count(1)


def unique(prefix: str) -> str:
    """A name unique in the test session."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------
# Status details
# ---------------------------------------------------------------------------


def rich_status(err: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status carried in the trailers of a failed call (fails the test when absent)."""
    for key, value in err.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value if isinstance(value, bytes) else value.encode())
            assert status.code == err.code().value[0], (status.code, err.code())
            return status
    raise AssertionError(f"no {STATUS_DETAILS_KEY} trailer on {err.code()}: {err.details()}")


def field_violations(err: grpc.aio.AioRpcError) -> list[error_details_pb2.BadRequest.FieldViolation]:
    """The BadRequest field violations of a failed call."""
    violations: list[error_details_pb2.BadRequest.FieldViolation] = []
    for detail in rich_status(err).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(bad.field_violations)
    return violations


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a failed call (fails the test when absent)."""
    for detail in rich_status(err).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo on {err.code()}: {err.details()}")


def assert_invalid(err: grpc.aio.AioRpcError, field: str, *, mentions: str | None = None) -> None:
    """Assert INVALID_ARGUMENT with a BadRequest violation on `field`, named in the message too."""
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    fields = [v.field for v in field_violations(err)]
    assert field in fields, f"expected a violation on {field!r}, got {fields} ({err.details()})"
    assert field in (err.details() or ""), f"message does not name {field!r}: {err.details()!r}"
    if mentions is not None:
        text = (err.details() or "") + " ".join(v.description for v in field_violations(err))
        assert mentions in text, f"{mentions!r} not mentioned in {text!r}"
    info = error_info(err)
    assert info.domain == "insights.v1"
    assert info.reason and info.reason == info.reason.upper()


async def expect_error(awaitable: Any, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Await a call that must fail with `code`; return the error."""
    try:
        result = await awaitable
    except grpc.aio.AioRpcError as err:
        assert err.code() == code, f"expected {code}, got {err.code()}: {err.details()}"
        return err
    raise AssertionError(f"expected {code}, the call succeeded with {result!r}")


# ---------------------------------------------------------------------------
# Query builders
# ---------------------------------------------------------------------------


def _series(*events: str) -> list[qpb.SeriesNode]:
    return [qpb.SeriesNode(events_node=qpb.EventsNode(event=e, name=e)) for e in events]


def trends_query(event: str = "$pageview") -> qpb.TrendsQuery:
    return qpb.TrendsQuery(
        series=_series(event),
        interval=qpb.INTERVAL_TYPE_DAY,
        date_range=qpb.DateRange(date_from="-7d"),
    )


def viz(source: qpb.InsightSource) -> qpb.QueryNode:
    return qpb.QueryNode(insight_viz_node=qpb.InsightVizNode(source=source))


def trends_viz(event: str = "$pageview") -> qpb.QueryNode:
    return viz(qpb.InsightSource(trends_query=trends_query(event)))


def funnels_viz() -> qpb.QueryNode:
    return viz(qpb.InsightSource(funnels_query=qpb.FunnelsQuery(series=_series("$pageview", "signup"))))


def retention_viz() -> qpb.QueryNode:
    return viz(qpb.InsightSource(retention_query=qpb.RetentionQuery(retention_filter=qpb.RetentionFilter())))


def paths_viz() -> qpb.QueryNode:
    return viz(qpb.InsightSource(paths_query=qpb.PathsQuery(paths_filter=qpb.PathsFilter())))


def stickiness_viz() -> qpb.QueryNode:
    return viz(qpb.InsightSource(stickiness_query=qpb.StickinessQuery(series=_series("$pageview"))))


def lifecycle_viz() -> qpb.QueryNode:
    return viz(qpb.InsightSource(lifecycle_query=qpb.LifecycleQuery(series=_series("$pageview"))))


def sql_viz(sql: str = "select 1") -> qpb.QueryNode:
    return qpb.QueryNode(data_visualization_node=qpb.DataVisualizationNode(source=qpb.HogQLQuery(query=sql)))


def bare_trends() -> qpb.QueryNode:
    return qpb.QueryNode(trends_query=trends_query())


def bare_hogql(sql: str = "select 2") -> qpb.QueryNode:
    return qpb.QueryNode(hogql_query=qpb.HogQLQuery(query=sql))


# ---------------------------------------------------------------------------
# Client facade
# ---------------------------------------------------------------------------


def bearer(raw_key: str) -> Metadata:
    return (("authorization", f"Bearer {raw_key}"),)


def _lookup(ref: int | str) -> dict[str, Any]:
    return {"short_id": ref} if isinstance(ref, str) else {"id": ref}


@dataclass
class Api:
    """InsightsService calls bound to one environment and one caller's key."""

    stub: igrpc.InsightsServiceStub
    environment_id: int
    metadata: Metadata
    timeout: float = 15.0

    def as_key(self, raw_key: str, environment_id: int | None = None) -> Api:
        """The same facade calling with another key (and optionally another environment)."""
        env = self.environment_id if environment_id is None else environment_id
        return Api(self.stub, env, bearer(raw_key), self.timeout)

    def in_environment(self, environment_id: int) -> Api:
        return Api(self.stub, environment_id, self.metadata, self.timeout)

    async def create(self, **fields: Any) -> ipb.Insight:
        request = ipb.CreateInsightRequest(environment_id=self.environment_id, insight=ipb.Insight(**fields))
        return cast(
            ipb.Insight, await self.stub.CreateInsight(request, metadata=self.metadata, timeout=self.timeout)
        )

    async def get(self, ref: int | str) -> ipb.Insight:
        request = ipb.GetInsightRequest(environment_id=self.environment_id, **_lookup(ref))
        return cast(
            ipb.Insight, await self.stub.GetInsight(request, metadata=self.metadata, timeout=self.timeout)
        )

    async def list(self, **filters: Any) -> ipb.ListInsightsResponse:
        request = ipb.ListInsightsRequest(environment_id=self.environment_id, **filters)
        response = await self.stub.ListInsights(request, metadata=self.metadata, timeout=self.timeout)
        return cast(ipb.ListInsightsResponse, response)

    async def list_ids(self, **filters: Any) -> builtins.list[int]:
        return [i.id for i in (await self.list(**filters)).results]

    async def update(self, ref: int | str, mask: Sequence[str] | None = None, **fields: Any) -> ipb.Insight:
        request = ipb.UpdateInsightRequest(
            environment_id=self.environment_id, insight=ipb.Insight(**fields), **_lookup(ref)
        )
        if mask is not None:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=builtins.list(mask)))
        return cast(
            ipb.Insight, await self.stub.UpdateInsight(request, metadata=self.metadata, timeout=self.timeout)
        )

    async def delete(self, ref: int | str) -> ipb.Insight:
        request = ipb.DeleteInsightRequest(environment_id=self.environment_id, **_lookup(ref))
        return cast(
            ipb.Insight, await self.stub.DeleteInsight(request, metadata=self.metadata, timeout=self.timeout)
        )

    async def activity(
        self, ref: int | str | None = None, page: int = 0, limit: int = 0
    ) -> ipb.ListInsightActivityResponse:
        lookup = {} if ref is None else _lookup(ref)
        request = ipb.ListInsightActivityRequest(
            environment_id=self.environment_id, page=page, limit=limit, **lookup
        )
        response = await self.stub.ListInsightActivity(request, metadata=self.metadata, timeout=self.timeout)
        return cast(ipb.ListInsightActivityResponse, response)

    async def bulk_tags(
        self, ids: Sequence[int], action: ipb.BulkTagAction.ValueType, tags: Sequence[str]
    ) -> ipb.BulkUpdateInsightTagsResponse:
        request = ipb.BulkUpdateInsightTagsRequest(
            environment_id=self.environment_id,
            ids=builtins.list(ids),
            action=action,
            tags=builtins.list(tags),
        )
        response = await self.stub.BulkUpdateInsightTags(
            request, metadata=self.metadata, timeout=self.timeout
        )
        return cast(ipb.BulkUpdateInsightTagsResponse, response)


# ---------------------------------------------------------------------------
# Server and tenants
# ---------------------------------------------------------------------------


def make_settings(database_url: str, events_dsn: str, **overrides: Any) -> Any:
    """Server settings for an in-process test server on a free loopback port."""
    from server.config import Settings

    values: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "database_url": database_url,
        "events_dsn": events_dsn,
        "grace_seconds": 2.0,
        "auth_cache_seconds": 0.0,
        "log_level": "WARNING",
        # The scheduler is driven by tests through `app.scheduler.run_once(now)`.
        "alert_poll_seconds": 0.0,
        # Alert tests' webhook receivers listen on 127.0.0.1, admitted like an operator would.
        "alert_webhook_allowed_networks": "127.0.0.1/32",
        # Suites make hundreds of calls a minute with one key; throttle tests turn them on.
        "throttle_default": "off",
        "throttle_compute": "off",
        "throttle_ai": "off",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Server:
    """A running in-process server and a channel to it."""

    app: Any
    port: int
    channel: grpc.aio.Channel

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def db(self) -> Any:
        return self.app.db


def new_tenant(server: Server) -> Tenant:
    """A fresh organization with one environment and one member (the owner)."""
    from server.domain import accounts

    organization_id = int(accounts.create_organization(server.db, unique("org")))
    environment_id = int(accounts.create_environment(server.db, organization_id, unique("env")))
    email = f"{unique('owner')}@example.com"
    user_id = int(accounts.create_user(server.db, email, first_name="Owner", last_name="Tester"))
    accounts.add_membership(server.db, user_id, organization_id)
    return Tenant(server.db, organization_id, environment_id, user_id, email)


async def eventless_tenant(server: Server, make_tenant: Callable[[], Tenant]) -> Tenant:
    """A fresh tenant whose environment id has no events yet: the servers of both metadata
    backends share one event store, and their environment ids overlap."""
    while True:
        found = make_tenant()
        if await asyncio.to_thread(server.app.events.count_events, found.environment_id) == 0:
            return found


def timestamp(when: dt.datetime) -> timestamp_pb2.Timestamp:
    """`when` as a protobuf Timestamp."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(when)
    return stamp


async def week_pageviews(channel: grpc.aio.Channel, environment_id: int, metadata: Metadata) -> float:
    """The environment's $pageview total over the last week, as RunQuery computes it."""
    query = qpb.QueryNode(
        trends_query=qpb.TrendsQuery(
            series=[qpb.SeriesNode(events_node=qpb.EventsNode(event="$pageview"))],
            interval=qpb.INTERVAL_TYPE_DAY,
            date_range=qpb.DateRange(date_from="-7d"),
        )
    )
    request = qs.RunQueryRequest(
        environment_id=environment_id, query=query, refresh=cpb.REFRESH_MODE_FORCE_BLOCKING
    )
    response = await qs_grpc.QueryServiceStub(channel).RunQuery(request, metadata=metadata, timeout=60)
    return float(sum(response.result.trends.series[0].data))


@dataclass
class Tenant:
    """A fresh organization with one environment and one member, plus helpers to add more."""

    db: Any
    organization_id: int
    environment_id: int
    user_id: int
    email: str
    keys: dict[str, int] = field(default_factory=dict)

    def key(self, *scopes: str, environments: list[int] | None = None, user_id: int | None = None) -> str:
        """A new personal API key of this tenant's user (or `user_id`) with `scopes`."""
        from server.domain import accounts

        key_id, raw = accounts.create_api_key(
            self.db, user_id or self.user_id, list(scopes), environment_ids=environments, label="test"
        )
        self.keys[raw] = key_id
        return str(raw)

    def key_id(self, raw: str) -> int:
        return self.keys[raw]

    def revoke(self, raw: str) -> None:
        from server.domain import accounts

        accounts.revoke_api_key(self.db, self.keys[raw])

    def add_environment(self, name: str | None = None, timezone: str = "UTC") -> int:
        from server.domain import accounts

        return int(
            accounts.create_environment(
                self.db, self.organization_id, name or unique("env"), timezone=timezone
            )
        )

    def add_user(self, first_name: str = "Other") -> tuple[int, str]:
        """A new member of the organization: (user id, email)."""
        from server.domain import accounts

        email = f"{unique('user')}@example.com"
        user_id = int(accounts.create_user(self.db, email, first_name=first_name, last_name="Tester"))
        accounts.add_membership(self.db, user_id, self.organization_id)
        return user_id, email

    def add_dashboard(self, name: str = "Dashboard", environment_id: int | None = None) -> int:
        """A dashboard row straight in the environment (tests of DashboardsService use dashboardkit)."""
        from storage import models

        with self.db.session() as session:
            dashboard = models.Dashboard(environment_id=environment_id or self.environment_id, name=name)
            session.add(dashboard)
            session.flush()
            return int(dashboard.id)

    def set_insight_times(
        self,
        insight_id: int,
        *,
        created_at: dt.datetime | None = None,
        last_modified_at: dt.datetime | None = None,
    ) -> None:
        """Backdate an insight's timestamps (the API offers no way to)."""
        from storage import models

        with self.db.session() as session:
            insight = session.get(models.Insight, insight_id)
            assert insight is not None
            if created_at is not None:
                insight.created_at = created_at
            if last_modified_at is not None:
                insight.last_modified_at = last_modified_at

    def set_viewed_at(self, insight_id: int, user_id: int, viewed_at: dt.datetime) -> None:
        """Backdate a user's last view of an insight."""
        import sqlalchemy as sa

        from storage import models

        view = models.InsightViewed
        with self.db.session() as session:
            result = session.execute(
                sa.update(view)
                .where(view.insight_id == insight_id, view.user_id == user_id)
                .values(last_viewed_at=viewed_at)
            )
            assert result.rowcount == 1, result.rowcount  # type: ignore[attr-defined]

    def insert_insights(self, count: int) -> None:
        """Insert `count` plain insights straight into the database (creating 1000+ by RPC is slow)."""
        import sqlalchemy as sa

        from storage import models

        alphabet = string.ascii_letters + string.digits
        now = dt.datetime.now(dt.UTC)
        rows = [
            {
                "environment_id": self.environment_id,
                "short_id": "".join(random.choices(alphabet, k=8)),
                "name": f"bulk {i}",
                "created_by_id": self.user_id,
                "last_modified_by_id": self.user_id,
                "created_at": now,
                "updated_at": now,
                "last_modified_at": now,
            }
            for i in range(count)
        ]
        with self.db.session() as session:
            session.execute(sa.insert(models.Insight), rows)


# ---------------------------------------------------------------------------
# Health and ports
# ---------------------------------------------------------------------------


async def health_status(channel: grpc.aio.Channel, service: str = "") -> int:
    """The health status of `service` ("" = overall), or -1 when the call fails."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    except grpc.aio.AioRpcError:
        return -1
    return int(response.status)


async def wait_for_health(
    channel: grpc.aio.Channel, want: int = health_pb2.HealthCheckResponse.SERVING, timeout: float = 30.0
) -> None:
    """Poll the overall health until it reaches `want`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = -1
    while loop.time() < deadline:
        last = await health_status(channel)
        if last == want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"health did not reach {want} within {timeout}s (last {last})")


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_flags(tmp_path: Path) -> list[str]:
    """Command-line flags for stores of its own under `tmp_path` and a free port nobody serves."""
    return [
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--database-url",
        f"sqlite:///{tmp_path / 'meta.db'}",
        "--events-dsn",
        f"chdb://{tmp_path / 'events'}",
        "--log-level",
        "WARNING",
    ]


@dataclass
class Dedicated:
    """A server of a test's own (its own settings and SQLite file, the session's chDB store) with one
    environment and a key holding `scopes`."""

    app: Any
    channel: grpc.aio.Channel
    environment_id: int
    key: str


@contextlib.asynccontextmanager
async def dedicated_server(
    database_dir: Any, events_dsn: str, scopes: Sequence[str] = ("query:read",), **overrides: Any
) -> AsyncIterator[Dedicated]:
    from server.app import App
    from server.domain import accounts
    from storage.migrate import upgrade
    from storage.models import Environment

    url = f"sqlite:///{database_dir / 'insights.db'}"
    await asyncio.to_thread(upgrade, url)
    app = App(make_settings(url, events_dsn, **overrides))
    port = await app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        await wait_for_health(channel)
        organization_id = accounts.create_organization(app.db, unique("org"))
        # Far above the shared servers' environment ids: the chDB store is shared.
        environment_id = 50_000_000 + uuid.uuid4().int % 1_000_000
        with app.db.session() as session:
            session.add(Environment(id=environment_id, organization_id=organization_id, name="dedicated"))
        user_id = accounts.create_user(app.db, f"{unique('owner')}@example.com")
        accounts.add_membership(app.db, user_id, organization_id)
        _, raw = accounts.create_api_key(app.db, user_id, list(scopes), label="dedicated")
        yield Dedicated(app, channel, environment_id, raw)
    finally:
        await channel.close()
        await app.stop(1.0)

def length_delimited(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, for requests built as raw bytes (bad bytes, or messages
    too deep for the Python runtime to copy)."""
    length, size = b"", len(payload)
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return bytes([number << 3 | 2]) + length + payload


class Clock:
    """A clock a test moves by hand (domain objects take `clock` callables)."""

    def __init__(self, now: dt.datetime | None = None) -> None:
        self.now = now or dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def set(self, moment: dt.datetime) -> None:
        self.now = moment


@contextlib.contextmanager
def sharing_clock(server: Server) -> Iterator[Clock]:
    """The server's sharing domain on a hand-moved clock, with no unlock failures left over from
    other tests (from this loopback address) before or after (recorded at the fake times)."""
    fake = Clock()
    sharing = server.app.sharing
    real = sharing.clock
    sharing.clock = fake
    sharing.limiter.clear()
    try:
        yield fake
    finally:
        sharing.clock = real
        sharing.limiter.clear()
