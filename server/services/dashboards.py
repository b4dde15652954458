"""DashboardsService: translates requests to the dashboard domain (server.domain.dashboards) and its answers back."""

from __future__ import annotations

import grpc

from generated.insights.v1 import dashboards_pb2 as dpb
from generated.insights.v1 import dashboards_pb2_grpc
from server.domain.dashboards import Dashboards
from server.runtime import Blocking
from server.services.context import principal
from server.services.convert import common
from server.services.convert import dashboards as convert


class DashboardsServicer(dashboards_pb2_grpc.DashboardsServiceServicer):
    """Thin: every rule lives in server.domain.dashboards."""

    def __init__(self, dashboards: Dashboards, blocking: Blocking):
        self._dashboards = dashboards
        self._run = blocking.run

    async def CreateDashboard(
        self, request: dpb.CreateDashboardRequest, context: grpc.aio.ServicerContext
    ) -> dpb.Dashboard:
        view = await self._run(
            self._dashboards.create, principal(), request.environment_id, convert.fields(request.dashboard)
        )
        return convert.dashboard(view)

    async def GetDashboard(
        self, request: dpb.GetDashboardRequest, context: grpc.aio.ServicerContext
    ) -> dpb.Dashboard:
        view = await self._run(self._dashboards.get, principal(), request.environment_id, request.id)
        return convert.dashboard(view)

    async def ListDashboards(
        self, request: dpb.ListDashboardsRequest, context: grpc.aio.ServicerContext
    ) -> dpb.ListDashboardsResponse:
        page = await self._run(
            self._dashboards.list_dashboards,
            principal(),
            request.environment_id,
            request.search,
            request.pinned,
            request.limit,
            request.offset,
        )
        return common.listing(dpb.ListDashboardsResponse, page, convert.dashboard)

    async def UpdateDashboard(
        self, request: dpb.UpdateDashboardRequest, context: grpc.aio.ServicerContext
    ) -> dpb.Dashboard:
        view = await self._run(
            self._dashboards.update,
            principal(),
            request.environment_id,
            request.id,
            convert.fields(request.dashboard),
            common.update_paths(request, request.dashboard),
        )
        return convert.dashboard(view)

    async def DeleteDashboard(
        self, request: dpb.DeleteDashboardRequest, context: grpc.aio.ServicerContext
    ) -> dpb.Dashboard:
        view = await self._run(self._dashboards.delete, principal(), request.environment_id, request.id)
        return convert.dashboard(view)

    async def AddDashboardTile(
        self, request: dpb.AddDashboardTileRequest, context: grpc.aio.ServicerContext
    ) -> dpb.Dashboard:
        view = await self._run(
            self._dashboards.add_tile,
            principal(),
            request.environment_id,
            request.dashboard_id,
            request.insight_id,
        )
        return convert.dashboard(view)

    async def RemoveDashboardTile(
        self, request: dpb.RemoveDashboardTileRequest, context: grpc.aio.ServicerContext
    ) -> dpb.Dashboard:
        view = await self._run(
            self._dashboards.remove_tile,
            principal(),
            request.environment_id,
            request.dashboard_id,
            request.tile_id,
        )
        return convert.dashboard(view)

    async def UpdateDashboardTile(
        self, request: dpb.UpdateDashboardTileRequest, context: grpc.aio.ServicerContext
    ) -> dpb.Dashboard:
        view = await self._run(
            self._dashboards.update_tile,
            principal(),
            request.environment_id,
            request.dashboard_id,
            request.tile_id,
            convert.tile_fields(request.tile),
            common.update_paths(request, request.tile),
        )
        return convert.dashboard(view)

    async def ReorderDashboardTiles(
        self, request: dpb.ReorderDashboardTilesRequest, context: grpc.aio.ServicerContext
    ) -> dpb.Dashboard:
        view = await self._run(
            self._dashboards.reorder_tiles,
            principal(),
            request.environment_id,
            request.dashboard_id,
            list(request.tile_ids),
        )
        return convert.dashboard(view)

    async def ListDashboardActivity(
        self, request: dpb.ListDashboardActivityRequest, context: grpc.aio.ServicerContext
    ) -> dpb.ListDashboardActivityResponse:
        page = await self._run(
            self._dashboards.activity,
            principal(),
            request.environment_id,
            request.id if request.HasField("id") else None,
            request.page,
            request.limit,
        )
        return common.activity_page(dpb.ListDashboardActivityResponse, page)
