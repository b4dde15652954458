"""One log line per call: method, status code, duration, environment and key id (never the key)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from interceptors.wrap import CallInterceptor
from server.services.context import current_principal

log = logging.getLogger("insights.requests")


class LoggingInterceptor(CallInterceptor):
    """Outermost interceptor: sees the final status that the error interceptor set."""

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        start = time.perf_counter()
        try:
            return await call()
        finally:
            self._line(method, request, context, start)

    async def stream(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        start = time.perf_counter()
        try:
            async for message in call():
                yield message
        finally:
            self._line(method, request, context, start)

    def _line(
        self, method: str, request: Any, context: grpc.aio.ServicerContext[Any, Any], start: float
    ) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        code = context.code()
        name = code.name if isinstance(code, grpc.StatusCode) else "OK" if code in (None, 0) else str(code)
        principal = current_principal.get()
        environment = getattr(request, "environment_id", None)
        log.info(
            "rpc method=%s code=%s duration_ms=%.1f environment=%s key_id=%s",
            method,
            name,
            (time.perf_counter() - start) * 1000,
            environment if environment else "-",
            principal.key_id if principal else "-",
        )
