"""EventsService conversions: proto events to the ingestion domain's incoming events."""

from __future__ import annotations

import datetime as dt

from generated.insights.v1 import events_pb2
from server.domain.ingest import EARLIEST, IncomingEvent

EARLIEST_OUT = EARLIEST - dt.timedelta(days=1)


def incoming(event: events_pb2.Event) -> IncomingEvent:
    """The domain's view of a proto event (an unset timestamp stays absent)."""
    timestamp: dt.datetime | None = None
    if event.HasField("timestamp"):
        try:
            timestamp = event.timestamp.ToDatetime(tzinfo=dt.UTC)
        except (ValueError, OverflowError):
            # Beyond what datetime holds: far outside the accepted range either way.
            timestamp = (
                dt.datetime.max.replace(tzinfo=dt.UTC) if event.timestamp.seconds > 0 else EARLIEST_OUT
            )
    return IncomingEvent(
        event=event.event,
        distinct_id=event.distinct_id,
        timestamp=timestamp,
        properties=event.properties,
        uuid=event.uuid,
        person_id=event.person_id,
        person_properties=event.person_properties,
        elements_chain=event.elements_chain,
    )
