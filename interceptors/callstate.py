"""How a call stands, from grpc's exceptions and the call's task: aborted on purpose, cancelled, or over."""

from __future__ import annotations

import asyncio

import grpc


def is_abort(exc: BaseException | None) -> bool:
    """grpc's exception out of `context.abort()`: the status is sent, the call ends as the handler chose."""
    return isinstance(exc, grpc.aio.AbortError)


def is_call_over(exc: BaseException | None) -> bool:
    """grpc refused an operation on the call because it had already ended (deadline, cancel, shutdown).

    `ExecuteBatchError` (not exported by grpc) is a send that failed on a call the core had already
    cancelled; `UsageError` is an operation after the status was sent (`Abort already called!`).
    """
    return isinstance(exc, grpc.aio.UsageError) or (
        type(exc).__name__ == "ExecuteBatchError" and type(exc).__module__.startswith("grpc")
    )


def is_cancelled() -> bool:
    """Whether grpc has cancelled the current call (client cancel, deadline or server shutdown).

    grpc runs a call's handler, interceptors included, in one task and cancels that task when the call
    ends under it; the request stays on the task even if the handler turned the CancelledError into
    another exception.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
