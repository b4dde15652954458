"""The query result cache: entries, the backend interface, and a bounded in-process LRU store."""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from server.memory import RESULTS_ORDER, MemoryBudget

DEFAULT_MAX_BYTES = 256 * 1024 * 1024

# Bytes charged per entry beyond its payload and SQL: the key, the dataclass, the datetimes and the
# OrderedDict node. An estimate, but it keeps a flood of tiny results from being "free" and unbounded.
ENTRY_OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class CacheEntry:
    """One cached result: the serialized results message and what the response envelope needs."""

    payload: bytes  # a serialized results message (e.g. results_pb2.InsightResult)
    has_more: bool
    sql: str  # the engine SQL, echoed as the response's `hogql`/debug field
    date_from: dt.datetime | None  # the resolved range, aware (None for range-less kinds)
    date_to: dt.datetime | None
    interval: str | None  # None for interval-less queries (staleness uses the "none" thresholds)
    last_refresh: dt.datetime  # aware UTC: when the engine computed it
    settles: bool = True  # the result is final once date_to is well past (Outcome.settles)

    @property
    def settles_at(self) -> dt.datetime | None:
        """The end after which the entry never goes stale (None: it always can)."""
        return self.date_to if self.settles else None

    @property
    def size(self) -> int:
        """The bytes this entry accounts for against the cache bound."""
        return len(self.payload) + len(self.sql.encode()) + ENTRY_OVERHEAD_BYTES


@runtime_checkable
class ResultCache(Protocol):
    """What the execution layer needs of a result store (in-process now, a shared one later)."""

    def get(self, key: str) -> CacheEntry | None:
        """The entry for `key`, or None."""
        ...

    def put(self, key: str, entry: CacheEntry) -> None:
        """Stores `entry` under `key`, replacing any previous one (a store may decline to keep it)."""
        ...

    def delete(self, key: str) -> None:
        """Forgets `key`; no error when absent."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters for tests, benchmarks and metrics."""
        ...


class MemoryResultCache:
    """A thread-safe LRU cache bounded by a memory budget (its own, or one shared with other holders).

    Engine runs put from worker threads while asyncio handlers get, so every operation takes one
    lock; each is O(1) (OrderedDict move/pop), so holding it on the event loop is harmless. When the
    budget is exceeded it asks the cache for bytes back and the least recently used entries go.
    """

    HOLDER = "results"

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, *, budget: MemoryBudget | None = None) -> None:
        if budget is None:
            if max_bytes <= 0:
                raise ValueError("max_bytes must be positive")
            budget = MemoryBudget(max_bytes)
        self._budget = budget
        self.max_bytes = budget.limit
        self._entries: OrderedDict[str, tuple[CacheEntry, int]] = OrderedDict()  # oldest use first
        self._bytes = 0
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._rejected = 0
        budget.register(self.HOLDER, self._reclaim, RESULTS_ORDER)

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return found[0]

    def put(self, key: str, entry: CacheEntry) -> None:
        size = entry.size  # outside the lock: encoding the SQL is O(len)
        if size <= self.max_bytes:
            # Rebuilt answers give way first (they take their own locks: not under ours).
            self._budget.make_room(size, before=RESULTS_ORDER)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
                self._budget.release(self.HOLDER, old[1])
            if size > self.max_bytes:
                # Storing it would evict everything and still not fit. The older entry is dropped too:
                # after put(), get() returns this entry or nothing, never an earlier result.
                self._rejected += 1
                return
            # Room is made under the lock, so the bound holds at every moment, not only eventually.
            while self._entries and self._budget.used + size > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
                self._budget.release(self.HOLDER, evicted)
                self._evictions += 1
            self._entries[key] = (entry, size)
            self._bytes += size
            self._budget.charge(self.HOLDER, size, reclaim=False)

    def delete(self, key: str) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            freed = old[1] if old is not None else 0
            self._bytes -= freed
        self._budget.release(self.HOLDER, freed)

    def _reclaim(self, excess: int) -> None:
        """Evicts least recently used entries until `excess` bytes are freed (or none is left)."""
        freed = 0
        with self._lock:
            while freed < excess and self._entries:
                _, (_, evicted) = self._entries.popitem(last=False)
                freed += evicted
                self._evictions += 1
            self._bytes -= freed
        self._budget.release(self.HOLDER, freed)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "evictions": self._evictions,
                "rejected": self._rejected,
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_bytes": self.max_bytes,
            }

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
