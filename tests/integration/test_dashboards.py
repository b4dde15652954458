"""DashboardsService on both metadata backends: CRUD, soft delete and restore, tiles and their order,
masks, bad input, activity, scopes and the isolation of environments."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from tests.integration.dashboardkit import DashboardsApi, tile_insights
from tests.integration.itkit import (
    Api,
    Server,
    Tenant,
    assert_invalid,
    error_info,
    expect_error,
    new_tenant,
    trends_viz,
)


@pytest.fixture
def boards(server: Server, tenant: Tenant) -> DashboardsApi:
    """The tenant's owner with a key holding the dashboard and activity scopes."""
    return DashboardsApi.of(server, tenant, "dashboard:write", "activity_log:read")


def _chrome() -> qpb.PropertyFilter:
    return qpb.PropertyFilter(
        key="$browser",
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        operator=qpb.PROPERTY_OPERATOR_EXACT,
        value=qpb.PropertyValue(string_value="Chrome"),
    )


async def test_create_then_get_and_list_show_what_was_saved(boards: DashboardsApi, tenant: Tenant) -> None:
    filters = ipb.DashboardFilter(date_from="-14d", properties=[_chrome()])
    created = await boards.create(
        name="Growth",
        description="Weekly numbers",
        tags=[" KPI", "kpi", "Team "],
        pinned=True,
        filters=filters,
    )

    assert created.id > 0
    assert (created.name, created.description, created.pinned, created.deleted) == (
        "Growth",
        "Weekly numbers",
        True,
        False,
    )
    assert list(created.tags) == ["kpi", "team"]
    assert created.filters == filters
    assert list(created.tiles) == []
    assert created.created_by.email == tenant.email
    assert created.created_at.seconds > 0 and created.updated_at == created.created_at
    assert await boards.get(created.id) == created
    assert (await boards.list()).results == [created]


async def test_list_searches_names_filters_pinned_newest_first_and_pages(boards: DashboardsApi) -> None:
    made = [
        await boards.create(name=name, pinned=pinned)
        for name, pinned in (("Sales", False), ("SALES_team", True), ("Product", True), ("50% done", False))
    ]

    assert await boards.list_ids(search="sales") == [made[1].id, made[0].id]
    assert await boards.list_ids(search="s_t") == [made[1].id]  # _ is a character, not a wildcard
    assert await boards.list_ids(search="%") == [made[3].id]
    assert await boards.list_ids(pinned=True) == [made[2].id, made[1].id]
    assert await boards.list_ids(pinned=True, search="sales") == [made[1].id]
    first = await boards.list(limit=3)
    assert (first.count, [d.id for d in first.results]) == (4, [made[3].id, made[2].id, made[1].id])
    assert first.next_offset == 3 and not first.HasField("previous_offset")
    last = await boards.list(limit=3, offset=3)
    assert [d.id for d in last.results] == [made[0].id]
    assert not last.HasField("next_offset") and last.previous_offset == 0


@pytest.mark.parametrize(
    ("filters", "field"),
    [({"search": "x" * 201}, "search"), ({"limit": -1}, "limit"), ({"offset": -5}, "offset")],
)
async def test_list_arguments_are_checked(
    boards: DashboardsApi, filters: dict[str, object], field: str
) -> None:
    err = await expect_error(boards.list(**filters), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field)


async def test_update_changes_only_the_masked_fields(boards: DashboardsApi) -> None:
    board = await boards.create(
        name="Old", description="kept", tags=["a"], filters=ipb.DashboardFilter(date_from="-7d")
    )

    renamed = await boards.update(
        board.id, ["name", "pinned"], name="New", pinned=True, description="ignored"
    )
    assert (renamed.name, renamed.pinned, renamed.description, list(renamed.tags)) == (
        "New",
        True,
        "kept",
        ["a"],
    )
    retagged = await boards.update(
        board.id, ["tags", "filters"], tags=["B", "c"], filters=ipb.DashboardFilter(date_from="-30d")
    )
    assert list(retagged.tags) == ["b", "c"]
    assert retagged.filters == ipb.DashboardFilter(date_from="-30d")
    # An empty filter set clears the filters.
    cleared = await boards.update(board.id, ["filters"])
    assert not cleared.HasField("filters")
    # Without a mask, the fields set in the request change.
    described = await boards.update(board.id, description="new text")
    assert (described.name, described.description) == ("New", "new text")
    assert await boards.get(board.id) == described


