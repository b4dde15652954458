"""Pure sharing rules: refresh remapping, settings, password hashes, client addresses, unlock limits."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import pytest

from server.config import Settings
from server.domain.sharing import clean_settings, hash_password, shared_refresh, verify_password
from server.domain.unlocks import client_address, retry_after
from server.errors import InvalidArgument
from server.execution.refresh import Refresh

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
    # Self-describing: scrypt, its work factor, a 16-byte salt and a 32-byte hash (base64).
    _, _, _, _, salt, digest = first.split("$")
    assert (len(base64.b64decode(salt)), len(base64.b64decode(digest))) == (16, 32)


def test_a_hash_verifies_with_the_work_factor_it_records() -> None:
    # A stronger factor chosen later (here 64 MiB of memory, over OpenSSL's 32 MiB default)
    # must not lock out the passwords hashed with it, nor the older ones.
    salt = b"0123456789abcdef"
    n, r, p = 2**16, 8, 1
    digest = hashlib.scrypt(b"s3cret-pass", salt=salt, n=n, r=r, p=p, dklen=32, maxmem=2**27)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    stored = "$".join(["scrypt", str(n), str(r), str(p), *encoded])
    assert verify_password("s3cret-pass", stored)
    assert not verify_password("s3cret-pasS", stored)


def test_client_address_is_the_host_or_the_ipv6_64() -> None:
    assert client_address("ipv4:10.0.0.7:51234") == "ipv4:10.0.0.7"
    # One host usually holds a whole /64: its addresses count as one.
    assert client_address("ipv6:[2001:db8:1:2:aaaa::1]:51234") == "ipv6:2001:db8:1:2::/64"
    assert client_address("ipv6:[2001:db8:1:2:bbbb::9]:1") == client_address("ipv6:[2001:db8:1:2::5]:2")
    assert client_address("ipv6:[2001:db8:1:3::5]:2") != client_address("ipv6:[2001:db8:1:2::5]:2")
    assert client_address("ipv6:[::ffff:10.0.0.7]:51234") == "ipv4:10.0.0.7", "IPv4-mapped is IPv4"
    assert client_address("ipv6:[fe80::1%25eth0]:51234") == "ipv6:fe80::/64"
    assert client_address("ipv6:[fe80::%25eth1]:51234") == "ipv6:fe80::/64", "whatever the interface"
    assert client_address("unix:/tmp/sock") == "unix:/tmp/sock"
    assert client_address("ipv4:not-an-address:1") == "ipv4:not-an-address:1"
    assert client_address("ipv4:10.0.0.7:port") == "ipv4:10.0.0.7:port", "no port: not a TCP peer"
    assert client_address("unix-abstract:10.0.0.7:1") == "unix-abstract:10.0.0.7:1", "only ipv4/ipv6 parse"


def test_retry_after_waits_for_enough_failures_to_leave_the_window() -> None:
    window = dt.timedelta(minutes=5)
    times = [NOW - dt.timedelta(seconds=s) for s in (200, 100, 50)]
    assert retry_after(times, 4, window, NOW) == 0, "under the limit"
    assert retry_after(times, 3, window, NOW) == 100, "the oldest must leave"
    assert retry_after(times, 2, window, NOW) == 200, "the two oldest must leave"
    # Replicas write their failures in any order; the oldest still decides.
    assert retry_after(times[::-1], 3, window, NOW) == 100
    assert retry_after([times[1], times[0], times[2]], 2, window, NOW) == 200
    almost_gone = [NOW - window + dt.timedelta(milliseconds=250)]
    assert retry_after(almost_gone, 1, window, NOW) == 0.25, "fractions of a second are kept"


def test_unlock_limit_settings_are_validated() -> None:
    assert Settings(sharing_unlock_failures_per_address=5, sharing_unlock_failures_per_link=5).validated()
    for bad in (
        {"sharing_unlock_window_seconds": 0},
        {"sharing_unlock_failures_per_address": 0},
        # A link ceiling under the per-address limit would let one address close the link.
        {"sharing_unlock_failures_per_address": 20, "sharing_unlock_failures_per_link": 10},
    ):
        with pytest.raises(InvalidArgument):
            Settings(**bad).validated()  # type: ignore[arg-type]
