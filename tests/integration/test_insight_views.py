"""Insight views through the real server (SQLite and PostgreSQL): MarkInsightsViewed,
ListMyLastViewedInsights and ListTrendingInsights read and write the same records as
`last_viewed_at` and ListInsights' last-viewed filter and ordering; scopes, environment
isolation and bounds."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import insight_views_pb2 as vpb
from tests.integration.itkit import Api, Tenant, assert_invalid, error_info, expect_error


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def mark(api: Api, *ids: int) -> vpb.MarkInsightsViewedResponse:
    request = vpb.MarkInsightsViewedRequest(environment_id=api.environment_id, insight_ids=list(ids))
    return await api.stub.MarkInsightsViewed(request, metadata=api.metadata, timeout=api.timeout)  # type: ignore[no-any-return]


async def last_viewed(api: Api) -> list[int]:
    request = vpb.ListMyLastViewedInsightsRequest(environment_id=api.environment_id)
    response = await api.stub.ListMyLastViewedInsights(request, metadata=api.metadata, timeout=api.timeout)
    return [i.id for i in response.results]


async def trending(api: Api, **fields: int) -> ipb.ListInsightsResponse:
    request = vpb.ListTrendingInsightsRequest(environment_id=api.environment_id, **fields)
    return await api.stub.ListTrendingInsights(request, metadata=api.metadata, timeout=api.timeout)  # type: ignore[no-any-return]


async def test_marking_viewed_sets_last_viewed_at_and_feeds_the_list_filters_and_ordering(
    api: Api, tenant: Tenant
) -> None:
    viewer_id, _ = tenant.add_user()
    viewer = api.as_key(tenant.key("insight:read", user_id=viewer_id))
    first, second, never = [await api.create(name=n) for n in ("first", "second", "never")]
    deleted = await api.create(name="deleted")
    await api.delete(deleted.id)
    elsewhere_env = tenant.add_environment()
    elsewhere = await api.in_environment(elsewhere_env).create(name="other environment")

    assert await viewer.list_ids(last_viewed_date_from="-1d") == []
    before = _now()
    answer = await mark(viewer, second.id, first.id, first.id, deleted.id, elsewhere.id, 987654321)
    assert list(answer.viewed_ids) == sorted([first.id, second.id])
    assert list(answer.not_found_ids) == sorted([deleted.id, elsewhere.id, 987654321])

    listed = {i.id: i for i in (await viewer.list()).results}
    for insight in (first, second):
        assert listed[insight.id].HasField("last_viewed_at")
        assert listed[insight.id].last_viewed_at.ToDatetime(dt.UTC) >= before.replace(microsecond=0)
    assert not listed[never.id].HasField("last_viewed_at")
    assert set(await viewer.list_ids(last_viewed_date_from="-1d")) == {first.id, second.id}
    # a mark moves the view to now: the older view of `first` becomes the newest
    tenant.set_viewed_at(first.id, viewer_id, _now() - dt.timedelta(days=3))
    assert (await viewer.list_ids(order="-last_viewed_at"))[:2] == [second.id, first.id]
    await mark(viewer, first.id)
    assert (await viewer.list_ids(order="-last_viewed_at"))[:2] == [first.id, second.id]
    # nothing was recorded for the other environment's insight
    assert await viewer.in_environment(elsewhere_env).list_ids(last_viewed_date_from="-1d") == []


async def test_my_last_viewed_is_the_callers_five_newest_live_views(api: Api, tenant: Tenant) -> None:
    viewer_id, _ = tenant.add_user()
    viewer = api.as_key(tenant.key("insight:read", user_id=viewer_id))
    made = [await api.create(name=f"insight {i}") for i in range(7)]
    await mark(viewer, *(i.id for i in made))
    # distinct view times, insight i viewed i hours ago
    for hours, insight in enumerate(made):
        tenant.set_viewed_at(insight.id, viewer_id, _now() - dt.timedelta(hours=hours + 1))
    assert await last_viewed(viewer) == [i.id for i in made[:5]]

    await api.delete(made[0].id)
    await mark(viewer, made[6].id)
    assert await last_viewed(viewer) == [made[6].id] + [i.id for i in made[1:5]]
    # the owner's views are their own (create records one), the viewer's do not show
    owner_views = await last_viewed(api)
    assert made[0].id not in owner_views and len(owner_views) == 5
    # the basic shape: no result
    request = vpb.ListMyLastViewedInsightsRequest(environment_id=viewer.environment_id)
    response = await viewer.stub.ListMyLastViewedInsights(request, metadata=viewer.metadata)
    assert response.count == 5 and not any(i.HasField("result") for i in response.results)
    shown = [i.last_viewed_at.ToDatetime(dt.UTC) for i in response.results]
    assert shown == sorted(shown, reverse=True) and shown[0] >= _now() - dt.timedelta(minutes=5)
    listed = {i.id: i.last_viewed_at for i in (await viewer.list()).results}
    assert all(listed[i.id] == i.last_viewed_at for i in response.results)
    # another environment of the same organization has its own views
    other_env = tenant.add_environment()
    assert await last_viewed(viewer.in_environment(other_env)) == []


async def test_trending_counts_users_whose_last_view_is_in_the_window(api: Api, tenant: Tenant) -> None:
    a = api.as_key(tenant.key("insight:read", user_id=tenant.add_user("A")[0]))
    b = api.as_key(tenant.key("insight:read", user_id=tenant.add_user("B")[0]))
    hot, warm, cold, stale = [await api.create(name=n) for n in ("hot", "warm", "cold", "stale")]
    await mark(a, hot.id, warm.id)
    await mark(b, hot.id)
    # the owner's view on create counts; `stale` was viewed only 10 days ago
    tenant.set_viewed_at(stale.id, tenant.user_id, _now() - dt.timedelta(days=10))
    deleted = await api.create(name="deleted")
    await mark(a, deleted.id)
    await mark(b, deleted.id)
    await api.delete(deleted.id)

    page = await trending(a)
    assert [i.id for i in page.results] == [hot.id, warm.id, cold.id]
    assert page.count == 3 and not page.HasField("next_offset")
    assert not any(i.HasField("result") for i in page.results)
    assert [i.id for i in (await trending(a, days=30)).results] == [hot.id, warm.id, cold.id, stale.id]

    first = await trending(a, limit=2)
    assert [i.id for i in first.results] == [hot.id, warm.id] and first.next_offset == 2
    rest = await trending(a, limit=2, offset=2)
    assert [i.id for i in rest.results] == [cold.id] and rest.previous_offset == 0

    other_env = tenant.add_environment()
    assert (await trending(api.in_environment(other_env))).count == 0


async def test_bounds_name_the_field(api: Api) -> None:
    made = await api.create(name="one")
    ok = await mark(api, *([made.id] * 2500))
    assert list(ok.viewed_ids) == [made.id]
    err = await expect_error(mark(api, *range(1, 2502)), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "insight_ids", mentions="2500")

    for fields, name in (
        ({"limit": 101}, "limit"),
        ({"limit": -1}, "limit"),
        ({"days": 366}, "days"),
        ({"days": -1}, "days"),
        ({"offset": -1}, "offset"),
    ):
        err = await expect_error(trending(api, **fields), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, name)
    assert (await trending(api, limit=100, days=365)).count == 1


async def test_each_rpc_needs_insight_read(api: Api, tenant: Tenant) -> None:
    made = await api.create(name="scoped")
    without = api.as_key(tenant.key("dashboard:read"))
    for call in (mark(without, made.id), last_viewed(without), trending(without)):
        err = await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
        assert (error_info(err).reason, error_info(err).metadata["scope"]) == ("MISSING_SCOPE", "insight:read")
    reader = api.as_key(tenant.key("insight:read"))
    assert list((await mark(reader, made.id)).viewed_ids) == [made.id]
    # a key limited to another environment cannot mark this one's insights
    other_env = tenant.add_environment()
    limited = api.as_key(tenant.key("insight:read", environments=[other_env]))
    err = await expect_error(mark(limited, made.id), grpc.StatusCode.PERMISSION_DENIED)
    assert error_info(err).reason == "ENVIRONMENT_ACCESS_DENIED"


async def test_concurrent_first_marks_of_the_same_insights_all_succeed(api: Api, tenant: Tenant) -> None:
    viewer_id, _ = tenant.add_user()
    viewer = api.as_key(tenant.key("insight:read", user_id=viewer_id))
    made = [await api.create(name=f"raced {i}") for i in range(3)]
    ids = [i.id for i in made]
    answers = await asyncio.gather(*(mark(viewer, *ids) for _ in range(6)), viewer.get(ids[0]))
    assert all(list(a.viewed_ids) == ids for a in answers[:-1])
    assert set(await viewer.list_ids(last_viewed_date_from="-1d")) == set(ids)
