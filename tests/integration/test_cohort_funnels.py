"""Funnels broken down by stored cohorts through the service: one step list per cohort named by the
cohort (its id the value), rendered by the protobuf JSON printer and the reference codec; the
trends view; a deleted cohort FAILED_PRECONDITION naming the field; a funnel alert per cohort."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from generated.insights.v1 import alerts_pb2 as apb
from generated.insights.v1 import alerts_pb2_grpc as agrpc
from generated.insights.v1 import cohorts_pb2_grpc as cgrpc
from generated.insights.v1 import query_pb2 as qpb
from server.queries.common.codec import from_reference_json, to_reference_json
from storage.events import EventRow
from tests.integration.itkit import Api, Server, Tenant, bearer, error_info, expect_error, viz
from tests.integration.test_alert_checks import check_now
from tests.integration.test_alerts import Alerts, bounds
from tests.integration.test_cohorts import Cohorts, filters, plan_is, seed_people
from tests.integration.test_funnels_api import _run

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _seed(server: Server, tenant: Tenant) -> None:
    """seed_people (ann pro: 3 pageviews, bob free: 1, cid pro: none, dan: 5, over the last 5 days)
    and signups: ann one hour after her first pageview, dan after his last."""
    now = dt.datetime.now(dt.UTC)
    ids = seed_people(server, tenant.environment_id, now)
    signups = {"ann": now - dt.timedelta(days=3) + dt.timedelta(hours=1), "dan": now - dt.timedelta(days=1, minutes=-10)}
    server.app.events.insert_events(
        EventRow(tenant.environment_id, uuid.uuid4(), "signup", f"{name}-device", ids[name], at, "{}", "{}")
        for name, at in signups.items()
    )


def _funnel(**fields: Any) -> qpb.FunnelsQuery:
    query = {
        "kind": "FunnelsQuery",
        "series": [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "signup"}],
        "dateRange": {"date_from": "-7d"},
    }
    return from_reference_json({**query, **fields}, qpb.FunnelsQuery)


def _cohorts(server: Server, tenant: Tenant) -> Cohorts:
    return Cohorts(cgrpc.CohortsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("cohort:write")))


@sqlite_only
async def test_a_funnel_broken_down_by_cohorts_names_them_renders_and_refuses_a_deleted_one(
    server: Server, tenant: Tenant
) -> None:
    _seed(server, tenant)
    pro = await _cohorts(server, tenant).create("Pro", filters=filters([plan_is("pro")]))  # ann, cid
    by_cohort = _funnel(breakdownFilter={"breakdown_type": "cohort", "breakdown": [pro.id, "all"]})

    answer = await _run(server, tenant, by_cohort)
    # All users: ann, bob, dan entered, ann and dan signed up; Pro: ann (cid has no events).
    assert [
        ([s.count for s in group.steps], group.steps[0].breakdown.string_value, group.steps[0].breakdown_value.int_value)
        for group in answer.result.funnels.steps.breakdowns
    ] == [([3, 2], "all users", 0), ([1, 1], "Pro", pro.id)]
    assert answer.result.funnels.steps.breakdowns[1].steps[1].average_conversion_time == 3600.0
    # What grpcurl prints (protobuf JSON: int64 as a string) and the reference's JSON (the name
    # shown, the id a bare number), of the same answer.
    printed = json_format.MessageToDict(answer)["result"]["funnels"]["steps"]["results"]
    assert [(g["steps"][0]["breakdown"], g["steps"][0]["breakdown_value"]) for g in printed] == [
        ({"string_value": "all users"}, {"int_value": "0"}),
        ({"string_value": "Pro"}, {"int_value": str(pro.id)}),
    ]
    reference = to_reference_json(answer.result.funnels)
    assert isinstance(reference, dict)
    groups = [g["steps"] for g in reference["steps"]["results"]]
    assert [(g[0]["breakdown"], g[0]["breakdown_value"], g[1]["count"]) for g in groups] == [
        ("all users", 0, 2),
        ("Pro", pro.id, 1),
    ]

    # The trends view: one series per cohort named by it.
    trends = _funnel(
        breakdownFilter={"breakdown_type": "cohort", "breakdown": [pro.id]}, funnelsFilter={"funnelVizType": "trends"}
    )
    (series,) = (await _run(server, tenant, trends)).result.funnels.trends.series
    assert series.breakdown_value.string_value == "Pro" and sum(series.reached_to_step_count) == 1

    await _cohorts(server, tenant).delete(pro.id)
    err = await expect_error(_run(server, tenant, by_cohort), grpc.StatusCode.FAILED_PRECONDITION)
    info = error_info(err)
    assert info.reason == "COHORT_UNAVAILABLE" and info.metadata["cohort"] == str(pro.id)
    assert info.metadata["field"] == "query.breakdownFilter.breakdown[0]"


@sqlite_only
async def test_a_funnel_alert_checks_each_cohort_and_names_the_breaching_one(
    server: Server, tenant: Tenant, api: Api
) -> None:
    _seed(server, tenant)
    cohorts = _cohorts(server, tenant)
    free = await cohorts.create("Free", filters=filters([plan_is("free")]))  # bob: entered, no signup
    insight = await api.create(
        name="Signup by cohort",
        query=viz(qpb.InsightSource(funnels_query=_funnel(breakdownFilter={"breakdown_type": "cohort", "breakdown": [free.id, "all"]}))),
    )
    alerts = Alerts(agrpc.AlertsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("alert:write")))
    alert = await alerts.create(insight.id, threshold=bounds(lower=50))
    check = await check_now(alerts, alert.id)
    # All users convert 2 of 3 (66.67 %), Free 0 of 1.
    assert check.state == apb.ALERT_STATE_FIRING and check.calculated_value == 0.0
    metadata = json_format.MessageToDict(check.triggered_metadata)
    assert metadata["breaches"] == ["The funnel conversion rate for Free (0%) is below the lower threshold (50%)"]
    assert metadata["triggered_breakdown_values"] == [free.id]
