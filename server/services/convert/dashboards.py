"""Conversions between DashboardsService messages and the dashboard domain (server.domain.dashboards)."""

from __future__ import annotations

from generated.insights.v1 import dashboards_pb2
from server.domain.dashboards import DashboardFields, DashboardView
from server.services.convert import common


def dashboard(view: DashboardView) -> dashboards_pb2.Dashboard:
    message = dashboards_pb2.Dashboard(
        id=view.id,
        name=view.name,
        description=view.description,
        tags=list(view.tags),
        pinned=view.pinned,
        tiles=[
            dashboards_pb2.DashboardItem(
                id=t.id,
                insight_id=t.insight_id,
                insight_short_id=t.insight_short_id,
                insight_name=t.insight_name,
                position=t.position,
            )
            for t in view.tiles
        ],
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
