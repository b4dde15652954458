"""Hostile keys, values and names through the engine: a correct result or INVALID_ARGUMENT, never
another exception, never a user value in the SQL text, and the events table still there afterwards."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from server.queries.common.codec import CodecError
from server.queries.common.errors import QueryError
from storage.events import EventStore
from tests.engine.harness import EngineRun, next_team_id, run_engine
from tests.engine.harness import event_rows as rows_of
from tests.engine.hostile import assert_events_table_intact, assert_only_placeholders
from tests.oracle import Event

NOW = dt.datetime(2024, 1, 15, 12, 0, tzinfo=dt.UTC)
WHEN = dt.datetime(2024, 1, 12, 9, 30, tzinfo=dt.UTC)

HOSTILE = [
    "'",
    '"',
    "\\",
    "\\'",
    "'); DROP TABLE events; --",
    '"); DROP TABLE events; --',
    "a\x00b",
    "x" * 10_000,
    "ünïcødé — 😀 中文",
    "{p0:String}",
    "{p999:String}') OR 1=1 --",
    "%s %d {0}",
    "line\nbreak\ttab\r",
    "$$_posthog_breakdown_other_$$x",
]


def _ids(values: list[str]) -> list[str]:
    return [repr(v[:24]) + (f"...{len(v)}" if len(v) > 24 else "") for v in values]


def _event(value: str, n: int = 0) -> Event:
    return Event(
        uuid=f"00000000-0000-4000-8000-{n:012d}",
        event=value,
        distinct_id=value,
        person_id="p1",
        timestamp=WHEN,
        properties={value: value, value + "#n": 7, "plain": value},
        person_properties={value: value},
    )


def _events_table_exists(store: EventStore) -> None:
    assert_events_table_intact(store)
    assert store.query("SELECT count() > 0 FROM events") == [(1,)]


def _assert_only_placeholders(run: EngineRun, value: str) -> None:
    assert_only_placeholders(run.outcome.sql, value)


def _run(store: EventStore, events: list[Event], query: dict[str, Any], team_id: int) -> EngineRun:
    return run_engine(store, events, query, timezone="UTC", week_start_day=0, now=NOW, team_id=team_id)


@pytest.fixture
def team(store: EventStore, request: pytest.FixtureRequest) -> tuple[int, str]:
    value: str = request.param
    team_id = next_team_id()
    store.insert_events(rows_of(team_id, [_event(value)]))
    return team_id, value


@pytest.mark.parametrize("team", HOSTILE, ids=_ids(HOSTILE), indirect=True)
def test_hostile_names_keys_and_values(store: EventStore, team: tuple[int, str]) -> None:
    team_id, value = team
    benign_team = next_team_id()
    store.insert_events(rows_of(benign_team, [_event("benign")]))

    def query(v: str) -> dict[str, Any]:
        return {
            "kind": "TrendsQuery",
            "series": [
                {
                    "kind": "EventsNode",
                    "event": v,
                    "custom_name": v,
                    "properties": [{"key": v, "value": v, "type": "event"}],
                },
                {
                    "kind": "EventsNode",
                    "event": v,
                    "math": "sum",
                    "math_property": v + "#n",
                    "properties": [{"key": v, "value": [v, "other"], "operator": "is_not", "type": "person"}],
                },
            ],
            "properties": [{"key": "plain", "value": v[:5], "operator": "icontains"}],
            "breakdownFilter": {"breakdown": v, "breakdown_type": "event"},
        }

    out = _run(store, [], query(value), team_id)
    # Series 0 matches its event; series 1's is_not on the person property excludes it (no items).
    assert [(i["label"], i["breakdown_value"], i["count"]) for i in out.results] == [
        (f"{value} - {value}", value, 1.0)
    ]
    _assert_only_placeholders(out, value)
    # The SQL does not depend on the values at all: it is the same text as for a benign query.
    assert out.outcome.sql == _run(store, [], query("benign"), benign_team).outcome.sql

    # Multiple breakdowns (event and person), a sum of a hostile key, a total-value display.
    multi = {
        "kind": "TrendsQuery",
        "series": [{"kind": "EventsNode", "event": value, "math": "sum", "math_property": value + "#n"}],
        "breakdownFilter": {
            "breakdowns": [{"property": value, "type": "event"}, {"property": value, "type": "person"}]
        },
        "trendsFilter": {"display": "ActionsTable"},
    }
    out = _run(store, [], multi, team_id)
    assert [(i["breakdown_value"], i["aggregated_value"]) for i in out.results] == [([value, value], 7.0)]
    _assert_only_placeholders(out, value)
    _events_table_exists(store)


@pytest.mark.parametrize("team", HOSTILE, ids=_ids(HOSTILE), indirect=True)
@pytest.mark.parametrize(
    "operator", ["regex", "not_regex", "icontains", "gt", "is_date_before", "in", "between", "is_set"]
)
def test_hostile_filter_values_for_every_kind_of_operator(
    store: EventStore, team: tuple[int, str], operator: str
) -> None:
    team_id, value = team
    filter_value: Any = [value] if operator == "in" else [value, value] if operator == "between" else value
    query = {
        "kind": "TrendsQuery",
        "series": [
            {
                "kind": "EventsNode",
                "properties": [{"key": value, "value": filter_value, "operator": operator}],
            }
        ],
        "trendsFilter": {"display": "BoldNumber"},
        "dateRange": {"date_from": "-7d"},
    }
    try:
        out = _run(store, [], query, team_id)
    except QueryError as exc:
        # A value the operator cannot take (a bad regex, a non-numeric between): INVALID_ARGUMENT.
        assert operator in ("regex", "not_regex", "between") and exc.path.startswith(
            "series[0].properties[0]"
        )
        return
    expected = {"icontains": 1, "in": 1, "is_set": 1, "regex": None, "not_regex": None}.get(operator, 0)
    if expected is not None:
        assert out.results[0]["aggregated_value"] == expected
    _assert_only_placeholders(out, value)
    _events_table_exists(store)


@pytest.mark.parametrize("text", ["a\udc80b", "\ud800", "x\udfffy"])
def test_lone_surrogates_in_the_query_json_are_invalid(store: EventStore, text: str) -> None:
    raw = json.dumps({"kind": "TrendsQuery", "series": [{"kind": "EventsNode", "event": text}]})
    assert "\\ud" in raw  # the JSON text holds the escape, which is no valid UTF-8
    for query in (
        json.loads(raw),
        {
            "kind": "TrendsQuery",
            "series": [{"kind": "EventsNode", "properties": [{"key": text, "value": "x"}]}],
        },
        {"kind": "TrendsQuery", "series": [{"kind": "EventsNode"}], "breakdownFilter": {"breakdown": text}},
    ):
        with pytest.raises(CodecError):
            run_engine(store, [], query, timezone="UTC", week_start_day=0, now=NOW)


def test_stored_invalid_utf8_escapes_break_down_without_error(store: EventStore) -> None:
    # Events whose JSON text holds lone-surrogate escapes (valid JSON, no valid UTF-8 behind it).
    team_id = next_team_id()
    event = _event("ok")
    rows = [
        row._replace(properties='{"k": "a\\udc80b", "j": "\\ud83d"}') for row in rows_of(team_id, [event])
    ]
    store.insert_events(rows)
    for key in ("k", "j"):
        query = {
            "kind": "TrendsQuery",
            "series": [{"kind": "EventsNode"}],
            "breakdownFilter": {"breakdown": key},
        }
        out = _run(store, [], query, team_id)
        [item] = out.results
        assert item["count"] == 1 and isinstance(item["breakdown_value"], str)
    _events_table_exists(store)


@pytest.mark.parametrize(
    "formula", ["A; DROP TABLE events", "__import__('os')", "A +", "A ** 2", "Z", "A" * 3000, "(" * 300 + "A"]
)
def test_hostile_formulas_are_invalid(store: EventStore, formula: str) -> None:
    query = {"kind": "TrendsQuery", "series": [{"kind": "EventsNode"}], "trendsFilter": {"formula": formula}}
    with pytest.raises(QueryError) as raised:
        run_engine(store, [], query, timezone="UTC", week_start_day=0, now=NOW)
    assert raised.value.path == "trendsFilter.formula"
    _events_table_exists(store)
