"""AlertsService: translates requests to the alert domain (server.domain.alerts.configs) and its answers back."""

from __future__ import annotations

import grpc

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc
from server.domain.alerts.checker import Checker
from server.domain.alerts.configs import Alerts
from server.runtime import Blocking
from server.services.context import principal
from server.services.convert import alerts as convert
from server.services.convert import common


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
        return common.listing(apb.ListThresholdsResponse, page, convert.threshold)

    async def GetThreshold(
        self, request: apb.GetThresholdRequest, context: grpc.aio.ServicerContext
    ) -> apb.Threshold:
        view = await self._run(
            self._alerts.get_threshold, principal(), request.environment_id, request.insight_id, request.id
        )
        return convert.threshold(view)

    async def CreateAlert(
        self, request: apb.CreateAlertRequest, context: grpc.aio.ServicerContext
    ) -> apb.Alert:
        view = await self._run(self._alerts.create, principal(), request.environment_id, request.alert)
        return convert.alert(view)

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
        return convert.alert(view)

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
        return common.listing(apb.ListAlertsResponse, page, convert.alert)

    async def UpdateAlert(
        self, request: apb.UpdateAlertRequest, context: grpc.aio.ServicerContext
    ) -> apb.Alert:
        paths = common.update_paths(request, request.alert)
        view = await self._run(
            self._alerts.update, principal(), request.environment_id, request.id, request.alert, paths
        )
        return convert.alert(view)

    async def DeleteAlert(
        self, request: apb.DeleteAlertRequest, context: grpc.aio.ServicerContext
    ) -> apb.Alert:
        view = await self._run(self._alerts.delete, principal(), request.environment_id, request.id)
        return convert.alert(view)

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
        return common.listing(apb.ListAlertChecksResponse, page, convert.check)

    async def CheckAlertNow(
        self, request: apb.CheckAlertNowRequest, context: grpc.aio.ServicerContext
    ) -> apb.AlertCheck:
        record = await self._checker.check_now(principal(), request.environment_id, request.alert_id)
        return convert.check(record)
