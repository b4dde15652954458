"""What the metrics endpoint reads of the run queue: runs holding a slot, runs waiting, runs shed."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from server.errors import ResourceExhausted
from server.execution.runs import Progress, Run, Runs


async def _no_progress(tag: str) -> Progress | None:
    return None


async def _no_kill(tag: str) -> bool:
    return False


async def test_depth_and_sheds_follow_the_queue() -> None:
    runs = Runs(
        clock=lambda: dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        poll_progress=_no_progress,
        kill=_no_kill,
        max_running=1,
        max_queued=1,
    )
    release = asyncio.Event()
    picked = asyncio.Event()

    async def compute(run: Run) -> Any:
        picked.set()
        await release.wait()
        return run.key

    first = runs.start("a", 1, "a", None, compute, detached=False, waiting=True)
    await picked.wait()  # the first run holds the only slot
    second = runs.start("b", 1, "b", None, compute, detached=False, waiting=True)
    await asyncio.sleep(0)  # lets the second run's task reach the queue (no time passes)
    assert (runs.running, runs.queued, runs.shed) == (1, 1, 0)

    with pytest.raises(ResourceExhausted):
        runs.start("c", 1, "c", None, compute, detached=False)
    # The same key joins the run in flight: not a new run, never shed.
    assert runs.start("b", 1, "b", None, compute, detached=False) is second
    assert (runs.running, runs.queued, runs.shed) == (1, 1, 1)

    release.set()
    assert await runs.wait(first) == "a" and await runs.wait(second) == "b"
    assert (runs.running, runs.queued, runs.shed) == (0, 0, 1)
