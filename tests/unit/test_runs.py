"""Runs as one cancellable unit: once cancelled, no further engine statement starts and the running
one is killed by the run's own server-generated tag; runs of different environments never meet."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
from typing import Any

import pytest

from server.errors import Cancelled
from server.execution.runs import Progress, Run, Runs

WAIT = 10.0  # seconds a test waits for a thread event at most (a safety net, not a threshold)


class Engine:
    """Stands in for the kill and progress callables Runs is given: it records what it is asked,
    and a kill releases the statement that is running under that tag."""

    def __init__(self) -> None:
        self.kills: list[str] = []
        self.polled: list[str] = []
        self.running: dict[str, threading.Event] = {}
        # Released once per statement that is inside the engine (the run's in_engine is true).
        self.entered = threading.Semaphore(0)

    async def kill(self, tag: str) -> bool:
        self.kills.append(tag)
        released = self.running.get(tag)
        if released is None:
            return False
        released.set()
        return True

    async def progress(self, tag: str) -> Progress | None:
        self.polled.append(tag)
        return None

    def statement(self, run: Run, log: list[str], name: str) -> None:
        """One engine statement of `run` that only a kill ends (on the calling worker thread)."""
        with run.engine_statement():
            log.append(name)
            released = threading.Event()
            self.running[run.tag] = released
            self.entered.release()
            assert released.wait(WAIT), "the statement was never killed"
            raise Cancelled("killed", reason="QUERY_CANCELLED")


def _runs(engine: Engine) -> Runs:
    return Runs(
        clock=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        poll_progress=engine.progress,
        kill=engine.kill,
        progress_interval=0.01,
    )


async def _thread(fn: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, fn)


async def _in_engine(engine: Engine, statements: int = 1) -> None:
    """Returns once `statements` more statements are inside the engine."""
    for _ in range(statements):
        assert await asyncio.to_thread(engine.entered.acquire, True, WAIT), "no statement reached the engine"


async def test_a_run_cancelled_before_its_first_statement_starts_none() -> None:
    engine = Engine()
    runs = _runs(engine)
    entered, proceed, finished = threading.Event(), threading.Event(), threading.Event()
    started: list[str] = []
    refused: list[BaseException] = []

    def work(run: Run) -> None:
        entered.set()
        proceed.wait(WAIT)
        # The compile step is over; the thread now wants the engine.
        try:
            with run.engine_statement():
                started.append("statement")
        except Cancelled as exc:
            refused.append(exc)
        finally:
            finished.set()

    async def compute(run: Run) -> Any:
        return await _thread(lambda: work(run))

    run = runs.start("q", 1, "key", None, compute, detached=True)
    assert await asyncio.to_thread(entered.wait, WAIT)
    assert await runs.cancel(run) == "cancelled"
    proceed.set()
    # The worker thread goes on after the asyncio task ended; wait for it to try the engine.
    assert await asyncio.to_thread(finished.wait, WAIT)
    assert started == [] and len(refused) == 1
    assert run.complete and run.error_message == "Query was cancelled"


async def test_cancel_kills_the_running_statement_and_no_later_one_starts() -> None:
    engine = Engine()
    runs = _runs(engine)
    statements: list[str] = []

    def work(run: Run) -> None:
        with contextlib.suppress(Cancelled):
            engine.statement(run, statements, "first")
        # A runner that swallowed the error would go on to its next statement: it must be refused.
        engine.statement(run, statements, "second")

    async def compute(run: Run) -> Any:
        return await _thread(lambda: work(run))

    run = runs.start("q", 1, "key", None, compute, detached=True)
    await _in_engine(engine)
    assert run.in_engine
    assert await runs.cancel(run) == "cancelled"
    assert engine.kills and set(engine.kills) == {run.tag}
    assert not run.in_engine
    assert statements == ["first"]


async def test_the_engine_tag_is_generated_per_run_never_the_callers_id() -> None:
    engine = Engine()
    runs = _runs(engine)
    gate = asyncio.Event()

    async def compute(run: Run) -> Any:
        await gate.wait()
        return run.tag

    # Two environments, the same caller-chosen id, different queries.
    first = runs.start("report-run-1", 1, "key-a", None, compute, detached=True, waiting=True)
    second = runs.start("report-run-1", 2, "key-b", None, compute, detached=True)
    assert first.tag != second.tag
    assert "report-run-1" not in (first.tag, second.tag)
    assert runs.get(1, "report-run-1") is first and runs.get(2, "report-run-1") is second
    await runs.cancel(second)
    assert not first.complete and first.tag not in engine.kills
    gate.set()
    assert await runs.wait(first) == first.tag


async def test_cancel_all_stops_every_run_in_flight() -> None:
    engine = Engine()
    runs = _runs(engine)
    statements: list[str] = []

    def work(run: Run, i: int) -> None:
        with pytest.raises(Cancelled):
            engine.statement(run, statements, f"s{i}")

    def compute_for(i: int) -> Any:
        async def compute(run: Run) -> Any:
            return await _thread(lambda: work(run, i))

        return compute

    started = [runs.start(f"q{i}", 1, f"key{i}", None, compute_for(i), detached=True) for i in range(3)]
    await _in_engine(engine, 3)
    assert all(run.in_engine for run in started)
    assert await runs.cancel_all() == 3
    assert all(run.complete and not run.in_engine for run in started)
    assert sorted(engine.kills) == sorted(run.tag for run in started)


async def test_the_engine_is_polled_for_progress_only_while_someone_watches_the_run() -> None:
    """A poll costs the engine CPU: a run nobody streams or asks about is never polled; once watched
    (a status read, a stream) its progress is polled until the watch lapses."""
    engine = Engine()
    release = asyncio.Event()
    polled = asyncio.Event()

    async def progress(tag: str) -> Progress | None:
        engine.polled.append(tag)
        polled.set()
        return Progress(read_rows=len(engine.polled))

    runs = Runs(
        clock=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        poll_progress=progress,
        kill=engine.kill,
        progress_interval=0.01,
    )

    async def compute(run: Run) -> str:
        await release.wait()
        return run.tag

    run = runs.start("q", 1, "key", None, compute, detached=True, waiting=True)
    # Fifty poll intervals with nobody watching: no poll (an unconditional poller would have made ~50).
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert engine.polled == [] and run.progress is None
    run.watch()
    await asyncio.wait_for(polled.wait(), WAIT)
    assert engine.polled[0] == run.tag and run.progress is not None and run.progress.read_rows >= 1
    release.set()
    assert await runs.wait(run) == run.tag