def _bad_regex() -> qpb.PropertyFilter:
    return qpb.PropertyFilter(
        key="$browser",
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        operator=qpb.PROPERTY_OPERATOR_REGEX,
        value=qpb.PropertyValue(string_value="("),
    )


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "dashboard.name"),
    ({"name": "   "}, "dashboard.name"),
    ({"name": "x" * 401}, "dashboard.name"),
    ({"name": "ok", "description": "d" * 1001}, "dashboard.description"),
    ({"name": "ok", "tags": ["t"] * 101}, "dashboard.tags"),
    ({"name": "ok", "tags": ["fine", "x" * 256]}, "dashboard.tags[1]"),
    (
        {"name": "ok", "filters": ipb.DashboardFilter(date_from="yesterday-ish")},
        "dashboard.filters.date_from",
    ),
    (
        {"name": "ok", "filters": ipb.DashboardFilter(properties=[_bad_regex()])},
        "dashboard.filters.properties[0].value",
    ),
]


@pytest.mark.parametrize(("fields", "field"), BAD_FIELDS)
async def test_bad_fields_are_refused_naming_the_field_and_nothing_is_saved(
    boards: DashboardsApi, fields: dict[str, Any], field: str
) -> None:
    err = await expect_error(boards.create(**fields), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field)
    assert (await boards.list()).count == 0

    board = await boards.create(name="Kept", description="as is", tags=["x"])
    paths = [p for p in fields if p != "name" or field == "dashboard.name"]
    err = await expect_error(boards.update(board.id, paths, **fields), grpc.StatusCode.INVALID_ARGUMENT)
    assert_invalid(err, field)
    assert await boards.get(board.id) == board
    assert [e.activity for e in (await boards.activity(board.id)).results] == ["created"]


async def test_an_unknown_mask_path_is_refused(boards: DashboardsApi) -> None:
    board = await boards.create(name="Board")
    for path in ("tiles", "id", "created_at", "nonsense"):
        err = await expect_error(boards.update(board.id, [path], name="x"), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, "update_mask", mentions=path)
    assert (await boards.get(board.id)).name == "Board"


async def test_delete_is_soft_and_a_restore_brings_back_the_tiles(boards: DashboardsApi, api: Api) -> None:
    insight = await api.create(name="On the board", query=trends_viz())
    board = await boards.create(name="Board")
    with_tile = await boards.add_tile(board.id, insight.id)

    deleted = await boards.delete(board.id)
    assert deleted.deleted is True
    for call in (
        boards.get(board.id),
        boards.delete(board.id),
        boards.update(board.id, ["name"], name="x"),
        boards.add_tile(board.id, insight.id),
        boards.remove_tile(board.id, with_tile.tiles[0].id),
        boards.reorder(board.id, [with_tile.tiles[0].id]),
    ):
        err = await expect_error(call, grpc.StatusCode.NOT_FOUND)
        assert error_info(err).reason == "DASHBOARD_NOT_FOUND"
    assert (await boards.list()).count == 0
    # The insight no longer shows the deleted dashboard, and cannot be read in its context.
    shown = await api.get(insight.id)
    assert (list(shown.dashboards), list(shown.dashboard_tiles)) == ([], [])
    read = ipb.GetInsightRequest(environment_id=api.environment_id, id=insight.id, from_dashboard=board.id)
    err = await expect_error(api.stub.GetInsight(read, metadata=api.metadata), grpc.StatusCode.NOT_FOUND)
    assert error_info(err).reason == "DASHBOARD_NOT_FOUND"
    # Writing the insight's dashboards meanwhile does not drop the deleted dashboard's tile.
    other = await boards.create(name="Other")
    await api.update(insight.id, ["dashboards"], dashboards=[other.id])

    restored = await boards.update(board.id, ["deleted"], deleted=False)
    assert restored.deleted is False
    assert restored.tiles == with_tile.tiles
    assert sorted((await api.get(insight.id)).dashboards) == sorted([board.id, other.id])
    assert (await api.stub.GetInsight(read, metadata=api.metadata)).id == insight.id
    assert [e.activity for e in (await boards.activity(board.id)).results] == [
        "restored",
        "deleted",
        "updated",
        "created",
    ]


