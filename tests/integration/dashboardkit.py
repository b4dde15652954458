"""DashboardsService calls bound to one environment and one caller's key."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from google.protobuf import field_mask_pb2

from generated.insights.v1 import dashboards_pb2 as dpb
from generated.insights.v1 import dashboards_pb2_grpc as dgrpc
from tests.integration.itkit import Metadata, Server, Tenant, bearer


@dataclass
class DashboardsApi:
    """DashboardsService calls in one environment with one key."""

    stub: dgrpc.DashboardsServiceStub
    environment_id: int
    metadata: Metadata
    timeout: float = 15.0

    @classmethod
    def of(cls, server: Server, tenant: Tenant, *scopes: str) -> DashboardsApi:
        return cls(
            dgrpc.DashboardsServiceStub(server.channel), tenant.environment_id, bearer(tenant.key(*scopes))
        )

    def as_key(self, raw_key: str) -> DashboardsApi:
        return DashboardsApi(self.stub, self.environment_id, bearer(raw_key), self.timeout)

    def in_environment(self, environment_id: int) -> DashboardsApi:
        return DashboardsApi(self.stub, environment_id, self.metadata, self.timeout)

    async def _call(self, method: str, request: Any) -> Any:
        return await getattr(self.stub, method)(request, metadata=self.metadata, timeout=self.timeout)

    async def create(self, **fields: Any) -> dpb.Dashboard:
        request = dpb.CreateDashboardRequest(
            environment_id=self.environment_id, dashboard=dpb.Dashboard(**fields)
        )
        return cast(dpb.Dashboard, await self._call("CreateDashboard", request))

    async def get(self, dashboard_id: int) -> dpb.Dashboard:
        request = dpb.GetDashboardRequest(environment_id=self.environment_id, id=dashboard_id)
        return cast(dpb.Dashboard, await self._call("GetDashboard", request))

    async def list(self, **filters: Any) -> dpb.ListDashboardsResponse:
        request = dpb.ListDashboardsRequest(environment_id=self.environment_id, **filters)
        return cast(dpb.ListDashboardsResponse, await self._call("ListDashboards", request))

    async def list_ids(self, **filters: Any) -> builtins.list[int]:
        return [d.id for d in (await self.list(**filters)).results]

    async def update(
        self, dashboard_id: int, mask: Sequence[str] | None = None, **fields: Any
    ) -> dpb.Dashboard:
        request = dpb.UpdateDashboardRequest(
            environment_id=self.environment_id, id=dashboard_id, dashboard=dpb.Dashboard(**fields)
        )
        if mask is not None:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=builtins.list(mask)))
        return cast(dpb.Dashboard, await self._call("UpdateDashboard", request))

    async def delete(self, dashboard_id: int) -> dpb.Dashboard:
        request = dpb.DeleteDashboardRequest(environment_id=self.environment_id, id=dashboard_id)
        return cast(dpb.Dashboard, await self._call("DeleteDashboard", request))

    async def add_tile(self, dashboard_id: int, insight_id: int) -> dpb.Dashboard:
        request = dpb.AddDashboardTileRequest(
            environment_id=self.environment_id, dashboard_id=dashboard_id, insight_id=insight_id
        )
        return cast(dpb.Dashboard, await self._call("AddDashboardTile", request))

    async def remove_tile(self, dashboard_id: int, tile_id: int) -> dpb.Dashboard:
        request = dpb.RemoveDashboardTileRequest(
            environment_id=self.environment_id, dashboard_id=dashboard_id, tile_id=tile_id
        )
        return cast(dpb.Dashboard, await self._call("RemoveDashboardTile", request))

    async def update_tile(
        self, dashboard_id: int, tile_id: int, mask: Sequence[str] | None = None, **fields: Any
    ) -> dpb.Dashboard:
        request = dpb.UpdateDashboardTileRequest(
            environment_id=self.environment_id,
            dashboard_id=dashboard_id,
            tile_id=tile_id,
            tile=dpb.DashboardItem(**fields),
        )
        if mask is not None:
            request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=builtins.list(mask)))
        return cast(dpb.Dashboard, await self._call("UpdateDashboardTile", request))

    async def reorder(self, dashboard_id: int, tile_ids: Sequence[int]) -> dpb.Dashboard:
        request = dpb.ReorderDashboardTilesRequest(
            environment_id=self.environment_id, dashboard_id=dashboard_id, tile_ids=builtins.list(tile_ids)
        )
        return cast(dpb.Dashboard, await self._call("ReorderDashboardTiles", request))

    async def activity(
        self, dashboard_id: int | None = None, page: int = 0, limit: int = 0
    ) -> dpb.ListDashboardActivityResponse:
        request = dpb.ListDashboardActivityRequest(environment_id=self.environment_id, page=page, limit=limit)
        if dashboard_id is not None:
            request.id = dashboard_id
        return cast(dpb.ListDashboardActivityResponse, await self._call("ListDashboardActivity", request))


def tile_insights(board: dpb.Dashboard) -> builtins.list[int]:
    """The insight ids of a dashboard's live tiles, in layout order."""
    return [t.insight_id for t in board.tiles]
