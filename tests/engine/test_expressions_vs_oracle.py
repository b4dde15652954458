"""Property-based equality of the SQL trends engine and the pure-Python oracle on HogQL
expressions: hogql breakdown dimensions (alone or beside a property) and `math: hogql` series; the
oracle evaluates each expression in Python (tests/oracle/expressions.py)."""

from __future__ import annotations

import pytest

from storage.events import EventStore
from tests.engine.expression_strategies import retention_expression_cases, trends_expression_cases
from tests.engine.tally import assert_mostly_nonzero, tally
from tests.engine.test_retention_vs_oracle import check as retention_check
from tests.engine.test_trends_vs_oracle import check

# Non-zero share of the computed examples: 0.85 to 1.00 over 15 seeds (1000-1014, oracle only, 100
# examples; 79% to 96% of them computed, the rest refused alike).
EXPRESSION_NONZERO_SHARE = 0.75


@pytest.mark.hypothesis
def test_trends_engine_equals_oracle_on_expressions(store: EventStore) -> None:
    """Ranking, Other (recounted for a non-additive aggregate), null buckets, compare, formulas and
    total-value displays over expression values and aggregates."""
    assert_mostly_nonzero(tally(trends_expression_cases(), lambda case: check(store, case)), EXPRESSION_NONZERO_SHARE)


# Non-zero share of the computed examples: 0.80 to 1.00 over 15 seeds (1000-1014, oracle only, 100
# examples; 67% to 88% of them computed, the rest refused alike).
RETENTION_NONZERO_SHARE = 0.7


@pytest.mark.hypothesis
def test_retention_engine_equals_oracle_on_hogql_breakdowns(store: EventStore) -> None:
    """Retention cohorts split by a drawn expression's text: ranking, Other, null label."""
    outcomes = tally(retention_expression_cases(), lambda case: retention_check(store, case))
    assert_mostly_nonzero(outcomes, RETENTION_NONZERO_SHARE)
