"""Alerts on funnel insights through the real server: the value checked (a step's conversion rate or
count, per breakdown value) computed from ingested events, the refusals naming the field, and the
new config as protobuf JSON and reference JSON."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import events_pb2 as epb
from generated.insights.v1 import events_pb2_grpc as egrpc
from generated.insights.v1 import query_pb2 as qpb
from server.queries.common.codec import to_reference_json
from tests.integration.itkit import (
    Api,
    Server,
    Tenant,
    assert_invalid,
    bearer,
    error_info,
    expect_error,
    trends_viz,
    viz,
)
from tests.integration.test_alert_checks import _row, check_now
from tests.integration.test_alerts import Alerts, bounds

_YESTERDAY_NOON = dt.datetime.combine(
    dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1), dt.time(12), tzinfo=dt.UTC
)


@pytest.fixture
def alerts(server: Server, tenant: Tenant) -> Alerts:
    return Alerts(
        agrpc.AlertsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("alert:write"))
    )


def _event(name: str, person: str, minute: int, **props: object) -> epb.Event:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(_YESTERDAY_NOON + dt.timedelta(minutes=minute))
    return epb.Event(event=name, distinct_id=person, timestamp=stamp, properties=json.dumps(props))


async def _ingest(server: Server, tenant: Tenant) -> None:
    """Four people view; a and b sign up; b buys. Chrome: a, b; Safari: c, d.

    By hand: steps $pageview → signup → purchase count 4, 2, 1; the last step converts 25 % from the
    start and 50 % from the previous step. Two steps broken down by $browser: Chrome 2 of 2 (100 %),
    Safari 0 of 2 (0 %).
    """
    events = [
        _event("$pageview", "a", 0, **{"$browser": "Chrome"}),
        _event("signup", "a", 10),
        _event("$pageview", "b", 0, **{"$browser": "Chrome"}),
        _event("signup", "b", 20),
        _event("purchase", "b", 30),
        _event("$pageview", "c", 0, **{"$browser": "Safari"}),
        _event("$pageview", "d", 0, **{"$browser": "Safari"}),
        # Before the first step: never counts.
        _event("purchase", "c", -5),
    ]
    stub = egrpc.EventsServiceStub(server.channel)
    response = await stub.IngestEvents(
        iter([epb.IngestEventsRequest(environment_id=tenant.environment_id, events=events)]),
        metadata=bearer(tenant.key("event:write")),
        timeout=30,
    )
    assert response.accepted == len(events)


def funnel(*events: str, **fields: Any) -> qpb.QueryNode:
    steps = [qpb.SeriesNode(events_node=qpb.EventsNode(event=e)) for e in events or ("$pageview", "signup")]
    query = qpb.FunnelsQuery(series=steps, **fields)
    query.date_range.date_from = "-7d"
    return viz(qpb.InsightSource(funnels_query=query))


def by_browser() -> qpb.BreakdownFilter:
    return qpb.BreakdownFilter(breakdown=qpb.BreakdownKey(string_value="$browser"))


async def test_the_last_steps_conversion_rate_fires_below_the_bound_and_not_at_it(
    server: Server, api: Api, tenant: Tenant, alerts: Alerts
) -> None:
    await _ingest(server, tenant)
    insight = await api.create(name="Checkout", query=funnel("$pageview", "signup", "purchase"))
    alert = await alerts.create(insight.id, threshold=bounds(lower=30))
    assert alert.funnels_config.type == "FunnelsAlertConfig"
    assert alert.funnels_config.metric == apb.FUNNEL_ALERT_METRIC_CONVERSION_FROM_START
    assert not alert.funnels_config.HasField("funnel_step") and not alert.HasField("config")

    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_FIRING, check.error
    assert check.calculated_value == 25.0
    (breach,) = json_format.MessageToDict(check.triggered_metadata)["breaches"]
    assert breach == "The funnel conversion rate (25%) is below the lower threshold (30%)"
    fetched = await alerts.get(alert.id)
    assert fetched.state == apb.ALERT_STATE_FIRING and fetched.last_value == 25.0

    # Equal to the bound does not breach.
    await alerts.update(alert.id, ["threshold"], threshold=bounds(lower=25))
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_NOT_FIRING and check.calculated_value == 25.0


async def test_a_chosen_steps_count_or_rate_from_the_previous_step(
    server: Server, api: Api, tenant: Tenant, alerts: Alerts
) -> None:
    await _ingest(server, tenant)
    insight = await api.create(name="Checkout", query=funnel("$pageview", "signup", "purchase"))
    previous = await alerts.create(
        insight.id,
        threshold=bounds(upper=40),
        funnels_config=apb.FunnelsAlertConfig(metric=apb.FUNNEL_ALERT_METRIC_CONVERSION_FROM_PREVIOUS),
    )
    check = await check_now(alerts, previous.id)
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 50.0

    count = await alerts.create(
        insight.id,
        threshold=bounds(upper=2),
        funnels_config=apb.FunnelsAlertConfig(metric=apb.FUNNEL_ALERT_METRIC_STEP_COUNT, funnel_step=1),
    )
    check = await check_now(alerts, count.id)
    assert check.state == apb.ALERT_STATE_NOT_FIRING and check.calculated_value == 2.0
    await alerts.update(count.id, ["threshold"], threshold=bounds(upper=1))
    check = await check_now(alerts, count.id)
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 2.0
    (breach,) = json_format.MessageToDict(check.triggered_metadata)["breaches"]
    assert breach == "The funnel step count (2) is above the upper threshold (1)"

    # The first step from the start: everyone who entered.
    start = await alerts.create(
        insight.id,
        threshold=bounds(lower=100),
        funnels_config=apb.FunnelsAlertConfig(funnel_step=0),
    )
    check = await check_now(alerts, start.id)
    assert check.state == apb.ALERT_STATE_NOT_FIRING and check.calculated_value == 100.0


async def test_any_breakdown_value_breaching_fires(
    server: Server, api: Api, tenant: Tenant, alerts: Alerts
) -> None:
    await _ingest(server, tenant)
    insight = await api.create(name="By browser", query=funnel(breakdown_filter=by_browser()))
    alert = await alerts.create(insight.id, threshold=bounds(lower=50))
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 0.0
    metadata = json_format.MessageToDict(check.triggered_metadata)
    assert metadata["triggered_breakdown_values"] == [["Safari"]]
    assert metadata["breaches"] == [
        "The funnel conversion rate for Safari (0%) is below the lower threshold (50%)"
    ]
    # Both values inside the bounds: not firing, and no single value to record.
    await alerts.update(alert.id, ["threshold"], threshold=bounds(lower=0, upper=100))
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_NOT_FIRING and not check.HasField("calculated_value")


FUNNEL_INVALID: list[tuple[str, Any, dict[str, Any]]] = [
    ("alert.funnels_config.funnel_step", funnel, {"funnels_config": apb.FunnelsAlertConfig(funnel_step=2)}),
    ("alert.funnels_config.funnel_step", funnel, {"funnels_config": apb.FunnelsAlertConfig(funnel_step=-1)}),
    (
        "alert.funnels_config.funnel_step",
        funnel,
        {
            "funnels_config": apb.FunnelsAlertConfig(
                metric=apb.FUNNEL_ALERT_METRIC_CONVERSION_FROM_PREVIOUS, funnel_step=0
            )
        },
    ),
    (
        "alert.condition.type",
        funnel,
        {
            "condition": apb.AlertCondition(type=apb.ALERT_CONDITION_TYPE_RELATIVE_DECREASE),
            "threshold": bounds(upper=0.1, percentage=True),
        },
    ),
    ("alert.detector_config", funnel, {"detector_config": apb.DetectorConfig(type=apb.DETECTOR_TYPE_ZSCORE)}),
    ("alert.config", funnel, {"config": apb.TrendsAlertConfig(series_index=0)}),
    ("alert.funnels_config", trends_viz, {"funnels_config": apb.FunnelsAlertConfig()}),
    (
        "alert.insight",
        lambda: funnel(funnels_filter=qpb.FunnelsFilter(funnel_viz_type=qpb.FUNNEL_VIZ_TYPE_TIME_TO_CONVERT)),
        {},
    ),
]


@pytest.mark.parametrize(
    ("field", "query", "fields"), FUNNEL_INVALID, ids=[f"{i}-{c[0]}" for i, c in enumerate(FUNNEL_INVALID)]
)
async def test_invalid_funnel_alerts_are_refused_naming_the_field(
    api: Api, alerts: Alerts, field: str, query: Any, fields: dict[str, Any]
) -> None:
    insight = await api.create(name="Funnel", query=query())
    err = await expect_error(alerts.create(insight.id, **fields), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field)
    assert (await alerts.list(insight.id)).count == 0


async def test_a_step_beyond_the_funnel_is_refused_on_update(api: Api, alerts: Alerts) -> None:
    insight = await api.create(name="Funnel", query=funnel("$pageview", "signup", "purchase"))
    alert = await alerts.create(insight.id, funnels_config=apb.FunnelsAlertConfig(funnel_step=2))
    err = await expect_error(
        alerts.update(alert.id, ["funnels_config"], funnels_config=apb.FunnelsAlertConfig(funnel_step=3)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "alert.funnels_config.funnel_step", mentions="the funnel has 3 steps")
    assert (await alerts.get(alert.id)).funnels_config.funnel_step == 2
    # Clearing it in the mask means the last step.
    updated = await alerts.update(alert.id, ["funnels_config"])
    assert not updated.funnels_config.HasField("funnel_step")


async def test_the_trends_visualisation_of_funnels_is_not_implemented(api: Api, alerts: Alerts) -> None:
    query = funnel(funnels_filter=qpb.FunnelsFilter(funnel_viz_type=qpb.FUNNEL_VIZ_TYPE_TRENDS))
    insight = await api.create(name="Conversion over time", query=query)
    err = await expect_error(alerts.create(insight.id), grpc.StatusCode.UNIMPLEMENTED)
    assert "alert.insight" in (err.details() or "")
    assert error_info(err).metadata["field"] == "alert.insight"


async def test_a_funnel_that_loses_the_checked_step_errors_the_alert(
    server: Server, api: Api, tenant: Tenant, alerts: Alerts
) -> None:
    await _ingest(server, tenant)
    insight = await api.create(name="Checkout", query=funnel("$pageview", "signup", "purchase"))
    alert = await alerts.create(insight.id, funnels_config=apb.FunnelsAlertConfig(funnel_step=2))
    await api.update(insight.id, ["query"], query=funnel("$pageview", "signup"))
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_ERRORED
    assert check.error["reason"] == "invalid_config"
    assert list(check.error["fields"]) == ["funnels_config.funnel_step"]
    assert "funnel_step 2 is out of range" in check.error["message"]
    fetched = await alerts.get(alert.id)
    assert not fetched.enabled and fetched.state == apb.ALERT_STATE_ERRORED


async def test_a_trends_alert_whose_insight_becomes_a_funnel_errors(api: Api, alerts: Alerts) -> None:
    insight = await api.create(name="Views", query=trends_viz())
    alert = await alerts.create(insight.id)
    # Still alertable, so the alert stays; its trends config no longer fits.
    await api.update(insight.id, ["query"], query=funnel())
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_ERRORED and list(check.error["fields"]) == ["funnels_config"]
    # Moving the alert over: the funnel's config in, the trends one out.
    await alerts.update(alert.id, ["config", "funnels_config", "enabled"], enabled=True)
    fixed = await alerts.get(alert.id)
    assert fixed.funnels_config.type == "FunnelsAlertConfig" and not fixed.HasField("config")


async def test_the_funnel_config_as_protobuf_json_and_reference_json(
    server: Server, api: Api, alerts: Alerts
) -> None:
    insight = await api.create(name="Checkout", query=funnel("$pageview", "signup", "purchase"))
    alert = await alerts.create(
        insight.id,
        funnels_config=apb.FunnelsAlertConfig(metric=apb.FUNNEL_ALERT_METRIC_STEP_COUNT, funnel_step=1),
    )
    rendered = json.loads(json_format.MessageToJson(alert))
    assert rendered["funnels_config"] == {
        "type": "FunnelsAlertConfig",
        "metric": "FUNNEL_ALERT_METRIC_STEP_COUNT",
        "funnel_step": 1,
    }
    assert "config" not in rendered
    # The reference's JSON of the config (what it stores, and what the alert's row holds).
    reference = to_reference_json(alert.funnels_config)
    assert reference == {"type": "FunnelsAlertConfig", "metric": "step_count", "funnel_step": 1}
    assert _row(server, alert.id).config == reference
    listed = (await alerts.list(insight.id)).results[0]
    assert listed.funnels_config == alert.funnels_config
