"""ListInsights: every filter, pagination and the default and maximum page sizes."""

from __future__ import annotations

import datetime as dt

import grpc

from generated.insights.v1 import insight_pb2 as ipb
from tests.integration.itkit import (
    Api,
    Tenant,
    assert_invalid,
    bare_hogql,
    bare_trends,
    expect_error,
    funnels_viz,
    lifecycle_viz,
    paths_viz,
    retention_viz,
    sql_viz,
    stickiness_viz,
    trends_viz,
)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def test_list_returns_the_environments_insights_only(api: Api, tenant: Tenant) -> None:
    mine = await api.create(name="mine")
    other_env = tenant.add_environment()
    await api.in_environment(other_env).create(name="other")

    listed = await api.list()
    assert [i.id for i in listed.results] == [mine.id]
    assert listed.count == 1


async def test_basic_lists_the_same_insights_without_results(api: Api) -> None:
    first = await api.create(name="first", query=trends_viz(), tags=["t"])
    second = await api.create(name="second", query=sql_viz())

    basic = await api.list(basic=True)
    assert {i.id for i in basic.results} == {first.id, second.id}
    by_id = {i.id: i for i in basic.results}
    assert by_id[first.id].name == "first"
    assert by_id[first.id].short_id == first.short_id
    assert list(by_id[first.id].tags) == ["t"]
    assert all(not i.HasField("result") for i in basic.results)


async def test_created_by_and_user(api: Api, tenant: Tenant) -> None:
    other_user, _ = tenant.add_user()
    other = api.as_key(tenant.key("insight:write", user_id=other_user))
    mine = await api.create(name="mine")
    theirs = await other.create(name="theirs")

    assert await api.list_ids(created_by=[other_user]) == [theirs.id]
    assert await api.list_ids(created_by=[tenant.user_id]) == [mine.id]
    assert set(await api.list_ids(created_by=[tenant.user_id, other_user])) == {mine.id, theirs.id}
    assert await api.list_ids(created_by=[other_user + 10_000]) == []

    assert await api.list_ids(user=True) == [mine.id]
    assert await other.list_ids(user=True) == [theirs.id]
    assert set(await api.list_ids(user=False)) == {mine.id, theirs.id}


async def test_created_date_from_and_to(api: Api, tenant: Tenant) -> None:
    old = await api.create(name="old")
    new = await api.create(name="new")
    tenant.set_insight_times(old.id, created_at=_utcnow() - dt.timedelta(days=10))

    assert await api.list_ids(created_date_from="-7d") == [new.id]
    assert await api.list_ids(created_date_to="-7d") == [old.id]
    eight_days_ago = (_utcnow() - dt.timedelta(days=8)).date().isoformat()
    assert await api.list_ids(created_date_from=eight_days_ago) == [new.id]
    assert await api.list_ids(created_date_to=eight_days_ago) == [old.id]
    twelve_days_ago = (_utcnow() - dt.timedelta(days=12)).isoformat()
    assert set(await api.list_ids(created_date_from=twelve_days_ago)) == {old.id, new.id}
    assert await api.list_ids(created_date_from=twelve_days_ago, created_date_to="-1w") == [old.id]


async def test_date_from_and_to_filter_on_last_modified_at(api: Api, tenant: Tenant) -> None:
    stale = await api.create(name="stale")
    fresh = await api.create(name="fresh")
    tenant.set_insight_times(
        stale.id,
        created_at=_utcnow() - dt.timedelta(days=60),
        last_modified_at=_utcnow() - dt.timedelta(days=50),
    )
    # created_at is not what date_from/date_to look at
    tenant.set_insight_times(fresh.id, created_at=_utcnow() - dt.timedelta(days=60))

    assert await api.list_ids(date_from="-14d") == [fresh.id]
    assert await api.list_ids(date_to="-14d") == [stale.id]
    assert await api.list_ids(date_from="-1m") == [fresh.id]
    assert set(await api.list_ids(date_from="-1y")) == {stale.id, fresh.id}
    assert await api.list_ids(date_from="-48h") == [fresh.id]
    iso_from = (_utcnow() - dt.timedelta(days=51)).date().isoformat()
    iso_to = (_utcnow() - dt.timedelta(days=49)).date().isoformat()
    assert await api.list_ids(date_from=iso_from, date_to=iso_to) == [stale.id]


async def test_dashboards_filter_needs_every_listed_dashboard(api: Api, tenant: Tenant) -> None:
    first = tenant.add_dashboard("first")
    second = tenant.add_dashboard("second")
    on_both = await api.create(name="both", dashboards=[first, second])
    on_first = await api.create(name="first only", dashboards=[first])
    await api.create(name="none")

    assert set(await api.list_ids(dashboards=[first])) == {on_both.id, on_first.id}
    assert await api.list_ids(dashboards=[second]) == [on_both.id]
    assert await api.list_ids(dashboards=[first, second]) == [on_both.id]

    await api.update(on_both.id, ["dashboards"], dashboards=[first])
    assert await api.list_ids(dashboards=[second]) == []


