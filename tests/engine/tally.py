"""Counts what a property test's examples compared, so the test can insist most compare numbers."""

from __future__ import annotations

from collections import Counter
from typing import Any

NONZERO = "non-zero"
ZERO = "all zero"
REJECTED = "rejected"


def outcome_of(results: list[dict[str, Any]]) -> str:
    """NONZERO when any item holds a value other than 0 (a data point or an aggregated value)."""
    if any(any(item.get("data") or [item.get("aggregated_value")]) for item in results):
        return NONZERO
    return ZERO


def assert_mostly_nonzero(outcomes: Counter[str], minimum: float) -> None:
    """Fails when fewer than `minimum` of the examples compared a result with a non-zero value:
    comparing zeros with zeros passes whatever the engine computes."""
    total = sum(outcomes.values())
    share = outcomes[NONZERO] / total if total else 0.0
    assert share >= minimum, (
        f"only {outcomes[NONZERO]} of {total} examples ({share:.0%}) compared a non-zero result, "
        f"below the {minimum:.0%} the strategies must reach: {dict(outcomes)}"
    )
