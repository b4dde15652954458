"""QueryService: translates query requests to the execution layer and its answers back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from generated.insights.v1 import query_service_pb2 as qs
from generated.insights.v1 import query_service_pb2_grpc as qs_grpc
from generated.insights.v1 import results_pb2
from server.execution.refresh import Execution, Refresh
from server.execution.runs import Run
from server.services.context import principal
from server.services.convert import common
from server.services.convert import queries as convert


class QueryServicer(qs_grpc.QueryServiceServicer):
    """Thin: the refresh rules, runs and progress live in server.execution."""

    def __init__(self, execution: Execution):
        self._execution = execution

    async def RunQuery(
        self, request: qs.RunQueryRequest, context: grpc.aio.ServicerContext
    ) -> qs.QueryResponse:
        env = principal().environment(request.environment_id)
        query = request.query if request.HasField("query") else None
        computed = await self._execution.result(
            env, query, common.refresh(request.refresh, Refresh.BLOCKING), client_query_id=request.client_query_id
        )
        return convert.query_response(computed or await self._execution.missed(env, query))

    async def StreamQuery(
        self, request: qs.StreamQueryRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[qs.QueryEvent]:
        env = principal().environment(request.environment_id)
        async for item in self._execution.stream(
            env,
            request.query if request.HasField("query") else None,
            common.refresh(request.refresh, Refresh.BLOCKING),
            client_query_id=request.client_query_id,
        ):
            if isinstance(item, Run):
                yield qs.QueryEvent(status=common.query_status(item, show_progress=True))
            else:
                yield qs.QueryEvent(result=convert.query_response(item))

    async def GetQueryStatus(
        self, request: qs.GetQueryStatusRequest, context: grpc.aio.ServicerContext
    ) -> results_pb2.QueryStatus:
        env = principal().environment(request.environment_id)
        run = self._execution.status(env, request.query_id)
        return common.query_status(run, show_progress=request.show_progress)

    async def CancelQuery(
        self, request: qs.CancelQueryRequest, context: grpc.aio.ServicerContext
    ) -> qs.CancelQueryResponse:
        env = principal().environment(request.environment_id)
        outcome = await self._execution.cancel(env, request.query_id, dequeue_only=request.dequeue_only)
        return convert.cancel_response(outcome)
