"""Pure sharing rules: the shared refresh remapping, settings, password hashes, peers, the attempt limiter."""

from __future__ import annotations

import datetime as dt

import pytest

from server.errors import InvalidArgument, ResourceExhausted
from server.execution import Refresh
from server.sharing import (
    AttemptLimiter,
    clean_settings,
    hash_password,
    peer_host,
    shared_refresh,
    verify_password,
)

NOW = dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (Refresh.FORCE_CACHE, Refresh.LAZY_ASYNC),
        (Refresh.ASYNC, Refresh.ASYNC),
        (Refresh.BLOCKING, Refresh.BLOCKING),
        (Refresh.FORCE_ASYNC, Refresh.LAZY_ASYNC),
        (Refresh.ASYNC_EXCEPT_ON_CACHE_MISS, Refresh.LAZY_ASYNC),
        (Refresh.LAZY_ASYNC, Refresh.LAZY_ASYNC),
    ],
)
def test_shared_refresh_remaps_modes(requested: Refresh, expected: Refresh) -> None:
    assert shared_refresh(requested, NOW - dt.timedelta(days=3), "day", NOW) == expected


def test_force_blocking_only_when_the_cache_is_older_than_the_interval_threshold() -> None:
    # Day interval: the staleness threshold is 6 hours.
    fresh = NOW - dt.timedelta(hours=6)
    old = NOW - dt.timedelta(hours=6, seconds=1)
    assert shared_refresh(Refresh.FORCE_BLOCKING, fresh, "day", NOW) == Refresh.BLOCKING
    assert shared_refresh(Refresh.FORCE_BLOCKING, old, "day", NOW) == Refresh.FORCE_BLOCKING
    assert shared_refresh(Refresh.FORCE_BLOCKING, None, "day", NOW) == Refresh.BLOCKING
    minute_old = NOW - dt.timedelta(minutes=6)
    assert shared_refresh(Refresh.FORCE_BLOCKING, minute_old, "minute", NOW) == Refresh.FORCE_BLOCKING


def test_settings_keep_whitelisted_booleans_and_name_a_bad_key() -> None:
    assert clean_settings({"legend": True, "whitelabel": False, "other": 1}) == {
        "legend": True,
        "whitelabel": False,
    }
    with pytest.raises(InvalidArgument) as caught:
        clean_settings({"detailed": 1.0})
    assert caught.value.violations[0].field == "sharing_configuration.settings.detailed"


def test_password_hash_is_salted_and_verifies() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first != second and "s3cret-pass" not in first
    assert first.startswith("scrypt$16384$8$1$")
    assert verify_password("s3cret-pass", first) and verify_password("s3cret-pass", second)
    assert not verify_password("s3cret-pasS", first)
    assert not verify_password("s3cret-pass", "bogus") and not verify_password("x", "md5$1$2$3$4$5")


def test_peer_host_drops_the_port() -> None:
    assert peer_host("ipv4:10.0.0.7:51234") == "ipv4:10.0.0.7"
    assert peer_host("ipv6:[::1]:51234") == "ipv6:[::1]"
    assert peer_host("unix:/tmp/sock") == "unix:/tmp/sock"


def test_limiter_blocks_after_the_limit_until_the_window_passes() -> None:
    now = [NOW]
    limiter = AttemptLimiter(lambda: now[0], limit=3, window=dt.timedelta(minutes=5))
    for _ in range(3):
        limiter.begin(["k"])
    with pytest.raises(ResourceExhausted) as caught:
        limiter.begin(["k"])
    assert caught.value.retry_after == 300
    limiter.begin(["other"])  # keys are independent
    now[0] += dt.timedelta(minutes=5)
    limiter.begin(["k"])
    limiter.succeeded(["k"])
    for _ in range(3):
        limiter.begin(["k"])
