"""A stand-in for the service's event store that counts engine computations and can hold them.

Installed as `execution.events`, it passes every call through to the real store and, for the
queries the execution layer tags with a run id, records the id and optionally holds the run
before its real statement:

- `gate()`: the run waits (no CPU) until the test opens the gate, so that concurrent callers
  surely overlap on a two-core machine however slowly they arrive;
- `slow()`: the run first executes a real, tagged engine query that only a KILL QUERY ends
  (`max_execution_time` is the safety net), so progress and cancellation go through the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from storage.events import EventStore, QueryCancelled

# Hashes every row: tens of seconds on two cores, far beyond any test; only KILL ends it early.
SLOW_SQL = "SELECT count() FROM numbers(3000000000) WHERE sipHash64(number, {seed:Int64}) % 7 = 3"
SLOW_SETTINGS = {"max_execution_time": 25}
HOLD_LIMIT = 20.0  # seconds a gate holds a run at most, should a test forget to open it


class Gate:
    """Opened by the test; held runs then go on to their real statements."""

    def __init__(self) -> None:
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    def wait(self, timeout: float) -> bool:
        return self._open.wait(timeout)


class EngineProbe:
    """Wraps an EventStore; thread-safe (engine calls run on worker threads)."""

    def __init__(self, store: EventStore):
        self._store = store
        self._lock = threading.Lock()
        self._gate: Gate | None = None
        self._slow = False
        self.run_ids: list[str] = []  # the run id of every tagged statement, in order
        self.statements = 0  # tagged statements (a trend issues one per series and period)
        self.held: set[str] = set()  # runs currently held (gate or slow query)
        self.kills: list[str] = []  # run ids passed to kill()
        self._killed: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def store(self) -> EventStore:
        return self._store

    @contextlib.contextmanager
    def gate(self) -> Iterator[Gate]:
        """Holds every run that reaches the engine until the gate opens (always opened on exit)."""
        gate = Gate()
        self._gate = gate
        try:
            yield gate
        finally:
            gate.open()
            self._gate = None

    @contextlib.contextmanager
    def slow(self) -> Iterator[None]:
        """Puts a slow, killable engine query in front of every run started meanwhile."""
        self._slow = True
        try:
            yield
        finally:
            self._slow = False

    def query(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        read: Callable[[int], None] | None = None,
    ) -> list[tuple[Any, ...]]:
        if run_id is not None:
            with self._lock:
                self.run_ids.append(run_id)
                self.statements += 1
            gate, slow = self._gate, self._slow
            if gate is not None or slow:
                self.held.add(run_id)
                try:
                    if gate is not None:
                        self._wait(gate, run_id)
                    if slow:
                        seed = abs(hash(run_id)) % 1_000_000
                        self._store.query(SLOW_SQL, {"seed": seed}, settings=SLOW_SETTINGS, run_id=run_id)
                finally:
                    self.held.discard(run_id)
                    self._killed.discard(run_id)
        return self._store.query(sql, parameters, settings=settings, run_id=run_id, read=read)

    def _wait(self, gate: Gate, run_id: str) -> None:
        deadline = time.monotonic() + HOLD_LIMIT
        while not gate.wait(0.01):
            if run_id in self._killed:
                raise QueryCancelled("held run was killed", run_id)
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} held for more than {HOLD_LIMIT} s")

    def kill(self, run_id: str) -> bool:
        with self._lock:
            self.kills.append(run_id)
            self._killed.add(run_id)
        return self._store.kill(run_id)


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Polls `predicate` on the event loop until it is truthy; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.01)


async def cancel_leftovers(execution: Any) -> None:
    """Cancels the runs a test left in flight, so that none outlives it."""
    for run in list(execution.runs._in_flight.values()):
        await asyncio.wait_for(execution.runs.cancel(run), 30)


@contextlib.asynccontextmanager
async def probing(execution: Any, monkeypatch: Any) -> AsyncIterator[EngineProbe]:
    """An EngineProbe installed as `execution.events` for the block; leftover runs cancelled after."""
    probe = EngineProbe(execution.events)
    monkeypatch.setattr(execution, "events", probe)
    try:
        yield probe
    finally:
        await cancel_leftovers(execution)
