"""The alert scheduler: a background task of the server that checks due alerts (reference §7.1).

Every `poll_seconds` one pass (`run_once(now)`):
1. claims due alerts in one short transaction: enabled, not deleted, insight not deleted,
   `next_check_at` null or ≤ now, ordered hourly first, then daily, then the rest (and by
   next_check_at), at most `batch` per pass. The rows are read with `SELECT ... FOR UPDATE SKIP
   LOCKED` (on SQLite the clause is not rendered: the single process is the only evaluator), and a
   claimed alert's `next_check_at` is moved to now + `lease` before the transaction commits, so
   another replica's pass neither blocks on nor picks it. The check then sets the real
   next_check_at; if the replica dies mid-check the alert is due again when the lease ends.
2. for each claimed alert, by schedule.due_status: still snoozed → next_check_at = snoozed_until
   (no check); a skipped weekend day or a blocked window → next_check_at = the next unblocked
   instant (no check); an expired snooze is cleared by the check; due → checked.
3. checks the due ones with at most `concurrency` at a time (a semaphore); one failing check is
   logged and does not stop the others (its alert is due again after the lease).
4. removes checks older than `retention` (14 days).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, delete, or_, select

from server.domain.alerts import schedule
from server.domain.alerts.checker import Checker, windows_of
from server.utc import as_utc_or_none
from storage.db import Database
from storage.models import AlertCheck, AlertConfiguration, Environment, Insight, utcnow

log = logging.getLogger("insights.alerts.scheduler")

RETENTION = dt.timedelta(days=14)
LEASE = dt.timedelta(minutes=10)


@dataclass(frozen=True)
class Claimed:
    alert_id: str
    environment_id: int
    previous_next: dt.datetime | None


@dataclass
class Pass:
    """What one pass did (for tests and logs)."""

    checked: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    removed_checks: int = 0


class Scheduler:
    """Polls for due alerts and checks them; `start()`/`stop()` run it as an asyncio task."""

    def __init__(
        self,
        db: Database,
        checker: Checker,
        *,
        poll_seconds: float = 30.0,
        concurrency: int = 4,
        batch: int = 100,
        lease: dt.timedelta = LEASE,
        retention: dt.timedelta = RETENTION,
        clock: Callable[[], dt.datetime] = utcnow,
    ):
        self.db = db
        self.checker = checker
        self.poll_seconds = poll_seconds
        self.concurrency = max(1, concurrency)
        self.batch = batch
        self.lease = lease
        self.retention = retention
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        # Passes the polling loop has finished, failed ones included: what a test waits on.
        self.passes = 0
        # Seconds the most overdue alert of the last pass with due alerts waited past its due time.
        self.lag_seconds = 0.0

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None and self.poll_seconds > 0:
            self._task = asyncio.create_task(self._loop(), name="alert-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alert scheduler pass failed")
            self.passes += 1
            await asyncio.sleep(self.poll_seconds)

    # ---------------------------------------------------------------------------------- a pass

    async def run_once(self, now: dt.datetime | None = None) -> Pass:
        now = as_utc_or_none(now) or self.clock()
        blocking = self.checker.blocking
        outcome = Pass()
        due, rescheduled = await blocking.run(self._claim, now)
        outcome.rescheduled = rescheduled
        overdue = [(now - c.previous_next).total_seconds() for c in due if c.previous_next is not None]
        if due:
            self.lag_seconds = max([0.0, *overdue])
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(claimed: Claimed) -> None:
            async with semaphore:
                try:
                    await self.checker.check(
                        claimed.alert_id,
                        environment_id=claimed.environment_id,
                        now=now,
                        previous_next=claimed.previous_next,
                    )
                    outcome.checked.append(claimed.alert_id)
                except Exception:
                    log.exception("checking alert %s failed", claimed.alert_id)
                    outcome.failed.append(claimed.alert_id)

        await asyncio.gather(*(one(c) for c in due))
        outcome.removed_checks = await blocking.run(self._remove_old_checks, now)
        return outcome

    def _claim(self, now: dt.datetime) -> tuple[list[Claimed], list[str]]:
        order = due_rank(AlertConfiguration.calculation_interval)
        due: list[Claimed] = []
        rescheduled: list[str] = []
        with self.db.session() as session:
            rows = session.scalars(
                select(AlertConfiguration)
                .join(Insight, Insight.id == AlertConfiguration.insight_id)
                .where(
                    AlertConfiguration.enabled.is_(True),
                    AlertConfiguration.deleted.is_(False),
                    Insight.deleted.is_(False),
                    or_(AlertConfiguration.next_check_at.is_(None), AlertConfiguration.next_check_at <= now),
                )
                .order_by(order, AlertConfiguration.next_check_at, AlertConfiguration.id)
                .limit(self.batch)
                .with_for_update(skip_locked=True, of=AlertConfiguration)
            ).all()
            zones: dict[int, str] = {}
            for row in rows:
                if row.environment_id not in zones:
                    env = session.get(Environment, row.environment_id)
                    zones[row.environment_id] = env.timezone if env is not None else "UTC"
                timezone = zones[row.environment_id]
                windows = windows_of(row)
                try:
                    status = schedule.due_status(
                        schedule.AlertFacts(
                            enabled=row.enabled,
                            next_check_at=as_utc_or_none(row.next_check_at),
                            timezone=timezone,
                            snoozed_until=as_utc_or_none(row.snoozed_until),
                            skip_weekend=row.skip_weekend,
                            blocked_windows=windows,
                        ),
                        now,
                    )
                except ValueError:  # a malformed window: the check auto-disables the alert
                    status = schedule.DueStatus.DUE
                if status == schedule.DueStatus.SNOOZED:
                    row.next_check_at = as_utc_or_none(row.snoozed_until)
                    rescheduled.append(row.id)
                elif status in (schedule.DueStatus.WEEKEND, schedule.DueStatus.BLOCKED_WINDOW):
                    row.next_check_at = schedule.unblocked_after(
                        now, timezone, skip_weekend=row.skip_weekend, blocked_windows=windows
                    )
                    rescheduled.append(row.id)
                elif status == schedule.DueStatus.DUE:
                    due.append(Claimed(row.id, row.environment_id, as_utc_or_none(row.next_check_at)))
                    row.next_check_at = now + self.lease
        return due, rescheduled

    def _remove_old_checks(self, now: dt.datetime) -> int:
        with self.db.session() as session:
            result = session.execute(delete(AlertCheck).where(AlertCheck.created_at < now - self.retention))
            return int(getattr(result, "rowcount", 0) or 0)


def due_rank(interval: Any) -> Any:
    """schedule.due_order as SQL over an interval column: the claim orders by the tested table."""
    ranks: dict[int, list[str]] = {}
    for name, rank in schedule.DUE_ORDER.items():
        ranks.setdefault(rank, []).append(name.value)
    return case(*((interval.in_(names), rank) for rank, names in sorted(ranks.items())), else_=schedule.LATER)
