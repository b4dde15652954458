"""The in-memory read cache: expiry, invalidation by writes, and reads that raced a write."""

from __future__ import annotations

import datetime as dt

from server.domain.insights import InsightRecord, InsightView
from server.domain.readcache import ReadCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def view(insight_id: int = 7, environment_id: int = 1, short_id: str = "AbCdEfGh") -> InsightView:
    # The cache only reads the record's ids and replaces last_viewed_at.
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    record = InsightRecord(
        id=insight_id,
        environment_id=environment_id,
        short_id=short_id,
        name="Views",
        derived_name=None,
        description=None,
        order=None,
        deleted=False,
        saved=True,
        favorited=False,
        is_sample=False,
        created_at=at,
        updated_at=at,
        last_modified_at=at,
    )
    return InsightView(record, None, [], [], [], None, None, at, "UTC")


def test_a_read_is_served_by_id_and_short_id_until_it_expires() -> None:
    clock = Clock()
    cache = ReadCache(2.0, clock=clock)
    cache.put(view(), cache.generation(1))
    assert cache.get(1, 7) is not None
    found = cache.get(1, "AbCdEfGh")
    assert found is not None and found.last_viewed_at is None  # per-user fields are not shared
    assert cache.get(2, 7) is None  # another environment
    clock.now += 2.5
    assert cache.get(1, 7) is None


def test_a_write_forgets_every_read_of_its_environment() -> None:
    cache = ReadCache(60.0)
    cache.put(view(7), cache.generation(1))
    cache.put(view(8, short_id="ZZZZZZZZ"), cache.generation(1))
    cache.put(view(9, environment_id=2), cache.generation(2))
    cache.forget(1)
    assert cache.get(1, 7) is None and cache.get(1, 8) is None
    assert cache.get(2, 9) is not None


def test_a_read_that_raced_a_write_is_not_cached() -> None:
    cache = ReadCache(60.0)
    generation = cache.generation(1)  # a reader starts, reads the old state...
    cache.forget(1)  # ...a writer commits meanwhile...
    cache.put(view(), generation)  # ...and the reader's old state must not be cached.
    assert cache.get(1, 7) is None


def test_ttl_zero_disables_the_cache() -> None:
    cache = ReadCache(0)
    cache.put(view(), cache.generation(1))
    assert cache.get(1, 7) is None


def test_recorded_views_are_remembered_per_user() -> None:
    cache = ReadCache(2.0)
    at = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    cache.saw(3, 7, at)
    cache.saw(3, 8, None)
    assert cache.last_view(3, 7) == at
    assert cache.last_view(4, 7) is None and cache.last_view(3, 8) is None
