"""Trends over stored cohorts through the service: cohort filters (in, not_in, negation) and cohort
breakdowns compute from the cohort as stored when the query runs, an edited cohort computes anew,
a deleted one is FAILED_PRECONDITION naming the field, and the answer renders as both JSONs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from generated.insights.v1 import cohorts_pb2_grpc as cgrpc
from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import query_pb2 as qpb
from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from server.queries.common.codec import from_reference_json, to_reference_json
from storage.models import Environment
from tests.integration.actionkit import ActionsApi, step
from tests.integration.itkit import Server, Tenant, bearer, error_info, expect_error
from tests.integration.test_cohorts import Cohorts, filters, plan_is, seed_people

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _trend(**fields: Any) -> qpb.QueryNode:
    """A 7-day daily trend of $pageview (seed_people: ann 3, bob 1, dan 5 in the last 5 days)."""
    query = {
        "kind": "TrendsQuery",
        "series": [{"kind": "EventsNode", "event": "$pageview"}],
        "dateRange": {"date_from": "-7d"},
    }
    return qpb.QueryNode(trends_query=from_reference_json({**query, **fields}, qpb.TrendsQuery))


async def _run(
    server: Server, tenant: Tenant, query: qpb.QueryNode, refresh: int = cpb.REFRESH_MODE_BLOCKING
) -> qs.QueryResponse:
    stub = qs_grpc.QueryServiceStub(server.channel)
    request = qs.RunQueryRequest(environment_id=tenant.environment_id, query=query, refresh=refresh)  # type: ignore[arg-type]
    return await stub.RunQuery(request, metadata=bearer(tenant.key("query:read")), timeout=60)  # type: ignore[no-any-return]


def _counts(response: qs.QueryResponse) -> list[tuple[str, float]]:
    return [(line.label, line.count) for line in response.result.trends.series]


def _cohorts(server: Server, tenant: Tenant) -> Cohorts:
    return Cohorts(
        cgrpc.CohortsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key("cohort:write"))
    )


def _in(cohort_id: int, **more: Any) -> list[dict[str, Any]]:
    return [{"type": "cohort", "key": "id", "value": cohort_id, **more}]


@sqlite_only
async def test_cohort_filters_and_breakdowns_compute_and_follow_edits_and_deletes(
    server: Server, tenant: Tenant
) -> None:
    seed_people(server, tenant.environment_id, dt.datetime.now(dt.UTC))
    cohorts = _cohorts(server, tenant)
    pro = await cohorts.create("Pro", filters=filters([plan_is("pro")]))  # ann (3 views) and cid (none)

    assert _counts(await _run(server, tenant, _trend())) == [("$pageview", 9)]
    assert _counts(await _run(server, tenant, _trend(properties=_in(pro.id)))) == [("$pageview", 3)]
    for outside in (
        _in(pro.id, operator="not_in"),
        _in(pro.id, negation=True),
        _in(pro.id, operator="not_in", negation=True),
    ):
        assert _counts(await _run(server, tenant, _trend(properties=outside))) == [("$pageview", 6)]
    # A series' own filter, inside a property group.
    grouped = {"type": "AND", "values": [{"type": "OR", "values": _in(pro.id)}]}
    series = [{"kind": "EventsNode", "event": "$pageview", "properties": _in(pro.id, operator="not_in")}]
    assert _counts(await _run(server, tenant, _trend(series=series, properties=grouped))) == [
        ("$pageview", 0)
    ]

    # One line per cohort listed, in that order: the cohort's name and id, "all users" for "all".
    by_cohort = _trend(breakdownFilter={"breakdown_type": "cohort", "breakdown": [pro.id, "all"]})
    answer = await _run(server, tenant, by_cohort)
    assert _counts(answer) == [("Pro", 3), ("all users", 9)]
    pro_line, all_line = answer.result.trends.series
    assert pro_line.breakdown_value.int_value == pro.id and all_line.breakdown_value.string_value == "all"
    # The codec's JSON (an id is a bare number, as the reference's) and protobuf JSON (what grpcurl
    # prints: int64 as a string) of the same answer.
    reference = to_reference_json(answer.result.trends)
    assert isinstance(reference, dict)
    assert [(s["label"], s["breakdownValue"]) for s in reference["series"]] == [
        ("Pro", pro.id),
        ("all users", "all"),
    ]
    printed = json_format.MessageToDict(answer)["result"]["trends"]["series"]
    assert [s["breakdownValue"] for s in printed] == [{"int_value": str(pro.id)}, {"string_value": "all"}]
    assert (await _run(server, tenant, by_cohort)).is_cached

    # An edit (and a rename) computes anew with the new definition and name.
    await cohorts.update(pro.id, ["filters", "name"], name="Free", filters=filters([plan_is("free")]))
    edited = await _run(server, tenant, by_cohort)
    assert not edited.is_cached and _counts(edited) == [("Free", 1), ("all users", 9)]
    assert _counts(await _run(server, tenant, _trend(properties=_in(pro.id)))) == [("$pageview", 1)]

    # Deleted: refused, naming the field that names it (a filter, a breakdown item); restored: back.
    await cohorts.delete(pro.id)
    for query, field in (
        (_trend(properties=_in(pro.id)), "query.properties[0].value"),
        (by_cohort, "query.breakdownFilter.breakdown[0]"),
        (_trend(series=series), "query.series[0].properties[0].value"),
    ):
        err = await expect_error(_run(server, tenant, query), grpc.StatusCode.FAILED_PRECONDITION)
        info = error_info(err)
        assert info.reason == "COHORT_UNAVAILABLE" and f"cohort {pro.id}" in (err.details() or "")
        assert info.metadata["field"] == field and info.metadata["cohort"] == str(pro.id)
    await cohorts.update(pro.id, ["deleted"], deleted=False)
    assert _counts(await _run(server, tenant, _trend(properties=_in(pro.id)))) == [("$pageview", 1)]


@sqlite_only
async def test_a_cohort_counting_an_action_computes_and_follows_the_actions_edits(
    server: Server, tenant: Tenant
) -> None:
    seed_people(server, tenant.environment_id, dt.datetime.now(dt.UTC))
    actions = ActionsApi.of(server, tenant, "action:write")
    viewed = await actions.create(name="Viewed", steps=[step(event="$pageview")])
    cohorts = _cohorts(server, tenant)
    criterion = {"behavioral": {"action_id": viewed.id, "count": 3, "time_value": 30}}
    regulars = await cohorts.create("Regulars", filters=filters([criterion]))  # ann (3) and dan (5)
    query = _trend(properties=_in(regulars.id))
    assert _counts(await _run(server, tenant, query)) == [("$pageview", 8)]
    listed = await cohorts.persons(regulars.id)
    assert listed.count == 2  # ListCohortPersons computes the action criterion too

    # The action is read with the cohort: a step no event matches empties the cohort.
    await actions.update(viewed.id, ["steps"], steps=[step(event="signup")])
    edited = await _run(server, tenant, query)
    assert not edited.is_cached and _counts(edited) == [("$pageview", 0)]

    await actions.delete(viewed.id)
    err = await expect_error(_run(server, tenant, query), grpc.StatusCode.FAILED_PRECONDITION)
    info = error_info(err)
    assert info.reason == "ACTION_UNAVAILABLE" and info.metadata["action"] == str(viewed.id)
    assert info.metadata["field"] == "query.properties[0].value" and info.metadata["cohort"] == str(
        regulars.id
    )


@sqlite_only
async def test_malformed_cohort_filters_and_breakdowns_are_invalid_argument_naming_the_field(
    server: Server, tenant: Tenant
) -> None:
    for fields, field in (
        ({"properties": _in(0)}, "query.properties[0].value"),
        ({"properties": _in(3, operator="icontains")}, "query.properties[0].operator"),
        ({"properties": [{"type": "cohort", "key": "name", "value": 3}]}, "query.properties[0].key"),
        (
            {"properties": [{"type": "event", "key": "plan", "value": "pro", "negation": True}]},
            "query.properties[0].negation",
        ),
        (
            {"breakdownFilter": {"breakdown_type": "cohort", "breakdown": []}},
            "query.breakdownFilter.breakdown",
        ),
        (
            {"breakdownFilter": {"breakdown_type": "cohort", "breakdown": [3, "x"]}},
            "query.breakdownFilter.breakdown[1]",
        ),
        (
            {"breakdownFilter": {"breakdown_type": "cohort", "breakdown": [3, 3]}},
            "query.breakdownFilter.breakdown[1]",
        ),
    ):
        err = await expect_error(_run(server, tenant, _trend(**fields)), grpc.StatusCode.INVALID_ARGUMENT)
        assert field in (err.details() or ""), (fields, err.details())


@sqlite_only
async def test_a_cohort_in_the_environments_test_account_filters_applies_when_the_query_asks(
    server: Server, tenant: Tenant
) -> None:
    seed_people(server, tenant.environment_id, dt.datetime.now(dt.UTC))
    cohorts = _cohorts(server, tenant)
    pro = await cohorts.create("Pro", filters=filters([plan_is("pro")]))
    with server.db.session() as session:
        env = session.get(Environment, tenant.environment_id)
        assert env is not None
        env.test_account_filters = [{"type": "cohort", "key": "id", "value": pro.id, "operator": "not_in"}]
    applied = _trend(filterTestAccounts=True)
    assert _counts(await _run(server, tenant, applied)) == [("$pageview", 6)]  # ann (pro) left out

    # The cohort is read with the query only when the query applies the filters.
    await cohorts.delete(pro.id)
    assert _counts(await _run(server, tenant, _trend())) == [("$pageview", 9)]
    err = await expect_error(_run(server, tenant, applied), grpc.StatusCode.FAILED_PRECONDITION)
    info = error_info(err)
    assert info.reason == "COHORT_UNAVAILABLE"
    assert info.metadata["field"] == "query.filterTestAccounts[0].value" and info.metadata["cohort"] == str(
        pro.id
    )
