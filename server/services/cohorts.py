"""CohortsService: translates requests to the cohort domain (server.domain.cohorts) and its answers back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from generated.insights.v1 import cohorts_pb2 as cpb
from generated.insights.v1 import cohorts_pb2_grpc
from server.domain.cohorts import Cohorts, Upload
from server.errors import InvalidArgument
from server.runtime import Blocking
from server.services.context import principal
from server.services.convert import cohorts as convert
from server.services.convert import common


class CohortsServicer(cohorts_pb2_grpc.CohortsServiceServicer):
    """Thin: every rule lives in server.domain.cohorts."""

    def __init__(self, cohorts: Cohorts, blocking: Blocking):
        self._cohorts = cohorts
        self._run = blocking.run

    async def CreateCohort(
        self, request: cpb.CreateCohortRequest, context: grpc.aio.ServicerContext
    ) -> cpb.Cohort:
        return convert.cohort(
            await self._run(self._cohorts.create, principal(), request.environment_id, request.cohort)
        )

    async def GetCohort(self, request: cpb.GetCohortRequest, context: grpc.aio.ServicerContext) -> cpb.Cohort:
        return convert.cohort(await self._run(self._cohorts.get, principal(), request.environment_id, request.id))

    async def ListCohorts(
        self, request: cpb.ListCohortsRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ListCohortsResponse:
        page = await self._run(
            self._cohorts.list_cohorts,
            principal(),
            request.environment_id,
            request.search,
            request.limit,
            request.offset,
        )
        return common.listing(cpb.ListCohortsResponse, page, convert.cohort)

    async def UpdateCohort(
        self, request: cpb.UpdateCohortRequest, context: grpc.aio.ServicerContext
    ) -> cpb.Cohort:
        paths = common.update_paths(request, request.cohort)
        view = await self._run(
            self._cohorts.update, principal(), request.environment_id, request.id, request.cohort, paths
        )
        return convert.cohort(view)

    async def DeleteCohort(
        self, request: cpb.DeleteCohortRequest, context: grpc.aio.ServicerContext
    ) -> cpb.Cohort:
        return convert.cohort(await self._run(self._cohorts.delete, principal(), request.environment_id, request.id))

    async def ListCohortPersons(
        self, request: cpb.ListCohortPersonsRequest, context: grpc.aio.ServicerContext
    ) -> cpb.ListCohortPersonsResponse:
        found = await self._run(
            self._cohorts.persons,
            principal(),
            request.environment_id,
            request.id,
            request.limit,
            request.offset,
        )
        return common.listing(cpb.ListCohortPersonsResponse, found.page, convert.person, version=found.version)

    async def UploadCohortMembers(
        self,
        request_iterator: AsyncIterator[cpb.UploadCohortMembersRequest],
        context: grpc.aio.ServicerContext,
    ) -> cpb.UploadCohortMembersResponse:
        upload: Upload | None = None
        async for message in request_iterator:
            if upload is None:
                upload = await self._run(
                    self._cohorts.start_upload, principal(), message.environment_id, message.cohort_id
                )
            else:
                upload.check_target(message.environment_id, message.cohort_id)
            upload.add(message.csv_chunk)
        if upload is None:
            raise InvalidArgument(
                "the stream carried no message: send the file in csv_chunk", field="csv_chunk"
            )
        outcome = await self._run(upload.finish)
        return cpb.UploadCohortMembersResponse(
            cohort=convert.cohort(outcome.view),
            rows=outcome.rows,
            added=outcome.added,
            duplicates=outcome.duplicates,
            rejected=outcome.rejected,
            rejections=[cpb.RejectedCohortRow(line=r.line, reason=r.reason) for r in outcome.rejections],
        )
