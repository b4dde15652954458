"""Query runs: one engine computation per key, shared by every caller, with status, progress and cancel."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from server.echo import shown
from server.errors import Cancelled, DomainError, NotFound, ResourceExhausted

log = logging.getLogger("insights.runs")

# How long a status read or a stream keeps the engine's progress polled: a poll costs the engine a
# few milliseconds of CPU, ten times a second, and a run nobody watches needs none.
WATCH_SECONDS = 5.0

# How long a cancel keeps killing a run's engine statement before it gives up (and says so in the
# log), and how often it looks again: a kill can land just before the statement reaches the engine.
STOP_WITHIN_SECONDS, STOP_POLL_SECONDS = 5.0, 0.02


@dataclass
class Progress:
    """Engine counters of a running query."""

    read_rows: int = 0
    total_rows: int = 0
    read_bytes: int = 0
    elapsed_seconds: float = 0.0


@dataclass
class Run:
    """One computation: queued, running, then complete (with a result or an error).

    `id` is the name callers use (their client_query_id, or the cache key) and is only meaningful
    within `team_id`. `tag` marks the run's engine statements (log_comment): it is generated here,
    unique per run, so no caller can choose it and reach another environment's engine query.
    """

    id: str
    team_id: int
    key: str
    insight_id: int | None
    start_time: dt.datetime
    pickup_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    expiration_time: dt.datetime | None = None
    complete: bool = False
    error: bool = False
    error_message: str | None = None
    cancelled: bool = False
    progress: Progress | None = None
    # What the computation returned, held only while a caller still has to collect it: a finished
    # run's status must not pin a result that the memory budget has already let go of.
    value: Any = None
    _kept: weakref.ref[Any] | None = None
    # The exception a failed run raised, re-raised to callers that were waiting for it.
    failure: BaseException | None = None
    # Async runs outlive their callers; other runs are cancelled when no caller waits any more.
    detached: bool = False
    waiters: int = 0
    task: asyncio.Task[Any] | None = None
    # Set on every status change, so that streams wake up without polling.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    tag: str = field(default_factory=lambda: f"run-{uuid.uuid4().hex}")
    # Set when the run is cancelled: the worker thread starts no further engine statement.
    stop: threading.Event = field(default_factory=threading.Event)
    _in_engine: int = 0
    _engine_lock: threading.Lock = field(default_factory=threading.Lock)
    # Until when (time.monotonic()) someone wants the engine's progress (see `watch`).
    watched_until: float = 0.0

    @contextlib.contextmanager
    def engine_statement(self) -> Iterator[None]:
        """Brackets one engine statement of the run (on its worker thread); refuses once stopped.

        The count goes up before `stop` is read, and a canceller sets `stop` before it reads the
        count: either the statement never starts, or the canceller sees it and kills it.
        """
        with self._engine_lock:
            self._in_engine += 1
        try:
            if self.stop.is_set():
                raise Cancelled("the query was cancelled", reason="QUERY_CANCELLED")
            yield
        finally:
            with self._engine_lock:
                self._in_engine -= 1

    def result(self) -> Any:
        """The run's value while it is still held anywhere (a caller, the result cache), else None."""
        if self.value is not None:
            return self.value
        return self._kept() if self._kept is not None else None

    def remember(self, value: Any) -> None:
        """Points the status at `value` without holding it (a weak reference where possible)."""
        try:
            self._kept = weakref.ref(value)
        except TypeError:
            self.value = value

    def release(self) -> None:
        """Drops the strong reference once nobody is left to collect the value."""
        if self.complete and self.waiters == 0 and self.value is not None:
            self.remember(self.value)
            self.value = None

    @property
    def in_engine(self) -> bool:
        """Whether an engine statement of the run is running (or about to start)."""
        return self._in_engine > 0

    def watch(self, seconds: float = WATCH_SECONDS) -> None:
        """Someone reads this run's progress (a stream, a status call): keep it polled for `seconds`."""
        self.watched_until = max(self.watched_until, time.monotonic() + seconds)

    def touch(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    @property
    def running(self) -> bool:
        return self.pickup_time is not None and not self.complete


Compute = Callable[[Run], Awaitable[Any]]


class Runs:
    """The runs of this process: single flight per key, bounded concurrency, expiry of finished runs."""

    def __init__(
        self,
        *,
        clock: Callable[[], dt.datetime],
        poll_progress: Callable[[str], Awaitable[Progress | None]],
        kill: Callable[[str], Awaitable[bool]],
        max_running: int = 4,
        max_queued: int = 100,
        status_ttl: dt.timedelta = dt.timedelta(minutes=20),
        progress_interval: float = 0.1,
    ):
        # Statuses expire by this clock: tests move time by replacing it, as for `Sharing.clock`.
        self.clock = clock
        self._poll_progress = poll_progress
        self._kill = kill
        self._slots = asyncio.Semaphore(max_running)
        self._max_queued = max_queued
        self._queued = 0
        self._ttl = status_ttl
        self._interval = progress_interval
        self._by_id: dict[tuple[int, str], Run] = {}
        self._in_flight: dict[str, Run] = {}
        self.engine_runs = 0
        # Runs refused because the queue was full (RESOURCE_EXHAUSTED), and runs holding a slot.
        self.shed = 0
        self.running = 0

    @property
    def queued(self) -> int:
        """Runs waiting for a slot."""
        return self._queued

    def in_flight(self, key: str) -> Run | None:
        return self._in_flight.get(key)

    def start(
        self,
        run_id: str,
        team_id: int,
        key: str,
        insight_id: int | None,
        compute: Compute,
        *,
        detached: bool,
        waiting: bool = False,
    ) -> Run:
        """The run computing `key`: the one in flight, or a new one started now.

        A caller that will `wait()` for the value passes `waiting=True`: the run then holds its value
        until that caller has collected it, even if the run ends before the caller starts waiting.
        """
        self._expire()
        current = self._in_flight.get(key)
        if current is not None:
            current.detached = current.detached or detached
            if run_id != current.id:
                # Another caller's id for the same computation reads and cancels the same run.
                self._by_id[(team_id, run_id)] = current
            current.waiters += int(waiting)
            return current
        if self._queued >= self._max_queued:
            self.shed += 1
            raise ResourceExhausted(
                "too many queries are waiting to run; retry shortly",
                reason="RUN_QUEUE_FULL",
                metadata={"max_queued": str(self._max_queued)},
            )
        run = Run(
            id=run_id,
            team_id=team_id,
            key=key,
            insight_id=insight_id,
            start_time=self.clock(),
            detached=detached,
            waiters=int(waiting),
        )
        self._by_id[(team_id, run_id)] = run
        self._in_flight[key] = run
        run.task = asyncio.get_running_loop().create_task(self._execute(run, compute), name=f"run {run_id}")
        return run

    async def wait(self, run: Run) -> Any:
        """Waits for a run's value (raising its failure) as one of its callers (started `waiting`).

        A caller that goes away stops waiting; the run goes on while other callers wait or it is
        detached, and is cancelled when its last caller leaves.
        """
        try:
            assert run.task is not None
            await asyncio.shield(run.task)
        except asyncio.CancelledError:
            if run.task is not None and not run.task.done() and run.waiters == 1 and not run.detached:
                # The last caller left (deadline, cancel, disconnect): nobody wants the work any more.
                await self.cancel(run)
            raise
        finally:
            run.waiters -= 1
            value, failure = run.value, run.failure
            run.release()
        if failure is not None:
            raise failure
        return value

    def get(self, team_id: int, run_id: str) -> Run:
        self._expire()
        run = self._by_id.get((team_id, run_id))
        if run is None:
            raise NotFound(
                f"Query {shown(run_id)} not found (or expired).",
                reason="QUERY_NOT_FOUND",
                metadata={"query_id": shown(run_id)},
            )
        return run

    async def cancel(self, run: Run, *, dequeue_only: bool = False) -> str:
        """Stops a run: "already_complete", "cancelled" or "not_dequeued" (dequeue_only on a started run).

        No further engine statement of the run starts, the running one is killed, and the call
        returns once the run has ended.
        """
        if run.complete:
            return "already_complete"
        if run.running and dequeue_only:
            return "not_dequeued"
        run.cancelled = True
        await self._stop_engine(run)
        if run.task is not None:
            run.task.cancel()
            with contextlib.suppress(BaseException):
                await run.task
        return "cancelled"

    async def cancel_all(self) -> int:
        """Cancels every run in flight (shutdown); returns how many were cancelled."""
        runs = list(self._in_flight.values())
        outcomes = await asyncio.gather(*(self.cancel(run) for run in runs), return_exceptions=True)
        return sum(1 for outcome in outcomes if outcome == "cancelled")

    async def _stop_engine(self, run: Run) -> None:
        run.stop.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_WITHIN_SECONDS
        while run.in_engine:
            with contextlib.suppress(Exception):
                await self._kill(run.tag)
            if not run.in_engine:
                return
            if loop.time() > deadline:
                log.warning("run %s: its engine statement did not stop within %ss", run.tag, STOP_WITHIN_SECONDS)
                return
            await asyncio.sleep(STOP_POLL_SECONDS)

    async def _execute(self, run: Run, compute: Compute) -> Any:
        self._queued += 1
        queued = True
        try:
            async with self._slots:
                self._queued -= 1
                queued = False
                run.pickup_time = self.clock()
                run.touch()
                poller = asyncio.get_running_loop().create_task(self._watch(run))
                self.running += 1
                try:
                    self.engine_runs += 1
                    run.value = await compute(run)
                finally:
                    self.running -= 1
                    poller.cancel()
        except asyncio.CancelledError:
            run.error, run.error_message = True, "Query was cancelled"
            run.failure = Cancelled("the query was cancelled", reason="QUERY_CANCELLED")
        except DomainError as exc:
            # A killed engine query surfaces here or as CancelledError above, whichever lands first.
            message = "Query was cancelled" if isinstance(exc, Cancelled) else exc.message
            run.error, run.error_message, run.failure = True, message, exc
        except Exception as exc:
            log.error("run %s failed", run.id, exc_info=exc)
            run.error, run.error_message, run.failure = True, None, exc
        finally:
            if queued:
                self._queued -= 1
            run.complete = True
            run.end_time = self.clock()
            run.expiration_time = run.end_time + self._ttl
            if self._in_flight.get(run.key) is run:
                del self._in_flight[run.key]
            run.release()
            run.touch()
        # Not the value: the task outlives the run's callers, and must not pin what they collected.
        return None

    async def _watch(self, run: Run) -> None:
        """Polls the engine's counters while the run computes and someone watches it (`Run.watch`),
        from one interval in: a statement that ends sooner has no progress worth reporting, and a
        poll (a system.processes query, a few ms of the engine's CPU) competes with it for the
        engine's cores. A blocking call nobody asks about is not polled at all; a status read
        starts the polls, so the next read shows fresh counters."""
        while True:
            await asyncio.sleep(self._interval)
            if time.monotonic() >= run.watched_until:
                continue
            with contextlib.suppress(Exception):
                found = await self._poll_progress(run.tag)
                if found is not None:
                    run.progress = found
                    run.touch()

    def _expire(self) -> None:
        now = self.clock()
        for key, run in list(self._by_id.items()):
            if run.expiration_time is not None and run.expiration_time < now:
                del self._by_id[key]
