"""Property-based equality of the SQL funnels engine and the independent pure-Python oracle.

As the trends comparison: each test runs its examples in an inner `@given` function, then asserts
that most of them compared a funnel someone entered (comparing empty funnels passes whatever the
engine computes). To replay a printed `@reproduce_failure` blob, put it on the inner `compare`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings

from storage.events import EventStore
from tests.engine.funnel_strategies import (
    TEST_ACCOUNT_FILTERS,
    FunnelCase,
    funnel_action_cases,
    funnel_actor_cases,
    funnel_cases,
    funnel_expression_cases,
    unordered_cases,
)
from tests.engine.funnels_harness import differences, run_funnel_engine
from tests.engine.harness import assert_agree, run_both
from tests.engine.tally import NONZERO, REJECTED, ZERO, assert_mostly_nonzero, tally
from tests.hypothesis_profiles import examples
from tests.oracle.funnels import compute_funnels

# Floors 0.1 below the lowest share measured (oracle only) over 30 randomized seeds (one run's
# examples are correlated, so its share spreads widely); below a floor the strategies have
# degenerated. Plain: 0.55 to 0.91 (mean 0.76); breakdowns: 0.53 to 0.87 (mean 0.71); action
# steps (two runs of 100): 0.53 to 0.84 (mean 0.68); long streams (40 examples): 0.65 to
# 0.90 (mean 0.79). Re-measured once unordered funnels drew full-range exclusions (share of the
# examples that computed, 20 seeds 1000-1019): plain 0.70 to 0.96 (mean 0.85), breakdowns 0.70 to
# 0.97 (mean 0.84).
MIN_NONZERO_SHARE = 0.45
MIN_NONZERO_SHARE_BREAKDOWNS = 0.43
MIN_NONZERO_SHARE_ACTIONS = 0.43
MIN_NONZERO_SHARE_LONG = 0.55
# First-time steps, groups and sessions (two runs of 60): 0.51 to 0.81 over 20 seeds (CI seed
# 1403143454 reached 0.46 at the former floor 0.5, before the rare invalid draws were made rare).
ACTOR_NONZERO_SHARE = 0.4


def outcome_of(results: list[list[dict[str, Any]]]) -> str:
    """NONZERO when anyone entered the funnel (any step of any group has a count)."""
    return NONZERO if any(step["count"] for group in results for step in group) else ZERO


def check(store: EventStore, case: FunnelCase) -> str:
    """Compares the engine with the oracle on one example; returns what was compared (tally)."""
    kwargs: dict[str, Any] = {
        "timezone": case.timezone,
        "week_start_day": case.week_start_day,
        "now": case.now,
        "test_account_filters": TEST_ACCOUNT_FILTERS,
    }
    both = run_both(
        lambda: compute_funnels(case.events, case.query, actions=case.actions, **kwargs),
        lambda: run_funnel_engine(store, case.events, case.query, actions=case.actions, **kwargs),
    )
    if both is None:
        return REJECTED
    expected, got = both
    outcome = outcome_of(expected.results)
    event(f"computed: {outcome}")
    assert_agree(expected, got, differences)
    return outcome


def run_cases(store: EventStore, *, breakdown: bool, actions: bool = False) -> Counter[str]:
    """Runs the profile's examples (100 in dev and ci) and counts what each one compared."""
    outcomes: Counter[str] = Counter()
    cases = funnel_action_cases(breakdown) if actions else funnel_cases(breakdown)

    @settings(max_examples=examples(100), suppress_health_check=[HealthCheck.data_too_large])
    @given(case=cases)
    def compare(case: FunnelCase) -> None:
        outcomes[check(store, case)] += 1

    compare()
    return outcomes


@pytest.mark.hypothesis
def test_funnel_engine_equals_oracle(store: EventStore) -> None:
    """Ordered, strict and unordered funnels: attempts, ties, window edges, exclusions, optional
    steps, strict noise, step and query filters, every window unit."""
    assert_mostly_nonzero(run_cases(store, breakdown=False), MIN_NONZERO_SHARE)


