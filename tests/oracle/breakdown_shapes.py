"""Oracle of shaped breakdown values (query-engine-semantics §3.6): URL normalising and histograms.

Written from the rules alone, not from the engine: a URL loses its trailing '/', '?' and '#'
characters ('/' when nothing is left); a histogram of B bins splits [min, max] of the numbers
into B equal buckets [lo, hi), the last one's hi raised by 0.01, labelled '[lo,hi]' with each
bound as Python prints a float. Non-numbers (and infinities) fall in no bucket.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_BINS = 100


@dataclass(frozen=True)
class Shape:
    normalize_url: bool = False
    bins: int = 0


PLAIN = Shape()


def _invalid(message: str) -> Exception:
    # Imported late: the trends oracle imports this module.
    from tests.oracle.trends import InvalidArgument

    return InvalidArgument(message)


def shape(normalize: Any, bins: Any) -> Shape:
    """A dimension's shape from its JSON fields (bins None: not given)."""
    if bins is None:
        return Shape(normalize_url=bool(normalize))
    if isinstance(bins, bool) or not isinstance(bins, int) or not 1 <= bins <= MAX_BINS:
        raise _invalid("a histogram has between 1 and 100 bins")
    if normalize:
        raise _invalid("a histogram breakdown does not normalise URLs")
    return Shape(bins=bins)


def filter_shapes(bf: dict[str, Any]) -> list[Shape]:
    """One shape per dimension of a breakdownFilter (JSON)."""
    items = bf.get("breakdowns") or []
    if items:
        if bf.get("breakdown_histogram_bin_count") is not None or bf.get("breakdown_normalize_url"):
            raise _invalid("with breakdowns, histogram / normalize_url go per item")
        return [shape(b.get("normalize_url"), b.get("histogram_bin_count")) for b in items]
    return [shape(bf.get("breakdown_normalize_url"), bf.get("breakdown_histogram_bin_count"))]


def normalized(text: str | None) -> str | None:
    """The URL without trailing '/', '?', '#' ('/' when nothing else); None stays None."""
    if text is None:
        return None
    return text.rstrip("/?#") or "/"


def number(text: str | None, to_float: Any) -> float | None:
    """The finite number a property text holds (to_float: the oracle's toFloatOrNull)."""
    value = to_float(text)
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Grid:
    buckets: tuple[tuple[float, float], ...]

    def label(self, value: float | None) -> str | None:
        """The label of the first bucket holding `value` (None: none does)."""
        if value is None:
            return None
        for lo, hi in self.buckets:
            if lo <= value < hi:
                return "[" + repr(lo) + "," + repr(hi) + "]"
        return None


def grid(numbers: Iterable[float], bins: int) -> Grid:
    values = list(numbers)
    if not values:
        return Grid(())
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins
    edges = []
    for k in range(bins):
        upper = lo + (k + 1) * width
        if k == bins - 1:
            upper += 0.01
        edges.append((lo + k * width, upper))
    return Grid(tuple(edges))
