"""The in-process result cache: LRU eviction by bytes, oversized entries, counters, concurrent use."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from server.execution.resultcache import ENTRY_OVERHEAD_BYTES, CacheEntry, MemoryResultCache, ResultCache

T0 = dt.datetime(2024, 5, 10, 12, tzinfo=dt.UTC)


def entry(payload_size: int = 1000, sql: str = "", tag: int = 0) -> CacheEntry:
    return CacheEntry(
        payload=bytes([tag % 256]) * payload_size,
        has_more=False,
        sql=sql,
        date_from=T0 - dt.timedelta(days=7),
        date_to=T0,
        interval="day",
        last_refresh=T0,
    )


ONE = 1000 + ENTRY_OVERHEAD_BYTES  # the size of entry()


def test_size_counts_payload_sql_bytes_and_overhead() -> None:
    assert entry(10, sql="SELECT é").size == 10 + len("SELECT é".encode()) + ENTRY_OVERHEAD_BYTES


def test_memory_cache_satisfies_the_backend_interface() -> None:
    assert isinstance(MemoryResultCache(), ResultCache)


def test_inserting_beyond_the_bound_evicts_the_least_recently_used() -> None:
    cache = MemoryResultCache(max_bytes=3 * ONE)
    for key in ("a", "b", "c"):
        cache.put(key, entry())
    cache.put("d", entry())
    assert cache.get("a") is None
    assert all(cache.get(key) is not None for key in ("b", "c", "d"))
    stats = cache.stats()
    assert stats["evictions"] == 1 and stats["entries"] == 3 and stats["bytes"] == 3 * ONE


def test_a_get_makes_an_entry_recently_used() -> None:
    cache = MemoryResultCache(max_bytes=3 * ONE)
    for key in ("a", "b", "c"):
        cache.put(key, entry())
    assert cache.get("a") is not None
    cache.put("d", entry())
    assert cache.get("b") is None  # "a" was read after "b" was written
    assert cache.get("a") is not None


def test_a_large_entry_evicts_as_many_as_it_needs() -> None:
    cache = MemoryResultCache(max_bytes=3 * ONE)
    for key in ("a", "b", "c"):
        cache.put(key, entry())
    cache.put("big", entry(2 * ONE))
    assert cache.get("a") is None and cache.get("b") is None and cache.get("c") is None
    assert cache.get("big") is not None
    assert cache.stats()["bytes"] <= 3 * ONE


def test_replacing_a_key_accounts_its_bytes_once() -> None:
    cache = MemoryResultCache(max_bytes=10 * ONE)
    cache.put("a", entry(1000, tag=1))
    cache.put("a", entry(3000, tag=2))
    found = cache.get("a")
    assert found is not None and found.payload[:1] == b"\x02"
    assert cache.stats()["bytes"] == 3000 + ENTRY_OVERHEAD_BYTES and len(cache) == 1


def test_an_entry_larger_than_the_bound_is_not_stored_and_drops_the_older_one() -> None:
    cache = MemoryResultCache(max_bytes=3 * ONE)
    cache.put("a", entry())
    cache.put("b", entry())
    cache.put("a", entry(3 * ONE))
    assert cache.get("a") is None  # never the earlier result after a put
    assert cache.get("b") is not None  # nothing else was evicted for it
    stats = cache.stats()
    assert stats["rejected"] == 1 and stats["evictions"] == 0 and stats["bytes"] == ONE


def test_delete_forgets_and_frees_bytes() -> None:
    cache = MemoryResultCache(max_bytes=3 * ONE)
    cache.put("a", entry())
    cache.delete("a")
    cache.delete("missing")
    assert cache.get("a") is None
    assert cache.stats()["bytes"] == 0 and len(cache) == 0


def test_counters() -> None:
    cache = MemoryResultCache(max_bytes=2 * ONE)
    cache.put("a", entry())
    cache.get("a")
    cache.get("a")
    cache.get("x")
    cache.put("b", entry())
    cache.put("c", entry())
    assert cache.stats() == {
        "hits": 2,
        "misses": 1,
        "evictions": 1,
        "rejected": 0,
        "entries": 2,
        "bytes": 2 * ONE,
        "max_bytes": 2 * ONE,
    }


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryResultCache(max_bytes=0)


def test_concurrent_puts_and_gets_keep_the_bound_and_the_accounting() -> None:
    bound = 20 * ONE
    cache = MemoryResultCache(max_bytes=bound)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(2000):
                key = f"k{(i * 7 + n) % 60}"
                if i % 3:
                    found = cache.get(key)
                    assert found is None or len(found.payload) in (500, 1000, 1500)
                else:
                    cache.put(key, entry(500 * (1 + (i + n) % 3), tag=n))
                if i % 97 == 0:
                    cache.delete(key)
                assert cache.stats()["bytes"] <= bound
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    stats = cache.stats()
    assert stats["bytes"] <= bound
    assert stats["evictions"] > 0
    # The running total equals the sum of what is actually stored.
    stored = [cache.get(f"k{i}") for i in range(60)]
    assert stats["bytes"] == sum(e.size for e in stored if e is not None)
    assert stats["entries"] == sum(e is not None for e in stored)


def test_the_cache_and_memos_share_one_budget_and_memos_give_way_first() -> None:
    from server.memory import Memo, MemoryBudget

    budget = MemoryBudget(4 * ONE)
    cache = MemoryResultCache(budget=budget)
    memo: Memo[str, str] = Memo(budget, "answers", share=2 * ONE, max_item=ONE)
    cache.put("a", entry(tag=1))
    cache.put("b", entry(tag=2))
    memo.put("x", "answer x", ONE)
    memo.put("y", "answer y", ONE)
    assert budget.used == 4 * ONE and len(cache) == 2 and len(memo) == 2
    # A third result needs room: the memo's oldest answer goes, the results stay.
    cache.put("c", entry(tag=3))
    assert budget.used <= budget.limit
    assert len(cache) == 3 and memo.get("x") is None and memo.get("y") == "answer y"
    # Then results, least recently used first, once the memos are empty.
    cache.put("d", entry(tag=4))
    cache.put("e", entry(tag=5))
    assert budget.used <= budget.limit and len(memo) == 0
    assert cache.get("a") is None and cache.get("e") is not None


def test_a_memo_keeps_no_item_above_its_item_bound_and_stays_within_its_share() -> None:
    from server.memory import Memo, MemoryBudget

    budget = MemoryBudget(100 * ONE)
    memo: Memo[int, int] = Memo(budget, "answers", share=3 * ONE, max_item=ONE)
    memo.put(0, 0, 2 * ONE)
    assert memo.get(0) is None and budget.used == 0
    for i in range(10):
        memo.put(i, i, ONE)
    assert len(memo) == 3 and budget.held("answers") == 3 * ONE
    assert [memo.get(i) for i in (6, 7, 8, 9)] == [None, 7, 8, 9]
