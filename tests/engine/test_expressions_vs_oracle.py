"""Property-based equality of the SQL trends engine and the pure-Python oracle on HogQL
expressions: hogql breakdown dimensions (alone or beside a property) and `math: hogql` series; the
oracle evaluates each expression in Python (tests/oracle/expressions.py)."""

from __future__ import annotations

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.expression_strategies import (
    paths_expression_cases,
    retention_expression_cases,
    trends_expression_cases,
)
from tests.engine.paths_harness import run_paths_engine
from tests.engine.paths_strategies import TEST_ACCOUNT_FILTERS as PATHS_TEST_ACCOUNT_FILTERS
from tests.engine.paths_strategies import PathsCase
from tests.engine.tally import REJECTED, assert_mostly_nonzero, tally
from tests.engine.test_paths_vs_oracle import check as paths_check
from tests.engine.test_retention_vs_oracle import check as retention_check
from tests.engine.test_trends_vs_oracle import check
from tests.oracle.trends import InvalidArgument

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


# Share of the computed examples comparing edges: 0.53 to 0.77 over 15 seeds (1000-1014, oracle
# only, 100 examples; 87% to 100% of them computed); the plain paths test's floor is 0.3.
PATHS_NONZERO_SHARE = 0.43


def check_paths(store: EventStore, case: PathsCase) -> str:
    """paths_check, an expression both refuse (InvalidArgument, INVALID_ARGUMENT) counted as refused."""
    expression = case.query["pathsFilter"].get("pathsHogQLExpression", "")
    try:
        from tests.oracle.paths import compute_paths

        kwargs = {"timezone": case.timezone, "now": case.now, "test_account_filters": PATHS_TEST_ACCOUNT_FILTERS}
        compute_paths(case.events, case.query, **kwargs)  # type: ignore[arg-type]
    except InvalidArgument:
        with pytest.raises(QueryError) as caught:
            run_paths_engine(store, case.events, case.query, **kwargs)  # type: ignore[arg-type]
        assert caught.value.path == "pathsFilter.pathsHogQLExpression", (expression, caught.value)
        return REJECTED
    return paths_check(store, case)


@pytest.mark.hypothesis
def test_paths_engine_equals_oracle_on_hogql_items(store: EventStore) -> None:
    """Path items named by a drawn expression (hogql alone: every event; beside custom events or
    pageviews; no type listed), sessions, collapsing, cleaning, groupings and limits as usual."""
    assert_mostly_nonzero(tally(paths_expression_cases(), lambda case: check_paths(store, case)), PATHS_NONZERO_SHARE)
