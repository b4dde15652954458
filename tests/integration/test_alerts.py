"""Alerts through the real server: thresholds, alert CRUD, validation, snooze, scopes, insight deletion."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.itkit import (
    Api,
    Metadata,
    Server,
    Tenant,
    assert_invalid,
    bearer,
    error_info,
    expect_error,
    lifecycle_viz,
    paths_viz,
    retention_viz,
    stickiness_viz,
    trends_viz,
)


@pytest.fixture
def owner(api: Api, tenant: Tenant) -> Api:
    return api


@pytest.fixture
def alerts(server: Server, tenant: Tenant) -> Alerts:
    return Alerts(
        agrpc.AlertsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("alert:write"))
    )


class Alerts:
    """AlertsService calls of one environment's key."""

    def __init__(self, stub: agrpc.AlertsServiceStub, environment_id: int, metadata: Metadata):
        self.stub, self.env, self.md = stub, environment_id, metadata

    async def create(self, insight: int, **fields: Any) -> apb.Alert:
        fields.setdefault("name", "Too many pageviews")
        fields.setdefault(
            "threshold",
            apb.Threshold(
                name="upper",
                configuration=apb.InsightThreshold(
                    type=apb.INSIGHT_THRESHOLD_TYPE_ABSOLUTE, bounds=apb.InsightsThresholdBounds(upper=100)
                ),
            ),
        )
        request = apb.CreateAlertRequest(environment_id=self.env, alert=apb.Alert(insight=insight, **fields))
        return await self.stub.CreateAlert(request, metadata=self.md, timeout=10)

    async def get(self, alert_id: str, **kw: Any) -> apb.Alert:
        request = apb.GetAlertRequest(environment_id=self.env, id=alert_id, **kw)
        return await self.stub.GetAlert(request, metadata=self.md, timeout=10)

    async def list(self, insight_id: int = 0) -> apb.ListAlertsResponse:
        request = apb.ListAlertsRequest(environment_id=self.env, insight_id=insight_id)
        return await self.stub.ListAlerts(request, metadata=self.md, timeout=10)

    async def update(self, alert_id: str, mask: list[str], **fields: Any) -> apb.Alert:
        request = apb.UpdateAlertRequest(
            environment_id=self.env,
            id=alert_id,
            alert=apb.Alert(**fields),
            update_mask=field_mask_pb2.FieldMask(paths=mask),
        )
        return await self.stub.UpdateAlert(request, metadata=self.md, timeout=10)

    async def delete(self, alert_id: str) -> apb.Alert:
        request = apb.DeleteAlertRequest(environment_id=self.env, id=alert_id)
        return await self.stub.DeleteAlert(request, metadata=self.md, timeout=10)

    async def checks(self, alert_id: str) -> apb.ListAlertChecksResponse:
        request = apb.ListAlertChecksRequest(environment_id=self.env, alert_id=alert_id)
        return await self.stub.ListAlertChecks(request, metadata=self.md, timeout=10)

    async def thresholds(self, insight_id: int) -> apb.ListThresholdsResponse:
        request = apb.ListThresholdsRequest(environment_id=self.env, insight_id=insight_id)
        return await self.stub.ListThresholds(request, metadata=self.md, timeout=10)

    async def threshold(self, insight_id: int, threshold_id: str) -> apb.Threshold:
        request = apb.GetThresholdRequest(environment_id=self.env, insight_id=insight_id, id=threshold_id)
        return await self.stub.GetThreshold(request, metadata=self.md, timeout=10)


def two_series_total() -> qpb.QueryNode:
    node = trends_viz()
    source = node.insight_viz_node.source.trends_query
    source.series.add().events_node.event = "signup"
    source.trends_filter.display = qpb.CHART_DISPLAY_TYPE_BOLD_NUMBER
    return node


def bounds(lower: float | None = None, upper: float | None = None, percentage: bool = False) -> apb.Threshold:
    kind = apb.INSIGHT_THRESHOLD_TYPE_PERCENTAGE if percentage else apb.INSIGHT_THRESHOLD_TYPE_ABSOLUTE
    return apb.Threshold(
        configuration=apb.InsightThreshold(
            type=kind, bounds=apb.InsightsThresholdBounds(lower=lower, upper=upper)
        )
    )


