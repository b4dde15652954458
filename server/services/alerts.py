"""AlertsService: translates requests to the alert domain (server.domain.alerts.configs) and its answers back."""

from __future__ import annotations

import math
from typing import Any

import grpc
from google.protobuf import json_format

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc
from server.domain.alerts.checker import Checker
from server.domain.alerts.configs import AlertCheckRecord, Alerts, AlertView, ThresholdView
from server.domain.paging import Page
from server.queries.common.codec import from_reference_json
from server.runtime import Blocking
from server.services import convert
from server.services.context import principal

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


def _stamp(field: Any, value: Any) -> None:
    if value is not None:
        field.FromDatetime(value)


def check(row: AlertCheckRecord) -> apb.AlertCheck:
    message = apb.AlertCheck(
        id=row.id,
        state=STATES.get(row.state, apb.ALERT_STATE_UNSPECIFIED),
        # Unscored points (None: consumed by preprocessing or without a full training window) are
        # NaN, so the scores stay aligned with the series and with triggered_points.
        anomaly_scores=[math.nan if s is None else s for s in row.anomaly_scores or []],
        triggered_points=row.triggered_points or [],
        triggered_dates=[str(d) for d in row.triggered_dates or []],
        interval=row.interval or "",
    )
    _stamp(message.created_at, row.created_at)
    _stamp(message.notification_sent_at, row.notification_sent_at)
    if row.calculated_value is not None:
        message.calculated_value = row.calculated_value
    if row.targets_notified is not None:
        json_format.ParseDict(row.targets_notified, message.targets_notified)
    if row.triggered_metadata:
        message.triggered_metadata.update(row.triggered_metadata)
    if row.error:
        message.error.update(row.error)
    if row.condition:
        message.condition.CopyFrom(from_reference_json(row.condition, apb.AlertCondition))
    return message


def alert(view: AlertView) -> apb.Alert:
    row = view.alert
    message = apb.Alert(
        id=row.id,
        insight=row.insight_id,
        name=row.name,
        subscribed_users=row.subscribed_users,
        state=STATES.get(row.state, apb.ALERT_STATE_UNSPECIFIED),
        enabled=row.enabled,
        checks=[check(c) for c in view.checks],
        checks_total=view.checks_total,
        calculation_interval=INTERVALS.get(row.calculation_interval, apb.ALERT_CALCULATION_INTERVAL_DAILY),
        snoozed_until=row.snoozed_until.isoformat().replace("+00:00", "Z") if row.snoozed_until else "",
        skip_weekend=row.skip_weekend,
        investigation_agent_enabled=row.investigation_agent_enabled,
        investigation_gates_notifications=row.investigation_gates_notifications,
        investigation_inconclusive_action=row.investigation_inconclusive_action,
        webhook_url=row.webhook_url,
    )
    if view.created_by is not None:
        created_by = convert.user(view.created_by)
        if created_by is not None:
            message.created_by.CopyFrom(created_by)
    _stamp(message.created_at, row.created_at)
    _stamp(message.last_notified_at, row.last_notified_at)
    _stamp(message.last_checked_at, row.last_checked_at)
    _stamp(message.next_check_at, row.next_check_at)
    message.threshold.CopyFrom(threshold(ThresholdView(view.threshold, [])))
    message.condition.CopyFrom(from_reference_json(row.condition, apb.AlertCondition))
    message.config.CopyFrom(from_reference_json(row.config, apb.TrendsAlertConfig))
    if row.detector_config is not None:
        message.detector_config.CopyFrom(from_reference_json(row.detector_config, apb.DetectorConfig))
    if row.schedule_restriction is not None:
        message.schedule_restriction.CopyFrom(
            from_reference_json(row.schedule_restriction, apb.ScheduleRestriction)
        )
    if row.last_value is not None:
        message.last_value = row.last_value
    return message


