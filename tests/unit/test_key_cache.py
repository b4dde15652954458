"""The cache of verified API keys: an entry lives exactly its TTL, so revocation takes effect after it."""

from __future__ import annotations

from interceptors.auth import KeyCache
from server.principal import Principal

TTL = 5.0
KEY = "phx_cached"


class Clock:
    """Monotonic seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def principal() -> Principal:
    return Principal(key_id=1, user_id=1, scopes=frozenset({"insight:read"}), environments={})


def test_a_verified_key_is_served_for_its_ttl_and_then_verified_again() -> None:
    clock = Clock()
    cache = KeyCache(TTL, clock=clock)
    verified = principal()
    cache.put(KEY, verified)
    assert cache.get(KEY) is verified
    clock.now += TTL  # the last instant of the entry's life
    assert cache.get(KEY) is verified
    clock.now += 0.001
    assert cache.get(KEY) is None  # a revoked key is refused from here on: the caller verifies again
    clock.now -= 1.0
    assert cache.get(KEY) is None  # the expired entry was dropped, not just hidden


def test_a_new_verification_starts_a_new_ttl() -> None:
    clock = Clock()
    cache = KeyCache(TTL, clock=clock)
    cache.put(KEY, principal())
    clock.now += TTL - 1.0
    again = principal()
    cache.put(KEY, again)
    clock.now += TTL - 0.5  # past the first entry's end, within the second's
    assert cache.get(KEY) is again
    clock.now += 1.0
    assert cache.get(KEY) is None


def test_a_zero_ttl_caches_nothing() -> None:
    cache = KeyCache(0, clock=Clock())
    cache.put(KEY, principal())
    assert cache.get(KEY) is None


def test_the_default_clock_is_monotonic() -> None:
    import time

    assert KeyCache(TTL).clock is time.monotonic
