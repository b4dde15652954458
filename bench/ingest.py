"""What the duplicate look-up costs an insert: deduplicating inserts against plain inserts of the same
batches, into an environment that already holds a demo dataset. The time insert_new_events spends
keeping persons current is measured apart (the look-up's target leaves it out) and printed."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.cli.demo import DAYS, generate
from server.domain.ingest import person_id_for
from storage.events import EVENT_COLUMNS, EventRow, EventStore

ENV = 1
# The look-up may cost an insert at most this factor on fresh batches of today's events.
TARGET_RATIO = 2.0


def fresh_batch(
    size: int, rng: random.Random, spread_days: int, visitors: list[str] | None = None
) -> list[EventRow]:
    """`size` new events: today's (spread_days=1, live traffic) or over the last `spread_days` days
    (a backfill), from 500 recurring visitors (by default new ones, `b0`...)."""
    now = dt.datetime.now(dt.UTC)
    pool = visitors or [f"b{i}" for i in range(500)]
    rows = []
    for i in range(size):
        at = now - dt.timedelta(seconds=rng.randrange(spread_days * 86_400))
        event_uuid = uuid.UUID(int=rng.getrandbits(128))
        # With the person the service derives for the visitor.
        distinct_id = pool[i % len(pool)]
        person = person_id_for(ENV, distinct_id)
        rows.append(EventRow(ENV, event_uuid, "$pageview", distinct_id, person, at, "{}", "{}"))
    return rows


class UpkeepClock:
    """Adds up the time insert_new_events spends keeping persons current (the step is wrapped by a
    timer, not changed)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        keep: Callable[[EventStore, Any, Any], None] = EventStore._keep_persons_current

        def timed_keep(store: EventStore, client: Any, changes: Any) -> None:
            began = time.perf_counter()
            try:
                keep(store, client, changes)
            finally:
                self.seconds += time.perf_counter() - began

        EventStore._keep_persons_current = timed_keep  # type: ignore[method-assign,assignment]


def plain_insert(store: EventStore, rows: list[EventRow]) -> None:
    """The insert as it was before deduplication: one INSERT, no look-up."""
    with store.client() as client:
        client.insert("events", rows, column_names=list(EVENT_COLUMNS))


def timed(action: Callable[[], object]) -> float:
    began = time.perf_counter()
    action()
    return time.perf_counter() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events already stored (1000000)")
    parser.add_argument("--batch", type=int, default=1_000, help="events per insert (1000)")
    parser.add_argument("--rounds", type=int, default=30, help="inserts of each kind (30)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    store = EventStore(f"chdb://{tmp / 'events'}")
    try:
        store.ensure_schema()
        began = time.perf_counter()
        data = generate(ENV, args.events, seed=7)
        for columns in data.columns(100_000):
            store.insert_event_columns(columns)
        # Live traffic comes from people already known: 500 of the demo's visitors who have events,
        # so their persons exist (a backfill's events may predate their first one).
        known = [
            d for d, created in zip(data.person_distinct, data.person_created_us, strict=True) if created >= 0
        ]
        visitors = random.Random(7).sample(known, min(500, len(known)))
        store.query("OPTIMIZE TABLE events FINAL")
        print(
            f"{args.events:,} demo events over {DAYS} days stored in {time.perf_counter() - began:.1f}s; "
            f"batches of {args.batch:,}, {args.rounds} rounds each, medians",
            flush=True,
        )
        rng = random.Random(7)
        clock = UpkeepClock()
        results: dict[str, float] = {}
        for label, spread in (("today", 1), (f"{DAYS} days", DAYS)):
            plain: list[float] = []
            dedup: list[float] = []
            lookup: list[float] = []  # deduplicating less the person upkeep
            persons: list[float] = []
            again: list[float] = []
            for _ in range(args.rounds):
                # Alternated, so that both kinds see the same machine load and the same table.
                a, b = (fresh_batch(args.batch, rng, spread, visitors) for _ in range(2))
                plain.append(timed(functools.partial(plain_insert, store, a)))
                before = clock.seconds
                dedup.append(timed(functools.partial(store.insert_new_events, b)))
                persons.append(clock.seconds - before)
                lookup.append(dedup[-1] - persons[-1])
                again.append(timed(functools.partial(store.insert_new_events, b)))
            p, d, u, k, r = (statistics.median(x) for x in (plain, dedup, persons, lookup, again))
            results[label] = k / p
            print(
                f"  {label:>8}: plain {args.batch / p:>10,.0f} ev/s"
                f"   deduplicating {args.batch / d:>10,.0f} ev/s (persons {u * 1000:.1f} ms)"
                f"   ratio {d / p:.2f}, without persons {k / p:.2f}"
                f"   all duplicates {args.batch / r:>10,.0f} ev/s",
                flush=True,
            )
        ratio = results["today"]
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        print(
            f"{verdict}  deduplicating (less person upkeep) / plain insert time, today's events: "
            f"{ratio:.2f} <= {TARGET_RATIO}"
        )
        return 0 if verdict == "PASS" else 1
    finally:
        store.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
