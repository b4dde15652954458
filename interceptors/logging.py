"""One log line per call (method, the status code the client saw, duration, environment, key id),
and the call's request id: chosen first, sent back in the response headers, on every log line."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from interceptors.callstate import is_abort, is_call_over, is_cancelled
from interceptors.metrics import RpcMeter
from interceptors.wrap import CallInterceptor
from server import requestid
from server.services.context import current_principal

log = logging.getLogger("insights.requests")

# A client whose deadline passes cancels the call itself, so the server sees a cancel a moment before
# its own copy of the deadline: a cancel this close to the deadline is the deadline. The server's copy
# is also later by the rounding of the `grpc-timeout` header (up to 1 % of the timeout).
DEADLINE_SLACK_SECONDS = 0.05
DEADLINE_SLACK_SHARE = 0.011


class LoggingInterceptor(CallInterceptor):
    """Outermost interceptor: sees the final status that the error interceptor set.

    A call that ends without a status of ours was ended by grpc, and the code logged is the one grpc
    gave its client: DEADLINE_EXCEEDED when the deadline has (all but) passed, UNAVAILABLE for calls
    still running when a stopping server's grace period ends (grpc cancels them with "Cancelling all
    calls"), and CANCELLED when the client went away.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, meter: RpcMeter | None = None):
        self._clock = clock
        self._cancel_all_at: float | None = None
        # Counts every call with the same code as its log line (for the metrics endpoint).
        self.meter = meter

    def stopping(self, grace: float | None) -> None:
        """The server is stopping: calls still running `grace` seconds from now will be cancelled.

        `None` is grpc's "no grace limit": calls are then never cancelled by the stop.
        """
        if grace is not None:
            self._cancel_all_at = self._clock() + grace

    async def unary(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], Awaitable[Any]],
    ) -> Any:
        start = time.perf_counter()
        budget = context.time_remaining()
        ended: BaseException | None = None
        await _begin(context)
        if self.meter is not None:
            self.meter.begin(method)
        try:
            return await call()
        except BaseException as exc:
            ended = exc
            raise
        finally:
            self._line(method, request, context, start, budget, ended)

    async def stream(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        call: Callable[[], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        start = time.perf_counter()
        budget = context.time_remaining()
        ended: BaseException | None = None
        await _begin(context)
        if self.meter is not None:
            self.meter.begin(method)
        try:
            async for message in call():
                yield message
        except BaseException as exc:  # GeneratorExit included: grpc stopped reading the stream
            ended = exc
            raise
        finally:
            self._line(method, request, context, start, budget, ended)

    def code(
        self, context: grpc.aio.ServicerContext[Any, Any], budget: float | None, ended: BaseException | None
    ) -> str:
        """The status code the client received, given the call's deadline budget and how it ended here."""
        if is_abort(ended) or (ended is None and not is_cancelled()):
            # Aborted with a status of ours (abort records its code on the context), or returned.
            return _name(context.code())
        if is_cancelled() or isinstance(ended, asyncio.CancelledError | GeneratorExit) or is_call_over(ended):
            remaining = context.time_remaining()
            slack = DEADLINE_SLACK_SECONDS + DEADLINE_SLACK_SHARE * (budget or 0.0)
            if remaining is not None and remaining <= slack:
                return "DEADLINE_EXCEEDED"
            if self._cancel_all_at is not None and self._clock() >= self._cancel_all_at:
                return "UNAVAILABLE"
            return "CANCELLED"
        # An exception escaped every interceptor: grpc answers UNKNOWN unless a code was set.
        code = _name(context.code())
        return "UNKNOWN" if code == "OK" else code

    def _line(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        start: float,
        budget: float | None,
        ended: BaseException | None,
    ) -> None:
        logging_on = log.isEnabledFor(logging.INFO)
        if not logging_on and self.meter is None:
            return
        code = self.code(context, budget, ended)
        seconds = time.perf_counter() - start
        if self.meter is not None:
            self.meter.end(method, code, seconds)
        if not logging_on:
            return
        principal = current_principal.get()
        environment = getattr(request, "environment_id", None)
        log.info(
            "rpc method=%s code=%s duration_ms=%.1f environment=%s key_id=%s",
            method,
            code,
            seconds * 1000,
            environment if environment else "-",
            principal.key_id if principal else "-",
        )


async def _begin(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Chooses the call's request id and sends it in the response headers straight away, so that a
    caller has it whatever happens next (an error, a deadline, a stream cut short)."""
    rid = requestid.begin(context.invocation_metadata())
    try:
        await context.send_initial_metadata(((requestid.HEADER, rid),))
    except Exception as exc:
        # The call ended before it began (the client went away): nothing to send it to.
        if not (is_call_over(exc) or isinstance(exc, grpc.aio.AioRpcError)):
            raise


def _name(code: Any) -> str:
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "OK" if code in (None, 0) else str(code)
