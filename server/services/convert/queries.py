"""QueryService conversions: an answer as a QueryResponse, a cancel outcome as its enum and message."""

from __future__ import annotations

from generated.insights.v1 import query_service_pb2
from server.execution.refresh import Computed
from server.services.convert.common import answer_facts

# CancelQuery's outcomes: the enum value and the reference's message.
CANCEL_OUTCOMES = {
    "already_complete": (query_service_pb2.CANCEL_OUTCOME_ALREADY_COMPLETE, "Query already complete"),
    "cancelled": (query_service_pb2.CANCEL_OUTCOME_CANCELLED, "Cancelled query on clickhouse"),
    "not_dequeued": (
        query_service_pb2.CANCEL_OUTCOME_NOT_DEQUEUED,
        "Only tried to dequeue, not cancelling query on clickhouse",
    ),
}


def query_response(computed: Computed | None) -> query_service_pb2.QueryResponse:
    """The QueryResponse of an answer (empty on a cache miss)."""
    response = query_service_pb2.QueryResponse()
    if computed is None:
        return response
    if computed.result is not None:
        response.result.CopyFrom(computed.result)
    response.has_more = computed.has_more
    response.is_cached = computed.is_cached
    response.cache_key = computed.cache_key
    response.timezone = computed.timezone
    response.hogql = computed.sql
    response.calculation_trigger = computed.trigger
    answer_facts(response, computed)
    return response


def cancel_response(outcome: str) -> query_service_pb2.CancelQueryResponse:
    """CancelQuery's answer to the execution layer's outcome."""
    code, message = CANCEL_OUTCOMES[outcome]
    return query_service_pb2.CancelQueryResponse(outcome=code, message=message)
