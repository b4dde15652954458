"""Alert configurations and thresholds: create, read, list, update, soft delete, snooze, validation.

Sub-configurations are stored as the reference's JSON (threshold configuration, condition, config,
detector_config, schedule_restriction), which is what the evaluation functions read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import query_pb2
from server.domain import activity, paging
from server.domain.alerts.egress import EgressPolicy
from server.domain.insights import Lookup, UserRef, find_insight, parse_query, user_ref
from server.domain.masks import check_update_mask
from server.domain.paging import Page
from server.echo import shown
from server.errors import InvalidArgument, NotFound, Unimplemented, Violations
from server.principal import EnvironmentInfo, Principal
from server.queries.alerting import AlertAsk
from server.queries.common.codec import from_reference_json, to_reference_json
from server.queries.common.dates import parse_point
from server.queries.registry import ALERT_CONFIG_FIELDS, alerting_of
from storage.db import Database
from storage.models import AlertCheck, AlertConfiguration, Insight, Membership, Threshold, User, utcnow

SCOPE = "Alert"
NAME_LIMIT = 255
DEFAULT_CHECKS, MAX_CHECKS = 5, 500
NOT_FIRING, SNOOZED = "Not firing", "Snoozed"
INTERVALS = {
    apb.ALERT_CALCULATION_INTERVAL_UNSPECIFIED: "daily",
    apb.ALERT_CALCULATION_INTERVAL_HOURLY: "hourly",
    apb.ALERT_CALCULATION_INTERVAL_DAILY: "daily",
    apb.ALERT_CALCULATION_INTERVAL_WEEKLY: "weekly",
    apb.ALERT_CALCULATION_INTERVAL_MONTHLY: "monthly",
}
WRITABLE = (
    "name",
    "subscribed_users",
    "threshold",
    "condition",
    "enabled",
    "config",
    "funnels_config",
    "hogql_config",
    "detector_config",
    "calculation_interval",
    "snoozed_until",
    "skip_weekend",
    "schedule_restriction",
    "investigation_agent_enabled",
    "investigation_gates_notifications",
    "investigation_inconclusive_action",
    "webhook_url",
)
WEBHOOK_URL_LIMIT = 2048
# Changing one of these makes the alert due at once.
RECHECK = frozenset({"threshold", "condition", "config", "detector_config", "calculation_interval"})
_CONDITIONS = {
    apb.ALERT_CONDITION_TYPE_UNSPECIFIED: "absolute_value",
    apb.ALERT_CONDITION_TYPE_ABSOLUTE_VALUE: "absolute_value",
    apb.ALERT_CONDITION_TYPE_RELATIVE_INCREASE: "relative_increase",
    apb.ALERT_CONDITION_TYPE_RELATIVE_DECREASE: "relative_decrease",
}
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_RELATIVE = re.compile(r"^(\d+)([hdwm])$")
# Detector parameter ranges (reference §7.7): name -> (low, high).
_RANGES: dict[str, tuple[float, float]] = {
    "threshold": (0.0, 1.0),
    "window": (5, 1000),
    "training_offset_n": (1, 500),
    "multiplier": (0.5, 10.0),
    "n_estimators": (10, 500),
    "n_neighbors": (1, 50),
    "n_bins": (5, 50),
}
_PRE_RANGES: dict[str, tuple[int, int]] = {"smooth_n": (0, 30), "diffs_n": (0, 10), "lags_n": (0, 10)}


@dataclass(frozen=True)
class AlertRecord:
    """An alert's own fields, copied out of its row inside the session (no ORM object leaves the
    domain). The sub-configurations are the stored reference JSON."""

    id: str
    insight_id: int
    name: str
    subscribed_users: list[Any]
    condition: dict[str, Any]
    state: str
    enabled: bool
    last_notified_at: dt.datetime | None
    last_checked_at: dt.datetime | None
    next_check_at: dt.datetime | None
    config: dict[str, Any]
    detector_config: dict[str, Any] | None
    calculation_interval: str
    snoozed_until: dt.datetime | None
    skip_weekend: bool
    schedule_restriction: dict[str, Any] | None
    last_value: float | None
    investigation_agent_enabled: bool
    investigation_gates_notifications: bool
    investigation_inconclusive_action: str
    webhook_url: str
    created_at: dt.datetime


def alert_record(row: AlertConfiguration) -> AlertRecord:
    """The record of an alert row (called inside the session that loaded it)."""
    return AlertRecord(
        id=row.id,
        insight_id=row.insight_id,
        name=row.name,
        subscribed_users=list(row.subscribed_users),
        condition=row.condition,
        state=row.state,
        enabled=row.enabled,
        last_notified_at=row.last_notified_at,
        last_checked_at=row.last_checked_at,
        next_check_at=row.next_check_at,
        config=row.config,
        detector_config=row.detector_config,
        calculation_interval=row.calculation_interval,
        snoozed_until=row.snoozed_until,
        skip_weekend=row.skip_weekend,
        schedule_restriction=row.schedule_restriction,
        last_value=row.last_value,
        investigation_agent_enabled=row.investigation_agent_enabled,
        investigation_gates_notifications=row.investigation_gates_notifications,
        investigation_inconclusive_action=row.investigation_inconclusive_action,
        webhook_url=row.webhook_url,
        created_at=row.created_at,
    )


@dataclass(frozen=True)
class ThresholdRecord:
    """A threshold's own fields (its configuration is the stored reference JSON)."""

    id: str
    name: str
    configuration: dict[str, Any]
    created_at: dt.datetime