@pytest.mark.hypothesis
def test_funnel_engine_equals_oracle_on_breakdowns(store: EventStore) -> None:
    """The same with a breakdown (event, person, two dimensions) under every attribution, small
    limits (so values are cut into "Other") and the result order."""
    assert_mostly_nonzero(run_cases(store, breakdown=True), MIN_NONZERO_SHARE_BREAKDOWNS)


@pytest.mark.hypothesis
def test_funnel_engine_equals_oracle_on_action_steps(store: EventStore) -> None:
    """Steps and exclusions that are stored actions (event names, URL tests, property filters, a
    missing action now and then), with and without breakdowns: counts, times and step names."""
    outcomes = run_cases(store, breakdown=False, actions=True) + run_cases(store, breakdown=True, actions=True)
    assert_mostly_nonzero(outcomes, MIN_NONZERO_SHARE_ACTIONS)


@pytest.mark.hypothesis
def test_funnel_engine_equals_oracle_on_long_streams(store: EventStore) -> None:
    """Persons with up to 40 events, mostly at distinct instants: many overlapping attempts per
    person, so the whole-array walk (sql.py, vector.py) is compared far past its first steps."""
    outcomes: Counter[str] = Counter()

    @settings(max_examples=examples(40), suppress_health_check=[HealthCheck.data_too_large])
    @given(case=funnel_cases(breakdown=False, long=True))
    def compare(case: FunnelCase) -> None:
        outcomes[check(store, case)] += 1

    compare()
    assert_mostly_nonzero(outcomes, MIN_NONZERO_SHARE_LONG)


@pytest.mark.hypothesis
def test_funnel_engine_equals_oracle_on_first_time_steps_groups_and_sessions(store: EventStore) -> None:
    """First-time steps (with earlier copies of their events before the range) and funnels
    counting group keys or sessions (missing and empty keys among them), with and without
    breakdowns: counts and times."""
    outcomes: Counter[str] = Counter()
    for breakdown in (False, True):

        @settings(max_examples=examples(60), suppress_health_check=[HealthCheck.data_too_large])
        @given(case=funnel_actor_cases(breakdown))
        def compare(case: FunnelCase) -> None:
            outcomes[check(store, case)] += 1

        compare()
    assert_mostly_nonzero(outcomes, ACTOR_NONZERO_SHARE)


# Unordered funnels with full-range exclusions and step-0 attribution: 0.75 to 0.94 (mean 0.90)
# over 20 seeds (1000-1019, oracle only); in about one example in ten dropping the exclusion
# changes the oracle's result.
UNORDERED_NONZERO_SHARE = 0.65


@pytest.mark.hypothesis
def test_unordered_funnel_engine_equals_oracle_with_exclusions_and_step_attribution(store: EventStore) -> None:
    """Unordered funnels: attempts entered at any step, full-range exclusions (excluded attempts,
    persons removed), breakdowns attributed to the value at an attempt's first event (and the
    other attributions), walkers doing the steps in random orders: counts and times."""
    assert_mostly_nonzero(tally(unordered_cases(), lambda case: check(store, case)), UNORDERED_NONZERO_SHARE)


# Funnels counting an expression's values and hogql breakdowns: 0.63 to 0.89 (mean 0.75) over 15
# seeds (1000-1014, oracle only, the test's 60 + 40 examples; 73% to 92% of them computed).
EXPRESSION_NONZERO_SHARE = 0.5


@pytest.mark.hypothesis
def test_funnel_engine_equals_oracle_aggregating_by_expressions(store: EventStore) -> None:
    """funnelAggregateByHogQL with drawn expressions (fields, person properties, literals, lower,
    concat, coalesce, nullIf, if, substring…; NULL and '' are no actor), with and without
    breakdowns, and hogql breakdowns (alone or beside a property): the oracle evaluates each
    expression in Python (tests/oracle/expressions.py)."""
    outcomes = tally(funnel_expression_cases(False), lambda case: check(store, case), 60)
    outcomes += tally(funnel_expression_cases(True), lambda case: check(store, case), 40)
    assert_mostly_nonzero(outcomes, EXPRESSION_NONZERO_SHARE)
