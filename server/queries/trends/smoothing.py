"""trendsFilter.smoothingIntervals: a line's trailing moving average, floored as the reference does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

# When a window holds a non-integer value, an average this close to an integer (relative to its
# size, at least 1) is that integer. Such values come from the engine's float arithmetic, whose
# last bits depend on the order it summed in; without this, floor would turn a 2.9999999999999996
# that means 3 into 2. Windows of integers (counts) are exact and floored as they are.
SNAP = 1e-12
_SNAP_INVERSE = 10**12  # 1 / SNAP, for the exact integer test


def smooth(values: Sequence[float], intervals: int) -> list[float]:
    """Per bucket i: floor(mean(values[max(i - intervals + 1, 0) .. i])), the mean exact (and
    snapped to an integer within SNAP when the window holds a non-integer).

    O(len(values)) whatever `intervals` is: the window sums come from exact prefix sums (every
    float is a dyadic fraction, so scaling them all to one power-of-two denominator makes them
    integers), so no rounding error creeps in as the window slides.
    """
    if intervals <= 1 or not values:
        return list(values)
    if not all(math.isfinite(v) for v in values):
        return _smooth_floats(values, intervals)
    ratios = [float(v).as_integer_ratio() for v in values]
    shift = max(den.bit_length() - 1 for _, den in ratios)  # every denominator is a power of 2
    scaled = [num << (shift - (den.bit_length() - 1)) for num, den in ratios]
    prefix = [0, *accumulate(scaled)]
    fractional = [0, *accumulate(int(den != 1) for _, den in ratios)]  # non-integers so far
    out: list[float] = []
    for i in range(len(values)):
        start = max(i - intervals + 1, 0)
        total, denominator = prefix[i + 1] - prefix[start], (i + 1 - start) << shift
        snap = fractional[i + 1] > fractional[start]
        out.append(float(_floor_mean(total, denominator, snap)))
    return out


def _floor_mean(total: int, denominator: int, snap: bool) -> int:
    """floor(total / denominator); with `snap`, the nearest integer when that is within SNAP."""
    if snap:
        nearest = (2 * total + denominator) // (2 * denominator)
        if abs(total - nearest * denominator) * _SNAP_INVERSE <= max(denominator, abs(total)):
            return nearest
    return total // denominator


def _smooth_floats(values: Sequence[float], intervals: int) -> list[float]:
    # A line holding inf or nan (an overflowing sum): those windows keep their non-finite mean.
    out: list[float] = []
    for i in range(len(values)):
        window = values[max(i - intervals + 1, 0) : i + 1]
        mean = sum(window) / len(window)
        out.append(float(math.floor(mean)) if math.isfinite(mean) else mean)
    return out
