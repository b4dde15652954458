"""Alerts on SQL insights through the real server: the checked column of the rows computed from ingested
events, the check recorded and its webhook delivered, result errors erroring the check, and invalid
configs refused naming the field (both metadata backends, as every integration test)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import query_pb2 as qpb
from server.queries.common.codec import to_reference_json
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, bearer, expect_error, trends_viz
from tests.integration.journeykit import day_event, ingest, noon
from tests.integration.test_alert_checks import Receiver, _row, check_now
from tests.integration.test_alerts import Alerts, bounds

DAILY = "SELECT toDate(timestamp) AS day, count() AS n FROM events GROUP BY day ORDER BY day"
BY_BROWSER = (
    "SELECT properties.$browser AS browser, count() AS n FROM events GROUP BY browser ORDER BY browser"
)


@pytest.fixture
def alerts(server: Server, tenant: Tenant) -> Alerts:
    return Alerts(
        agrpc.AlertsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("alert:write"))
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()
        r.thread.join(timeout=5)


def sql_insight(sql: str, **source: Any) -> qpb.QueryNode:
    """A saved SQL insight: a DataVisualizationNode around the statement."""
    return qpb.QueryNode(
        data_visualization_node=qpb.DataVisualizationNode(source=qpb.HogQLQuery(query=sql, **source))
    )


def day(days_ago: int) -> str:
    return noon(days_ago).date().isoformat()


async def _ingest(server: Server, tenant: Tenant) -> None:
    """By hand: 2 events three days ago, 3 two days ago, 5 yesterday (Chrome 6, Safari 3, none 1)."""
    browsers = iter(["Chrome"] * 6 + ["Safari"] * 3 + [None])
    events = []
    for days_ago, count in ((3, 2), (2, 3), (1, 5)):
        for i in range(count):
            browser = next(browsers)
            props = {"$browser": browser} if browser else {}
            events.append(day_event("$pageview", f"p{days_ago}{i}", days_ago, **props))
    await ingest(server, tenant, events)


async def test_a_sql_alert_fires_on_the_last_row_records_its_check_and_delivers_its_webhook(
    server: Server, api: Api, tenant: Tenant, alerts: Alerts, receiver: Receiver
) -> None:
    await _ingest(server, tenant)
    insight = await api.create(name="Daily views", query=sql_insight(DAILY))
    alert = await alerts.create(insight.id, threshold=bounds(upper=4), webhook_url=receiver.url)
    assert alert.hogql_config.type == "HogQLAlertConfig"
    assert alert.hogql_config.evaluation == apb.HOG_QL_ALERT_EVALUATION_LAST_ROW
    assert not alert.HasField("config") and not alert.HasField("funnels_config")

    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_FIRING, check.error
    assert check.calculated_value == 5.0
    (breach,) = json_format.MessageToDict(check.triggered_metadata)["breaches"]
    assert breach == f"The SQL insight value for {day(1)} (5) is above the upper threshold (4)"
    assert json_format.MessageToDict(check.targets_notified) == {"webhooks": [receiver.url], "failed": []}
    (body,) = receiver.bodies
    assert body["alert_id"] == alert.id and body["insight_id"] == insight.id and body["value"] == 5
    assert body["state"] == "Firing" and body["breaches"] == [breach]
    fetched = await alerts.get(alert.id)
    assert fetched.state == apb.ALERT_STATE_FIRING and fetched.last_value == 5.0
    assert fetched.checks_total == 1 and fetched.checks[0].id == check.id

    # Equal to the bound does not breach.
    await alerts.update(alert.id, ["threshold"], threshold=bounds(upper=5))
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_NOT_FIRING and check.calculated_value == 5.0


async def test_first_row_and_a_relative_condition_on_a_bare_hogql_query(
    server: Server, api: Api, tenant: Tenant, alerts: Alerts
) -> None:
    await _ingest(server, tenant)
    newest_first = DAILY.replace("ORDER BY day", "ORDER BY day DESC")
    insight = await api.create(name="Daily", query=qpb.QueryNode(hogql_query=qpb.HogQLQuery(query=newest_first)))
    alert = await alerts.create(
        insight.id,
        condition=apb.AlertCondition(type=apb.ALERT_CONDITION_TYPE_RELATIVE_INCREASE),
        threshold=bounds(upper=0.5, percentage=True),
        hogql_config=apb.HogQLAlertConfig(evaluation=apb.HOG_QL_ALERT_EVALUATION_FIRST_ROW, column="n"),
    )
    check = await check_now(alerts, alert.id)
    # From 3 to 5: up by two thirds, above 50 %.
    assert check.state == apb.ALERT_STATE_FIRING, check.error
    assert check.calculated_value == pytest.approx(2 / 3)
    (breach,) = json_format.MessageToDict(check.triggered_metadata)["breaches"]
    assert breach == (
        f"The SQL insight value for {day(1)} increased by 66.7% (from 3 to 5), "
        "which is above the upper threshold (50.0%)"
    )


async def test_any_row_fires_for_each_breaching_row_named_by_its_label(
    server: Server, api: Api, tenant: Tenant, alerts: Alerts
) -> None:
    await _ingest(server, tenant)
    insight = await api.create(name="By browser", query=sql_insight(BY_BROWSER))
    config = apb.HogQLAlertConfig(evaluation=apb.HOG_QL_ALERT_EVALUATION_ANY_ROW, label_column="browser")
    alert = await alerts.create(insight.id, threshold=bounds(lower=2), hogql_config=config)
    check = await check_now(alerts, alert.id)
    # Rows by browser: Chrome 6, Safari 3, and the event without one (NULL, sorted last) 1.
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 1.0
    metadata = json_format.MessageToDict(check.triggered_metadata)
    assert metadata["breaches"] == ["The SQL insight value for row 3 (1) is below the lower threshold (2)"]
    assert metadata["triggered_breakdown_values"] == ["row 3"]
    await alerts.update(alert.id, ["threshold"], threshold=bounds(lower=4))
    check = await check_now(alerts, alert.id)
    assert json_format.MessageToDict(check.triggered_metadata)["triggered_breakdown_values"] == ["Safari", "row 3"]

    # The config as protobuf JSON, and as the reference stores it.
    rendered = json.loads(json_format.MessageToJson(alert))
    assert rendered["hogql_config"] == {
        "type": "HogQLAlertConfig",
        "evaluation": "HOG_QL_ALERT_EVALUATION_ANY_ROW",
        "label_column": "browser",
    }
    reference = {"type": "HogQLAlertConfig", "evaluation": "any_row", "column": None, "label_column": "browser"}
    assert _row(server, alert.id).config == reference
    assert to_reference_json(alert.hogql_config) == {k: v for k, v in reference.items() if v is not None}


async def test_a_detector_scores_the_ordered_column(server: Server, api: Api, tenant: Tenant, alerts: Alerts) -> None:
    await _ingest(server, tenant)
    insight = await api.create(name="Daily", query=sql_insight(DAILY))
    detector = apb.DetectorConfig(type=apb.DETECTOR_TYPE_THRESHOLD, upper_bound=2.5)
    alert = await alerts.create(insight.id, detector_config=detector)
    check = await check_now(alerts, alert.id)
    # 2, 3, 5 by day: the last two are above 2.5, and the last row (the checked one) fires.
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 5.0
    assert list(check.triggered_points) == [1, 2] and list(check.triggered_dates) == [day(2), day(1)]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (apb.HogQLAlertConfig(column="nosuch"), "hogql_config.column: the result has no column 'nosuch'"),
        (apb.HogQLAlertConfig(column="day"), "hogql_config.column: column 'day' is Date, not a number"),
    ],
)
async def test_a_column_the_rows_cannot_give_errors_the_check_and_the_alert_stays_enabled(
    server: Server, api: Api, tenant: Tenant, alerts: Alerts, config: apb.HogQLAlertConfig, message: str
) -> None:
    await _ingest(server, tenant)
    insight = await api.create(name="Daily", query=sql_insight(DAILY))
    # Unknown before the statement runs: saved, then the check errors.
    alert = await alerts.create(insight.id, threshold=bounds(upper=4), hogql_config=config)
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_ERRORED and not check.HasField("calculated_value")
    assert check.error["reason"] == "query_error" and message in check.error["message"]
    fetched = await alerts.get(alert.id)
    assert fetched.state == apb.ALERT_STATE_ERRORED and fetched.enabled
    # Pointed at the right column, the next check fires.
    await alerts.update(alert.id, ["hogql_config"], hogql_config=apb.HogQLAlertConfig(column="n"))
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 5.0


async def test_an_insight_changed_to_explain_disables_its_alert(api: Api, alerts: Alerts) -> None:
    insight = await api.create(name="Daily", query=sql_insight(DAILY))
    alert = await alerts.create(insight.id)
    await api.update(insight.id, ["query"], query=sql_insight(DAILY, explain=True))
    check = await check_now(alerts, alert.id)
    assert check.state == apb.ALERT_STATE_ERRORED and check.error["reason"] == "invalid_config"
    assert list(check.error["fields"]) == ["insight"] and "explain" in str(check.error["message"])
    fetched = await alerts.get(alert.id)
    assert not fetched.enabled and fetched.state == apb.ALERT_STATE_ERRORED


ANY_ROW = apb.HogQLAlertConfig(evaluation=apb.HOG_QL_ALERT_EVALUATION_ANY_ROW)
SQL_INVALID: list[tuple[str, Any, dict[str, Any]]] = [
    ("alert.insight", lambda: sql_insight(DAILY, explain=True), {}),
    (
        "alert.condition.type",
        lambda: sql_insight(DAILY),
        {"hogql_config": ANY_ROW, "condition": apb.AlertCondition(type=apb.ALERT_CONDITION_TYPE_RELATIVE_DECREASE)},
    ),
    (
        "alert.detector_config",
        lambda: sql_insight(DAILY),
        {"hogql_config": ANY_ROW, "detector_config": apb.DetectorConfig(type=apb.DETECTOR_TYPE_ZSCORE)},
    ),
    ("alert.hogql_config.column", lambda: sql_insight(DAILY), {"hogql_config": apb.HogQLAlertConfig(column="")}),
    # An evaluation the contract does not define is refused at the edge, never read as last_row.
    ("alert.hogql_config.evaluation", lambda: sql_insight(DAILY), {"hogql_config": apb.HogQLAlertConfig(evaluation=9)}),  # type: ignore[arg-type]
    ("alert.config", lambda: sql_insight(DAILY), {"config": apb.TrendsAlertConfig(series_index=0)}),
    ("alert.hogql_config", trends_viz, {"hogql_config": apb.HogQLAlertConfig()}),
    ("alert.threshold.configuration.type", lambda: sql_insight(DAILY), {"threshold": bounds(upper=1, percentage=True)}),
]


@pytest.mark.parametrize(("field", "query", "fields"), SQL_INVALID, ids=[f"{i}-{c[0]}" for i, c in enumerate(SQL_INVALID)])
async def test_invalid_sql_alerts_are_refused_naming_the_field(
    api: Api, alerts: Alerts, field: str, query: Any, fields: dict[str, Any]
) -> None:
    insight = await api.create(name="SQL", query=query())
    err = await expect_error(alerts.create(insight.id, **fields), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field)
    assert (await alerts.list(insight.id)).count == 0


async def test_an_update_that_breaks_the_config_is_refused(api: Api, alerts: Alerts) -> None:
    insight = await api.create(name="SQL", query=sql_insight(BY_BROWSER))
    alert = await alerts.create(insight.id, hogql_config=ANY_ROW)
    err = await expect_error(
        alerts.update(
            alert.id, ["condition"], condition=apb.AlertCondition(type=apb.ALERT_CONDITION_TYPE_RELATIVE_INCREASE)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert_invalid(err, "alert.condition.type", mentions="any_row")
    assert (await alerts.get(alert.id)).condition.type == apb.ALERT_CONDITION_TYPE_ABSOLUTE_VALUE