def threshold_record(row: Threshold) -> ThresholdRecord:
    """The record of a threshold row (called inside the session that loaded it)."""
    return ThresholdRecord(id=row.id, name=row.name, configuration=row.configuration, created_at=row.created_at)


@dataclass(frozen=True)
class AlertCheckRecord:
    """One recorded check of an alert, copied out of its row inside the session."""

    id: str
    created_at: dt.datetime
    calculated_value: float | None
    condition: dict[str, Any]
    state: str
    targets_notified: Any
    error: dict[str, Any] | None
    anomaly_scores: list[Any] | None
    triggered_points: list[Any] | None
    triggered_dates: list[Any] | None
    interval: str | None
    triggered_metadata: dict[str, Any] | None
    notification_sent_at: dt.datetime | None


def check_record(row: AlertCheck) -> AlertCheckRecord:
    """The record of a check row (called inside the session that loaded or wrote it)."""
    return AlertCheckRecord(
        id=row.id,
        created_at=row.created_at,
        calculated_value=row.calculated_value,
        condition=row.condition,
        state=row.state,
        targets_notified=row.targets_notified,
        error=row.error,
        anomaly_scores=row.anomaly_scores,
        triggered_points=row.triggered_points,
        triggered_dates=row.triggered_dates,
        interval=row.interval,
        triggered_metadata=row.triggered_metadata,
        notification_sent_at=row.notification_sent_at,
    )


@dataclass(frozen=True)
class AlertView:
    """An alert with its threshold, creator and (on Get) its latest checks."""

    alert: AlertRecord
    threshold: ThresholdRecord
    created_by: UserRef | None
    checks: list[AlertCheckRecord]
    checks_total: int


@dataclass(frozen=True)
class ThresholdView:
    """A threshold with the alerts using it."""

    threshold: ThresholdRecord
    alerts: list[AlertView]


def _bad(field: str, message: str, reason: str = "INVALID_ALERT") -> InvalidArgument:
    return InvalidArgument(f"{field}: {message}", field=field, reason=reason)


def check_windows(restriction: apb.ScheduleRestriction, field: str) -> None:
    """Blocked windows are HH:MM (00:00-23:59) pairs with start != end."""
    for i, window in enumerate(restriction.blocked_windows):
        for name in ("start", "end"):
            value = getattr(window, name)
            if not _HHMM.match(value):
                raise _bad(
                    f"{field}.blocked_windows[{i}].{name}",
                    f"must be HH:MM between 00:00 and 23:59 (got {value!r})",
                )
        if window.start == window.end:
            raise _bad(f"{field}.blocked_windows[{i}]", "start and end must differ")


