"""AlertsService conversions: alert, threshold and check records to their messages."""

from __future__ import annotations

import math

from google.protobuf import json_format

from generated.insights.v1 import alerts_pb2 as apb
from server.domain.alerts.configs import AlertCheckRecord, AlertView, ThresholdView, set_config
from server.queries.common.codec import from_reference_json
from server.services.convert.common import stamp, user

STATES = {
    "Firing": apb.ALERT_STATE_FIRING,
    "Not firing": apb.ALERT_STATE_NOT_FIRING,
    "Errored": apb.ALERT_STATE_ERRORED,
    "Snoozed": apb.ALERT_STATE_SNOOZED,
}
INTERVALS = {
    "hourly": apb.ALERT_CALCULATION_INTERVAL_HOURLY,
    "daily": apb.ALERT_CALCULATION_INTERVAL_DAILY,
    "weekly": apb.ALERT_CALCULATION_INTERVAL_WEEKLY,
    "monthly": apb.ALERT_CALCULATION_INTERVAL_MONTHLY,
}


def check(record: AlertCheckRecord) -> apb.AlertCheck:
    message = apb.AlertCheck(
        id=record.id,
        state=STATES.get(record.state, apb.ALERT_STATE_UNSPECIFIED),
        # Unscored points (None: consumed by preprocessing or without a full training window) are
        # NaN, so the scores stay aligned with the series and with triggered_points.
        anomaly_scores=[math.nan if s is None else s for s in record.anomaly_scores or []],
        triggered_points=record.triggered_points or [],
        triggered_dates=[str(d) for d in record.triggered_dates or []],
        interval=record.interval or "",
    )
    stamp(message.created_at, record.created_at)
    stamp(message.notification_sent_at, record.notification_sent_at)
    if record.calculated_value is not None:
        message.calculated_value = record.calculated_value
    if record.targets_notified is not None:
        json_format.ParseDict(record.targets_notified, message.targets_notified)
    if record.triggered_metadata:
        message.triggered_metadata.update(record.triggered_metadata)
    if record.error:
        message.error.update(record.error)
    if record.condition:
        message.condition.CopyFrom(from_reference_json(record.condition, apb.AlertCondition))
    return message


def alert(view: AlertView) -> apb.Alert:
    record = view.alert
    message = apb.Alert(
        id=record.id,
        insight=record.insight_id,
        name=record.name,
        subscribed_users=record.subscribed_users,
        state=STATES.get(record.state, apb.ALERT_STATE_UNSPECIFIED),
        enabled=record.enabled,
        checks=[check(c) for c in view.checks],
        checks_total=view.checks_total,
        calculation_interval=INTERVALS.get(record.calculation_interval, apb.ALERT_CALCULATION_INTERVAL_DAILY),
        snoozed_until=record.snoozed_until.isoformat().replace("+00:00", "Z") if record.snoozed_until else "",
        skip_weekend=record.skip_weekend,
        investigation_agent_enabled=record.investigation_agent_enabled,
        investigation_gates_notifications=record.investigation_gates_notifications,
        investigation_inconclusive_action=record.investigation_inconclusive_action,
        webhook_url=record.webhook_url,
    )
    if view.created_by is not None:
        created_by = user(view.created_by)
        if created_by is not None:
            message.created_by.CopyFrom(created_by)
    stamp(message.created_at, record.created_at)
    stamp(message.last_notified_at, record.last_notified_at)
    stamp(message.last_checked_at, record.last_checked_at)
    stamp(message.next_check_at, record.next_check_at)
    message.threshold.CopyFrom(threshold(ThresholdView(view.threshold, [])))
    message.condition.CopyFrom(from_reference_json(record.condition, apb.AlertCondition))
    set_config(message, record.config)
    if record.detector_config is not None:
        message.detector_config.CopyFrom(from_reference_json(record.detector_config, apb.DetectorConfig))
    if record.schedule_restriction is not None:
        message.schedule_restriction.CopyFrom(
            from_reference_json(record.schedule_restriction, apb.ScheduleRestriction)
        )
    if record.last_value is not None:
        message.last_value = record.last_value
    return message


def threshold(view: ThresholdView) -> apb.Threshold:
    record = view.threshold
    message = apb.Threshold(
        id=record.id,
        name=record.name,
        configuration=from_reference_json(record.configuration, apb.InsightThreshold),
        alerts=[alert(a) for a in view.alerts],
    )
    stamp(message.created_at, record.created_at)
    return message
