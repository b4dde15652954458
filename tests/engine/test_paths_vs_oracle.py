"""Property-based equality of the SQL paths engine and the independent pure-Python oracle.

As the lifecycle comparison: the examples run in an inner `@given` function, then the test asserts
that most of them compared at least one edge (comparing empty results passes whatever the engine
computes). To replay a printed `@reproduce_failure` blob, put it on the inner `compare`.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, event, given, settings

from storage.events import EventStore
from tests.engine.paths_harness import differences, run_paths_engine
from tests.engine.paths_strategies import TEST_ACCOUNT_FILTERS, PathsCase, paths_cases
from tests.engine.tally import NONZERO, ZERO, assert_mostly_nonzero
from tests.hypothesis_profiles import examples
from tests.oracle.paths import compute_paths

# 0.1 below the lowest share measured (oracle only) over 30 randomized seeds of 100 examples: 0.53
# to 0.87 (mean 0.72) compare edges (hypothesis's examples are correlated, so one run's share
# spreads widely); below this the strategies have degenerated. Derandomized (dev): 0.79.
MIN_NONZERO_SHARE = 0.43


def check(store: EventStore, case: PathsCase) -> str:
    """Compares the engine with the oracle on one example; returns what was compared (tally)."""
    kwargs = {"timezone": case.timezone, "now": case.now, "test_account_filters": TEST_ACCOUNT_FILTERS}
    expected = compute_paths(case.events, case.query, **kwargs)  # type: ignore[arg-type]
    got = run_paths_engine(store, case.events, case.query, **kwargs).results  # type: ignore[arg-type]
    outcome = NONZERO if expected else ZERO
    event(f"computed: {outcome}")
    problems = differences(expected, got)
    assert not problems, "\n".join(problems[:20])
    return outcome


@pytest.mark.hypothesis
def test_paths_engine_equals_oracle(store: EventStore) -> None:
    """Pages, screens and events split into 30-minute sessions (gaps on the boundary), collapsed,
    cut at start/end points, truncated, cleaned, excluded, weight- and edge-limited, in four time
    zones, with query and test-account filters."""
    outcomes: Counter[str] = Counter()

    @settings(max_examples=examples(100), suppress_health_check=[HealthCheck.data_too_large])
    @given(case=paths_cases())
    def compare(case: PathsCase) -> None:
        outcomes[check(store, case)] += 1

    compare()
    assert_mostly_nonzero(outcomes, MIN_NONZERO_SHARE)