def check_detector(detector: apb.DetectorConfig, field: str, *, nested: bool = False) -> None:
    """Detector parameters within the reference's ranges; an ensemble combines ≥ 2 plain detectors."""
    if detector.type == apb.DETECTOR_TYPE_UNSPECIFIED:
        raise _bad(f"{field}.type", "a detector type is required")
    if detector.type == apb.DETECTOR_TYPE_ENSEMBLE:
        if nested:
            raise _bad(f"{field}.type", "an ensemble cannot contain an ensemble")
        if len(detector.detectors) < 2:
            raise _bad(f"{field}.detectors", "an ensemble needs at least 2 detectors")
        for i, sub in enumerate(detector.detectors):
            check_detector(sub, f"{field}.detectors[{i}]", nested=True)
        return
    if detector.detectors:
        raise _bad(f"{field}.detectors", "only an ensemble has detectors")
    for name, (low, high) in _RANGES.items():
        if detector.HasField(name):  # type: ignore[arg-type]
            value = getattr(detector, name)
            if not low <= value <= high:
                raise _bad(f"{field}.{name}", f"must be between {low:g} and {high:g} (got {value:g})")
    for name, (ilow, ihigh) in _PRE_RANGES.items():
        if detector.preprocessing.HasField(name):  # type: ignore[arg-type]
            value = getattr(detector.preprocessing, name)
            if not ilow <= value <= ihigh:
                raise _bad(
                    f"{field}.preprocessing.{name}", f"must be between {ilow} and {ihigh} (got {value})"
                )
    if detector.type == apb.DETECTOR_TYPE_THRESHOLD:
        if not detector.HasField("lower_bound") and not detector.HasField("upper_bound"):
            raise _bad(f"{field}.lower_bound", "a threshold detector needs lower_bound or upper_bound")
        if (
            detector.HasField("lower_bound")
            and detector.HasField("upper_bound")
            and detector.lower_bound > detector.upper_bound
        ):
            raise _bad(f"{field}.lower_bound", "lower_bound must not exceed upper_bound")


def check_alert(
    alert: apb.Alert,
    query: query_pb2.QueryNode | None,
    prefix: str = "alert",
    webhook_policy: EgressPolicy | None = None,
) -> None:
    """The alert's configuration against its insight (reference §1.3, §1.4 and §7.2)."""
    found = alerting_of(query)
    if found is None:
        raise _bad(
            f"{prefix}.insight",
            "the insight cannot have alerts: only trends, funnels and SQL insights are alertable",
        )
    source, values = found
    if len(alert.name) > NAME_LIMIT:
        raise _bad(f"{prefix}.name", f"at most {NAME_LIMIT} characters (got {len(alert.name)})")
    config = alert.threshold.configuration
    bounds = config.bounds
    if bounds.HasField("lower") and bounds.HasField("upper") and bounds.lower > bounds.upper:
        raise _bad(
            f"{prefix}.threshold.configuration.bounds",
            "Lower threshold must be less than upper threshold",
        )
    if len(alert.threshold.name) > NAME_LIMIT:
        raise _bad(f"{prefix}.threshold.name", f"at most {NAME_LIMIT} characters")
    condition = alert.condition.type or apb.ALERT_CONDITION_TYPE_ABSOLUTE_VALUE
    if (
        condition == apb.ALERT_CONDITION_TYPE_ABSOLUTE_VALUE
        and config.type == apb.INSIGHT_THRESHOLD_TYPE_PERCENTAGE
    ):
        raise _bad(f"{prefix}.threshold.configuration.type", "absolute_value needs an absolute threshold")
    # The config of another kind is not silently dropped: the caller meant something else.
    for other in sorted(set(ALERT_CONFIG_FIELDS.values()) - {values.config_field}):
        if alert.HasField(other):  # type: ignore[arg-type]
            raise _bad(
                f"{prefix}.{other}",
                f"a {source.name} insight's alert takes {values.config_field}, not {other}",
            )
    if condition not in _CONDITIONS:
        raise _bad(f"{prefix}.condition.type", f"unknown condition type {condition}")
    ask = AlertAsk(
        condition=_CONDITIONS[condition],
        config=values.config_json(alert),
        has_upper=bounds.HasField("upper"),
        detector=alert.HasField("detector_config"),
    )
    for problem in values.problems(source.node, ask):
        field = f"{prefix}.{problem.field}"
        if problem.unimplemented:
            raise Unimplemented(
                f"{field}: {problem.message}",
                reason="ALERT_OPTION_NOT_IMPLEMENTED",
                metadata={"field": field},
            )
        raise _bad(field, problem.message)
    if alert.calculation_interval not in INTERVALS:
        raise _bad(f"{prefix}.calculation_interval", "only hourly, daily, weekly and monthly are available")
    if alert.HasField("detector_config"):
        check_detector(alert.detector_config, f"{prefix}.detector_config")
    check_windows(alert.schedule_restriction, f"{prefix}.schedule_restriction")
    if alert.webhook_url:
        check_webhook_url(alert.webhook_url, f"{prefix}.webhook_url", webhook_policy)


