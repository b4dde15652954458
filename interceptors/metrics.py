"""RPCs for the metrics endpoint: calls by method and the code the client saw, seconds, in flight."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from server.meter import SECONDS_BUCKETS, Labels, cumulative

# The one label of a method not in the service's descriptors (the set of label values stays bounded).
OTHER = "other"


class _Method:
    """One method's numbers."""

    __slots__ = ("buckets", "codes", "in_flight", "seconds")

    def __init__(self, buckets: int):
        self.codes: dict[str, int] = {}
        self.buckets = [0] * buckets
        self.seconds = 0.0
        self.in_flight = 0


@dataclass(frozen=True)
class RpcSnapshot:
    """The numbers as the collector reads them, keyed by label tuples (methods with calls only)."""

    calls: dict[Labels, float]  # (method, code) -> calls
    seconds: dict[Labels, tuple[list[int], float]]  # (method,) -> cumulative counts per bound, sum
    in_flight: dict[Labels, float]  # (method,) -> calls running now


class RpcMeter:
    """Counts calls of the methods it is given (full gRPC paths, `/package.Service/Method`).

    `begin` and `end` run on the event loop's thread only (the interceptors do), so they take no lock;
    `snapshot` (the scrape, on another thread) copies each list and dict whole, which the GIL keeps
    consistent. One hot read costs a dict look-up, a bisect and four additions.
    """

    def __init__(self, methods: Iterable[str], bounds: tuple[float, ...] = SECONDS_BUCKETS):
        self.bounds = bounds
        self._methods = {method: _Method(len(bounds) + 1) for method in methods}
        self._other = _Method(len(bounds) + 1)

    def label(self, method: str) -> str:
        """The method's label: its path when the proto declares it, else `other`."""
        return method if method in self._methods else OTHER

    def begin(self, method: str) -> None:
        self._methods.get(method, self._other).in_flight += 1

    def end(self, method: str, code: str, seconds: float) -> None:
        state = self._methods.get(method, self._other)
        state.in_flight -= 1
        state.codes[code] = state.codes.get(code, 0) + 1
        state.buckets[bisect.bisect_left(self.bounds, seconds)] += 1
        state.seconds += seconds

    def snapshot(self) -> RpcSnapshot:
        calls: dict[Labels, float] = {}
        seconds: dict[Labels, tuple[list[int], float]] = {}
        in_flight: dict[Labels, float] = {}
        for label, state in [*self._methods.items(), (OTHER, self._other)]:
            codes, buckets, total, running = (
                dict(state.codes),
                list(state.buckets),
                state.seconds,
                state.in_flight,
            )
            if not codes and not running:
                continue
            for code, count in codes.items():
                calls[(label, code)] = count
            seconds[(label,)] = (cumulative(buckets), total)
            in_flight[(label,)] = running
        return RpcSnapshot(calls, seconds, in_flight)
