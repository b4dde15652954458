"""Counters every layer may keep for the metrics endpoint: plain and thread-safe, read when scraped.

No exporter here (the app's collector turns them into Prometheus families), so the domain and the
execution layer count without depending on one. Labels are values the code chooses from a bounded
set (a method of the proto, a query kind, a state), never text a caller sent.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

Labels = tuple[str, ...]

# Seconds: from a cached read (a millisecond) to a long engine query (a minute).
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Counts:
    """Numbers by label tuple: counters (only added to) or gauges (added to and taken from)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Labels, float] = {}

    def add(self, labels: Labels, amount: float = 1) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount

    def get(self, labels: Labels) -> float:
        with self._lock:
            return self._values.get(labels, 0)

    def snapshot(self) -> dict[Labels, float]:
        with self._lock:
            return dict(self._values)


class Distribution:
    """Observations by label tuple in fixed buckets: what a Prometheus histogram is built from."""

    def __init__(self, buckets: Sequence[float] = SECONDS_BUCKETS) -> None:
        self.bounds = tuple(sorted(buckets))
        self._lock = threading.Lock()
        # Per label tuple: observations per bucket (the last one past every bound), and their sum.
        self._values: dict[Labels, tuple[list[int], list[float]]] = {}

    def observe(self, labels: Labels, value: float) -> None:
        slot = bisect.bisect_left(self.bounds, value)
        with self._lock:
            found = self._values.get(labels)
            if found is None:
                found = self._values[labels] = ([0] * (len(self.bounds) + 1), [0.0])
            found[0][slot] += 1
            found[1][0] += value

    def snapshot(self) -> dict[Labels, tuple[list[int], float]]:
        """Per label tuple: cumulative counts per bound (`le`), then the total (`+Inf`), and the sum."""
        with self._lock:
            copied = {labels: (list(counts), total[0]) for labels, (counts, total) in self._values.items()}
        return {labels: (cumulative(counts), total) for labels, (counts, total) in copied.items()}


def cumulative(counts: Sequence[int]) -> list[int]:
    """Counts per bucket as Prometheus wants them: each bucket with every one below it."""
    running, out = 0, []
    for count in counts:
        running += count
        out.append(running)
    return out