def check_webhook_url(url: str, field: str, policy: EgressPolicy | None = None) -> None:
    """An absolute http(s) URL with a host, at most 2048 characters, no credentials.

    With a `policy`, also a host that is not obviously internal (egress.EgressPolicy.url_refusal,
    no DNS): the send-time check is the real guard, this one tells the author at once.
    """
    if len(url) > WEBHOOK_URL_LIMIT:
        raise _bad(field, f"at most {WEBHOOK_URL_LIMIT} characters")
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise _bad(field, f"not a URL (got {url!r})") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise _bad(field, "must be an absolute http or https URL")
    if parsed.username or parsed.password:
        raise _bad(field, "must not carry credentials")
    if any(c.isspace() for c in url):
        raise _bad(field, "must not contain whitespace")
    if policy is not None:
        try:
            refusal = policy.url_refusal(parsed.hostname)
        except ValueError:
            raise _bad(field, "the host is not a valid host name") from None
        if refusal is not None:
            raise _bad(
                field,
                f"must not target an internal host ({refusal}); the server's operator can admit one "
                "with INSIGHTS_ALERT_WEBHOOK_ALLOWED_NETWORKS",
                "WEBHOOK_TARGET_NOT_ALLOWED",
            )


def parse_snooze(value: str, now: dt.datetime, field: str) -> dt.datetime:
    """A relative duration ("1h", "2d", "1w", "1m": now plus it, truncated to the unit, UTC) or an ISO instant."""
    text = value.strip()
    match = _RELATIVE.match(text)
    if match:
        count, unit = int(match[1]), match[2]
        now = now.astimezone(dt.UTC)
        if unit == "h":
            return (now + dt.timedelta(hours=count)).replace(minute=0, second=0, microsecond=0)
        if unit == "m":
            months = now.month - 1 + count
            return now.replace(
                year=now.year + months // 12,
                month=months % 12 + 1,
                day=1,
                hour=0,
                minute=0,
                second=0,
                microsecond=0,
            )
        days = count * (7 if unit == "w" else 1)
        return (now + dt.timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        until = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _bad(
            field, f"give a relative duration such as '1h' or '2d', or an ISO instant (got {value!r})"
        ) from None
    until = until if until.tzinfo else until.replace(tzinfo=dt.UTC)
    if until <= now:
        raise _bad(field, "must be in the future")
    return until


def _page_args(
    limit: int,
    offset: int,
    maximum: int,
    fields: tuple[str, str] = ("limit", "offset"),
    default: int = paging.DEFAULT_LIMIT,
) -> int:
    violations = Violations()
    limit = paging.window(violations, limit, offset, default=default, maximum=maximum, fields=fields)
    violations.raise_if_any()
    return limit


class Alerts:
    """The alert-configuration domain. Every method runs synchronously in one database transaction."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], dt.datetime] = utcnow,
        webhook_policy: EgressPolicy | None = None,
        changed: Callable[[int], None] = lambda environment_id: None,
    ):
        self.db = db
        self.clock = clock
        # Told an environment id after a write commits: insights show their alerts (a read cache forgets).
        self.changed = changed
        # Which webhook hosts may be saved (tests swap it like the notifier's egress).
        self.webhook_policy = webhook_policy or EgressPolicy()

    # ------------------------------------------------------------------------------ thresholds

    def list_thresholds(
        self, principal: Principal, environment_id: int, insight_id: int, limit: int, offset: int
    ) -> Page[ThresholdView]:
        env = principal.environment(environment_id)
        limit = _page_args(limit, offset, paging.MAX_LIMIT)
        with self.db.session() as session:
            insight = self._insight(session, env.id, insight_id)
            where = [Threshold.environment_id == env.id, Threshold.insight_id == insight.id]
            count = session.scalar(select(func.count()).select_from(Threshold).where(*where)) or 0
            rows = session.scalars(
                select(Threshold)
                .where(*where)
                .order_by(Threshold.created_at, Threshold.id)
                .offset(offset)
                .limit(limit)
            ).all()
            return Page([self._threshold_view(session, r) for r in rows], count, limit, offset)

    def get_threshold(
        self, principal: Principal, environment_id: int, insight_id: int, threshold_id: str
    ) -> ThresholdView:
        env = principal.environment(environment_id)
        with self.db.session() as session:
            insight = self._insight(session, env.id, insight_id)
            row = session.scalars(
                select(Threshold).where(
                    Threshold.id == threshold_id,
                    Threshold.environment_id == env.id,
                    Threshold.insight_id == insight.id,
                )
            ).first()
            if row is None:
                raise NotFound(f"Threshold {shown(threshold_id)} not found.", reason="THRESHOLD_NOT_FOUND")
            return self._threshold_view(session, row)

    # ---------------------------------------------------------------------------------- alerts

    def create(self, principal: Principal, environment_id: int, alert: apb.Alert) -> AlertView:
        env = principal.environment(environment_id)
        now = self.clock()
        with self.db.session() as session:
            insight = self._insight(session, env.id, alert.insight, field="alert.insight")
            check_alert(alert, parse_query(insight.query), webhook_policy=self.webhook_policy)
            self._check_users(session, env, alert.subscribed_users)
            snoozed = (
                parse_snooze(alert.snoozed_until, now, "alert.snoozed_until") if alert.snoozed_until else None
            )
            threshold = Threshold(
                environment_id=env.id,
                insight_id=insight.id,
                name=alert.threshold.name,
                configuration=_json(alert.threshold.configuration),
                created_by_id=principal.user_id,
                created_at=now,
            )
            session.add(threshold)
            session.flush()
            row = AlertConfiguration(
                environment_id=env.id,
                insight_id=insight.id,
                threshold_id=threshold.id,
                name=alert.name,
                subscribed_users=list(dict.fromkeys(alert.subscribed_users)),
                condition=_condition(alert),
                state=NOT_FIRING,
                enabled=alert.enabled if alert.HasField("enabled") else True,
                next_check_at=now,
                config=_config(alert, insight),
                detector_config=_json(alert.detector_config) if alert.HasField("detector_config") else None,
                calculation_interval=INTERVALS[alert.calculation_interval],
                skip_weekend=alert.skip_weekend,
                schedule_restriction=_restriction(alert),
                investigation_agent_enabled=alert.investigation_agent_enabled,
                investigation_gates_notifications=alert.investigation_gates_notifications,
                investigation_inconclusive_action=alert.investigation_inconclusive_action,
                webhook_url=alert.webhook_url,
                created_by_id=principal.user_id,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            if snoozed is not None:
                self._snooze(session, row, snoozed, now)
            self._log(session, principal.user_id, env, row, "created", None, now)
            session.flush()
            view = self._view(session, row, threshold, with_checks=False)
        self.changed(env.id)
        return view

    def get(
        self,
        principal: Principal,
        environment_id: int,
        alert_id: str,
        *,
        checks_limit: int | None = None,
        checks_offset: int = 0,
        checks_date_from: str = "",
        checks_date_to: str = "",
    ) -> AlertView:
        env = principal.environment(environment_id)
        # Unset means DEFAULT_CHECKS; an explicit 0 asks for no checks.
        limit = _page_args(
            DEFAULT_CHECKS if checks_limit is None else checks_limit,
            checks_offset,
            MAX_CHECKS,
            ("checks_limit", "checks_offset"),
            default=0,
        )
        where = self._check_dates(env, checks_date_from, checks_date_to, "checks_date_from", "checks_date_to")
        with self.db.session() as session:
            row = self._find(session, env.id, alert_id)
            checks = session.scalars(
                select(AlertCheck)
                .where(AlertCheck.alert_id == row.id, *where)
                .order_by(AlertCheck.created_at.desc(), AlertCheck.id.desc())
                .offset(checks_offset)
                .limit(limit)
            ).all()
            view = self._view(session, row, None, with_checks=False)
            return dataclasses.replace(view, checks=[check_record(c) for c in checks])

    def list_alerts(
        self, principal: Principal, environment_id: int, insight_id: int, limit: int, offset: int
    ) -> Page[AlertView]:
        env = principal.environment(environment_id)
        limit = _page_args(limit, offset, paging.MAX_LIMIT)
        where = [AlertConfiguration.environment_id == env.id, AlertConfiguration.deleted.is_(False)]
        if insight_id:
            where.append(AlertConfiguration.insight_id == insight_id)
        with self.db.session() as session:
            count, rows = paging.newest_first(session, AlertConfiguration, where, limit, offset)
            return Page([self._view(session, r, None, with_checks=False) for r in rows], count, limit, offset)

    def list_checks(
        self,
        principal: Principal,
        environment_id: int,
        alert_id: str,
        limit: int,
        offset: int,
        date_from: str = "",
        date_to: str = "",
    ) -> Page[AlertCheckRecord]:
        env = principal.environment(environment_id)
        limit = _page_args(limit, offset, MAX_CHECKS)
        dates = self._check_dates(env, date_from, date_to, "date_from", "date_to")
        with self.db.session() as session:
            row = self._find(session, env.id, alert_id)
            where = [AlertCheck.alert_id == row.id, *dates]
            count, checks = paging.newest_first(session, AlertCheck, where, limit, offset)
            return Page([check_record(c) for c in checks], count, limit, offset)

    def update(
        self, principal: Principal, environment_id: int, alert_id: str, alert: apb.Alert, paths: Sequence[str]
    ) -> AlertView:
        env = principal.environment(environment_id)
        check_update_mask(paths, WRITABLE, "Alert")
        chosen = set(paths)
        now = self.clock()
        with self.db.session() as session:
            row = self._find(session, env.id, alert_id)
            threshold = session.get(Threshold, row.threshold_id)
            assert threshold is not None
            insight = session.get(Insight, row.insight_id)
            assert insight is not None
            # The merged alert, validated as a whole against its insight.
            merged = self._message(row, threshold)
            for path in chosen:
                merged.ClearField(path)  # type: ignore[arg-type]
                _copy(alert, merged, path)
            # The host policy applies to a URL being set: an alert saved before it (or under a
            # wider allowlist) stays editable, and its webhook is refused at send time instead.
            policy = self.webhook_policy if "webhook_url" in chosen else None
            check_alert(merged, parse_query(insight.query), webhook_policy=policy)
            if "subscribed_users" in chosen:
                self._check_users(session, env, merged.subscribed_users)
            before = _snapshot(row, threshold)
            if "name" in chosen:
                row.name = merged.name
            if "subscribed_users" in chosen:
                row.subscribed_users = list(dict.fromkeys(merged.subscribed_users))
            if "threshold" in chosen:
                threshold.name = merged.threshold.name
                threshold.configuration = _json(merged.threshold.configuration)
            if "condition" in chosen:
                row.condition = _condition(merged)
            if "enabled" in chosen:
                row.enabled = merged.enabled if merged.HasField("enabled") else True
            if chosen & set(ALERT_CONFIG_FIELDS.values()):
                row.config = _config(merged, insight)
            if "detector_config" in chosen:
                row.detector_config = (
                    _json(merged.detector_config) if merged.HasField("detector_config") else None
                )
            if "calculation_interval" in chosen:
                row.calculation_interval = INTERVALS[merged.calculation_interval]
            if "skip_weekend" in chosen:
                row.skip_weekend = merged.skip_weekend
            if "schedule_restriction" in chosen:
                row.schedule_restriction = _restriction(merged)
            for name in (
                "investigation_agent_enabled",
                "investigation_gates_notifications",
                "investigation_inconclusive_action",
                "webhook_url",
            ):
                if name in chosen:
                    setattr(row, name, getattr(merged, name))
            after = _snapshot(row, threshold)
            if any(before.get(k) != after.get(k) for k in RECHECK):
                row.next_check_at = now
            if "snoozed_until" in chosen:
                if merged.snoozed_until:
                    self._snooze(
                        session, row, parse_snooze(merged.snoozed_until, now, "alert.snoozed_until"), now
                    )
                elif row.snoozed_until is not None or row.state == SNOOZED:
                    self._unsnooze(session, row, now)
            after = _snapshot(row, threshold)
            row.updated_at = now
            changes = activity.diff(before, after, SCOPE)
            if changes:
                self._log(session, principal.user_id, env, row, "updated", changes, now)
            session.flush()
            view = self._view(session, row, threshold, with_checks=False)
        self.changed(env.id)
        return view

    def delete(self, principal: Principal, environment_id: int, alert_id: str) -> AlertView:
        env = principal.environment(environment_id)
        now = self.clock()
        with self.db.session() as session:
            row = self._find(session, env.id, alert_id)
            row.deleted = True
            row.updated_at = now
            self._log(session, principal.user_id, env, row, "deleted", None, now)
            session.flush()
            view = self._view(session, row, None, with_checks=False)
        self.changed(env.id)
        return view

    def on_insight_changed(
        self, session: Session, user_id: int | None, env: EnvironmentInfo, insight: Insight, now: dt.datetime
    ) -> None:
        """Hook of Insights.update: a deleted or no longer alertable insight takes its alerts with it."""
        if not insight.deleted and alerting_of(parse_query(insight.query)) is not None:
            return
        rows = session.scalars(
            select(AlertConfiguration).where(
                AlertConfiguration.insight_id == insight.id, AlertConfiguration.deleted.is_(False)
            )
        ).all()
        reason = "insight deleted" if insight.deleted else "insight no longer alertable"
        for row in rows:
            row.deleted = True
            row.updated_at = now
            changes = [
                activity.change(SCOPE, "deleted", False, True),
                activity.change(SCOPE, None, None, reason, action="reason"),
            ]
            self._log(session, user_id, env, row, "deleted", changes, now)

    # --------------------------------------------------------------------------------- helpers

    def _snooze(
        self, session: Session, row: AlertConfiguration, until: dt.datetime, now: dt.datetime
    ) -> None:
        row.snoozed_until = until
        row.state = SNOOZED
        session.add(AlertCheck(alert_id=row.id, created_at=now, condition=dict(row.condition), state=SNOOZED))

    def _unsnooze(self, session: Session, row: AlertConfiguration, now: dt.datetime) -> None:
        row.snoozed_until = None
        row.state = NOT_FIRING
        session.add(
            AlertCheck(alert_id=row.id, created_at=now, condition=dict(row.condition), state=NOT_FIRING)
        )

    def _check_users(self, session: Session, env: EnvironmentInfo, user_ids: Sequence[int]) -> None:
        wanted = set(user_ids)
        if not wanted:
            return
        members = set(
            session.scalars(
                select(Membership.user_id).where(
                    Membership.organization_id == env.organization_id, Membership.user_id.in_(wanted)
                )
            )
        )
        for i, user_id in enumerate(user_ids):
            if user_id not in members:
                raise _bad(
                    f"alert.subscribed_users[{i}]", f"user {user_id} is not a member of the organization"
                )

    def _check_dates(
        self, env: EnvironmentInfo, date_from: str, date_to: str, from_field: str, to_field: str
    ) -> list[Any]:
        now = self.clock()
        where: list[Any] = []
        for value, field, op in ((date_from, from_field, "ge"), (date_to, to_field, "lt")):
            if not value:
                continue
            try:
                point = parse_point(value, env.timezone, now)
            except ValueError:
                raise _bad(field, f"not a date (got {value!r})", "INVALID_DATE") from None
            where.append(AlertCheck.created_at >= point if op == "ge" else AlertCheck.created_at < point)
        return where

    def _insight(
        self, session: Session, environment_id: int, insight_id: int, *, field: str | None = None
    ) -> Insight:
        try:
            return find_insight(session, environment_id, Lookup(id=insight_id))
        except NotFound:
            if field is None:
                raise
            # Named in the request body: a bad argument, not a missing resource of the path.
            raise _bad(field, f"insight {insight_id} not found", "INSIGHT_NOT_FOUND") from None

    def _find(self, session: Session, environment_id: int, alert_id: str) -> AlertConfiguration:
        row = session.scalars(
            select(AlertConfiguration).where(
                AlertConfiguration.id == alert_id,
                AlertConfiguration.environment_id == environment_id,
                AlertConfiguration.deleted.is_(False),
            )
        ).first()
        if row is None:
            raise NotFound(
                f"Alert {shown(alert_id)} not found.",
                reason="ALERT_NOT_FOUND",
                metadata={"alert": shown(alert_id)},
            )
        return row

    def _view(
        self, session: Session, row: AlertConfiguration, threshold: Threshold | None, *, with_checks: bool
    ) -> AlertView:
        threshold = threshold or session.get(Threshold, row.threshold_id)
        assert threshold is not None
        user = session.get(User, row.created_by_id) if row.created_by_id is not None else None
        total = (
            session.scalar(select(func.count()).select_from(AlertCheck).where(AlertCheck.alert_id == row.id))
            or 0
        )
        return AlertView(
            alert_record(row), threshold_record(threshold), user_ref(user) if user else None, [], total
        )

    def _threshold_view(self, session: Session, row: Threshold) -> ThresholdView:
        alerts = session.scalars(
            select(AlertConfiguration)
            .where(AlertConfiguration.threshold_id == row.id, AlertConfiguration.deleted.is_(False))
            .order_by(AlertConfiguration.created_at)
        ).all()
        return ThresholdView(
            threshold_record(row), [self._view(session, a, row, with_checks=False) for a in alerts]
        )

    def _message(self, row: AlertConfiguration, threshold: Threshold) -> apb.Alert:
        """The stored alert as a message (the writable fields), to merge an update into."""
        message = apb.Alert(
            insight=row.insight_id,
            name=row.name,
            subscribed_users=row.subscribed_users,
            enabled=row.enabled,
            skip_weekend=row.skip_weekend,
            investigation_agent_enabled=row.investigation_agent_enabled,
            investigation_gates_notifications=row.investigation_gates_notifications,
            investigation_inconclusive_action=row.investigation_inconclusive_action,
            webhook_url=row.webhook_url,
        )
        message.threshold.name = threshold.name
        message.threshold.configuration.CopyFrom(
            from_reference_json(threshold.configuration, apb.InsightThreshold)
        )
        message.condition.CopyFrom(from_reference_json(row.condition, apb.AlertCondition))
        set_config(message, row.config)
        if row.detector_config is not None:
            message.detector_config.CopyFrom(from_reference_json(row.detector_config, apb.DetectorConfig))
        message.calculation_interval = next(
            k for k, v in INTERVALS.items() if v == row.calculation_interval and k
        )
        if row.schedule_restriction is not None:
            message.schedule_restriction.CopyFrom(
                from_reference_json(row.schedule_restriction, apb.ScheduleRestriction)
            )
        return message

    def _log(
        self,
        session: Session,
        user_id: int | None,
        env: EnvironmentInfo,
        row: AlertConfiguration,
        verb: str,
        changes: list[dict[str, Any]] | None,
        now: dt.datetime,
    ) -> None:
        activity.record_item(session, env, user_id, SCOPE, row, verb, changes, now)


def _copy(source: apb.Alert, target: apb.Alert, path: str) -> None:
    field = apb.Alert.DESCRIPTOR.fields_by_name[path]
    if field.has_presence and not source.HasField(path):  # type: ignore[arg-type]
        return
    value = getattr(source, path)
    if path == "subscribed_users":  # the one repeated writable field
        getattr(target, path).extend(value)
    elif field.message_type is not None:
        getattr(target, path).CopyFrom(value)
    else:
        setattr(target, path, value)


def _json(message: Any) -> dict[str, Any]:
    value = to_reference_json(message)
    return value if isinstance(value, dict) else {}


def _condition(alert: apb.Alert) -> dict[str, Any]:
    condition = apb.AlertCondition(type=alert.condition.type or apb.ALERT_CONDITION_TYPE_ABSOLUTE_VALUE)
    return _json(condition)


def _config(alert: apb.Alert, insight: Insight) -> dict[str, Any]:
    """The stored config of an alert checked by `check_alert` against `insight`."""
    found = alerting_of(parse_query(insight.query))
    assert found is not None  # check_alert refused it otherwise
    return found[1].config_json(alert)


def set_config(message: apb.Alert, config: dict[str, Any] | None) -> None:
    """Puts a stored config (the reference's JSON, discriminated by `type`) into its Alert field."""
    if not config:
        return
    name = ALERT_CONFIG_FIELDS.get(str(config.get("type", "")), "config")
    target = getattr(message, name)
    target.CopyFrom(from_reference_json(config, type(target)))


def _restriction(alert: apb.Alert) -> dict[str, Any] | None:
    if not alert.schedule_restriction.blocked_windows:
        return None
    return {
        "blocked_windows": [
            {"start": w.start, "end": w.end} for w in alert.schedule_restriction.blocked_windows
        ]
    }


def _snapshot(row: AlertConfiguration, threshold: Threshold) -> dict[str, Any]:
    return {
        "name": row.name,
        "subscribed_users": list(row.subscribed_users),
        "threshold": {"name": threshold.name, "configuration": threshold.configuration},
        "condition": row.condition,
        "enabled": row.enabled,
        "config": row.config,
        "detector_config": row.detector_config,
        "calculation_interval": row.calculation_interval,
        "snoozed_until": row.snoozed_until.isoformat() if row.snoozed_until else None,
        "skip_weekend": row.skip_weekend,
        "schedule_restriction": row.schedule_restriction,
        "investigation_agent_enabled": row.investigation_agent_enabled,
        "investigation_gates_notifications": row.investigation_gates_notifications,
        "investigation_inconclusive_action": row.investigation_inconclusive_action,
        "webhook_url": row.webhook_url,
    }
