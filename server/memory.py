"""One memory budget for every result the process holds (result cache, answer memos), and the memo."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Reclaimers run in this order when the budget is exceeded: rebuilt answers go before results.
MEMO_ORDER, RESULTS_ORDER = 0, 1


class MemoryBudget:
    """Bytes held by named holders against one limit.

    A holder charges what it keeps and releases what it drops. When a charge takes the total over the
    limit, holders are asked to give bytes back, memos first (they are rebuilt from results on the
    next read), then the result cache, least recently used first. Reclaimers run outside this lock:
    they take their own locks and call `release`.
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("a memory budget must be positive")
        self.limit = limit
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}
        self._reclaimers: list[tuple[int, str, Callable[[int], None]]] = []

    def register(self, holder: str, reclaim: Callable[[int], None], order: int) -> None:
        """`reclaim(excess)` drops at least `excess` bytes of the holder's, or all it has."""
        with self._lock:
            self._held.setdefault(holder, 0)
            self._reclaimers.append((order, holder, reclaim))
            self._reclaimers.sort(key=lambda item: item[0])

    def charge(self, holder: str, size: int, *, reclaim: bool = True) -> None:
        """Adds `size` to the holder's bytes; past the limit, asks the holders for bytes back (unless
        the caller made room itself, under its own lock: `reclaim=False`)."""
        with self._lock:
            self._held[holder] = self._held.get(holder, 0) + size
            excess = sum(self._held.values()) - self.limit
        if excess > 0 and reclaim:
            self._reclaim()

    def make_room(self, size: int, *, before: int) -> None:
        """Asks the holders ordered before `before` for the bytes that `size` more would exceed."""
        for order, _, reclaim in list(self._reclaimers):
            excess = self.used + size - self.limit
            if order >= before or excess <= 0:
                return
            reclaim(excess)

    def release(self, holder: str, size: int) -> None:
        with self._lock:
            self._held[holder] = self._held.get(holder, 0) - size

    @property
    def used(self) -> int:
        with self._lock:
            return sum(self._held.values())

    def held(self, holder: str) -> int:
        with self._lock:
            return self._held.get(holder, 0)

    def _reclaim(self) -> None:
        for _, _, reclaim in list(self._reclaimers):
            excess = self.used - self.limit
            if excess <= 0:
                return
            reclaim(excess)


class Memo(Generic[K, V]):
    """Values rebuilt from results for hot reads, kept while they fit their share of the budget.

    An item larger than `max_item` is never kept (rebuilding it is cheap next to holding it); past
    `share` bytes, or when the budget asks, the oldest items go first.
    """

    def __init__(self, budget: MemoryBudget, holder: str, *, share: int, max_item: int) -> None:
        self._budget = budget
        self._holder = holder
        self._share = share
        self._max_item = max_item
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        budget.register(holder, self._reclaim, MEMO_ORDER)

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            return None if found is None else found[0]

    def put(self, key: K, value: V, size: int) -> None:
        if size > self._max_item:
            return
        with self._lock:
            old = self._items.pop(key, None)
            freed = old[1] if old else 0
            self._items[key] = (value, size)
            self._bytes += size - freed
            while self._bytes > self._share and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
                freed += dropped
        self._budget.release(self._holder, freed)
        self._budget.charge(self._holder, size)

    def clear(self) -> None:
        self._reclaim(self._share + 1)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _reclaim(self, excess: int) -> None:
        freed = 0
        with self._lock:
            while freed < excess and self._items:
                _, (_, dropped) = self._items.popitem(last=False)
                freed += dropped
            self._bytes -= freed
        self._budget.release(self._holder, freed)
