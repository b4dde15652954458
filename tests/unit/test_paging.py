"""The window every list cuts: defaults, the ceiling, negative values named."""

from __future__ import annotations

from server.domain import paging
from server.errors import Violations


def test_zero_means_the_default_and_the_ceiling_lowers_larger_limits() -> None:
    violations = Violations()
    assert paging.window(violations, 0, 0) == paging.DEFAULT_LIMIT
    assert paging.window(violations, 5000, 0) == paging.MAX_LIMIT
    assert paging.window(violations, 7, 3, default=0, maximum=5) == 5
    assert paging.window(violations, 0, 0, default=0) == 0
    assert violations.items == []


def test_negative_limit_and_offset_are_both_named() -> None:
    violations = Violations()
    paging.window(violations, -1, -2, fields=("checks_limit", "checks_offset"))
    assert [v.field for v in violations.items] == ["checks_limit", "checks_offset"]