async def test_favorited(api: Api) -> None:
    favourite = await api.create(name="fav", favorited=True)
    plain = await api.create(name="plain")

    assert await api.list_ids(favorited=True) == [favourite.id]
    assert set(await api.list_ids(favorited=False)) == {favourite.id, plain.id}


async def test_insight_type_filter(api: Api) -> None:
    created = {
        "trends": await api.create(name="trends", query=trends_viz()),
        "funnels": await api.create(name="funnels", query=funnels_viz()),
        "retention": await api.create(name="retention", query=retention_viz()),
        "paths": await api.create(name="paths", query=paths_viz()),
        "stickiness": await api.create(name="stickiness", query=stickiness_viz()),
        "lifecycle": await api.create(name="lifecycle", query=lifecycle_viz()),
        "sql": await api.create(name="sql", query=sql_viz()),
        "bare_trends": await api.create(name="bare trends", query=bare_trends()),
        "bare_hogql": await api.create(name="bare hogql", query=bare_hogql()),
    }
    ids = {name: insight.id for name, insight in created.items()}

    async def of(kind: int) -> set[int]:
        return set(await api.list_ids(insight=kind))

    # As the reference: a product-analytics type matches wrapped queries only; bare ones are JSON.
    assert await of(ipb.INSIGHT_TYPE_TRENDS) == {ids["trends"]}
    assert await of(ipb.INSIGHT_TYPE_FUNNELS) == {ids["funnels"]}
    assert await of(ipb.INSIGHT_TYPE_RETENTION) == {ids["retention"]}
    assert await of(ipb.INSIGHT_TYPE_PATHS) == {ids["paths"]}
    assert await of(ipb.INSIGHT_TYPE_STICKINESS) == {ids["stickiness"]}
    assert await of(ipb.INSIGHT_TYPE_LIFECYCLE) == {ids["lifecycle"]}
    assert await of(ipb.INSIGHT_TYPE_SQL) == {ids["sql"]}
    assert await of(ipb.INSIGHT_TYPE_JSON) == {ids["bare_trends"], ids["bare_hogql"]}
    assert await of(ipb.INSIGHT_TYPE_UNSPECIFIED) == set(ids.values())


async def test_last_viewed_date_from_and_to_use_the_callers_views(api: Api, tenant: Tenant) -> None:
    viewer_id, _ = tenant.add_user()
    viewer = api.as_key(tenant.key("insight:read", user_id=viewer_id))
    seen_long_ago = await api.create(name="seen long ago")
    seen_now = await api.create(name="seen now")
    await api.create(name="never seen")

    assert await viewer.list_ids(last_viewed_date_from="-1d") == []
    await viewer.get(seen_long_ago.id)
    await viewer.get(seen_now.short_id)
    tenant.set_viewed_at(seen_long_ago.id, viewer_id, _utcnow() - dt.timedelta(days=10))

    assert await viewer.list_ids(last_viewed_date_from="-1d") == [seen_now.id]
    assert await viewer.list_ids(last_viewed_date_to="-7d") == [seen_long_ago.id]
    assert set(await viewer.list_ids(last_viewed_date_from="-30d")) == {seen_long_ago.id, seen_now.id}
    # the viewer's views are not the owner's views
    owner_recent: set[int] = set(await api.list_ids(last_viewed_date_to="-7d"))
    assert seen_long_ago.id not in owner_recent

    fetched = await viewer.get(seen_now.id)
    assert fetched.HasField("last_viewed_at")


async def test_limit_offset_count_and_page_offsets(api: Api) -> None:
    created = [await api.create(name=f"page {i}") for i in range(5)]
    newest_first = [c.id for c in reversed(created)]

    first = await api.list(limit=2)
    assert first.count == 5
    assert [i.id for i in first.results] == newest_first[:2]
    assert first.next_offset == 2
    assert not first.HasField("previous_offset")

    middle = await api.list(limit=2, offset=2)
    assert middle.count == 5
    assert [i.id for i in middle.results] == newest_first[2:4]
    assert middle.next_offset == 4
    assert middle.previous_offset == 0

    last = await api.list(limit=2, offset=4)
    assert [i.id for i in last.results] == newest_first[4:]
    assert not last.HasField("next_offset")
    assert last.previous_offset == 2

    past_the_end = await api.list(limit=2, offset=10)
    assert past_the_end.count == 5
    assert list(past_the_end.results) == []
    assert not past_the_end.HasField("next_offset")

    everything = await api.list()
    assert [i.id for i in everything.results] == newest_first
    assert not everything.HasField("next_offset")
    assert not everything.HasField("previous_offset")


