"""Composition root: settings → stores → domain → servicers → a grpc.aio server with health and reflection."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from generated.insights.v1 import (
    actions_pb2,
    actions_pb2_grpc,
    alerts_pb2,
    alerts_pb2_grpc,
    cohorts_pb2,
    cohorts_pb2_grpc,
    dashboards_pb2,
    dashboards_pb2_grpc,
    events_pb2,
    events_pb2_grpc,
    insight_pb2,
    insight_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
    sharing_pb2,
    sharing_pb2_grpc,
)
from interceptors.auth import AuthInterceptor, KeyCache, method_policies
from interceptors.coalescing import CoalescingInterceptor
from interceptors.errors import ErrorInterceptor
from interceptors.limits import ResponseLimitInterceptor
from interceptors.logging import LoggingInterceptor
from interceptors.metrics import RpcMeter
from interceptors.throttling import ThrottleInterceptor
from interceptors.tracing import TracingInterceptor
from interceptors.validation import RequestChecks
from server import metrics, redaction, reflection, requestid, tracing, transport
from server.config import Settings
from server.domain import accounts
from server.domain.actions import Actions
from server.domain.alerts.checker import Checker
from server.domain.alerts.configs import Alerts
from server.domain.alerts.notify import Egress, WebhookNotifier
from server.domain.alerts.scheduler import Scheduler
from server.domain.cohorts import Cohorts
from server.domain.dashboards import Dashboards
from server.domain.definitions import DefinitionLoader
from server.domain.ingest import Ingestion
from server.domain.insights import Insights
from server.domain.metadata import InsightMetadata, TextModel
from server.domain.readcache import ReadCache
from server.domain.sharing import Sharing
from server.domain.throttle import Throttle
from server.domain.unlocks import UnlockLimits
from server.errors import InvalidArgument
from server.execution.refresh import Execution
from server.execution.resultcache import MemoryResultCache
from server.memory import MemoryBudget
from server.principal import Principal, SharePrincipal
from server.queries.registry import sql_registry
from server.queries.sql.runner import SqlLimits
from server.runtime import Blocking
from server.services.actions import ActionsServicer
from server.services.alerts import AlertsServicer
from server.services.cohorts import CohortsServicer
from server.services.convert import common
from server.services.dashboards import DashboardsServicer
from server.services.events import EventsServicer
from server.services.insights import InsightsServicer
from server.services.queries import QueryServicer
from server.services.sharing import SharingServicer
from storage.cohort_members import CohortMembers
from storage.db import Database
from storage.events import EventStore

log = logging.getLogger("insights.app")

SERVICES = [
    insight_pb2.DESCRIPTOR.services_by_name["InsightsService"],
    query_service_pb2.DESCRIPTOR.services_by_name["QueryService"],
    events_pb2.DESCRIPTOR.services_by_name["EventsService"],
    sharing_pb2.DESCRIPTOR.services_by_name["SharingService"],
    alerts_pb2.DESCRIPTOR.services_by_name["AlertsService"],
    actions_pb2.DESCRIPTOR.services_by_name["ActionsService"],
    cohorts_pb2.DESCRIPTOR.services_by_name["CohortsService"],
    dashboards_pb2.DESCRIPTOR.services_by_name["DashboardsService"],
]
# Every method this server serves: the bounded set of RPC metric labels.
SERVED = [
    *SERVICES,
    health_pb2.DESCRIPTOR.services_by_name["Health"],
    reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
]
# How often the stores are probed: quickly until they answer, then to notice outages.
_PROBE_STARTING, _PROBE_SERVING = 0.5, 5.0
# How long shutdown waits for worker threads after the grace period and the cancel of every run.
_CLOSE_SECONDS = 3.0


def text_model(settings: Settings) -> TextModel | None:
    """The text model GenerateInsightMetadata asks, or None when INSIGHTS_TEXT_MODEL_URL is unset."""
    if not settings.text_model_url:
        return None
    return TextModel(
        settings.text_model_url,
        model=settings.text_model,
        api_key=settings.text_model_api_key,
        timeout=settings.text_model_timeout_seconds,
        policy=settings.text_model_policy,
    )


class App:
    """The running service. `start()` serves at once; health says SERVING when the stores answer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.db = Database(settings.database_url, pool_size=settings.workers)
        self.events = EventStore(
            settings.events_dsn, cluster=settings.clickhouse_cluster, materialized=settings.materialized_keys
        )
        self.blocking = Blocking(settings.workers)
        # One budget for every result held in memory (the cache and the answers rebuilt from it).
        self.memory = MemoryBudget(settings.result_cache_mb * 1024 * 1024)
        self.execution = Execution(
            self.events,
            self.blocking,
            MemoryResultCache(budget=self.memory),
            budget=self.memory,
            max_running=settings.max_running_queries,
            max_queued=settings.max_queued_queries,
            status_ttl=dt.timedelta(seconds=settings.query_status_ttl_seconds),
            definitions=DefinitionLoader(self.db),
            registry=sql_registry(
                SqlLimits(
                    settings.sql_max_execution_seconds, settings.sql_max_memory_bytes, settings.sql_max_rows_to_read
                )
            ),
        )
        # Recent insight reads; alert writes clear it too, since an insight shows its alerts.
        read_cache = ReadCache(settings.read_cache_seconds)
        self.alerts = Alerts(self.db, webhook_policy=settings.webhook_policy, changed=read_cache.forget)
        # Tests replace `self.checker.notifier` / call `self.scheduler.run_once(now)` directly.
        self.checker = Checker(
            self.db,
            self.execution,
            self.blocking,
            WebhookNotifier(
                self.blocking.run,
                timeout=settings.alert_webhook_timeout_seconds,
                attempts=settings.alert_webhook_attempts,
                egress=Egress(settings.webhook_policy),
            ),
        )
        self.scheduler = Scheduler(
            self.db,
            self.checker,
            poll_seconds=settings.alert_poll_seconds,
            concurrency=settings.alert_concurrency,
        )
        self.insights = Insights(
            self.db,
            validate_query=self.execution.validate,
            read_cache=read_cache,
            on_update=self.alerts.on_insight_changed,
        )
        # Insights show their dashboards: a dashboard write forgets the cached reads of insights.
        self.dashboards = Dashboards(self.db, changed=read_cache.forget)
        self.ingestion = Ingestion(self.events)
        self.actions = Actions(self.db)
        self.metadata = InsightMetadata(self.db, text_model(settings))
        # Static cohort members live in the event store, beside the events they filter.
        self.cohort_members = CohortMembers(self.events)
        self.cohorts = Cohorts(self.db, self.cohort_members)
        # Tests move time for rotation and attempt limits by replacing `self.sharing.clock`.
        self.sharing = Sharing(
            self.db,
            self.insights,
            self.execution,
            self.blocking,
            grace=dt.timedelta(seconds=settings.sharing_grace_seconds),
            unlock_limits=UnlockLimits(
                window=dt.timedelta(seconds=settings.sharing_unlock_window_seconds),
                per_address=settings.sharing_unlock_failures_per_address,
                per_link=settings.sharing_unlock_failures_per_link,
            ),
        )
        # Tests expire verified keys without waiting by replacing `self.key_cache.clock`.
        self.key_cache = KeyCache(settings.auth_cache_seconds)
        self.throttle = Throttle(settings.throttles)
        self.health = health.aio.HealthServicer()
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._probe: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()
        # Probes of the stores finished (health set from each): what a test waits on.
        self.store_probes = 0
        # This app's metrics (a registry of its own), served over HTTP when INSIGHTS_METRICS_LISTEN is set.
        self.rpc_meter = RpcMeter(
            [
                *(f"/{s.full_name}/{m.name}" for s in SERVED for m in s.methods),
                # Reflection v1: the v1alpha service's method under its v1 name (server/reflection.py).
                f"/{reflection.V1}/ServerReflectionInfo",
            ]
        )
        self.metrics = metrics.registry(
            metrics.Sources(
                rpc=self.rpc_meter,
                execution=self.execution,
                checker=self.checker,
                scheduler=self.scheduler,
                ingestion=self.ingestion,
                # Made by start(): none before.
                coalescing=lambda: getattr(self, "coalescing", None),
            )
        )
        self.metrics_endpoint: metrics.Endpoint | None = None

    async def _verify(self, raw_key: str) -> Principal:
        return await self.blocking.run(accounts.verify_api_key, self.db, raw_key)

    async def _resolve_share(self, header: str, token: str) -> SharePrincipal:
        return await self.blocking.run(self.sharing.resolve, header, token)

    async def start(self) -> int:
        """Binds the listen address, starts serving and returns the bound port."""
        redaction.install()  # however the process set up logging, no secret reaches a log line
        requestid.install()  # and every record says which call it came from
        if self.settings.metrics_address:
            # First: an address that cannot be bound stops the start before anything else runs.
            self.metrics_endpoint = metrics.serve(self.metrics, self.settings.metrics_address)
        # Kept on the app so that tests and benchmarks can read its counters.
        self.coalescing = CoalescingInterceptor(method_policies(SERVICES), cheap=common.reads_cache_only)
        self.requests_log = LoggingInterceptor(meter=self.rpc_meter)
        server = grpc.aio.server(
            interceptors=[
                self.requests_log,
                # Only while spans go somewhere (server/tracing.py): otherwise not even its no-op work.
                *([TracingInterceptor()] if tracing.enabled() else []),
                ErrorInterceptor(),
                ResponseLimitInterceptor(
                    self.settings.max_response_bytes, self.settings.max_response_opt_in_bytes
                ),
                AuthInterceptor(
                    method_policies(SERVICES),
                    self._verify,
                    self.key_cache,
                    resolve_share=self._resolve_share,
                ),
                # After auth (it counts per key or shared link), before anything does work for the call.
                ThrottleInterceptor(self.throttle, common.reads_cache_only),
                # After auth, before anything reads the request: undecodable bytes and undefined
                # enum numbers are INVALID_ARGUMENT for every method, stored queries included.
                RequestChecks(),
                # After auth: every caller is authorised on its own before it joins a shared run.
                *([self.coalescing] if self.settings.coalescing else []),
            ],
            options=[("grpc.so_reuseport", 0), *transport.server_options(self.settings)],
        )
        insight_pb2_grpc.add_InsightsServiceServicer_to_server(
            InsightsServicer(self.insights, self.execution, self.blocking, self.memory, self.metadata), server
        )
        query_service_pb2_grpc.add_QueryServiceServicer_to_server(QueryServicer(self.execution), server)
        events_pb2_grpc.add_EventsServiceServicer_to_server(
            EventsServicer(self.ingestion, self.blocking), server
        )
        sharing_pb2_grpc.add_SharingServiceServicer_to_server(
            SharingServicer(self.sharing, self.blocking), server
        )
        alerts_pb2_grpc.add_AlertsServiceServicer_to_server(
            AlertsServicer(self.alerts, self.blocking, self.checker), server
        )
        actions_pb2_grpc.add_ActionsServiceServicer_to_server(ActionsServicer(self.actions, self.blocking), server)
        cohorts_pb2_grpc.add_CohortsServiceServicer_to_server(
            CohortsServicer(self.cohorts, self.blocking), server
        )
        dashboards_pb2_grpc.add_DashboardsServiceServicer_to_server(
            DashboardsServicer(self.dashboards, self.blocking), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [s.full_name for s in SERVICES]
        # v1 and v1alpha, from the descriptor set `make proto` publishes (so `describe` shows comments).
        reflection.enable(server, [*names, health.SERVICE_NAME])
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.port = transport.bind(server, self.settings)
        await server.start()
        self._server = server
        self._probe = asyncio.create_task(self._watch_stores(names))
        self.scheduler.start()
        log.info("serving on %s (%s)", self.address, transport.describe(self.settings))
        return self.port

    @property
    def address(self) -> str:
        host = self.settings.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    async def _watch_stores(self, names: list[str]) -> None:
        serving = False
        schema_ready = False
        while True:
            try:
                await self.blocking.run(self.db.ping)
                await self.blocking.run(self.events.ping)
                if not schema_ready:
                    # The event tables exist before anything is served (idempotent DDL).
                    await self.blocking.run(self.events.ensure_schema)
                    await self.blocking.run(self.cohort_members.ensure_schema)
                    schema_ready = True
                healthy = True
            except Exception as exc:
                healthy = False
                log.warning("stores not ready: %s", exc)
            if healthy != serving:
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if healthy
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for name in ["", *names]:
                    await self.health.set(name, status)
                serving = healthy
                log.info("health: %s", "SERVING" if healthy else "NOT_SERVING")
            self.store_probes += 1
            await asyncio.sleep(_PROBE_SERVING if serving else _PROBE_STARTING)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING, drain in-flight calls within the grace period, then close the stores."""
        if self._stopped.is_set():
            return
        grace = self.settings.grace_seconds if grace is None else grace
        await self.health.enter_graceful_shutdown()
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        # No new alert checks; one in flight is cancelled (its alert is due again after the lease).
        await self.scheduler.stop()
        if self._server is not None:
            # Calls still running when the grace period ends are cancelled: logged as UNAVAILABLE.
            self.requests_log.stopping(grace)
            await self._server.stop(grace)
        # Calls still running at the end of the grace period were just aborted; runs nobody waits
        # for (async ones) would go on computing: stop every engine statement now.
        cancelled = await self.execution.runs.cancel_all()
        if cancelled:
            log.info("cancelled %d query runs still computing at shutdown", cancelled)
        self.execution.close()
        # Worker threads end once their statements are killed; a stuck one must not hold the exit.
        # Joined off the event loop: calls cancelled at the end of the grace period still unwind (and
        # are logged with the code their clients got) meanwhile.
        await asyncio.to_thread(self.blocking.close, _CLOSE_SECONDS)
        self.events.close()
        self.db.close()
        if self.metrics_endpoint is not None:
            # Last: a scrape during the drain still shows the calls finishing.
            await asyncio.to_thread(self.metrics_endpoint.close)
        self._stopped.set()
        log.info("stopped")

    async def wait_stopped(self) -> None:
        await self._stopped.wait()


async def serve(settings: Settings) -> int:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully; returns the exit code."""
    # A bad certificate or key stops the start here, before any store is opened.
    transport.server_credentials(settings)
    try:
        provider = tracing.configure()
    except ValueError as exc:
        raise InvalidArgument(str(exc), field="OTEL_TRACES_EXPORTER") from None
    app = App(settings)
    await app.start()
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def on_signal(signum: int) -> None:
        log.info(
            "received %s: shutting down (grace %.1fs)", signal.Signals(signum).name, settings.grace_seconds
        )
        if not stopping:
            stopping.append(asyncio.create_task(app.stop()))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    await app.wait_stopped()
    if provider is not None:
        # Spans still in the batch go out before the process ends.
        provider.shutdown()  # type: ignore[attr-defined]
    return 0
