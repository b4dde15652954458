"""Recently read insights and recorded views, kept in memory for a few seconds to serve hot reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.domain.insights import InsightView

# Keyed by (environment id, insight id) or (environment id, short id).
Key = tuple[int, int | str]


class ReadCache:
    """Insights as last read (without per-user fields), for `ttl` seconds.

    Writes in this process forget what they change. Another replica's writes show here after at
    most `ttl` seconds, the price of answering hot reads without a database round trip. A read that
    raced with a write is not cached: each environment has a generation that every write bumps,
    and an entry read under an older generation is dropped.
    """

    def __init__(
        self, ttl_seconds: float, *, max_entries: int = 20_000, clock: Callable[[], float] = time.monotonic
    ):
        self.ttl = ttl_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Key, tuple[float, int, InsightView]] = {}
        self._generations: dict[int, int] = {}
        self._views: dict[tuple[int, int], dt.datetime] = {}

    def generation(self, environment_id: int) -> int:
        """Take before reading from the database; pass to put()."""
        return self._generations.get(environment_id, 0)

    def get(self, environment_id: int, key: int | str) -> InsightView | None:
        found = self._entries.get((environment_id, key))
        if found is None:
            return None
        expires, generation, view = found
        if expires < self._clock() or generation != self._generations.get(environment_id, 0):
            return None
        return view

    def put(self, view: InsightView, generation: int) -> None:
        if self.ttl <= 0:
            return
        env = view.insight.environment_id
        with self._lock:
            if generation != self._generations.get(env, 0):
                return
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            entry = (self._clock() + self.ttl, generation, dataclasses.replace(view, last_viewed_at=None))
            self._entries[(env, view.insight.id)] = entry
            self._entries[(env, view.insight.short_id)] = entry

    def forget(self, environment_id: int) -> None:
        """Called after a write to the environment's insights: every cached read of it is stale."""
        with self._lock:
            self._generations[environment_id] = self._generations.get(environment_id, 0) + 1

    def last_view(self, user_id: int, insight_id: int) -> dt.datetime | None:
        return self._views.get((user_id, insight_id))

    def saw(self, user_id: int, insight_id: int, at: dt.datetime | None) -> None:
        """Remembers a user's recorded view, so that a repeat within the resolution needs no query."""
        if at is None:
            return
        if len(self._views) >= self.max_entries:
            self._views.clear()
        self._views[(user_id, insight_id)] = at