async def test_default_order_is_order_then_newest_modified(api: Api) -> None:
    second = await api.create(name="second", order=2)
    first = await api.create(name="first", order=1)
    older = await api.create(name="unordered older")
    newer = await api.create(name="unordered newer")

    assert await api.list_ids() == [first.id, second.id, newer.id, older.id]

    await api.update(older.id, ["name"], name="unordered older, renamed")
    assert await api.list_ids() == [first.id, second.id, older.id, newer.id]


async def test_default_limit_is_100_and_limit_is_capped_at_1000(api: Api, tenant: Tenant) -> None:
    tenant.insert_insights(1001)

    default = await api.list(basic=True)
    assert default.count == 1001
    assert len(default.results) == 100
    assert default.next_offset == 100

    capped = await api.list(basic=True, limit=5000)
    assert capped.count == 1001
    assert len(capped.results) == 1000
    assert capped.next_offset == 1000

    rest = await api.list(basic=True, limit=5000, offset=1000)
    assert len(rest.results) == 1
    assert not rest.HasField("next_offset")


async def test_saved_filter(api: Api, tenant: Tenant) -> None:
    dashboard = tenant.add_dashboard("board")
    saved = await api.create(name="saved")
    draft = await api.create(name="draft", saved=False)
    draft_on_dashboard = await api.create(name="draft on dashboard", saved=False, dashboards=[dashboard])

    assert set(await api.list_ids(saved=True)) == {saved.id, draft_on_dashboard.id}
    unsaved: set[int] = set(await api.list_ids(saved=False))
    assert draft.id in unsaved
    assert saved.id not in unsaved
    assert set(await api.list_ids()) == {saved.id, draft.id, draft_on_dashboard.id}


async def test_search_over_name_derived_name_description_and_tags(api: Api) -> None:
    by_name = await api.create(name="Weekly Revenue")
    by_derived = await api.create(derived_name="Pageview count of signups")
    by_description = await api.create(name="Q", description="Quarterly numbers for the board")
    by_tag = await api.create(name="T", tags=["marketing"])

    assert await api.list_ids(search="revenue") == [by_name.id]
    assert await api.list_ids(search="PAGEVIEW COUNT") == [by_derived.id]
    assert await api.list_ids(search="quarterly NUMBERS") == [by_description.id]
    assert await api.list_ids(search="arketin") == [by_tag.id]
    assert await api.list_ids(search="no such text anywhere") == []
    assert (await api.list(search="revenue")).count == 1


async def test_short_id(api: Api) -> None:
    wanted = await api.create(name="wanted")
    await api.create(name="other")

    assert await api.list_ids(short_id=wanted.short_id) == [wanted.id]
    assert await api.list_ids(short_id="nothere1") == []


async def test_tags_match_any_listed_tag(api: Api) -> None:
    red = await api.create(name="red", tags=["red"])
    blue = await api.create(name="blue", tags=["blue", "shared"])
    green = await api.create(name="green", tags=["green", "shared"])

    assert await api.list_ids(tags=["red"]) == [red.id]
    assert set(await api.list_ids(tags=["red", "blue"])) == {red.id, blue.id}
    assert set(await api.list_ids(tags=["shared"])) == {blue.id, green.id}
    assert await api.list_ids(tags=["purple"]) == []


async def test_filters_combine_with_and(api: Api) -> None:
    target = await api.create(name="alpha report", favorited=True, tags=["x"], query=trends_viz())
    await api.create(name="alpha other", favorited=False, tags=["x"], query=trends_viz())
    await api.create(name="beta report", favorited=True, tags=["x"], query=trends_viz())
    await api.create(name="alpha sql", favorited=True, tags=["x"], query=sql_viz())

    ids = await api.list_ids(search="alpha", favorited=True, tags=["x"], insight=ipb.INSIGHT_TYPE_TRENDS)
    assert ids == [target.id]


async def test_deleted_insights_are_not_listed(api: Api) -> None:
    kept = await api.create(name="kept")
    gone = await api.create(name="gone")
    await api.delete(gone.id)

    listed = await api.list()
    assert [i.id for i in listed.results] == [kept.id]
    assert listed.count == 1


async def test_unparsable_dates_are_invalid_arguments(api: Api) -> None:
    for field_name in (
        "date_from",
        "date_to",
        "created_date_from",
        "created_date_to",
        "last_viewed_date_from",
        "last_viewed_date_to",
    ):
        err = await expect_error(api.list(**{field_name: "not a date"}), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, field_name)
