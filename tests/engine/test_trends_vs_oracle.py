"""Property-based equality of the SQL trends engine and the independent pure-Python oracle."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from server.errors import FailedPrecondition
from server.queries.errors import QueryError
from storage.events import EventStore
from tests.engine.harness import differences, run_engine
from tests.engine.strategies import NOWS, TEST_ACCOUNT_FILTERS, TIMEZONES, events, trends_query
from tests.oracle import Event, OracleError, compute_trends


def check(
    store: EventStore, evs: list[Event], query: dict[str, Any], tz: str, week_start_day: int, now: dt.datetime
) -> None:
    kwargs: dict[str, Any] = {
        "timezone": tz,
        "week_start_day": week_start_day,
        "now": now,
        "test_account_filters": TEST_ACCOUNT_FILTERS,
    }
    oracle_error: OracleError | None = None
    try:
        expected = compute_trends(evs, query, **kwargs)
    except OracleError as exc:
        oracle_error = exc
    engine_error: Exception | None = None
    try:
        got = run_engine(store, evs, query, **kwargs)
    except (QueryError, FailedPrecondition) as exc:
        engine_error = exc
    if oracle_error is not None or engine_error is not None:
        event(f"rejected: {oracle_error}")
        assert (
            type(oracle_error).__name__
            == ("FailedPrecondition" if isinstance(engine_error, FailedPrecondition) else "InvalidArgument")
            and engine_error is not None
        ), f"oracle: {oracle_error!r}, engine: {engine_error!r}"
        return
    event(
        "computed: "
        + (
            "non-empty"
            if any(any(i.get("data") or [i.get("aggregated_value")]) for i in expected.results)
            else "all zero"
        )
    )
    problems = differences(expected.results, got.results)
    if expected.has_more != got.has_more:
        problems.append(f"has_more: oracle {expected.has_more} engine {got.has_more}")
    assert not problems, "\n".join(problems[:20])


CASES = settings(
    max_examples=int(os.environ.get("ORACLE_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
    derandomize=not os.environ.get("ORACLE_EXAMPLES"),
)


@CASES
@given(data=st.data())
def test_engine_equals_oracle(store: EventStore, data: st.DataObject) -> None:
    now = data.draw(st.sampled_from(NOWS), label="now")
    tz = data.draw(st.sampled_from(TIMEZONES), label="tz")
    week_start_day = data.draw(st.sampled_from([0, 1]), label="week_start_day")
    evs = data.draw(events(now), label="events")
    query = data.draw(trends_query(), label="query")
    check(store, evs, query, tz, week_start_day, now)


@CASES
@given(data=st.data())
def test_engine_equals_oracle_on_breakdowns(store: EventStore, data: st.DataObject) -> None:
    """Denser data, no filters, always a breakdown: ranking, Other, null buckets, formulas per value."""
    now = data.draw(st.sampled_from(NOWS), label="now")
    tz = data.draw(st.sampled_from(TIMEZONES), label="tz")
    week_start_day = data.draw(st.sampled_from([0, 1]), label="week_start_day")
    evs = data.draw(events(now, min_size=8), label="events")
    query = data.draw(trends_query(dense=True), label="query")
    check(store, evs, query, tz, week_start_day, now)
