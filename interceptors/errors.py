"""The one place where domain errors and unexpected exceptions become gRPC status codes."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy.exc import OperationalError

from interceptors.callstate import is_abort, is_call_over, is_cancelled
from interceptors.wrap import CallInterceptor
from server import errors, requestid

DOMAIN = "insights.v1"
log = logging.getLogger("insights.errors")

_CODES: dict[type[errors.DomainError], int] = {
    errors.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    errors.NotFound: code_pb2.NOT_FOUND,
    errors.PermissionDenied: code_pb2.PERMISSION_DENIED,
    errors.Unauthenticated: code_pb2.UNAUTHENTICATED,
    errors.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    errors.AlreadyExists: code_pb2.ALREADY_EXISTS,
    errors.Unavailable: code_pb2.UNAVAILABLE,
    errors.Cancelled: code_pb2.CANCELLED,
    errors.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    errors.Unimplemented: code_pb2.UNIMPLEMENTED,
}


# What an error may repeat. A client refuses trailers above 8 KiB (grpc's default metadata limit, so
# RESOURCE_EXHAUSTED instead of the real error), and the message travels twice: percent-encoded in
# `grpc-message` (up to 3 bytes a byte) and inside the base64 `grpc-status-details-bin`. With these
# bounds the trailers stay under 7.5 KiB however the caller's input echoes.
MAX_MESSAGE_BYTES = 1024
MAX_NAME_BYTES = 64  # ErrorInfo reason and metadata keys
MAX_VALUE_BYTES = 256  # ErrorInfo metadata values and BadRequest field paths
MAX_DESCRIPTION_BYTES = 512  # BadRequest descriptions
MAX_DETAILS_BYTES = 2048  # ErrorInfo, BadRequest and RetryInfo together, serialized


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes at a character boundary, saying how long it was."""
    data = text.encode()
    if len(data) <= limit:
        return text
    note = f"… ({len(text)} characters)"
    return data[: max(0, limit - len(note.encode()))].decode("utf-8", "ignore") + note


def to_status(error: errors.DomainError) -> status_pb2.Status:
    """google.rpc.Status of a domain error: ErrorInfo always, BadRequest for field violations.

    Every text is bounded (see MAX_*), so that the status always reaches the client.
    """
    code = next((c for cls, c in _CODES.items() if isinstance(error, cls)), code_pb2.UNKNOWN)
    status = status_pb2.Status(code=code, message=clip(error.message, MAX_MESSAGE_BYTES))
    retry: error_details_pb2.RetryInfo | None = None
    if isinstance(error, errors.Unavailable | errors.ResourceExhausted) and getattr(error, "retryable", True):
        delay = getattr(error, "retry_after", None) or 1.0
        seconds = int(delay)
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=seconds, nanos=int((delay - seconds) * 1e9))
        )
    info = error_details_pb2.ErrorInfo(reason=clip(error.reason, MAX_NAME_BYTES), domain=DOMAIN)
    rid = requestid.current.get()
    if rid is not None:
        # First, so that it is never the entry the size bound leaves out (at most 128 characters).
        info.metadata["request_id"] = rid
    # Room left for metadata and violations; 64 bytes cover the Any wrappers' type URLs and tags.
    room = MAX_DETAILS_BYTES - info.ByteSize() - (retry.ByteSize() if retry else 0) - 3 * 64
    for key, value in error.metadata.items():
        entry = (clip(key, MAX_NAME_BYTES), clip(value, MAX_VALUE_BYTES))
        cost = sum(len(part.encode()) for part in entry) + 8
        if cost > room:
            break
        info.metadata[entry[0]] = entry[1]
        room -= cost
    bad: error_details_pb2.BadRequest | None = None
    if isinstance(error, errors.InvalidArgument) and error.violations:
        bad = error_details_pb2.BadRequest()
        room -= 32  # the count of omitted violations, should there be any
        for violation in error.violations:
            kept = error_details_pb2.BadRequest.FieldViolation(
                field=clip(violation.field, MAX_VALUE_BYTES),
                description=clip(violation.description, MAX_DESCRIPTION_BYTES),
            )
            cost = kept.ByteSize() + 4
            if cost > room:
                break
            bad.field_violations.append(kept)
            room -= cost
        omitted = len(error.violations) - len(bad.field_violations)
        if omitted:
            info.metadata["omitted_violations"] = str(omitted)
    status.details.add().Pack(info)
    if bad is not None:
        status.details.add().Pack(bad)
    if retry is not None:
        status.details.add().Pack(retry)
    return status


class ErrorInterceptor(CallInterceptor):
    """Maps exceptions raised below it to statuses; INTERNAL errors get a logged correlation id."""

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        try:
            return await call()
        except Exception as exc:
            await self._abort(method, context, exc)

    async def stream(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        try:
            async for message in call():
                yield message
        except Exception as exc:
            await self._abort(method, context, exc)

    async def _abort(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], exc: Exception
    ) -> NoReturn:
        if isinstance(exc, asyncio.CancelledError) or is_abort(exc):
            raise exc
        if is_call_over(exc) or is_cancelled() or context.time_remaining() == 0:
            # The call was cancelled (client, deadline, shutdown), its deadline passed, or it already
            # ended: the client has its status from grpc, this exception is the work being cut short (not
            # an internal error), and no status of ours can reach anyone. Ending as cancelled says so to
            # grpc and to the access log.
            log.debug("%s ended before it could answer: %r", method, exc)
            raise asyncio.CancelledError(f"{method} ended before it could answer") from exc
        if isinstance(exc, OperationalError):
            # The database is unreachable or locked: the caller may retry this call.
            exc = errors.Unavailable(
                "the metadata database is unavailable; retry shortly", reason="DATABASE_UNAVAILABLE"
            )
        if not isinstance(exc, errors.DomainError):
            correlation = uuid.uuid4().hex[:16]
            log.error("internal error in %s (correlation id %s)", method, correlation, exc_info=exc)
            exc = errors.DomainError(
                f"internal error (correlation id {correlation})",
                reason="INTERNAL",
                metadata={"correlation_id": correlation},
            )
            status = to_status(exc)
            status.code = code_pb2.INTERNAL
        else:
            status = to_status(exc)
        try:
            await context.abort_with_status(rpc_status.to_status(status))
        except Exception as failed:
            if is_abort(failed):
                raise
            # The status could not be sent: the call ended (deadline, cancel, shutdown) meanwhile.
            log.debug("%s ended before its status was sent: %r", method, failed)
            raise asyncio.CancelledError(f"{method} ended before its status was sent") from failed
        raise AssertionError("abort_with_status returned")  # pragma: no cover
