"""Engine progress and cancellation on real chDB: a query tagged with a run id is observed through
`system.processes` and stopped by KILL QUERY, both from the store's control client.

How soon progress shows, how long read_rows may stall and how soon a kill ends the query are
timing goals: bench/engine.py measures them on the same statement."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storage.events import EngineProgress, EventRow, EventStore, QueryCancelled

# Far above the ids other tests use, so this module's events never mix with theirs.
TEAM_ID = 10_000_000 + uuid.uuid4().int % 1_000_000_000

# Needs no table and little memory, but hashes every row: about 60 M rows/s on two cores, so
# ten seconds or more on this kind of machine, with read_rows advancing every ~60 ms. The test
# kills it once read_rows has advanced a few times. max_execution_time is a safety net should the
# kill fail, so that a broken build cannot pin a client for long.
SLOW_ROWS = 600_000_000
SLOW_SQL = "SELECT count() FROM numbers(600000000) WHERE sipHash64(number, {team_id:Int64}) % 7 = 3"
SLOW_SETTINGS = {"max_execution_time": 30}

ADVANCES = 3  # changes of read_rows the test sees before it kills the query
WAIT = 20.0  # seconds a poll waits for its condition at most (a safety net, not a threshold)
ENDS_WITHIN = SLOW_SETTINGS["max_execution_time"] + 5  # a query that ignored the kill ends by then


@pytest.fixture(scope="module")
def store(events_dsn: str) -> Iterator[EventStore]:
    # One pooled client only: the slow query holds it, so progress() and kill() answering at
    # all shows they run on the dedicated control client.
    store = EventStore(events_dsn, pool_size=1)
    store.ensure_schema()
    assert store.progress(_run_id()) is None
    try:
        yield store
    finally:
        store.close()


def _run_id() -> str:
    return f"test-run:{uuid.uuid4().hex}"


class _Runner(threading.Thread):
    """Runs one store.query in a thread and records how it ended."""

    def __init__(self, store: EventStore, run_id: str):
        super().__init__(daemon=True)
        self.store = store
        self.run_id = run_id
        self.rows: list[tuple[Any, ...]] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.rows = self.store.query(
                SLOW_SQL, {"team_id": TEAM_ID}, settings=SLOW_SETTINGS, run_id=self.run_id
            )
        except BaseException as exc:
            self.error = exc


def _wait_for(predicate: Any, timeout: float = WAIT, interval: float = 0.02) -> Any:
    """Polls `predicate` until it is truthy; returns its last value (falsy after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def test_progress_is_observed_then_kill_cancels_the_query(store: EventStore) -> None:
    run_id = _run_id()
    runner = _Runner(store, run_id)
    runner.start()
    try:
        first = _wait_for(lambda: store.progress(run_id))
        assert isinstance(first, EngineProgress), "the tagged query never showed in system.processes"

        samples: list[EngineProgress] = [first]

        def advanced() -> bool:
            sample = store.progress(run_id)
            assert sample is not None, "the query vanished from system.processes before the kill"
            samples.append(sample)
            return len({s.read_rows for s in samples}) > ADVANCES

        assert _wait_for(advanced, interval=0.05), f"read_rows never advanced: {[s.read_rows for s in samples]}"
        rows = [s.read_rows for s in samples]
        assert rows == sorted(rows), f"read_rows went backwards: {rows}"
        elapsed = [s.elapsed_seconds for s in samples]
        assert elapsed == sorted(elapsed) and elapsed[0] >= 0, f"elapsed went backwards: {elapsed}"
        assert samples[-1].total_rows_approx >= samples[-1].read_rows
        assert samples[-1].read_bytes > 0

        assert runner.is_alive(), "the slow query finished before it could be killed"
        assert store.kill(run_id) is True
        # A query the kill missed runs on to its end (or to max_execution_time): it would not raise
        # QueryCancelled, and would still be listed below.
        runner.join(timeout=ENDS_WITHIN)
        assert not runner.is_alive(), "query() still running after kill()"
        assert isinstance(runner.error, QueryCancelled), f"expected QueryCancelled, got {runner.error!r}"
        assert runner.error.run_id == run_id and runner.rows is None
        # Well before it could have finished: it had read only part of its rows.
        assert samples[-1].read_rows < SLOW_ROWS

        assert store.progress(run_id) is None
        assert store.kill(run_id) is False
        # The pooled client is usable again after the cancellation.
        assert store.query("SELECT 1", run_id=run_id) == [(1,)]
    finally:
        if runner.is_alive():
            store.kill(run_id)
            runner.join(timeout=ENDS_WITHIN)


def test_tagged_query_returns_its_rows_and_leaves_no_process(store: EventStore) -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    store.insert_events(
        EventRow(TEAM_ID, uuid.uuid4(), "tagged", f"d{i}", uuid.uuid4(), when, "{}", "{}") for i in range(3)
    )
    run_id = _run_id()
    rows = store.query(
        "SELECT count() FROM events WHERE team_id = {team_id:Int64} AND event = {event:String}",
        {"team_id": TEAM_ID, "event": "tagged"},
        settings={"max_threads": 1},
        run_id=run_id,
    )
    assert rows == [(3,)]
    assert store.progress(run_id) is None
    # The same tag given both ways is accepted; two different tags are not.
    assert store.query("SELECT 1", settings={"log_comment": run_id}, run_id=run_id) == [(1,)]
    with pytest.raises(ValueError, match="log_comment"):
        store.query("SELECT 1", settings={"log_comment": "other"}, run_id=run_id)


def test_unknown_run_ids(store: EventStore) -> None:
    run_id = _run_id()
    assert store.progress(run_id) is None
    assert store.kill(run_id) is False


@pytest.mark.parametrize(
    "run_id",
    [
        "",
        "x' OR 1=1 --",
        "a b",
        "run;KILL",
        "é",
        "x" * 129,
        "a'\\'",
        "{run_id:String}",
        "line\nbreak",
        "trailing\n",
    ],
)
def test_hostile_run_ids_are_refused(store: EventStore, run_id: str) -> None:
    with pytest.raises(ValueError, match="run id"):
        store.query("SELECT 1", run_id=run_id)
    with pytest.raises(ValueError, match="run id"):
        store.progress(run_id)
    with pytest.raises(ValueError, match="run id"):
        store.kill(run_id)
