"""EventsService: streams of event batches into the ingestion domain, counts (or per-batch acks) back."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc

from generated.insights.v1 import events_pb2, events_pb2_grpc
from server.domain.ingest import BatchStream, Ingestion, IngestRun
from server.runtime import Blocking
from server.services.context import principal
from server.services.convert import events as convert


class EventsServicer(events_pb2_grpc.EventsServiceServicer):
    """Thin: every rule lives in server.domain.ingest."""

    def __init__(self, ingestion: Ingestion, blocking: Blocking):
        self._ingestion = ingestion
        self._run = blocking.run

    async def IngestEvents(
        self,
        request_iterator: AsyncIterator[events_pb2.IngestEventsRequest],
        context: grpc.aio.ServicerContext,
    ) -> events_pb2.IngestEventsResponse:
        run: IngestRun | None = None
        # One message at a time: memory stays bounded by a batch plus one message.
        async for message in request_iterator:
            if run is None:
                run = self._ingestion.start(principal(), message.environment_id)
            else:
                run.check_environment(message.environment_id)
            await self._run(run.add, [convert.incoming(e) for e in message.events])
        if run is None:
            return events_pb2.IngestEventsResponse()
        await self._run(run.flush)
        return events_pb2.IngestEventsResponse(
            accepted=run.accepted,
            rejected=run.rejected,
            rejections=[events_pb2.RejectedEvent(index=r.index, reason=r.reason) for r in run.rejections],
            duplicates=run.duplicates,
        )

    async def IngestEventBatches(
        self,
        request_iterator: AsyncIterator[events_pb2.IngestEventBatchesRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[events_pb2.IngestEventBatchesResponse]:
        stream: BatchStream | None = None
        # One batch at a time, acknowledged only after its insert returned: the ack order is the
        # request order, and an ack never runs ahead of the stored rows.
        async for message in request_iterator:
            if stream is None:
                stream = self._ingestion.start_batches(principal(), message.environment_id)
            else:
                stream.check_environment(message.environment_id)
            outcome = await self._run(stream.ingest, [convert.incoming(e) for e in message.events])
            yield events_pb2.IngestEventBatchesResponse(
                sequence=message.sequence,
                accepted=outcome.accepted,
                duplicates=outcome.duplicates,
                rejected=len(outcome.rejections),
                rejections=[
                    events_pb2.RejectedEvent(index=r.index, reason=r.reason) for r in outcome.rejections
                ],
            )
