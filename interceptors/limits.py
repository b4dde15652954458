"""Bounds the size of every response message to what the caller said it accepts (4 MiB by default)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message

from interceptors.wrap import CallInterceptor
from server.errors import InvalidArgument, ResourceExhausted

# A caller whose client accepts larger messages says so with this request header (a byte count).
OPT_IN_HEADER = "x-insights-max-response-bytes"
# What gRPC clients accept unless configured otherwise (grpc.max_receive_message_length, grpcurl).
DEFAULT_RESPONSE_BYTES = 4 * 1024 * 1024


class ResponseLimitInterceptor(CallInterceptor):
    """Refuses a response larger than the caller accepts with RESOURCE_EXHAUSTED naming the limit.

    Without the header the limit is `default_bytes`; the header raises (or lowers) it up to
    `ceiling_bytes`. A default client would otherwise fail on the message with an error that says
    nothing about why; this one says which limit, how large the answer was and how to opt in.
    Streams are checked message by message. Must run inside the error interceptor.
    """

    def __init__(self, default_bytes: int = DEFAULT_RESPONSE_BYTES, ceiling_bytes: int = 64 * 1024 * 1024):
        if not 0 < default_bytes <= ceiling_bytes:
            raise ValueError("need 0 < default_bytes <= ceiling_bytes")
        self._default = default_bytes
        self._ceiling = ceiling_bytes

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        limit = self._limit(context)
        response = await call()
        self._check(response, limit)
        return response

    async def stream(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        limit = self._limit(context)
        async for message in call():
            self._check(message, limit)
            yield message

    def _limit(self, context: grpc.aio.ServicerContext[Any, Any]) -> int:
        asked = next((v for k, v in context.invocation_metadata() or () if k == OPT_IN_HEADER), None)
        if asked is None:
            return self._default
        text = asked.decode("ascii", "replace") if isinstance(asked, bytes) else str(asked)
        if not text.isdigit() or not 0 < int(text) <= self._ceiling:
            raise InvalidArgument(
                f"{OPT_IN_HEADER}: a byte count from 1 to {self._ceiling} (got {text[:32]!r})",
                field=OPT_IN_HEADER,
                reason="BAD_RESPONSE_LIMIT",
            )
        return int(text)

    def _check(self, message: Any, limit: int) -> None:
        if not isinstance(message, Message):
            return
        size = message.ByteSize()
        if size > limit:
            raise ResourceExhausted(
                f"the response would be {size} bytes, more than the {limit} this call accepts: narrow the "
                f"query (date range, interval, breakdown_limit, series), or accept more with the "
                f"{OPT_IN_HEADER} request header (at most {self._ceiling}) and a client configured to "
                "receive it",
                reason="RESPONSE_TOO_LARGE",
                retryable=False,
                metadata={
                    "response_bytes": str(size),
                    "limit_bytes": str(limit),
                    "ceiling_bytes": str(self._ceiling),
                    "header": OPT_IN_HEADER,
                },
            )
