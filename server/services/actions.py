"""ActionsService: translates requests to the action domain (server.domain.actions) and its answers back."""

from __future__ import annotations

import grpc

from generated.insights.v1 import actions_pb2 as apb
from generated.insights.v1 import actions_pb2_grpc
from server.domain.actions import Actions
from server.runtime import Blocking
from server.services.context import principal
from server.services.convert import actions as convert
from server.services.convert import common


class ActionsServicer(actions_pb2_grpc.ActionsServiceServicer):
    """Thin: every rule lives in server.domain.actions."""

    def __init__(self, actions: Actions, blocking: Blocking):
        self._actions = actions
        self._run = blocking.run

    async def CreateAction(
        self, request: apb.CreateActionRequest, context: grpc.aio.ServicerContext
    ) -> apb.Action:
        view = await self._run(
            self._actions.create, principal(), request.environment_id, convert.fields(request.action)
        )
        return convert.action(view)

    async def GetAction(self, request: apb.GetActionRequest, context: grpc.aio.ServicerContext) -> apb.Action:
        view = await self._run(self._actions.get, principal(), request.environment_id, request.id)
        return convert.action(view)

    async def ListActions(
        self, request: apb.ListActionsRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListActionsResponse:
        page = await self._run(
            self._actions.list_actions,
            principal(),
            request.environment_id,
            request.search,
            request.limit,
            request.offset,
        )
        return common.listing(apb.ListActionsResponse, page, convert.action)

    async def UpdateAction(
        self, request: apb.UpdateActionRequest, context: grpc.aio.ServicerContext
    ) -> apb.Action:
        view = await self._run(
            self._actions.update,
            principal(),
            request.environment_id,
            request.id,
            convert.fields(request.action),
            common.update_paths(request, request.action),
        )
        return convert.action(view)

    async def DeleteAction(
        self, request: apb.DeleteActionRequest, context: grpc.aio.ServicerContext
    ) -> apb.Action:
        view = await self._run(self._actions.delete, principal(), request.environment_id, request.id)
        return convert.action(view)

    async def ListActionActivity(
        self, request: apb.ListActionActivityRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListActionActivityResponse:
        page = await self._run(
            self._actions.activity,
            principal(),
            request.environment_id,
            request.id if request.HasField("id") else None,
            request.page,
            request.limit,
        )
        return common.activity_page(apb.ListActionActivityResponse, page)
