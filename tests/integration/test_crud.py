"""Insight create, get, update through the generated stubs against a running server."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import grpc
import pytest

from generated.insights.v1 import common_pb2 as cpb
from generated.insights.v1 import insight_pb2 as ipb
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, expect_error, sql_viz, trends_viz


async def test_create_returns_the_stored_insight(api: Api, tenant: Tenant) -> None:
    query = trends_viz("signup")
    created = await api.create(
        name="Signups", description="Daily signups", query=query, tags=["  Growth ", "KPI", "growth", ""]
    )

    assert created.id > 0
    assert re.fullmatch(r"[A-Za-z0-9]{8}", created.short_id), created.short_id
    assert created.name == "Signups"
    assert created.description == "Daily signups"
    assert created.query == query
    assert list(created.tags) == ["growth", "kpi"]
    assert created.saved is True
    assert created.deleted is False
    assert created.created_by.id == tenant.user_id
    assert created.created_by.email == tenant.email
    assert created.last_modified_by.id == tenant.user_id
    assert created.created_at.seconds > 0
    assert created.last_modified_at.seconds > 0
    assert created.timezone == "UTC"
    assert not created.is_cached
    assert not created.HasField("result")


async def test_get_by_id_and_by_short_id_return_the_same_insight(api: Api) -> None:
    created = await api.create(name="Lookup", query=sql_viz())

    by_id = await api.get(created.id)
    by_short_id = await api.get(created.short_id)

    assert by_id.id == by_short_id.id == created.id
    assert by_id.short_id == created.short_id
    assert by_id.name == by_short_id.name == "Lookup"
    assert by_id.query == created.query


async def test_short_ids_are_distinct(api: Api) -> None:
    created = await asyncio.gather(*(api.create(name=f"n{i}") for i in range(20)))
    assert len({c.short_id for c in created}) == 20


async def test_unknown_id_and_short_id_are_not_found(api: Api) -> None:
    await expect_error(api.get(987_654_321), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.get("zzzzzzzz"), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.update(987_654_321, ["name"], name="x"), grpc.StatusCode.NOT_FOUND)
    await expect_error(api.delete(987_654_321), grpc.StatusCode.NOT_FOUND)


async def test_update_with_mask_changes_only_named_fields(api: Api) -> None:
    created = await api.create(name="Before", description="keep me", favorited=False)

    updated = await api.update(created.id, ["name"], name="After", description="ignored", favorited=True)

    assert updated.name == "After"
    assert updated.description == "keep me"
    assert updated.favorited is False
    assert (await api.get(created.id)).name == "After"


async def test_update_by_short_id(api: Api) -> None:
    created = await api.create(name="Before")
    updated = await api.update(created.short_id, ["description"], description="via short id")
    assert updated.id == created.id
    assert (await api.get(created.id)).description == "via short id"


async def test_update_without_mask_changes_fields_set_to_non_default_values(api: Api) -> None:
    created = await api.create(name="Before", description="keep me", tags=["a"])

    updated = await api.update(created.id, None, name="After", favorited=True)

    assert updated.name == "After"
    assert updated.favorited is True
    assert updated.description == "keep me"
    assert list(updated.tags) == ["a"]


async def test_update_can_clear_a_field_named_in_the_mask(api: Api) -> None:
    created = await api.create(name="Named", description="to clear", tags=["a", "b"])

    updated = await api.update(created.id, ["description", "tags"])

    assert updated.description == ""
    assert list(updated.tags) == []
    assert updated.name == "Named"


class Clock:
    """The insights domain's clock, moved by the test: every update happens at a later instant."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float = 1.0) -> None:
        self.now += dt.timedelta(seconds=seconds)


