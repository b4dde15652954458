"""ListInsightActivity: entries, field-level diffs, ordering and paging, per insight and per environment."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from generated.insights.v1 import activity_pb2 as apb
from tests.integration.itkit import Api, Tenant, assert_invalid, expect_error, trends_viz


def _value(v: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(v)


def _changes(entry: apb.ActivityLogEntry) -> dict[str, tuple[Any, Any]]:
    return {c.field: (_value(c.before), _value(c.after)) for c in entry.detail.changes}


async def test_create_writes_a_created_entry(api: Api, tenant: Tenant) -> None:
    insight = await api.create(name="Created", query=trends_viz())

    page = await api.activity(insight.id)
    assert page.total_count == 1
    [entry] = page.results
    assert entry.activity == "created"
    assert entry.scope == "Insight"
    assert entry.item_id == str(insight.id)
    assert entry.detail.name == "Created"
    assert entry.detail.short_id == insight.short_id
    assert entry.user.email == tenant.email
    assert entry.user.first_name == "Owner"
    assert entry.id
    assert entry.created_at.seconds > 0


async def test_create_without_a_name_writes_no_entry_but_a_derived_name_does(api: Api) -> None:
    nameless = await api.create(description="no name at all")
    derived = await api.create(derived_name="Pageviews")

    assert (await api.activity(nameless.id)).total_count == 0
    assert [e.activity for e in (await api.activity(derived.id)).results] == ["created"]


async def test_update_writes_field_level_diffs(api: Api) -> None:
    insight = await api.create(name="Before", favorited=False)

    await api.update(
        insight.id, ["name", "description", "favorited"], name="After", description="d", favorited=True
    )

    entries = (await api.activity(insight.id)).results
    assert [e.activity for e in entries] == ["updated", "created"]
    updated = entries[0]
    assert {c.type for c in updated.detail.changes} == {"Insight"}
    assert {c.action for c in updated.detail.changes} == {"changed"}
    changes = _changes(updated)
    assert changes["name"] == ("Before", "After")
    assert changes["description"][1] == "d"
    assert changes["description"][0] in (None, "")
    assert changes["favorited"] == (False, True)
    assert set(changes) == {"name", "description", "favorited"}
    assert updated.detail.name == "After"


async def test_query_change_is_diffed(api: Api) -> None:
    insight = await api.create(name="q", query=trends_viz("a"))
    await api.update(insight.id, ["query"], query=trends_viz("b"))

    changes = _changes((await api.activity(insight.id)).results[0])
    assert set(changes) == {"query"}
    before, after = changes["query"]
    # The diff shows the query as the reference's JSON.
    assert before["kind"] == after["kind"] == "InsightVizNode"
    assert before["source"]["series"][0]["event"] == "a"
    assert after["source"]["series"][0]["event"] == "b"


async def test_dashboard_membership_is_diffed(api: Api, tenant: Tenant) -> None:
    dashboard = tenant.add_dashboard("Board")
    insight = await api.create(name="placed")
    await api.update(insight.id, ["dashboards"], dashboards=[dashboard])

    entry = (await api.activity(insight.id)).results[0]
    assert entry.activity == "updated"
    assert [c.field for c in entry.detail.changes] == ["dashboards"]
    before, after = _changes(entry)["dashboards"]
    assert not before
    assert str(dashboard) in str(after)


async def test_no_entry_when_nothing_changed(api: Api) -> None:
    insight = await api.create(name="Same", tags=["a"], favorited=True)

    await api.update(insight.id, ["name", "tags", "favorited"], name="Same", tags=["A "], favorited=True)
    await api.update(insight.id, ["order"], order=5)
    await api.update(insight.id, ["saved"], saved=True)

    assert [e.activity for e in (await api.activity(insight.id)).results] == ["created"]


async def test_tag_changes_are_one_tags_change(api: Api) -> None:
    insight = await api.create(name="Tagged", tags=["a", "b"])

    await api.update(insight.id, ["tags"], tags=["b", "c", "d"])

    entry = (await api.activity(insight.id)).results[0]
    assert entry.activity == "updated"
    assert [c.field for c in entry.detail.changes] == ["tags"]
    before, after = _changes(entry)["tags"]
    assert sorted(before) == ["a", "b"]
    assert sorted(after) == ["b", "c", "d"]


async def test_delete_and_restore_entries_newest_first(api: Api) -> None:
    insight = await api.create(name="Lifecycle")
    await api.update(insight.id, ["name"], name="Lifecycle 2")
    await api.delete(insight.id)
    await api.update(insight.id, ["deleted"], deleted=False)

    entries = (await api.activity(insight.id)).results
    assert [e.activity for e in entries] == ["restored", "deleted", "updated", "created"]
    times = [e.created_at.ToDatetime() for e in entries]
    assert times == sorted(times, reverse=True)
    assert all(e.item_id == str(insight.id) for e in entries)


async def test_activity_by_short_id(api: Api) -> None:
    insight = await api.create(name="short")
    await api.update(insight.id, ["name"], name="short 2")
    by_short = await api.activity(insight.short_id)
    by_id = await api.activity(insight.id)
    assert [e.id for e in by_short.results] == [e.id for e in by_id.results]
    assert by_short.total_count == 2


async def test_paging_with_page_limit_and_total_count(api: Api) -> None:
    insight = await api.create(name="v0")
    for i in range(1, 12):
        await api.update(insight.id, ["name"], name=f"v{i}")  # 12 entries in all

    default = await api.activity(insight.id)
    assert default.total_count == 12
    assert len(default.results) == 10
    assert default.next_page == 2
    assert not default.HasField("previous_page")
    assert _changes(default.results[0])["name"] == ("v10", "v11")

    first = await api.activity(insight.id, page=1, limit=5)
    second = await api.activity(insight.id, page=2, limit=5)
    third = await api.activity(insight.id, page=3, limit=5)
    assert [len(p.results) for p in (first, second, third)] == [5, 5, 2]
    assert {p.total_count for p in (first, second, third)} == {12}
    assert first.next_page == 2 and not first.HasField("previous_page")
    assert second.next_page == 3 and second.previous_page == 1
    assert not third.HasField("next_page") and third.previous_page == 2
    ids = [e.id for p in (first, second, third) for e in p.results]
    assert len(set(ids)) == 12
    assert [e.activity for e in third.results] == ["updated", "created"]

    past_the_end = await api.activity(insight.id, page=4, limit=5)
    assert list(past_the_end.results) == []
    assert past_the_end.total_count == 12


async def test_environment_wide_activity(api: Api, tenant: Tenant) -> None:
    first = await api.create(name="first")
    second = await api.create(name="second")
    await api.update(first.id, ["name"], name="first 2")
    other_env = tenant.add_environment()
    await api.in_environment(other_env).create(name="elsewhere")

    page = await api.activity()
    assert page.total_count == 3
    assert [(e.activity, e.item_id) for e in page.results] == [
        ("updated", str(first.id)),
        ("created", str(second.id)),
        ("created", str(first.id)),
    ]
    assert [len((await api.activity(page=p, limit=2)).results) for p in (1, 2)] == [2, 1]


async def test_activity_of_another_environments_insight_is_not_visible(api: Api, tenant: Tenant) -> None:
    other_env = tenant.add_environment()
    theirs = await api.in_environment(other_env).create(name="theirs")
    try:
        page = await api.activity(theirs.id)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND
    else:
        assert list(page.results) == []


async def test_invalid_paging(api: Api) -> None:
    err = await expect_error(api.activity(page=-1), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "page")
    err = await expect_error(api.activity(limit=-1), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, "limit")
