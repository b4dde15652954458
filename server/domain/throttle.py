"""Request throttles: burst and sustained token buckets per class of method, API key and environment."""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass

from server.errors import ResourceExhausted

# The reference's classes and rates (its throttles are keyed per team and key): every method, the
# methods that compute on the engine, and the analysis endpoints (the reference's "AI" classes; its
# rates are not published, so these are decided here: between the other two).
DEFAULT_RATES = {
    "default": "480/minute,4800/hour",
    "compute": "240/minute,1200/hour",
    "ai": "120/minute,2400/hour",
}
_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_RATE = re.compile(r"\s*(\d{1,9})\s*/\s*(second|minute|hour|day)\s*")
# Buckets held at most; the least recently used go first (a bucket forgotten is a full one again).
MAX_BUCKETS = 100_000


@dataclass(frozen=True)
class Rate:
    """`count` calls per `seconds`, refilled evenly: a burst of `count`, then one per seconds/count."""

    count: int
    seconds: float


def parse_rates(text: str) -> tuple[Rate, ...]:
    """'480/minute,4800/hour' → its rates; 'off' (or '') → none: that class is not throttled.
    ValueError saying what is wrong otherwise."""
    if text.strip().lower() in ("", "off"):
        return ()
    rates = []
    for part in text.split(","):
        found = _RATE.fullmatch(part)
        if found is None or int(found.group(1)) < 1:
            raise ValueError(
                f"{part.strip()!r} is not COUNT/UNIT (COUNT >= 1, UNIT second, minute, hour or day) or off"
            )
        rates.append(Rate(int(found.group(1)), _UNITS[found.group(2)]))
    return tuple(rates)


@dataclass
class _Bucket:
    tokens: float
    at: float


class Throttle:
    """Token buckets per (class, caller, rate). A call takes one token from each of its class's
    buckets, or none when one is empty; then it waits until that one has a token again."""

    def __init__(
        self,
        classes: Mapping[str, tuple[Rate, ...]],
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = MAX_BUCKETS,
    ):
        self._classes = dict(classes)
        self._clock = clock
        self._max = max_buckets
        self._buckets: OrderedDict[tuple[str, Hashable, int], _Bucket] = OrderedDict()

    def wait(self, klass: str, caller: Hashable) -> float:
        """0 when the call may go (its tokens taken), else the seconds until it may."""
        rates = self._classes.get(klass, ())
        if not rates:
            return 0.0
        now = self._clock()
        buckets = [self._bucket((klass, caller, i), rate, now) for i, rate in enumerate(rates)]
        short = [(1.0 - b.tokens) * rate.seconds / rate.count for b, rate in zip(buckets, rates, strict=True) if b.tokens < 1.0]
        if short:
            return max(short)
        for bucket in buckets:
            bucket.tokens -= 1.0
        return 0.0

    def check(self, klass: str, caller: Hashable) -> None:
        """Raises ResourceExhausted (with the wait, as RetryInfo) when the call must wait."""
        seconds = self.wait(klass, caller)
        if seconds > 0:
            whole = max(1, math.ceil(seconds))
            raise ResourceExhausted(
                f"Request was throttled. Expected available in {whole} second{'s' if whole != 1 else ''}.",
                reason="THROTTLED",
                retry_after=seconds,
                metadata={"throttle_class": klass},
            )

    def _bucket(self, key: tuple[str, Hashable, int], rate: Rate, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(rate.count), now)
            while len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.at)
            bucket.tokens = min(float(rate.count), bucket.tokens + elapsed * rate.count / rate.seconds)
            bucket.at = now
        return bucket
