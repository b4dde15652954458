"""Conversions between DashboardsService messages and the dashboard domain (server.domain.dashboards)."""

from __future__ import annotations

from google.protobuf import json_format

from generated.insights.v1 import dashboards_pb2
from server.domain.dashboards import DashboardFields, DashboardView, TileFields, TileView
from server.services.convert import common


def dashboard(view: DashboardView) -> dashboards_pb2.Dashboard:
    message = dashboards_pb2.Dashboard(
        id=view.id,
        name=view.name,
        description=view.description,
        tags=list(view.tags),
        pinned=view.pinned,
        tiles=[tile(t) for t in view.tiles],
        deleted=view.deleted,
        created_at=common.timestamp(view.created_at),
        updated_at=common.timestamp(view.updated_at),
    )
    if view.filters.ByteSize():
        message.filters.CopyFrom(view.filters)
    created_by = common.user(view.created_by)
    if created_by is not None:
        message.created_by.CopyFrom(created_by)
    return message


def fields(message: dashboards_pb2.Dashboard) -> DashboardFields:
    """The writable fields of a request's dashboard (output-only fields are ignored)."""
    return DashboardFields(
        name=message.name,
        description=message.description,
        tags=list(message.tags),
        pinned=message.pinned,
        filters=message.filters,
        deleted=message.deleted,
    )


def tile(view: TileView) -> dashboards_pb2.DashboardItem:
    """A live tile with its settings (color, layouts and filters only when it has them)."""
    message = dashboards_pb2.DashboardItem(
        id=view.id,
        insight_id=view.insight_id,
        insight_short_id=view.insight_short_id,
        insight_name=view.insight_name,
        position=view.position,
    )
    if view.color is not None:
        message.color = view.color
    if view.layouts is not None:
        message.layouts.update(view.layouts)
    if view.filters.ByteSize():
        message.filters.CopyFrom(view.filters)
    return message


def tile_fields(message: dashboards_pb2.DashboardItem) -> TileFields:
    """The writable fields of a request's tile (output-only fields are ignored)."""
    return TileFields(
        color=message.color if message.HasField("color") else None,
        layouts=json_format.MessageToDict(message.layouts) if message.HasField("layouts") else None,
        filters=message.filters,
    )
