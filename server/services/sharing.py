"""SharingService: translates requests to the sharing domain and its answers back."""

from __future__ import annotations

import grpc

from generated.insights.v1 import insight_pb2, sharing_pb2, sharing_pb2_grpc
from server.domain.sharing import Sharing
from server.execution.refresh import Refresh
from server.runtime import Blocking
from server.services.context import principal, share_principal
from server.services.convert import common
from server.services.convert import sharing as convert


class SharingServicer(sharing_pb2_grpc.SharingServiceServicer):
    """Thin: every rule lives in server.domain.sharing."""

    def __init__(self, sharing: Sharing, blocking: Blocking):
        self._sharing = sharing
        self._run = blocking.run

    async def GetSharingConfiguration(
        self, request: sharing_pb2.GetSharingConfigurationRequest, context: grpc.aio.ServicerContext
    ) -> sharing_pb2.SharingConfiguration:
        view = await self._run(self._sharing.get, principal(), request.environment_id, request.insight_id)
        return convert.sharing_configuration(view)

    async def UpdateSharingConfiguration(
        self, request: sharing_pb2.UpdateSharingConfigurationRequest, context: grpc.aio.ServicerContext
    ) -> sharing_pb2.SharingConfiguration:
        given = request.sharing_configuration
        view = await self._run(
            self._sharing.update,
            principal(),
            request.environment_id,
            request.insight_id,
            convert.sharing_change(given),
            common.update_paths(request, given),
        )
        return convert.sharing_configuration(view)

    async def RefreshSharingToken(
        self, request: sharing_pb2.RefreshSharingTokenRequest, context: grpc.aio.ServicerContext
    ) -> sharing_pb2.SharingConfiguration:
        view = await self._run(
            self._sharing.refresh_token, principal(), request.environment_id, request.insight_id
        )
        return convert.sharing_configuration(view)

    async def CreateSharePassword(
        self, request: sharing_pb2.CreateSharePasswordRequest, context: grpc.aio.ServicerContext
    ) -> sharing_pb2.CreateSharePasswordResponse:
        created = await self._run(
            self._sharing.create_password,
            principal(),
            request.environment_id,
            request.insight_id,
            request.raw_password if request.HasField("raw_password") else None,
            request.note,
        )
        return sharing_pb2.CreateSharePasswordResponse(
            id=created.id,
            password=created.password,
            note=created.note,
            created_at=common.timestamp(created.created_at),
            created_by_email=created.created_by_email,
        )

    async def DeleteSharePassword(
        self, request: sharing_pb2.DeleteSharePasswordRequest, context: grpc.aio.ServicerContext
    ) -> sharing_pb2.SharingConfiguration:
        view = await self._run(
            self._sharing.delete_password,
            principal(),
            request.environment_id,
            request.insight_id,
            request.password_id,
        )
        return convert.sharing_configuration(view)

    async def UnlockSharedInsight(
        self, request: sharing_pb2.UnlockSharedInsightRequest, context: grpc.aio.ServicerContext
    ) -> sharing_pb2.UnlockSharedInsightResponse:
        unlocked = await self._run(
            self._sharing.unlock, request.access_token, request.password, context.peer() or ""
        )
        return sharing_pb2.UnlockSharedInsightResponse(
            share_token=unlocked.share_token, expires_at=common.timestamp(unlocked.expires_at)
        )

    async def GetSharedInsight(
        self, request: sharing_pb2.GetSharedInsightRequest, context: grpc.aio.ServicerContext
    ) -> insight_pb2.Insight:
        read = await self._sharing.read(
            share_principal(), common.refresh(request.refresh, Refresh.FORCE_CACHE)
        )
        return convert.shared_insight(read)