async def test_tiles_are_added_removed_and_reordered_and_the_insights_show_them(
    boards: DashboardsApi, api: Api
) -> None:
    first = await api.create(name="First", query=trends_viz())
    second = await api.create(name="Second", query=trends_viz("signup"))
    third = await api.create(query=trends_viz("purchase"))
    board = await boards.create(name="Board")

    await boards.add_tile(board.id, first.id)
    await boards.add_tile(board.id, second.id)
    shown = await boards.add_tile(board.id, third.id)
    assert tile_insights(shown) == [first.id, second.id, third.id]
    assert [t.position for t in shown.tiles] == [0, 1, 2]
    assert [(t.insight_short_id, t.insight_name) for t in shown.tiles] == [
        (first.short_id, "First"),
        (second.short_id, "Second"),
        (third.short_id, ""),
    ]
    seen = await api.get(first.id)
    assert list(seen.dashboards) == [board.id]
    assert [(t.id, t.dashboard_id, t.deleted) for t in seen.dashboard_tiles] == [
        (shown.tiles[0].id, board.id, False)
    ]
    # Adding an insight already shown keeps its tile, and records nothing.
    assert await boards.add_tile(board.id, first.id) == shown

    reordered = await boards.reorder(board.id, [shown.tiles[2].id, shown.tiles[0].id, shown.tiles[1].id])
    assert tile_insights(reordered) == [third.id, first.id, second.id]
    assert tile_insights(await boards.get(board.id)) == [third.id, first.id, second.id]

    removed = await boards.remove_tile(board.id, shown.tiles[0].id)
    assert tile_insights(removed) == [third.id, second.id]
    gone = await api.get(first.id)
    assert list(gone.dashboards) == []
    assert [(t.id, t.deleted) for t in gone.dashboard_tiles] == [(shown.tiles[0].id, True)]
    err = await expect_error(boards.remove_tile(board.id, shown.tiles[0].id), grpc.StatusCode.NOT_FOUND)
    assert error_info(err).reason == "DASHBOARD_TILE_NOT_FOUND"

    # A removed tile comes back as it was, at the end of the layout.
    back = await boards.add_tile(board.id, first.id)
    assert tile_insights(back) == [third.id, second.id, first.id]
    assert back.tiles[2].id == shown.tiles[0].id
    assert list((await api.get(first.id)).dashboards) == [board.id]
    # Deleting an insight removes its tiles.
    await api.delete(second.id)
    assert tile_insights(await boards.get(board.id)) == [third.id, first.id]


async def test_concurrent_adds_of_one_insight_leave_one_tile(boards: DashboardsApi, api: Api) -> None:
    board = await boards.create(name="Board")
    insight = await api.create(name="Shown", query=trends_viz())

    answers = await asyncio.gather(*(boards.add_tile(board.id, insight.id) for _ in range(6)))

    assert {tuple(tile_insights(a)) for a in answers} == {(insight.id,)}
    assert len({a.tiles[0].id for a in answers}) == 1
    assert [e.activity for e in (await boards.activity(board.id)).results] == ["updated", "created"]


