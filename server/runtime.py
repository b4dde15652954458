"""Runs blocking database and engine calls off the event loop, in a bounded thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

log = logging.getLogger("insights.runtime")

P = ParamSpec("P")
T = TypeVar("T")


class Blocking:
    """A thread pool of fixed size; `await run(fn, ...)` never blocks the event loop."""

    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="blocking")
        self._threads: set[threading.Thread] = set()

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Copy the context so the call sees the request's context variables (e.g. logging ids).
        call = functools.partial(contextvars.copy_context().run, self._tracked, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def _tracked(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # The pool's threads, known by name here, so that close() can wait for them with a bound.
        self._threads.add(threading.current_thread())
        return fn(*args, **kwargs)

    def close(self, timeout: float | None = None) -> None:
        """Refuses new calls, drops queued ones, and waits for running ones (at most `timeout` s)."""
        self._pool.shutdown(wait=timeout is None, cancel_futures=True)
        if timeout is None:
            return
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning("%d worker threads still busy at shutdown: %s", len(stuck), ", ".join(stuck))
