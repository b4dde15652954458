"""Property: whatever SELECT a caller composes over events, persons and sessions (subqueries, CTEs,
joins, unions, IN and scalar subqueries, OR-ed conditions), no row of another environment comes back."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st

from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.sql_kit import run, two_environments
from tests.engine.tally import NONZERO, REJECTED, ZERO, assert_mostly_nonzero
from tests.hypothesis_profiles import examples

# Columns whose text shows the environment a row came from (the marker, the uuid range).
_EVENT_COLUMNS = ["properties", "uuid", "distinct_id", "properties.marker", "person.properties.email", "person_id"]
_PERSON_COLUMNS = ["properties", "id", "properties.email"]
_CONDITIONS = ["1 = 1", "event = '$pageview'", "event != 'x' OR 1 = 1", "properties.marker = 'theirs'",
               "properties.marker IS NOT NULL", "toFloat64OrNull(properties.amount) > 1", "NOT (0 = 1)"]

# Sessions: the other environment has sessions of the same ids; its URLs carry its marker.
_SESSION_COLUMNS = ["*", "$entry_current_url", "$end_current_url", "person_id", "session_id, $end_pathname"]
_SESSION_CONDITIONS = ["1 = 1", "$pageview_count > 0", "$is_bounce OR 1 = 1", "$session_duration >= 0",
                       "$entry_current_url LIKE '%theirs%'", "NOT (0 = 1)",
                       "session_id IN (SELECT $session_id FROM events)"]


@st.composite
def session_sources(draw: Any, depth: int = 0) -> str:
    """A FROM target standing for sessions rows (every column of sessions visible)."""
    shapes = ["sessions", "sessions AS s"]
    if depth < 2:
        shapes += ["sub", "cte", "union", "join", "events"]
    shape = draw(st.sampled_from(shapes))
    if shape in ("sessions", "sessions AS s"):
        return shape
    inner = draw(session_sources(depth + 1))
    where = draw(st.sampled_from(_SESSION_CONDITIONS))
    if shape == "sub":
        return f"(SELECT * FROM {inner} WHERE {where})"
    if shape == "cte":
        return f"(WITH c{depth} AS (SELECT * FROM {inner}) SELECT * FROM c{depth} WHERE {where})"
    if shape == "union":
        return f"(SELECT * FROM {inner} UNION ALL SELECT * FROM sessions WHERE {where})"
    if shape == "events":
        return f"(SELECT x.* FROM {inner} AS x JOIN events AS y ON y.$session_id = x.session_id)"
    return f"(SELECT x.* FROM {inner} AS x JOIN sessions AS y ON y.session_id = x.session_id)"


@st.composite
def sources(draw: Any, depth: int = 0) -> str:
    """A FROM target standing for events rows, with `properties` and `uuid` visible."""
    shapes = ["events", "events AS e"]
    if depth < 2:
        shapes += ["sub", "cte", "union", "join"]
    shape = draw(st.sampled_from(shapes))
    if shape in ("events", "events AS e"):
        return shape
    inner = draw(sources(depth + 1))
    where = draw(st.sampled_from(_CONDITIONS))
    if shape == "sub":
        return f"(SELECT * FROM {inner} WHERE {where})"
    if shape == "cte":
        return f"(WITH c{depth} AS (SELECT * FROM {inner}) SELECT * FROM c{depth} WHERE {where})"
    if shape == "union":
        return f"(SELECT * FROM {inner} UNION ALL SELECT * FROM events WHERE {where})"
    return f"(SELECT x.* FROM {inner} AS x JOIN events AS y ON y.uuid = x.uuid)"


@st.composite
def statements(draw: Any) -> str:
    table = draw(st.sampled_from(["events", "persons", "sessions"]))
    if table == "sessions":
        column = draw(st.sampled_from(_SESSION_COLUMNS))
        select = f"SELECT {column} FROM {draw(session_sources())} WHERE {draw(st.sampled_from(_SESSION_CONDITIONS))}"
        if draw(st.booleans()):
            select += f" UNION ALL SELECT {column} FROM sessions"
        return select
    if table == "persons":
        column = draw(st.sampled_from(_PERSON_COLUMNS))
        base = f"SELECT {column} FROM persons"
        extra = draw(st.sampled_from(["", " WHERE id IN (SELECT person_id FROM events)", " WHERE 1 = 1 OR 0 = 1"]))
        return base + extra
    column = draw(st.sampled_from(_EVENT_COLUMNS))
    source = draw(sources())
    where = draw(st.sampled_from(_CONDITIONS))
    tail = draw(
        st.sampled_from(
            [
                "",
                " AND uuid IN (SELECT uuid FROM events)",
                " OR distinct_id IN (SELECT distinct_id FROM events WHERE 1 = 1)",
                " AND (SELECT count() FROM events) > 0",
                " OR $session_id IN (SELECT session_id FROM sessions WHERE 1 = 1)",
            ]
        )
    )
    select = f"SELECT {column} FROM {source} WHERE {where}{tail}"
    if draw(st.booleans()):
        select += f" UNION ALL SELECT {column} FROM events"
    return select


@pytest.fixture(scope="module")
def teams(store: EventStore) -> Iterator[tuple[EventStore, int, int, set[str], set[str]]]:
    mine, other, _, _ = two_environments(store)
    # Values that only the other environment holds: its event uuids, person ids and distinct ids' rows.
    theirs = {str(r[0]) for r in store.query("SELECT uuid FROM events WHERE team_id = {t:Int64}", {"t": other})}
    theirs |= {str(r[0]) for r in store.query("SELECT DISTINCT id FROM persons WHERE team_id = {t:Int64}", {"t": other})}
    ours = {str(r[0]) for r in store.query("SELECT uuid FROM events WHERE team_id = {t:Int64}", {"t": mine})}
    yield store, mine, other, theirs, ours


def test_no_row_of_another_environment_comes_back(teams: Any) -> None:
    store, mine, _, theirs, _ = teams
    outcomes: Counter[str] = Counter()

    @settings(max_examples=examples(100))
    @given(statements())
    def compare(sql: str) -> None:
        try:
            outcome = run(store, mine, sql)
        except QueryError:
            outcomes[REJECTED] += 1
            return
        rows = json_format.MessageToDict(outcome.result.hogql).get("results", [])
        text = json.dumps(rows)
        assert "theirs" not in text, sql
        assert not any(value in text for value in theirs), sql
        outcomes[NONZERO if rows else ZERO] += 1

    compare()
    assert_mostly_nonzero(outcomes, 0.6)