async def test_a_tile_added_through_the_insight_goes_last(boards: DashboardsApi, api: Api) -> None:
    board = await boards.create(name="Board")
    first = await api.create(name="First", query=trends_viz())
    await boards.add_tile(board.id, first.id)
    second = await api.create(name="Second", query=trends_viz(), dashboards=[board.id])
    shown = await boards.get(board.id)
    assert tile_insights(shown) == [first.id, second.id]
    assert [t.position for t in shown.tiles] == [0, 1]


@pytest.mark.parametrize(
    "order",
    [
        lambda ids: ids[:2],
        lambda ids: [*ids, ids[0]],
        lambda ids: [ids[0], ids[0], ids[1]],
        lambda ids: [*ids[:2], 10**12],
    ],
    ids=["missing", "repeated-extra", "duplicate", "unknown"],
)
async def test_a_reorder_that_is_not_a_permutation_is_refused(
    boards: DashboardsApi, api: Api, order: Callable[[list[int]], list[int]]
) -> None:
    board = await boards.create(name="Board")
    for name in ("a", "b", "c"):
        insight = await api.create(name=name, query=trends_viz())
        shown = await boards.add_tile(board.id, insight.id)
    ids = [t.id for t in shown.tiles]

    err = await expect_error(boards.reorder(board.id, order(ids)), grpc.StatusCode.INVALID_ARGUMENT)

    assert_invalid(err, "tile_ids")
    assert await boards.get(board.id) == shown


async def test_a_tile_needs_a_live_insight_of_the_environment(
    boards: DashboardsApi, api: Api, tenant: Tenant
) -> None:
    board = await boards.create(name="Board")
    deleted = await api.create(name="Deleted", query=trends_viz())
    await api.delete(deleted.id)
    elsewhere = await api.in_environment(tenant.add_environment()).create(name="Elsewhere")

    for insight_id in (deleted.id, elsewhere.id, 10**12):
        err = await expect_error(boards.add_tile(board.id, insight_id), grpc.StatusCode.INVALID_ARGUMENT)
        assert_invalid(err, "insight_id")
    assert list((await boards.get(board.id)).tiles) == []
    assert [e.activity for e in (await boards.activity(board.id)).results] == ["created"]


async def test_every_change_is_in_the_activity_log(boards: DashboardsApi, api: Api, tenant: Tenant) -> None:
    insight = await api.create(name="Shown", query=trends_viz())
    board = await boards.create(name="Board", tags=["a"])
    await boards.update(
        board.id, ["name", "filters"], name="Renamed", filters=ipb.DashboardFilter(date_from="-30d")
    )
    added = await boards.add_tile(board.id, insight.id)
    await boards.reorder(board.id, [added.tiles[0].id])  # the same order: no change, no entry
    await boards.remove_tile(board.id, added.tiles[0].id)
    await boards.update(board.id, ["name"], name="Renamed")  # no change, no entry
    await boards.delete(board.id)

    log = (await boards.activity(board.id)).results
    assert [e.activity for e in log] == ["deleted", "updated", "updated", "updated", "created"]
    assert all((e.scope, e.item_id, e.user.email) == ("Dashboard", str(board.id), tenant.email) for e in log)
    renamed = {c.field: c for c in log[3].detail.changes}
    assert sorted(renamed) == ["filters", "name"]
    assert (renamed["name"].before.string_value, renamed["name"].after.string_value) == ("Board", "Renamed")
    assert json_format.MessageToDict(renamed["filters"].after) == {"date_from": "-30d"}
    tile = {"id": float(added.tiles[0].id), "insight_id": float(insight.id)}
    (put,) = log[2].detail.changes
    assert (put.field, json_format.MessageToDict(put.before), json_format.MessageToDict(put.after)) == (
        "tiles",
        [],
        [tile],
    )
    (taken,) = log[1].detail.changes
    assert (json_format.MessageToDict(taken.before), json_format.MessageToDict(taken.after)) == ([tile], [])
    assert (await boards.activity()).total_count == 5


