"""Checking an alert: load it, evaluate its insight, record the check, update the alert, notify.

Used by CheckAlertNow and by the scheduler (server.domain.alerts.scheduler). Database work runs in the
blocking pool; the insight query runs through Execution (FORCE_BLOCKING for hourly alerts, else
BLOCKING, which may reuse a fresh cached result).

Decisions:
- An invalid configuration (evaluate.config_problems, detector or window problems, or an insight
  that is no longer alertable) auto-disables the alert: enabled=false, state Errored, and the check
  records state Errored with `error = {"message", "reason": "invalid_config", "fields"}`.
- A query error, or a result without the watched values, records an Errored check and sets the
  alert Errored (`error = {"message", "reason": "query_error"}`); it stays enabled and is checked
  again on its grid.
- With a `detector_config` the detector decides (the threshold's bounds are not compared): the query
  looks back far enough for the detector's window, and the alert fires when the anchor point
  (the last point with check_ongoing_interval, else the second-to-last) of any breakdown value is
  triggered. Too few points is no decision: Not firing, with the reason in triggered_metadata.
- `next_check_at` follows schedule.next_check_at from the alert's previous next_check_at. A manual
  check (CheckAlertNow) does not move a next_check_at that is still in the future.
- A check of a snoozed alert (only CheckAlertNow does that) is recorded but the alert stays
  Snoozed and nothing is notified; an expired snooze is cleared.
- Notifying: every Firing check notifies, unless the alert's previous evaluated check also fired,
  was notified, and lies in the same interval (hour, day, week from Monday, month in the
  environment's time zone) as this one. The check is recorded first; delivery then updates
  `targets_notified = {"webhooks": [delivered urls], "failed": [urls]}`, `notification_sent_at` and the
  alert's `last_notified_at`. Delivering a check again (deliver(check_id)) skips the targets already
  in targets_notified, which makes a retried delivery idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from generated.insights.v1 import query_pb2
from server.domain.accounts import environment_info
from server.domain.alerts import detectors, evaluate, schedule
from server.domain.alerts.configs import AlertCheckRecord, check_record
from server.domain.alerts.notify import Notification, Notifier
from server.domain.insights import parse_query
from server.echo import shown
from server.errors import NotFound
from server.execution.refresh import Execution, Refresh
from server.meter import Counts
from server.principal import EnvironmentInfo, Principal
from server.queries.alerting import AlertValueError, Watched
from server.queries.registry import alerting_of
from server.runtime import Blocking
from server.utc import as_utc_or_none
from storage.db import Database
from storage.models import AlertCheck, AlertConfiguration, Environment, Insight, Threshold, utcnow

FIRING, NOT_FIRING, ERRORED, SNOOZED = "Firing", "Not firing", "Errored", "Snoozed"
FAST_INTERVALS = frozenset({"hourly", "every_15_minutes", "real_time"})


@dataclass(frozen=True)
class Loaded:
    alert: AlertConfiguration
    threshold: Threshold
    insight: Insight
    env: EnvironmentInfo


@dataclass(frozen=True)
class Outcome:
    state: str
    value: float | None = None
    error: dict[str, Any] | None = None
    breaches: list[str] = field(default_factory=list)
    anomaly_scores: list[float | None] | None = None
    triggered_points: list[int] | None = None
    triggered_dates: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    disable: bool = False


def windows_of(row: AlertConfiguration) -> list[schedule.BlockedWindow]:
    restriction = row.schedule_restriction or {}
    return [
        schedule.BlockedWindow(str(w.get("start", "")), str(w.get("end", "")))
        for w in restriction.get("blocked_windows", [])
    ]


def interval_start(interval: str, moment: dt.datetime, timezone: str) -> dt.datetime:
    """The start (local) of the calculation interval containing `moment`."""
    local = moment.astimezone(ZoneInfo(timezone))
    if interval in FAST_INTERVALS:
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "weekly":
        return day - dt.timedelta(days=day.weekday())
    if interval == "monthly":
        return day.replace(day=1)
    return day


def _threshold(configuration: dict[str, Any]) -> evaluate.Threshold:
    bounds = configuration.get("bounds") or {}
    return evaluate.Threshold(
        type=str(configuration.get("type") or "absolute"),
        bounds=evaluate.Bounds(
            lower=None if bounds.get("lower") is None else float(bounds["lower"]),
            upper=None if bounds.get("upper") is None else float(bounds["upper"]),
        ),
    )


def _detector_points(config: detectors.AnyDetectorConfig) -> int:
    """How many points a detector needs (window, training offset, preprocessing), at least its minimum."""
    if isinstance(config, detectors.EnsembleConfig):
        return max((_detector_points(d) for d in config.detectors), default=1)
    pre = config.preprocessing
    minimum = detectors.MIN_SAMPLES.get(detectors.DetectorType(config.type), 1)
    return max(config.window + config.training_offset_n, minimum) + pre.smooth_n + pre.diffs_n


def _safe(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


class Checker:
    """Evaluates alerts, records their checks and notifies their targets."""

    def __init__(
        self,
        db: Database,
        execution: Execution,
        blocking: Blocking,
        notifier: Notifier | None,
        clock: Callable[[], dt.datetime] = utcnow,
    ):
        self.db = db
        self.execution = execution
        self.blocking = blocking
        self.notifier = notifier
        self.clock = clock
        # Checks of one alert in this process run one after the other, so that a manual check and a
        # scheduled one never both decide to notify for the same interval.
        self._locks: dict[str, asyncio.Lock] = {}
        # Checks recorded by state (a check that raised is "failed"), webhook deliveries by outcome.
        self.checks = Counts()
        self.deliveries = Counts()

    async def check_now(self, principal: Principal, environment_id: int, alert_id: str) -> AlertCheckRecord:
        """CheckAlertNow: the alert of an environment the caller reaches, checked at once."""
        env = principal.environment(environment_id)
        return await self.check(alert_id, environment_id=env.id, manual=True)

    async def check(
        self,
        alert_id: str,
        *,
        environment_id: int | None = None,
        now: dt.datetime | None = None,
        previous_next: dt.datetime | None = None,
        manual: bool = False,
    ) -> AlertCheckRecord:
        """Evaluates one alert and records the check; a firing check is then delivered."""
        # One lock per alert id, kept (as many as there are alerts): dropping a lock while a
        # waiter is about to take it would let a third check run beside that waiter.
        async with self._locks.setdefault(alert_id, asyncio.Lock()):
            now = now or self.clock()
            loaded = await self.blocking.run(self._load, alert_id, environment_id)
            try:
                outcome = await self._evaluate(loaded)
                check, notify = await self.blocking.run(
                    self._record, loaded, outcome, now, previous_next, manual
                )
            except Exception:
                self.checks.add(("failed",))
                raise
            self.checks.add((check.state.lower().replace(" ", "_"),))
            if notify:
                check = await self.deliver(check.id, now=now)
            return check

    # ----------------------------------------------------------------------------- evaluation

    def _load(self, alert_id: str, environment_id: int | None) -> Loaded:
        with self.db.session() as session:
            where = [AlertConfiguration.id == alert_id, AlertConfiguration.deleted.is_(False)]
            if environment_id is not None:
                where.append(AlertConfiguration.environment_id == environment_id)
            row = session.scalars(select(AlertConfiguration).where(*where)).first()
            insight = session.get(Insight, row.insight_id) if row is not None else None
            if row is None or insight is None or insight.deleted:
                raise NotFound(
                    f"Alert {shown(alert_id)} not found.",
                    reason="ALERT_NOT_FOUND",
                    metadata={"alert": shown(alert_id)},
                )
            threshold = session.get(Threshold, row.threshold_id)
            env = session.get(Environment, row.environment_id)
            assert threshold is not None and env is not None
            return Loaded(row, threshold, insight, environment_info(env))

    async def _evaluate(self, loaded: Loaded) -> Outcome:
        row = loaded.alert
        found = alerting_of(parse_query(loaded.insight.query))
        if found is None:
            return _invalid(
                [("insight", "the insight is not alertable (only trends, funnels and SQL insights are)")]
            )
        source, values = found
        condition = str((row.condition or {}).get("type") or "absolute_value")
        threshold = _threshold(loaded.threshold.configuration or {})
        config = dict(row.config or {})
        detector: detectors.AnyDetectorConfig | None = None
        if row.detector_config:
            detector = detectors.config_from_dict(row.detector_config)
        problems = evaluate.config_problems(
            values, source.node, condition, threshold, config, detector=detector is not None
        )
        if detector is not None:
            problems += detectors.config_problems(detector)
        problems += schedule.window_problems(windows_of(row))
        if problems:
            return _invalid(problems)

        ask = evaluate.ask_of(condition, threshold, config, detector=detector is not None)
        history = _detector_points(detector) if detector is not None else None
        query = values.query(source.node, ask, history)
        refresh = Refresh.FORCE_BLOCKING if row.calculation_interval in FAST_INTERVALS else Refresh.BLOCKING
        try:
            computed = await self.execution.result(
                loaded.env, query_pb2.QueryNode(**{source.kind: query}), refresh, insight_id=loaded.insight.id
            )
        except Exception as exc:  # every failure of the query is the check's error
            return Outcome(
                ERRORED, error={"message": str(exc) or type(exc).__name__, "reason": "query_error"}
            )
        if computed is None or computed.result is None:
            message = "the insight query returned no result"
            return Outcome(ERRORED, error={"message": message, "reason": "query_error"})
        if detector is not None:
            try:
                lines = values.watched(source.node, computed.result, ask)
            except AlertValueError as exc:
                return Outcome(ERRORED, error={"message": str(exc), "reason": "query_error"})
            return _detect(lines, detector)
        try:
            evaluation = evaluate.evaluate(values, source.node, computed.result, condition, threshold, config)
        except evaluate.EvaluationError as exc:
            return Outcome(ERRORED, error={"message": str(exc), "reason": "query_error"})
        return Outcome(
            str(evaluation.state),
            value=_safe(evaluation.value),
            breaches=evaluation.breaches,
            metadata={
                "breaches": evaluation.breaches,
                "triggered_breakdown_values": [
                    list(v) if isinstance(v, tuple) else v for v in evaluation.triggered_breakdown_values
                ],
            },
        )

    # ------------------------------------------------------------------------------ recording

    def _record(
        self,
        loaded: Loaded,
        outcome: Outcome,
        now: dt.datetime,
        previous_next: dt.datetime | None,
        manual: bool,
    ) -> tuple[AlertCheckRecord, bool]:
        env = loaded.env
        with self.db.session() as session:
            row = session.get(AlertConfiguration, loaded.alert.id)
            assert row is not None
            previous = session.scalars(
                select(AlertCheck)
                .where(AlertCheck.alert_id == row.id, AlertCheck.state != SNOOZED)
                .order_by(AlertCheck.created_at.desc())
                .limit(1)
            ).first()
            check = AlertCheck(
                alert_id=row.id,
                created_at=now,
                calculated_value=outcome.value,
                condition=dict(row.condition or {}),
                state=outcome.state,
                error=outcome.error,
                anomaly_scores=outcome.anomaly_scores,
                triggered_points=outcome.triggered_points,
                triggered_dates=outcome.triggered_dates,
                interval=row.calculation_interval,
                triggered_metadata=outcome.metadata or None,
            )
            session.add(check)
            snoozed = row.snoozed_until is not None and as_utc_or_none(row.snoozed_until) > now  # type: ignore[operator]
            if row.snoozed_until is not None and not snoozed:
                row.snoozed_until = None
            row.state = SNOOZED if snoozed else outcome.state
            if outcome.disable:
                row.enabled = False
                row.state = ERRORED
            row.last_checked_at = now
            if outcome.value is not None:
                row.last_value = outcome.value
            current = as_utc_or_none(row.next_check_at)
            if not (manual and current is not None and current > now):
                row.next_check_at = schedule.next_check_at(
                    row.calculation_interval,
                    now,
                    as_utc_or_none(previous_next) if previous_next is not None else current,
                    env.timezone,
                    skip_weekend=row.skip_weekend,
                    blocked_windows=windows_of(row),
                    alert_id=row.id,
                )
            row.updated_at = now
            notify = outcome.state == FIRING and not snoozed
            if notify and previous is not None and previous.state == FIRING:
                # Still firing since the last check: a notification already delivered in this
                # interval (by any earlier check, not only the previous one) is enough.
                sent = as_utc_or_none(row.last_notified_at)
                if sent is not None and interval_start(
                    row.calculation_interval, sent, env.timezone
                ) == interval_start(row.calculation_interval, now, env.timezone):
                    notify = False
            session.flush()
            return check_record(check), notify

    # ----------------------------------------------------------------------------- notifying

    async def deliver(self, check_id: str, *, now: dt.datetime | None = None) -> AlertCheckRecord:
        """Delivers a firing check to the alert's targets not yet notified; records the outcome."""
        check, row, insight = await self.blocking.run(self._load_check, check_id)
        done = dict(check.targets_notified or {})
        delivered = list(done.get("webhooks", []))
        targets = [row.webhook_url] if row.webhook_url else []
        pending = [t for t in targets if t not in delivered]
        if not pending or self.notifier is None:
            return check
        notification = Notification(
            environment_id=row.environment_id,
            alert_id=row.id,
            alert_name=row.name,
            insight_id=insight.id,
            insight_short_id=insight.short_id,
            insight_name=insight.name or insight.derived_name or "",
            check_id=check.id,
            state=check.state,
            value=check.calculated_value,
            breaches=list((check.triggered_metadata or {}).get("breaches", [])),
            checked_at=(as_utc_or_none(check.created_at) or self.clock()).isoformat().replace("+00:00", "Z"),
        )
        failed: list[str] = []
        for target in pending:
            result = await self.notifier.deliver(target, notification)
            (delivered if result.delivered else failed).append(target)
            self.deliveries.add(("delivered" if result.delivered else "failed",))
        return await self.blocking.run(
            self._record_delivery, check.id, delivered, failed, now or self.clock()
        )

    def _load_check(self, check_id: str) -> tuple[AlertCheckRecord, AlertConfiguration, Insight]:
        with self.db.session() as session:
            check = session.get(AlertCheck, check_id)
            row = session.get(AlertConfiguration, check.alert_id) if check is not None else None
            insight = session.get(Insight, row.insight_id) if row is not None else None
            if check is None or row is None or insight is None:
                raise NotFound(f"Alert check {shown(check_id)} not found.", reason="ALERT_CHECK_NOT_FOUND")
            return check_record(check), row, insight

    def _record_delivery(
        self, check_id: str, delivered: list[str], failed: list[str], now: dt.datetime
    ) -> AlertCheckRecord:
        with self.db.session() as session:
            check = session.get(AlertCheck, check_id)
            assert check is not None
            check.targets_notified = {"webhooks": delivered, "failed": failed}
            if delivered:
                check.notification_sent_at = check.notification_sent_at or now
                row = session.get(AlertConfiguration, check.alert_id)
                if row is not None:
                    row.last_notified_at = now
            session.flush()
            return check_record(check)