async def test_create_get_list_update_delete(owner: Api, alerts: Alerts, tenant: Tenant) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    member, _ = tenant.add_user()
    created = await alerts.create(
        insight.id,
        subscribed_users=[member],
        calculation_interval=apb.ALERT_CALCULATION_INTERVAL_HOURLY,
        schedule_restriction=apb.ScheduleRestriction(
            blocked_windows=[apb.BlockedWindow(start="22:00", end="06:00")]
        ),
        detector_config=apb.DetectorConfig(
            type=apb.DETECTOR_TYPE_ENSEMBLE,
            operator=apb.ENSEMBLE_OPERATOR_OR,
            detectors=[
                apb.DetectorConfig(type=apb.DETECTOR_TYPE_ZSCORE, window=30),
                apb.DetectorConfig(type=apb.DETECTOR_TYPE_MAD),
            ],
        ),
    )
    assert len(created.id) == 36 and created.insight == insight.id
    assert created.state == apb.ALERT_STATE_NOT_FIRING and created.enabled
    assert created.condition.type == apb.ALERT_CONDITION_TYPE_ABSOLUTE_VALUE
    assert created.config.type == "TrendsAlertConfig" and created.config.series_index == 0
    assert created.threshold.configuration.bounds.upper == 100
    assert not created.threshold.configuration.bounds.HasField("lower")
    assert created.created_by.id == tenant.user_id and created.HasField("next_check_at")
    assert list(created.subscribed_users) == [member]
    assert created.detector_config.detectors[0].window == 30
    assert created.schedule_restriction.blocked_windows[0].start == "22:00"

    fetched = await alerts.get(created.id)
    assert fetched.id == created.id and fetched.checks_total == 0 and not fetched.checks
    listed = await alerts.list()
    assert [a.id for a in listed.results] == [created.id] and listed.count == 1
    assert (await alerts.list(insight.id + 1000)).count == 0

    before = created.next_check_at.ToDatetime()
    updated = await alerts.update(
        created.id,
        ["name", "condition", "threshold"],
        name="Renamed",
        condition=apb.AlertCondition(type=apb.ALERT_CONDITION_TYPE_RELATIVE_INCREASE),
        threshold=bounds(upper=0.5, percentage=True),
    )
    assert updated.name == "Renamed"
    assert updated.condition.type == apb.ALERT_CONDITION_TYPE_RELATIVE_INCREASE
    assert updated.threshold.configuration.type == apb.INSIGHT_THRESHOLD_TYPE_PERCENTAGE
    assert updated.threshold.id == created.threshold.id
    assert updated.next_check_at.ToDatetime() >= before
    assert updated.calculation_interval == apb.ALERT_CALCULATION_INTERVAL_HOURLY  # untouched

    disabled = await alerts.update(created.id, ["enabled"], enabled=False)
    assert not disabled.enabled

    deleted = await alerts.delete(created.id)
    assert deleted.id == created.id
    await expect_error(alerts.get(created.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(alerts.delete(created.id), grpc.StatusCode.NOT_FOUND)
    assert (await alerts.list()).count == 0
    # Kept in storage (soft delete), with its activity.
    from sqlalchemy import select

    from storage.models import ActivityLog, AlertConfiguration

    with tenant.db.session() as session:
        assert session.get(AlertConfiguration, created.id).deleted
        verbs = session.scalars(select(ActivityLog.activity).where(ActivityLog.item_id == created.id)).all()
    assert sorted(verbs) == ["created", "deleted", "updated", "updated"]


async def test_thresholds_list_and_get(owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    other = await owner.create(name="Other", query=trends_viz())
    first = await alerts.create(insight.id)
    await alerts.create(other.id)
    listed = await alerts.thresholds(insight.id)
    assert listed.count == 1 and listed.results[0].id == first.threshold.id
    assert [a.id for a in listed.results[0].alerts] == [first.id]
    got = await alerts.threshold(insight.id, first.threshold.id)
    assert got.configuration.bounds.upper == 100 and got.name == "upper"
    await expect_error(alerts.threshold(other.id, first.threshold.id), grpc.StatusCode.NOT_FOUND)
    await expect_error(alerts.thresholds(insight.id + 100000), grpc.StatusCode.NOT_FOUND)


async def test_snooze_and_unsnooze(owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id)
    snoozed = await alerts.update(alert.id, ["snoozed_until"], snoozed_until="2d")
    assert snoozed.state == apb.ALERT_STATE_SNOOZED and snoozed.snoozed_until.endswith("T00:00:00Z")
    woke = await alerts.update(alert.id, ["snoozed_until"], snoozed_until="")
    assert woke.state == apb.ALERT_STATE_NOT_FIRING and woke.snoozed_until == ""
    fetched = await alerts.get(alert.id)
    assert fetched.checks_total == 2
    assert [c.state for c in fetched.checks] == [apb.ALERT_STATE_NOT_FIRING, apb.ALERT_STATE_SNOOZED]
    assert (await alerts.get(alert.id, checks_limit=1)).checks[0].state == apb.ALERT_STATE_NOT_FIRING
    assert (await alerts.checks(alert.id)).count == 2
    err = await expect_error(
        alerts.update(alert.id, ["snoozed_until"], snoozed_until="soon"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "alert.snoozed_until")


async def test_deleting_the_insight_deletes_its_alerts(owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    kept = await owner.create(name="Kept", query=trends_viz())
    gone = await alerts.create(insight.id)
    stays = await alerts.create(kept.id)
    await owner.delete(insight.id)
    await expect_error(alerts.get(gone.id), grpc.StatusCode.NOT_FOUND)
    assert (await alerts.get(stays.id)).id == stays.id
    # Changing the kind to a non-alertable one deletes them too.
    await owner.update(kept.id, ["query"], query=retention_viz())
    await expect_error(alerts.get(stays.id), grpc.StatusCode.NOT_FOUND)


INVALID: list[tuple[str, Any, dict[str, Any]]] = [
    ("alert.threshold.configuration.bounds", trends_viz, {"threshold": bounds(lower=5, upper=1)}),
    ("alert.config.series_index", trends_viz, {"config": apb.TrendsAlertConfig(series_index=1)}),
    (
        "alert.config.check_ongoing_interval",
        trends_viz,
        {"threshold": bounds(lower=1), "config": apb.TrendsAlertConfig(check_ongoing_interval=True)},
    ),
    (
        "alert.config.check_ongoing_interval",
        trends_viz,
        {
            "threshold": bounds(lower=0.1, percentage=True),
            "condition": apb.AlertCondition(type=apb.ALERT_CONDITION_TYPE_RELATIVE_INCREASE),
            "config": apb.TrendsAlertConfig(check_ongoing_interval=True),
        },
    ),
    ("alert.threshold.configuration.type", trends_viz, {"threshold": bounds(upper=0.1, percentage=True)}),
    (
        "alert.condition.type",
        two_series_total,
        {"condition": apb.AlertCondition(type=apb.ALERT_CONDITION_TYPE_RELATIVE_DECREASE)},
    ),
    # The journey kinds are not alertable (as the reference: only trends, funnels and SQL are).
    ("alert.insight", retention_viz, {}),
    ("alert.insight", stickiness_viz, {}),
    ("alert.insight", lifecycle_viz, {}),
    ("alert.insight", paths_viz, {}),
    (
        "alert.schedule_restriction.blocked_windows[0].start",
        trends_viz,
        {
            "schedule_restriction": apb.ScheduleRestriction(
                blocked_windows=[apb.BlockedWindow(start="24:00", end="01:00")]
            )
        },
    ),
    (
        "alert.schedule_restriction.blocked_windows[0].end",
        trends_viz,
        {
            "schedule_restriction": apb.ScheduleRestriction(
                blocked_windows=[apb.BlockedWindow(start="22:00", end="7:00")]
            )
        },
    ),
    (
        "alert.detector_config.window",
        trends_viz,
        {"detector_config": apb.DetectorConfig(type=apb.DETECTOR_TYPE_ZSCORE, window=4)},
    ),
    (
        "alert.detector_config.threshold",
        trends_viz,
        {"detector_config": apb.DetectorConfig(type=apb.DETECTOR_TYPE_MAD, threshold=1.5)},
    ),
    (
        "alert.detector_config.preprocessing.smooth_n",
        trends_viz,
        {
            "detector_config": apb.DetectorConfig(
                type=apb.DETECTOR_TYPE_IQR, preprocessing=apb.DetectorPreprocessing(smooth_n=31)
            )
        },
    ),
    (
        "alert.detector_config.preprocessing.lags_n",
        trends_viz,
        {
            "detector_config": apb.DetectorConfig(
                type=apb.DETECTOR_TYPE_IQR, preprocessing=apb.DetectorPreprocessing(lags_n=11)
            )
        },
    ),
    (
        "alert.detector_config.detectors",
        trends_viz,
        {
            "detector_config": apb.DetectorConfig(
                type=apb.DETECTOR_TYPE_ENSEMBLE, detectors=[apb.DetectorConfig(type=apb.DETECTOR_TYPE_ZSCORE)]
            )
        },
    ),
    ("alert.subscribed_users[0]", trends_viz, {"subscribed_users": [987654321]}),
    ("alert.name", trends_viz, {"name": "x" * 256}),
    (
        "alert.calculation_interval",
        trends_viz,
        {"calculation_interval": apb.ALERT_CALCULATION_INTERVAL_REAL_TIME},
    ),
]


@pytest.mark.parametrize(
    ("field", "query", "fields"), INVALID, ids=[f"{i}-{c[0]}" for i, c in enumerate(INVALID)]
)
async def test_validation(owner: Api, alerts: Alerts, field: str, query: Any, fields: dict[str, Any]) -> None:
    insight = await owner.create(name="Views", query=query())
    err = await expect_error(alerts.create(insight.id, **fields), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field)


async def test_validation_on_update_and_foreign_members(owner: Api, alerts: Alerts, make_tenant: Any) -> None:
    insight = await owner.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id)
    err = await expect_error(
        alerts.update(alert.id, ["config"], config=apb.TrendsAlertConfig(series_index=3)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "alert.config.series_index")
    err = await expect_error(alerts.update(alert.id, ["state"]), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "update_mask")
    stranger = make_tenant()
    err = await expect_error(
        alerts.update(alert.id, ["subscribed_users"], subscribed_users=[stranger.user_id]),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "alert.subscribed_users[0]")
    # A relative condition with an absolute threshold and a lower bound is fine.
    ok = await alerts.update(
        alert.id,
        ["condition", "threshold"],
        condition=apb.AlertCondition(type=apb.ALERT_CONDITION_TYPE_RELATIVE_DECREASE),
        threshold=bounds(lower=3),
    )
    assert ok.threshold.configuration.bounds.lower == 3
    # An insight of another environment cannot get an alert.
    foreign = await owner.as_key(stranger.key("insight:write"), stranger.environment_id).create(
        name="Theirs", query=trends_viz()
    )
    err = await expect_error(alerts.create(foreign.id), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "alert.insight")


RPCS: dict[str, tuple[str, Any]] = {
    "ListThresholds": ("alert:read", lambda env: apb.ListThresholdsRequest(environment_id=env, insight_id=1)),
    "GetThreshold": (
        "alert:read",
        lambda env: apb.GetThresholdRequest(environment_id=env, insight_id=1, id="x"),
    ),
    "CreateAlert": ("alert:write", lambda env: apb.CreateAlertRequest(environment_id=env)),
    "GetAlert": ("alert:read", lambda env: apb.GetAlertRequest(environment_id=env, id="x")),
    "ListAlerts": ("alert:read", lambda env: apb.ListAlertsRequest(environment_id=env)),
    "UpdateAlert": ("alert:write", lambda env: apb.UpdateAlertRequest(environment_id=env, id="x")),
    "DeleteAlert": ("alert:write", lambda env: apb.DeleteAlertRequest(environment_id=env, id="x")),
    "ListAlertChecks": (
        "alert:read",
        lambda env: apb.ListAlertChecksRequest(environment_id=env, alert_id="x"),
    ),
    "CheckAlertNow": (
        "alert:write",
        lambda env: apb.CheckAlertNowRequest(environment_id=env, alert_id="x"),
    ),
}


def test_every_rpc_is_covered() -> None:
    assert set(RPCS) == set(apb.DESCRIPTOR.services_by_name["AlertsService"].methods_by_name)


@pytest.mark.parametrize("method", sorted(RPCS))
async def test_every_rpc_needs_its_scope(method: str, alerts: Alerts, tenant: Tenant) -> None:
    scope, factory = RPCS[method]
    weaker = "insight:write" if scope.endswith(":read") else "alert:read"
    err = await expect_error(
        getattr(alerts.stub, method)(factory(tenant.environment_id), metadata=bearer(tenant.key(weaker))),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert scope in (err.details() or "") and error_info(err).reason == "MISSING_SCOPE"


async def test_an_insight_lists_its_live_alerts_and_sees_alert_writes_at_once(owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="watched", query=trends_viz())
    assert list((await owner.get(insight.id)).alerts) == []  # now held by the hot-read cache
    first = await alerts.create(insight.id, name="first")
    second = await alerts.create(insight.id, name="second")
    shown = (await owner.get(insight.id)).alerts
    assert [(a.id, a.name, a.enabled, a.state) for a in shown] == [
        (first.id, "first", True, "Not firing"),
        (second.id, "second", True, "Not firing"),
    ]
    await alerts.update(first.id, ["enabled"], enabled=False)
    await alerts.delete(second.id)
    shown = (await owner.get(insight.id)).alerts
    assert [(a.id, a.enabled) for a in shown] == [(first.id, False)]
    listed = {i.id: i for i in (await owner.list()).results}
    assert [a.id for a in listed[insight.id].alerts] == [first.id]
    # The basic shape, like the reference's basic serializer, leaves them out.
    basic = {i.id: i for i in (await owner.list(basic=True)).results}
    assert list(basic[insight.id].alerts) == []


async def test_negative_page_bounds_are_refused_naming_the_field(owner: Api, alerts: Alerts) -> None:
    insight = await owner.create(name="paged", query=trends_viz())
    alert = await alerts.create(insight.id)
    listing = alerts.stub.ListAlerts(
        apb.ListAlertsRequest(environment_id=alerts.env, limit=-1), metadata=alerts.md, timeout=10
    )
    assert_invalid(await expect_error(listing, grpc.StatusCode.INVALID_ARGUMENT), "limit")
    err = await expect_error(alerts.get(alert.id, checks_offset=-3), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "checks_offset")
    assert len((await alerts.get(alert.id, checks_limit=0)).checks) == 0
