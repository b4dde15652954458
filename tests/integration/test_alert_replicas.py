"""Two replicas' alert schedulers racing on one PostgreSQL: every due alert is checked exactly once."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from generated.insights.v1 import alerts_pb2_grpc as agrpc
from server.domain.alerts.checker import Checker
from server.domain.alerts.scheduler import Pass, Scheduler
from server.runtime import Blocking
from storage.db import Database
from storage.models import AlertCheck, AlertConfiguration
from tests.integration.itkit import Api, Server, Tenant, bearer, trends_viz
from tests.integration.test_alerts import Alerts

UTC = dt.UTC
# An instant before every other test's (the earliest elsewhere is 2019): only our alerts are due.
NOW = dt.datetime(2016, 3, 2, 12, 0, tzinfo=UTC)  # a Wednesday
ALERTS = 24
BATCH = 3  # per scheduler and pass: several passes are needed, each one a race
# Generous: the other replica reaches the barrier within milliseconds unless the claim deadlocks.
BARRIER_SECONDS = 20.0


def _is_claim(statement: str) -> bool:
    """The scheduler's claim SELECT (its ORDER BY ranks intervals), with or without FOR UPDATE."""
    return statement.lstrip().upper().startswith("SELECT") and "alert_configurations.calculation_interval IN" in statement


class Replica:
    """One replica's scheduler: its own engine and connections, its own checker and thread pool."""

    def __init__(self, server: Server, barrier: threading.Barrier):
        self.db = Database(server.db.url, pool_size=2)
        self.blocking = Blocking(4)
        app = server.app
        checker = Checker(self.db, app.execution, self.blocking, app.checker.notifier)
        self.scheduler = Scheduler(self.db, checker, batch=BATCH, concurrency=2, poll_seconds=0)
        self.claims = 0

        def after_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            # Both replicas have run their claim SELECT (and taken whatever row locks it takes)
            # before either moves a next_check_at or commits: the claims truly overlap every pass.
            if _is_claim(statement):
                self.claims += 1
                barrier.wait(BARRIER_SECONDS)

        event.listen(self.db.engine, "after_cursor_execute", after_execute)

    def close(self) -> None:
        self.blocking.close()
        self.db.close()


@pytest.fixture
def replicas(server: Server) -> Iterator[tuple[Replica, Replica]]:
    assert server.db.dialect == "postgresql"
    barrier = threading.Barrier(2)
    pair = (Replica(server, barrier), Replica(server, barrier))
    try:
        yield pair
    finally:
        barrier.abort()
        for replica in pair:
            replica.close()


# Replicas share a PostgreSQL; on SQLite one process is the only evaluator (no SKIP LOCKED there).
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_schedulers_racing_check_each_due_alert_exactly_once(
    server: Server, api: Api, tenant: Tenant, replicas: tuple[Replica, Replica]
) -> None:
    alerts = Alerts(agrpc.AlertsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("alert:write")))
    insight = await api.create(name="Views", query=trends_viz())
    made = [(await alerts.create(insight.id, name=f"a{i}")).id for i in range(ALERTS)]
    with server.db.session() as session:
        session.execute(
            update(AlertConfiguration)
            .where(AlertConfiguration.id.in_(made))
            .values(next_check_at=NOW - dt.timedelta(days=1))
        )
    one, two = replicas
    passes: list[tuple[Pass, Pass]] = []
    try:
        for _ in range(ALERTS):  # at most one pass per alert; it ends sooner
            first, second = await asyncio.wait_for(
                asyncio.gather(one.scheduler.run_once(NOW), two.scheduler.run_once(NOW)), timeout=120
            )
            passes.append((first, second))
            if not first.checked and not second.checked:
                break
    finally:
        for alert_id in made:  # leave nothing due at any other test's instant
            await alerts.delete(alert_id)

    assert not any(p.failed for pair in passes for p in pair)
    # Exactly one check per due alert: by the schedulers' accounts and in the database.
    checked = collections.Counter(i for pair in passes for p in pair for i in p.checked)
    assert checked == {alert_id: 1 for alert_id in made}
    with server.db.session() as session:
        recorded = dict(
            session.execute(
                select(AlertCheck.alert_id, func.count())
                .where(AlertCheck.alert_id.in_(made))
                .group_by(AlertCheck.alert_id)
            ).all()
        )
    assert recorded == {alert_id: 1 for alert_id in made}
    # Every pass was a real race: both replicas ran their claim, and while there was work enough
    # both found some (the locked rows are skipped, not waited for).
    assert one.claims == two.claims == len(passes)
    assert len(passes) == ALERTS // (2 * BATCH) + 1
    for first, second in passes[:-1]:
        assert len(first.checked) == len(second.checked) == BATCH