def threshold(view: ThresholdView) -> apb.Threshold:
    message = apb.Threshold(
        id=view.threshold.id,
        name=view.threshold.name,
        configuration=from_reference_json(view.threshold.configuration, apb.InsightThreshold),
        alerts=[alert(a) for a in view.alerts],
    )
    _stamp(message.created_at, view.threshold.created_at)
    return message


def _offsets(page: Page[Any], response: Any) -> None:
    if page.offset + page.limit < page.count:
        response.next_offset = page.offset + page.limit
    if page.offset > 0:
        response.previous_offset = max(page.offset - page.limit, 0)


class AlertsServicer(alerts_pb2_grpc.AlertsServiceServicer):
    """Thin: every rule lives in server.domain.alerts.configs."""

    def __init__(self, alerts: Alerts, blocking: Blocking, checker: Checker):
        self._alerts = alerts
        self._run = blocking.run
        self._checker = checker

    async def ListThresholds(
        self, request: apb.ListThresholdsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListThresholdsResponse:
        page = await self._run(
            self._alerts.list_thresholds,
            principal(),
            request.environment_id,
            request.insight_id,
            request.limit,
            request.offset,
        )
        response = apb.ListThresholdsResponse(count=page.count, results=[threshold(t) for t in page.items])
        _offsets(page, response)
        return response

    async def GetThreshold(
        self, request: apb.GetThresholdRequest, context: grpc.aio.ServicerContext
    ) -> apb.Threshold:
        view = await self._run(
            self._alerts.get_threshold, principal(), request.environment_id, request.insight_id, request.id
        )
        return threshold(view)

    async def CreateAlert(
        self, request: apb.CreateAlertRequest, context: grpc.aio.ServicerContext
    ) -> apb.Alert:
        view = await self._run(self._alerts.create, principal(), request.environment_id, request.alert)
        return alert(view)

    async def GetAlert(self, request: apb.GetAlertRequest, context: grpc.aio.ServicerContext) -> apb.Alert:
        view = await self._run(
            self._alerts.get,
            principal(),
            request.environment_id,
            request.id,
            checks_limit=request.checks_limit if request.HasField("checks_limit") else None,
            checks_offset=request.checks_offset,
            checks_date_from=request.checks_date_from,
            checks_date_to=request.checks_date_to,
        )
        return alert(view)

    async def ListAlerts(
        self, request: apb.ListAlertsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListAlertsResponse:
        page = await self._run(
            self._alerts.list_alerts,
            principal(),
            request.environment_id,
            request.insight_id,
            request.limit,
            request.offset,
        )
        response = apb.ListAlertsResponse(count=page.count, results=[alert(a) for a in page.items])
        _offsets(page, response)
        return response

    async def UpdateAlert(
        self, request: apb.UpdateAlertRequest, context: grpc.aio.ServicerContext
    ) -> apb.Alert:
        given = request.alert
        if request.HasField("update_mask"):
            paths = list(request.update_mask.paths)
        else:
            paths = [descriptor.name for descriptor, _ in given.ListFields()]
        view = await self._run(
            self._alerts.update, principal(), request.environment_id, request.id, given, paths
        )
        return alert(view)

    async def DeleteAlert(
        self, request: apb.DeleteAlertRequest, context: grpc.aio.ServicerContext
    ) -> apb.Alert:
        view = await self._run(self._alerts.delete, principal(), request.environment_id, request.id)
        return alert(view)

    async def ListAlertChecks(
        self, request: apb.ListAlertChecksRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListAlertChecksResponse:
        page = await self._run(
            self._alerts.list_checks,
            principal(),
            request.environment_id,
            request.alert_id,
            request.limit,
            request.offset,
            request.date_from,
            request.date_to,
        )
        response = apb.ListAlertChecksResponse(count=page.count, results=[check(c) for c in page.items])
        _offsets(page, response)
        return response

    async def CheckAlertNow(
        self, request: apb.CheckAlertNowRequest, context: grpc.aio.ServicerContext
    ) -> apb.AlertCheck:
        row = await self._checker.check_now(principal(), request.environment_id, request.alert_id)
        return check(row)
