"""The trends moving average (trendsFilter.smoothingIntervals): exact, floored, linear in the line."""

from __future__ import annotations

import math

from server.queries.trends.smoothing import smooth


def test_the_floored_trailing_average() -> None:
    # [3, 0, 6, 9], k = 3: 3, 1.5 → 1, 3, 5. k = 2 over negatives: -0.5 floors to -1.
    assert smooth([3, 0, 6, 9], 3) == [3, 1, 3, 5]
    assert smooth([-1, 0, 1], 2) == [-1, -1, 0]
    assert smooth([3, 0, 6, 9], 1) == [3, 0, 6, 9]
    assert smooth([], 5) == []


def test_window_sums_stay_exact_as_the_window_slides() -> None:
    # A running float sum would keep 1e16 + 1 as 1e16 and, once 1e16 leaves the window, be left
    # with 0 + 1: the window [1, 1] would average 0.5 → 0 instead of 1.
    assert smooth([1e16, 1, 1, 1], 2) == [1e16, 5_000_000_000_000_000, 1, 1]


def test_float_noise_next_to_an_integer_is_that_integer() -> None:
    # 2.9999999999999996 is 3 computed in another order: it smooths to 3, not 2. A real fraction
    # below an integer still floors.
    assert smooth([2.9999999999999996, 3.0], 2) == [3, 3]
    assert smooth([2.999, 3.0], 2) == [2, 2]


def test_non_finite_values_do_not_raise() -> None:
    out = smooth([math.inf, 1.0, 2.0, 4.0], 2)
    assert out[:2] == [math.inf, math.inf] and out[2:] == [1, 3]


def test_a_long_line_with_a_long_window_is_linear() -> None:
    # 10,000 buckets with a 10,000-bucket window: 10^4 prefix steps, not 5·10^7 window additions.
    values = [float(i % 7) for i in range(10_000)]
    out = smooth(values, 10_000)
    assert out[-1] == math.floor(sum(values) / len(values))
    assert out[6] == math.floor(sum(range(7)) / 7)
