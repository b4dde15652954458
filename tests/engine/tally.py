"""Counts what a property test's examples compared, so the test can insist most compare numbers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy

from tests.hypothesis_profiles import examples

T = TypeVar("T")

NONZERO = "non-zero"
ZERO = "all zero"
REJECTED = "rejected"
# At least this share of a test's examples must compute (not be refused): the worst seed measured
# for funnels refused 38% (test_funnels_vs_oracle.py, first-time steps, groups and sessions).
MIN_COMPUTED = 0.4


def outcome_of(results: list[dict[str, Any]]) -> str:
    """NONZERO when any item holds a value other than 0 (a data point or an aggregated value)."""
    if any(any(item.get("data") or [item.get("aggregated_value")]) for item in results):
        return NONZERO
    return ZERO


def assert_mostly_nonzero(outcomes: Counter[str], minimum: float) -> None:
    """Fails when fewer than `minimum` of the examples that computed (were not refused alike by
    the engine and the oracle) compared a result with a non-zero value: comparing zeros with zeros
    passes whatever the engine computes. Also fails when fewer than MIN_COMPUTED of all examples
    computed (a strategy that mostly draws refused queries compares little but refusal codes).
    Refusals are left out of the share: how many a run draws varies with the seed far more than
    what the computed ones compare."""
    total = sum(outcomes.values())
    computed = outcomes[NONZERO] + outcomes[ZERO]
    assert total and computed / total >= MIN_COMPUTED, (
        f"only {computed} of {total} examples computed a result, below the {MIN_COMPUTED:.0%} the "
        f"strategies must reach: {dict(outcomes)}"
    )
    share = outcomes[NONZERO] / computed
    assert share >= minimum, (
        f"only {outcomes[NONZERO]} of the {computed} examples that computed ({share:.0%}) compared a "
        f"non-zero result, below the {minimum:.0%} the strategies must reach: {dict(outcomes)}"
    )


def tally(strategy: SearchStrategy[T], check: Callable[[T], str], budget: int = 100) -> Counter[str]:
    """Runs `check` on `budget` examples of `strategy` (scaled by the active profile) and counts
    what each compared. A failing example fails here, printing its `@reproduce_failure` blob."""
    outcomes: Counter[str] = Counter()

    @settings(max_examples=examples(budget), suppress_health_check=[HealthCheck.data_too_large])
    @given(case=strategy)
    def compare(case: T) -> None:
        outcomes[check(case)] += 1

    compare()
    return outcomes
