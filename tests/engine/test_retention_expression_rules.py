"""Retention broken down by a HogQL expression (`breakdown_type: hogql`), on chDB, against
hand-worked values (none from the oracle or the engine's code)."""

from __future__ import annotations

from typing import Any

import pytest

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.test_breakdown_shapes_retention import by_value
from tests.engine.test_retention_rules import at, ev, retention, run
from tests.oracle import NULL_LABEL


def test_a_hogql_breakdown_splits_cohorts_by_the_expressions_text(store: EventStore) -> None:
    events = [
        ev(at(4), person="p1", browser="Chrome"),
        ev(at(5), person="p1", browser="chrome"),  # lower() folds it: p1 returns in the same value
        ev(at(4), person="p2", browser="Firefox"),
        ev(at(4), person="p3", browser=""),  # no value: the null label
        ev(at(4), person="p4"),
    ]
    got = by_value(store, events, {"breakdown": "lower(properties.browser)", "breakdown_type": "hogql"})
    # chrome: p1 starts on the 4th and (recurring) the 5th, and returns on the 5th.
    assert got == {"chrome": [[1, 1], [1, 0]], "firefox": [[1, 0], [0, 0]], NULL_LABEL: [[2, 0], [0, 0]]}


def test_a_hogql_breakdown_as_one_breakdowns_item_with_a_histogram(store: EventStore) -> None:
    events = [ev(at(4), person="p1", amount=1), ev(at(4), person="p2", amount=3), ev(at(5), person="p2", amount=3)]
    bf = {"breakdowns": [{"property": "toFloat64OrNull(properties.amount) * 10", "type": "hogql", "histogram_bin_count": 2}]}
    # Values 10 and 30: width 10, [10, 20) holds p1, [20, 30.01) p2 (who returns on the 5th).
    assert by_value(store, events, bf) == {"[10.0,20.0]": [[1, 0], [0, 0]], "[20.0,30.01]": [[1, 1], [1, 0]]}


def test_hostile_expression_text_is_a_value(store: EventStore) -> None:
    events = [ev(at(4), person="p1", browser="x")]
    got = by_value(store, events, {"breakdown": "concat(properties.browser, '''); DROP TABLE events; --')", "breakdown_type": "hogql"})
    assert got == {"x'); DROP TABLE events; --": [[1, 0], [0, 0]]}


@pytest.mark.parametrize(
    ("bf", "path"),
    [
        ({"breakdown": "count()", "breakdown_type": "hogql"}, "breakdownFilter.breakdown"),
        ({"breakdown": "nosuchfield", "breakdown_type": "hogql"}, "breakdownFilter.breakdown"),
        ({"breakdowns": [{"property": "sum(1)", "type": "hogql"}]}, "breakdownFilter.breakdowns[0].property"),
        # The engine refuses it (no lower of a number): still the caller's expression.
        ({"breakdown": "lower(1)", "breakdown_type": "hogql"}, "breakdownFilter.breakdown"),
    ],
)
def test_an_invalid_hogql_breakdown_is_invalid_naming_its_field(store: EventStore, bf: dict[str, Any], path: str) -> None:
    with pytest.raises(QueryError) as caught:
        run(store, [ev(at(4))], retention(breakdownFilter=bf, totalIntervals=2))
    assert caught.value.path == path