def _invalid(problems: list[tuple[str, str]]) -> Outcome:
    message = "; ".join(f"{f}: {m}" for f, m in problems)
    return Outcome(
        ERRORED,
        error={
            "message": f"The alert was disabled because its configuration is invalid: {message}",
            "reason": "invalid_config",
            "fields": [f for f, _ in problems],
        },
        disable=True,
    )


def _detect(lines: list[Watched], detector: detectors.AnyDetectorConfig) -> Outcome:
    firing: list[str] = []
    first: detectors.Detection | None = None
    fired: detectors.Detection | None = None
    value: float | None = None
    reasons: list[str] = []
    for line in lines:
        data = list(line.points)
        if not data:
            continue
        detection = detectors.detect(data, detector, list(line.days))
        anchor = len(data) - line.anchor_back
        first = first or detection
        if not detection.decided:
            reasons.append(detection.reason or "no decision")
            continue
        if anchor >= 0 and anchor in detection.triggered_points:
            firing.append(line.label or "series")
            if fired is None:
                fired, value = detection, data[anchor]
    shown = fired or first
    metadata: dict[str, Any] = {"breaches": [f"{label} is anomalous" for label in firing]}
    if reasons and not firing:
        metadata["no_decision"] = reasons[0]
    return Outcome(
        FIRING if firing else NOT_FIRING,
        value=_safe(value),
        breaches=metadata["breaches"],
        anomaly_scores=[_safe(s) for s in shown.anomaly_scores] if shown else None,
        triggered_points=list(shown.triggered_points) if shown else None,
        triggered_dates=list(shown.triggered_dates) if shown else None,
        metadata=metadata,
    )
