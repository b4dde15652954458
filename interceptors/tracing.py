"""A server span per call, child of the caller's `traceparent` when it sends one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from interceptors.wrap import CallInterceptor
from server import requestid, tracing

# Codes that are the server's fault (OpenTelemetry's gRPC conventions: a server span is an error only
# for these; a caller's bad request is not the server's error).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class TracingInterceptor(CallInterceptor):
    """Runs the call in a SERVER span named after the method (`insights.v1.QueryService/RunQuery`),
    with the rpc.* attributes, the request id and the status code the call ended with. Spans made
    below it (engine and metadata statements, worker threads: contexts are copied) are its children.
    Inside the logging interceptor, so that the request id is chosen first."""

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        with _span(method, context) as span:
            try:
                return await call()
            finally:
                _end(span, context)

    async def stream(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        with _span(method, context) as span:
            try:
                async for message in call():
                    yield message
            finally:
                _end(span, context)


@contextmanager
def _span(method: str, context: grpc.aio.ServicerContext[Any, Any]) -> Iterator[Span]:
    carrier = {str(k): str(v) for k, v in context.invocation_metadata() or () if not str(k).endswith("-bin")}
    service, _, name = method.lstrip("/").rpartition("/")
    with tracing.tracer().start_as_current_span(
        method.lstrip("/"),
        context=propagate.extract(carrier),
        kind=SpanKind.SERVER,
        attributes={
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": name,
            "insights.request_id": requestid.current.get() or requestid.NONE,
        },
        # The status is set from the gRPC code below; an exception here is a status, not a crash.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def _end(span: Span, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    code = context.code()
    status = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", status.value[0])
    if status in _SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, status.name))
