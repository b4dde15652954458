"""Dashboard tiles' own settings (UpdateDashboardTile: color, layouts, filters) and the tile limit,
on both metadata backends: what is saved and shown, bad input naming the field, activity, scopes."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from generated.insights.v1 import insight_pb2 as ipb
from generated.insights.v1 import query_pb2 as qpb
from server.domain.insights import MAX_TILES
from tests.integration.dashboardkit import DashboardsApi, tile_insights
from tests.integration.itkit import Api, Server, Tenant, assert_invalid, error_info, expect_error, trends_viz


@pytest.fixture
def boards(server: Server, tenant: Tenant) -> DashboardsApi:
    return DashboardsApi.of(server, tenant, "dashboard:write", "activity_log:read")


def _layouts(width: int) -> struct_pb2.Struct:
    layouts = struct_pb2.Struct()
    layouts.update({"sm": {"x": 0, "y": 2, "w": width, "h": 5}, "xs": {"x": 0, "y": 0, "w": 1, "h": 5}})
    return layouts


def _chrome() -> qpb.PropertyFilter:
    return qpb.PropertyFilter(
        key="$browser",
        type=qpb.PROPERTY_FILTER_TYPE_EVENT,
        operator=qpb.PROPERTY_OPERATOR_EXACT,
        value=qpb.PropertyValue(string_value="Chrome"),
    )


async def test_a_tiles_color_layouts_and_filters_are_saved_shown_and_cleared(
    boards: DashboardsApi, api: Api
) -> None:
    insight = await api.create(name="Pageviews", query=trends_viz())
    other = await api.create(name="Other", query=trends_viz())
    board = await boards.add_tile((await boards.create(name="Board")).id, insight.id)
    board = await boards.add_tile(board.id, other.id)
    tile_id = board.tiles[0].id
    filters = ipb.DashboardFilter(date_from="-14d", properties=[_chrome()])
    updated = await boards.update_tile(board.id, tile_id, color="blue", layouts=_layouts(6), filters=filters)
    first, second = updated.tiles
    assert (first.color, json_format.MessageToDict(first.layouts), first.filters) == (
        "blue",
        json_format.MessageToDict(_layouts(6)),
        filters,
    )
    # The other tile keeps none; a read shows what the update answered.
    assert not second.HasField("color") and not second.HasField("layouts") and not second.HasField("filters")
    assert (await boards.get(board.id)).tiles == updated.tiles

    # A mask changes only what it names; a named field left unset is cleared.
    relaid = await boards.update_tile(board.id, tile_id, ["layouts"], layouts=_layouts(12), color="red")
    assert relaid.tiles[0].color == "blue"
    assert json_format.MessageToDict(relaid.tiles[0].layouts)["sm"]["w"] == 12
    cleared = await boards.update_tile(board.id, tile_id, ["color", "filters"])
    assert not cleared.tiles[0].HasField("color") and not cleared.tiles[0].HasField("filters")
    assert cleared.tiles[0].HasField("layouts")

    # Settings belong to the tile: removed and re-added, the insight's tile keeps them.
    await boards.remove_tile(board.id, tile_id)
    back = await boards.add_tile(board.id, insight.id)
    assert tile_insights(back) == [other.id, insight.id]
    assert json_format.MessageToDict(back.tiles[1].layouts)["sm"]["w"] == 12


async def test_bad_tile_settings_are_refused_naming_the_field_and_nothing_changes(
    boards: DashboardsApi, api: Api
) -> None:
    insight = await api.create(name="Pageviews", query=trends_viz())
    board = await boards.add_tile((await boards.create(name="Board")).id, insight.id)
    tile_id = board.tiles[0].id
    err = await expect_error(
        boards.update_tile(board.id, tile_id, color="x" * 401), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "tile.color")
    huge = struct_pb2.Struct()
    huge.update({"sm": {"notes": "x" * (16 * 1024)}})
    err = await expect_error(
        boards.update_tile(board.id, tile_id, layouts=huge), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "tile.layouts")
    bad_range = ipb.DashboardFilter(date_from="not a date")
    err = await expect_error(
        boards.update_tile(board.id, tile_id, filters=bad_range), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "tile.filters.date_from")
    err = await expect_error(
        boards.update_tile(board.id, tile_id, ["position"], position=3), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert_invalid(err, "update_mask")
    assert (await boards.get(board.id)).tiles == board.tiles
    err = await expect_error(boards.update_tile(board.id, 10**12, color="blue"), grpc.StatusCode.NOT_FOUND)
    assert error_info(err).reason == "DASHBOARD_TILE_NOT_FOUND"


async def test_a_tile_change_is_in_the_activity_log_and_needs_dashboard_write(
    boards: DashboardsApi, api: Api, tenant: Tenant
) -> None:
    insight = await api.create(name="Pageviews", query=trends_viz())
    board = await boards.add_tile((await boards.create(name="Board")).id, insight.id)
    reader = boards.as_key(tenant.key("dashboard:read"))
    err = await expect_error(
        reader.update_tile(board.id, board.tiles[0].id, color="blue"), grpc.StatusCode.PERMISSION_DENIED
    )
    assert error_info(err).metadata["scope"] == "dashboard:write"
    await boards.update_tile(board.id, board.tiles[0].id, color="blue")
    latest = (await boards.activity(board.id)).results[0]
    assert latest.activity == "updated"
    (change,) = [c for c in latest.detail.changes if c.field == "tiles"]
    after = json_format.MessageToDict(change.after)
    assert after == [{"id": board.tiles[0].id, "insight_id": insight.id, "color": "blue"}]


async def test_a_dashboard_shows_at_most_the_reference_limit_of_insights(
    boards: DashboardsApi, api: Api
) -> None:
    board = await boards.create(name="Full")
    # Through the insight's own dashboards field, as most tiles are made.
    made = [
        await api.create(name=f"i{n}", query=trends_viz(), dashboards=[board.id]) for n in range(MAX_TILES)
    ]
    assert len((await boards.get(board.id)).tiles) == MAX_TILES == 100
    one_more = await api.create(name="one more", query=trends_viz())
    err = await expect_error(boards.add_tile(board.id, one_more.id), grpc.StatusCode.FAILED_PRECONDITION)
    info = error_info(err)
    assert (info.reason, info.metadata["field"], info.metadata["limit"]) == (
        "DASHBOARD_TILE_LIMIT",
        "insight_id",
        "100",
    )
    err = await expect_error(
        api.create(name="another", query=trends_viz(), dashboards=[board.id]),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error_info(err).metadata["field"] == "insight.dashboards"
    # Nothing was saved by the refused create, and a shown insight re-added keeps its tile.
    assert [i.name for i in (await api.list(search="another")).results] == []
    full = await boards.add_tile(board.id, made[0].id)
    assert len(full.tiles) == MAX_TILES
    # Room again once a tile goes.
    await boards.remove_tile(board.id, full.tiles[0].id)
    assert len((await boards.add_tile(board.id, one_more.id)).tiles) == MAX_TILES
