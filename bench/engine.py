"""Progress and KILL QUERY on the event store: how soon a tagged statement shows in
`system.processes`, how long its read_rows may stall, and how soon a kill ends its caller's query."""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.served import loadavg, verdict
from storage.events import EventStore, QueryCancelled

# Needs no table and little memory, but hashes every row: ten seconds or more on two cores, so
# only the kill ends it within a repeat. max_execution_time is a safety net should the kill fail.
SLOW_SQL = "SELECT count() FROM numbers(600000000) WHERE sipHash64(number, {seed:Int64}) % 7 = 3"
SLOW_ROWS = 600_000_000
SLOW_SETTINGS = {"max_execution_time": 30}

TARGET_FIRST_SAMPLE = 0.300  # from starting the statement to progress() seeing it
TARGET_MAX_STALL = 1.0  # the longest time read_rows stays the same while the statement runs
TARGET_CANCEL = 2.0  # from calling kill() to the caller's query() raising QueryCancelled
# How often the bench looks for the statement, then samples it: well below the targets, and not
# so often that the polls take a noticeable share of the two cores from the statement.
POLL_FIRST, POLL_SAMPLES = 0.01, 0.05


class Statement(threading.Thread):
    """Runs the slow statement under a run id and records when and how it ended."""

    def __init__(self, store: EventStore, run_id: str, seed: int):
        super().__init__(daemon=True)
        self.store, self.run_id, self.seed = store, run_id, seed
        self.error: BaseException | None = None
        self.started_at = self.ended_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        try:
            self.store.query(SLOW_SQL, {"seed": self.seed}, settings=SLOW_SETTINGS, run_id=self.run_id)
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended_at = time.monotonic()


def measure_one(store: EventStore, sampling: float, seed: int) -> dict[str, float]:
    """One statement: its first progress sample, `sampling` seconds of samples, then the kill."""
    run_id = f"bench-engine:{uuid.uuid4().hex}"
    statement = Statement(store, run_id, seed)
    statement.start()
    try:
        deadline = time.monotonic() + 10.0
        while (first := store.progress(run_id)) is None:
            if time.monotonic() > deadline or not statement.is_alive():
                raise RuntimeError(f"the statement never showed in system.processes ({statement.error!r})")
            time.sleep(POLL_FIRST)
        first_at = time.monotonic()
        samples = [(first_at, first.read_rows)]
        while time.monotonic() - first_at < sampling:
            time.sleep(POLL_SAMPLES)
            sample = store.progress(run_id)
            if sample is None:
                raise RuntimeError("the statement left system.processes before the kill")
            samples.append((time.monotonic(), sample.read_rows))
        changes = [t for (_, before), (t, now) in itertools.pairwise(samples) if now != before]
        stalls = [b - a for a, b in itertools.pairwise([first_at, *changes, samples[-1][0]])]
        # KILL QUERY … SYNC: the statement usually ends before kill() returns, so time from the call.
        killed_at = time.monotonic()
        if not store.kill(run_id):
            raise RuntimeError("kill() found no statement to stop")
        statement.join(SLOW_SETTINGS["max_execution_time"] + 5)
        if not isinstance(statement.error, QueryCancelled):
            raise RuntimeError(f"the killed statement ended with {statement.error!r}")
        if samples[-1][1] >= SLOW_ROWS:
            raise RuntimeError("the statement read every row before the kill: nothing was measured")
        return {
            "first_sample_s": first_at - statement.started_at,
            "max_stall_s": max(stalls, default=0.0),
            "changes": float(len(changes)),
            "cancel_s": statement.ended_at - killed_at,
        }
    finally:
        if statement.is_alive():
            store.kill(run_id)
            statement.join(SLOW_SETTINGS["max_execution_time"] + 5)


def report(rows: list[dict[str, float]], dsn: str) -> int:
    print()
    print(f"Engine progress and KILL QUERY on {dsn}, {len(rows)} repeats; times in the bench process")
    print(f"{'#':>2} {'first sample ms':>15} {'largest stall ms':>16} {'changes':>7} {'cancel ms':>9}")
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>2} {r['first_sample_s'] * 1e3:>15.0f} {r['max_stall_s'] * 1e3:>16.0f} "
            f"{r['changes']:>7.0f} {r['cancel_s'] * 1e3:>9.0f}"
        )
    print()
    checks = []
    for label, name, target in (
        ("time to the first progress sample", "first_sample_s", TARGET_FIRST_SAMPLE),
        ("largest stall of read_rows", "max_stall_s", TARGET_MAX_STALL),
        ("time from calling kill() to the query's QueryCancelled", "cancel_s", TARGET_CANCEL),
    ):
        values = [r[name] for r in rows]
        for how, value in (("median", statistics.median(values)), ("max", max(values))):
            ok = value <= target
            checks.append(ok)
            print(f"{verdict(ok)}  {label}, {how} over repeats: {value * 1e3:.0f} ms <= {target * 1e3:.0f} ms")
    return 0 if all(checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", help="the event store to measure (default: a temporary chDB path)")
    parser.add_argument("--repeats", type=int, default=5, help="statements measured (5)")
    parser.add_argument("--sampling", type=float, default=1.5, help="seconds of samples before the kill (1.5)")
    args = parser.parse_args()
    if args.repeats < 1 or args.sampling <= 0:
        raise SystemExit("--repeats must be >= 1 and --sampling > 0")
    print(f"load average at start: {loadavg()} ({os.cpu_count()} CPUs)", flush=True)
    began = time.monotonic()
    tmp: Path | None = None
    dsn = args.dsn
    if dsn is None:
        tmp = Path(tempfile.mkdtemp(prefix="insights-bench-engine-"))
        dsn = f"chdb://{tmp / 'events'}"
    # One pooled client: the statement holds it, so progress() and kill() answering at all shows
    # that they run on the store's own control client.
    store = EventStore(dsn, pool_size=1)
    rows: list[dict[str, Any]] = []
    try:
        # Opens the control client: its one-off connect is not part of what is measured.
        store.progress(f"bench-engine:{uuid.uuid4().hex}")
        for i in range(args.repeats):
            row = measure_one(store, args.sampling, seed=i)
            rows.append(row)
            print(
                f"[engine] {i + 1}/{args.repeats}: first sample {row['first_sample_s'] * 1e3:.0f} ms, "
                f"largest stall {row['max_stall_s'] * 1e3:.0f} ms, cancel {row['cancel_s'] * 1e3:.0f} ms",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"load average at end: {loadavg()} (after {time.monotonic() - began:.0f}s)", flush=True)
    return report(rows, args.dsn or "a temporary chDB path")


if __name__ == "__main__":
    raise SystemExit(main())