WRITE_CALLS = ("create", "update", "delete", "add_tile", "remove_tile", "reorder")


@pytest.mark.parametrize(
    ("scopes", "call", "required"),
    [
        *((("dashboard:read", "insight:write"), call, "dashboard:write") for call in WRITE_CALLS),
        (("insight:write",), "get", "dashboard:read"),
        (("insight:write", "activity_log:read"), "list", "dashboard:read"),
        (("dashboard:write",), "activity", "activity_log:read"),
    ],
)
async def test_a_missing_scope_is_permission_denied_naming_it(
    boards: DashboardsApi, api: Api, tenant: Tenant, scopes: tuple[str, ...], call: str, required: str
) -> None:
    insight = await api.create(name="Shown", query=trends_viz())
    other = await api.create(name="Other", query=trends_viz())
    board = await boards.create(name="Scoped")
    board = await boards.add_tile(board.id, insight.id)
    limited = boards.as_key(tenant.key(*scopes))
    tile = board.tiles[0].id
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "create": lambda: limited.create(name="Refused"),
        "update": lambda: limited.update(board.id, ["name"], name="Refused"),
        "delete": lambda: limited.delete(board.id),
        "add_tile": lambda: limited.add_tile(board.id, other.id),
        "remove_tile": lambda: limited.remove_tile(board.id, tile),
        "reorder": lambda: limited.reorder(board.id, [tile]),
        "get": lambda: limited.get(board.id),
        "list": lambda: limited.list(),
        "activity": lambda: limited.activity(board.id),
    }

    err = await expect_error(calls[call](), grpc.StatusCode.PERMISSION_DENIED)

    assert f"'{required}'" in (err.details() or "")
    assert error_info(err).reason == "MISSING_SCOPE"
    assert error_info(err).metadata["scope"] == required
    assert await boards.get(board.id) == board
    assert (await boards.list()).count == 1
    assert len((await boards.activity(board.id)).results) == 2


async def test_read_scope_reads_and_write_implies_read(boards: DashboardsApi, tenant: Tenant) -> None:
    board = await boards.create(name="Readable")
    reader = boards.as_key(tenant.key("dashboard:read"))
    assert (await reader.get(board.id)).name == "Readable"
    assert await reader.list_ids() == [board.id]
    writer = boards.as_key(tenant.key("dashboard:write"))
    assert (await writer.get(board.id)).name == "Readable"


async def test_another_environments_dashboard_is_not_found(boards: DashboardsApi, tenant: Tenant) -> None:
    second_env = tenant.add_environment()
    second = boards.in_environment(second_env)
    theirs = await second.create(name="In the second environment")

    for call in (
        boards.get(theirs.id),
        boards.update(theirs.id, ["name"], name="stolen"),
        boards.update(theirs.id, ["deleted"], deleted=False),
        boards.delete(theirs.id),
        boards.add_tile(theirs.id, 1),
        boards.remove_tile(theirs.id, 1),
        boards.reorder(theirs.id, []),
        boards.activity(theirs.id),
    ):
        err = await expect_error(call, grpc.StatusCode.NOT_FOUND)
        assert error_info(err).reason == "DASHBOARD_NOT_FOUND"
    assert (await boards.list()).count == 0
    assert (await boards.activity()).total_count == 0
    assert (await second.get(theirs.id)).name == "In the second environment"


async def test_another_organizations_environment_is_permission_denied(
    boards: DashboardsApi, server: Server
) -> None:
    stranger = new_tenant(server)
    theirs = await DashboardsApi.of(server, stranger, "dashboard:write").create(name="Theirs")
    intruder = boards.in_environment(stranger.environment_id)

    for call in (
        intruder.get(theirs.id),
        intruder.list(),
        intruder.create(name="Mine"),
        intruder.delete(theirs.id),
        intruder.add_tile(theirs.id, 1),
    ):
        err = await expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
        assert error_info(err).reason == "ENVIRONMENT_ACCESS_DENIED"
