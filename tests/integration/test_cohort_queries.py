"""Funnels and retention over stored cohorts through the service: a cohort filter on the query or on
one step (entity) computes from the cohort's members (the same compiled membership as trends, whose
oracle test checks it), and a deleted cohort is FAILED_PRECONDITION naming the filter."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest

from generated.insights.v1 import query_pb2 as qpb
from server.queries.common.codec import from_reference_json
from tests.integration.itkit import Server, Tenant, error_info, expect_error
from tests.integration.test_cohort_trends import _cohorts, _in, _run
from tests.integration.test_cohorts import filters, plan_is, seed_people

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _funnel(second: list[dict[str, Any]] | None = None, **fields: Any) -> qpb.QueryNode:
    """Two $pageview steps over 7 days (seed_people: ann 3 views, bob 1, dan 5, a day apart)."""
    steps: list[dict[str, Any]] = [{"kind": "EventsNode", "event": "$pageview"}, {"kind": "EventsNode", "event": "$pageview"}]
    if second is not None:
        steps[1]["properties"] = second
    query = {"kind": "FunnelsQuery", "series": steps, "dateRange": {"date_from": "-7d"}, **fields}
    return qpb.QueryNode(funnels_query=from_reference_json(query, qpb.FunnelsQuery))


def _steps(response: Any) -> list[int]:
    (group,) = response.result.funnels.steps.breakdowns
    return [step.count for step in group.steps]


@sqlite_only
async def test_cohort_filters_narrow_a_funnel_and_a_deleted_cohort_is_named(server: Server, tenant: Tenant) -> None:
    seed_people(server, tenant.environment_id, dt.datetime.now(dt.UTC))
    cohorts = _cohorts(server, tenant)
    pro = await cohorts.create("Pro", filters=filters([plan_is("pro")]))  # ann (and cid, no events)

    # Everyone: ann, bob and dan enter; ann and dan view again.
    assert _steps(await _run(server, tenant, _funnel())) == [3, 2]
    assert _steps(await _run(server, tenant, _funnel(properties=_in(pro.id)))) == [1, 1]
    assert _steps(await _run(server, tenant, _funnel(properties=_in(pro.id, operator="not_in")))) == [2, 1]
    # On the second step only: everyone enters, only ann's second view counts.
    assert _steps(await _run(server, tenant, _funnel(second=_in(pro.id)))) == [3, 1]

    await cohorts.delete(pro.id)
    err = await expect_error(_run(server, tenant, _funnel(second=_in(pro.id))), grpc.StatusCode.FAILED_PRECONDITION)
    info = error_info(err)
    assert info.reason == "COHORT_UNAVAILABLE"
    assert info.metadata["field"] == "query.series[1].properties[0].value" and info.metadata["cohort"] == str(pro.id)


def _retention(**fields: Any) -> qpb.QueryNode:
    """Daily recurring $pageview retention, the default 7 cohorts ending today."""
    query = {
        "kind": "RetentionQuery",
        "retentionFilter": {
            "period": "Day",
            "totalIntervals": 7,
            "targetEntity": {"id": "$pageview", "type": "events"},
            "returningEntity": {"id": "$pageview", "type": "events"},
        },
        **fields,
    }
    return qpb.QueryNode(retention_query=from_reference_json(query, qpb.RetentionQuery))


def _sizes(response: Any) -> list[int]:
    return [cohort.values[0].count for cohort in response.result.retention.cohorts]


@sqlite_only
async def test_cohort_filters_narrow_retention_and_a_deleted_cohort_is_named(server: Server, tenant: Tenant) -> None:
    # Views 1, 2, 3 ... days ago: ann on days -3..-1, bob on -1, dan on -5..-1 (cohorts -6 .. today).
    seed_people(server, tenant.environment_id, dt.datetime.now(dt.UTC))
    cohorts = _cohorts(server, tenant)
    pro = await cohorts.create("Pro", filters=filters([plan_is("pro")]))  # ann (and cid, no events)

    assert _sizes(await _run(server, tenant, _retention())) == [0, 1, 1, 2, 2, 3, 0]
    only_ann = await _run(server, tenant, _retention(properties=_in(pro.id)))
    assert _sizes(only_ann) == [0, 0, 0, 1, 1, 1, 0]
    # Ann's day -3 cohort comes back on the next two days.
    assert [v.count for v in only_ann.result.retention.cohorts[3].values][:3] == [1, 1, 1]
    assert _sizes(await _run(server, tenant, _retention(properties=_in(pro.id, operator="not_in")))) == [0, 1, 1, 1, 1, 2, 0]

    await cohorts.delete(pro.id)
    query = _retention(properties=_in(pro.id))
    err = await expect_error(_run(server, tenant, query), grpc.StatusCode.FAILED_PRECONDITION)
    info = error_info(err)
    assert info.reason == "COHORT_UNAVAILABLE" and info.metadata["field"] == "query.properties[0].value"