async def test_material_change_bumps_last_modified_by_and_at(
    api: Api, tenant: Tenant, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(server.app.insights, "clock", clock)
    created = await api.create(name="Material")
    other_user, other_email = tenant.add_user()
    other = api.as_key(tenant.key("insight:write", user_id=other_user))

    clock.advance()
    favorited = await other.update(created.id, ["favorited"], favorited=True)
    assert favorited.last_modified_at == created.last_modified_at
    assert favorited.last_modified_by.id == tenant.user_id
    assert favorited.updated_at.ToDatetime() > created.updated_at.ToDatetime()
    assert favorited.updated_at.ToDatetime(dt.UTC) == clock.now

    clock.advance()
    renamed = await other.update(created.id, ["name"], name="Material v2")
    assert renamed.last_modified_at.ToDatetime() > created.last_modified_at.ToDatetime()
    assert renamed.last_modified_at.ToDatetime(dt.UTC) == clock.now
    assert renamed.last_modified_by.id == other_user
    assert renamed.last_modified_by.email == other_email
    assert renamed.created_by.id == tenant.user_id

    clock.advance()
    described = await api.update(created.id, ["description"], description="now described")
    assert described.last_modified_at.ToDatetime() > renamed.last_modified_at.ToDatetime()
    assert described.last_modified_by.id == tenant.user_id

    clock.advance()
    requeried = await other.update(created.id, ["query"], query=trends_viz("purchase"))
    assert requeried.last_modified_at.ToDatetime() > described.last_modified_at.ToDatetime()
    assert requeried.last_modified_by.id == other_user
    assert requeried.query == trends_viz("purchase")


async def test_saved_defaults_to_true_on_create_and_on_updates_that_do_not_name_it(api: Api) -> None:
    assert (await api.create(name="default")).saved is True
    unsaved = await api.create(name="draft", saved=False)
    assert unsaved.saved is False

    still_unsaved = await api.update(unsaved.id, ["saved", "name"], name="draft 2", saved=False)
    assert still_unsaved.saved is False

    renamed = await api.update(unsaved.id, ["name"], name="draft 3")
    assert renamed.saved is True


async def test_tags_are_normalised_and_returned_sorted(api: Api) -> None:
    created = await api.create(name="t", tags=["Zeta", " alpha ", "ALPHA", "", "  "])
    assert list(created.tags) == ["alpha", "zeta"]

    updated = await api.update(created.id, ["tags"], tags=["Beta", "beta ", "Alpha"])
    assert list(updated.tags) == ["alpha", "beta"]
    assert list((await api.get(created.id)).tags) == ["alpha", "beta"]


async def test_dashboards_create_tiles_and_removal_soft_deletes_them(api: Api, tenant: Tenant) -> None:
    first = tenant.add_dashboard("First")
    second = tenant.add_dashboard("Second")

    created = await api.create(name="On dashboards", dashboards=[first, second])
    assert sorted(created.dashboards) == sorted([first, second])
    live_tiles = {t.dashboard_id for t in created.dashboard_tiles if not t.deleted}
    assert live_tiles == {first, second}

    updated = await api.update(created.id, ["dashboards"], dashboards=[second])
    assert list(updated.dashboards) == [second]
    assert {t.dashboard_id for t in updated.dashboard_tiles if not t.deleted} == {second}
    # A removed tile is soft-deleted: if it is listed at all, it is marked deleted.
    assert all(t.deleted for t in updated.dashboard_tiles if t.dashboard_id == first)

    fetched = await api.get(created.id)
    assert list(fetched.dashboards) == [second]


async def test_dashboards_must_exist_in_the_environment(api: Api, tenant: Tenant) -> None:
    elsewhere = tenant.add_dashboard("Elsewhere", environment_id=tenant.add_environment())

    err = await expect_error(api.create(name="x", dashboards=[elsewhere]), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "insight.dashboards")
    err = await expect_error(api.create(name="x", dashboards=[99_999_999]), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "insight.dashboards")

    created = await api.create(name="x")
    err = await expect_error(
        api.update(created.id, ["dashboards"], dashboards=[elsewhere]), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "insight.dashboards")
    assert list((await api.get(created.id)).dashboards) == []


async def test_output_only_fields_are_ignored_on_create(api: Api, tenant: Tenant) -> None:
    created = await api.create(
        name="output only",
        id=424242,
        short_id="AAAAAAAA",
        is_sample=True,
        created_by=cpb.UserBasic(id=tenant.user_id + 1000),
    )
    assert created.id != 424242
    assert created.short_id != "AAAAAAAA"
    assert created.is_sample is False
    assert created.created_by.id == tenant.user_id


COMPUTING_MODES = {
    cpb.REFRESH_MODE_FORCE_BLOCKING,
    cpb.REFRESH_MODE_BLOCKING,
    cpb.REFRESH_MODE_ASYNC_EXCEPT_ON_CACHE_MISS,
}


@pytest.mark.parametrize("mode", [m for m in cpb.RefreshMode.values() if m != cpb.REFRESH_MODE_UNSPECIFIED])
async def test_refresh_modes_compute_only_when_they_may_block(api: Api, mode: int) -> None:
    """On a cache miss the blocking modes compute, the async modes start a run, force_cache answers nothing."""
    created = await api.create(name="trend", query=trends_viz())

    request = ipb.GetInsightRequest(environment_id=api.environment_id, id=created.id, refresh=mode)  # type: ignore[arg-type]
    fetched = await api.stub.GetInsight(request, metadata=api.metadata, timeout=30)
    assert fetched.is_cached is False
    listed = await api.stub.ListInsights(
        ipb.ListInsightsRequest(environment_id=api.environment_id, refresh=mode),  # type: ignore[arg-type]
        metadata=api.metadata,
        timeout=30,
    )
    (item,) = [i for i in listed.results if i.id == created.id]
    if mode in COMPUTING_MODES:
        assert fetched.result.trends.series, "a blocking mode computes the trend"
        assert len(fetched.result.trends.series[0].data) == len(fetched.result.trends.series[0].days) > 0
        assert fetched.HasField("last_refresh")
        assert item.result.trends.series
    elif mode == cpb.REFRESH_MODE_FORCE_CACHE:
        assert not fetched.HasField("result") and not fetched.HasField("query_status")
    else:
        # An async mode on a cache miss starts a run and answers at once with its status.
        assert not fetched.HasField("result")
        assert fetched.query_status.id and fetched.query_status.query_async
