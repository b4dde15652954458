"""SQL insights on the real store: real-world queries over a fixed dataset, each compared with rows
computed independently in Python from the same dataset (and never a row of the other environment)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google.protobuf import json_format

from storage.events import EventRow, EventStore, PersonRow
from tests.engine.sql_kit import run, two_environments


@pytest.fixture(scope="module")
def loaded(store: EventStore) -> Iterator[tuple[EventStore, int, list[EventRow], list[PersonRow]]]:
    mine, _, events, persons = two_environments(store)
    yield store, mine, events, persons


def props(e: EventRow) -> dict[str, Any]:
    return dict(json.loads(e.properties))


def text(value: Any) -> str | None:
    """The typing rule of property access: the JSON value's text, NULL when missing/null/''."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def email_of(persons: list[PersonRow], pid: Any) -> str:
    return str(next(json.loads(p.properties)["email"] for p in persons if p.id == pid))


Expect = Callable[[list[EventRow], list[PersonRow]], list[list[Any]]]

CORPUS: list[tuple[str, Expect]] = [
    ("SELECT count() FROM events", lambda ev, _: [[len(ev)]]),
    (
        "SELECT event, count() AS c FROM events GROUP BY event ORDER BY c DESC, event",
        lambda ev, _: [[k, v] for k, v in sorted(Counter(e.event for e in ev).items(), key=lambda kv: (-kv[1], kv[0]))],
    ),
    (
        "SELECT properties.$browser AS b, count() FROM events WHERE event = '$pageview' GROUP BY b ORDER BY b",
        lambda ev, _: sorted(
            [[k, v] for k, v in Counter(text(props(e).get("$browser")) for e in ev if e.event == "$pageview").items()],
            key=lambda r: (r[0] is None, r[0]),
        ),
    ),
    (
        "SELECT uniq(distinct_id) FROM events",
        lambda ev, _: [[len({e.distinct_id for e in ev})]],
    ),
    (
        "SELECT toString(toDate(timestamp)) AS day, count() FROM events GROUP BY day ORDER BY day",
        lambda ev, _: [[k, v] for k, v in sorted(Counter(e.timestamp.date().isoformat() for e in ev).items())],
    ),
    (
        "SELECT sum(toFloat64OrNull(properties.amount)) FROM events",
        lambda ev, _: [[sum(float(props(e)["amount"]) for e in ev if "amount" in props(e))]],
    ),
    (
        "SELECT properties.amount FROM events WHERE event = 'signup'",
        lambda ev, _: [[text(props(e).get("amount"))] for e in ev if e.event == "signup"],
    ),
    (
        "SELECT properties.flag, properties.missing FROM events WHERE event = 'signup'",
        lambda ev, _: [["true", None] for e in ev if e.event == "signup"],
    ),
    (
        "SELECT properties.nested.a.b FROM events WHERE properties.nested.a.b IS NOT NULL",
        lambda ev, _: [["deep"]],
    ),
    (
        "SELECT count() FROM events WHERE properties.$browser IS NULL",
        lambda ev, _: [[sum(1 for e in ev if text(props(e).get("$browser")) is None)]],
    ),
    (
        "SELECT person.properties.email AS email, count() FROM events GROUP BY email ORDER BY email",
        lambda ev, ps: [[k, v] for k, v in sorted(Counter(email_of(ps, e.person_id) for e in ev).items())],
    ),
    (
        "SELECT count() FROM persons",
        lambda _, ps: [[len(ps)]],
    ),
    (
        "SELECT properties.plan AS plan, count() FROM persons GROUP BY plan ORDER BY plan",
        lambda _, ps: [[k, v] for k, v in sorted(Counter(json.loads(p.properties)["plan"] for p in ps).items())],
    ),
    (
        "SELECT p.properties.email, count() AS c FROM events e JOIN persons p ON p.id = e.person_id "
        "GROUP BY p.properties.email ORDER BY c DESC, 1",
        lambda ev, ps: [
            [k, v]
            for k, v in sorted(Counter(email_of(ps, e.person_id) for e in ev).items(), key=lambda kv: (-kv[1], kv[0]))
        ],
    ),
    (
        "WITH pv AS (SELECT distinct_id FROM events WHERE event = '$pageview') SELECT count(DISTINCT distinct_id) FROM pv",
        lambda ev, _: [[len({e.distinct_id for e in ev if e.event == "$pageview"})]],
    ),
    (
        "WITH buyers AS (SELECT DISTINCT distinct_id FROM events WHERE event = 'purchase') "
        "SELECT count() FROM events WHERE distinct_id IN (SELECT distinct_id FROM buyers)",
        lambda ev, _: [[sum(1 for e in ev if e.distinct_id in {x.distinct_id for x in ev if x.event == "purchase"})]],
    ),
    (
        "SELECT event FROM events WHERE event = 'signup' UNION ALL SELECT event FROM events WHERE event = 'purchase'",
        lambda ev, _: [[e.event] for e in ev if e.event == "signup"] + [[e.event] for e in ev if e.event == "purchase"],
    ),
    (
        "SELECT (SELECT count() FROM events WHERE event = 'purchase') AS p, (SELECT count() FROM persons) AS n",
        lambda ev, ps: [[sum(1 for e in ev if e.event == "purchase"), len(ps)]],
    ),
    (
        "SELECT distinct_id, event, row_number() OVER (PARTITION BY distinct_id ORDER BY timestamp) AS n "
        "FROM events ORDER BY distinct_id, n",
        lambda ev, _: [
            [d, e.event, i + 1]
            for d in sorted({x.distinct_id for x in ev})
            for i, e in enumerate(sorted((x for x in ev if x.distinct_id == d), key=lambda x: x.timestamp))
        ],
    ),
    (
        "SELECT distinct_id, min(timestamp) = max(timestamp) FROM events GROUP BY distinct_id ORDER BY distinct_id",
        lambda ev, _: [
            [d, len({e.timestamp for e in ev if e.distinct_id == d}) == 1] for d in sorted({e.distinct_id for e in ev})
        ],
    ),
    (
        "SELECT countIf(event = '$pageview'), countIf(event = 'purchase'), sumIf(1, event = 'signup') FROM events",
        lambda ev, _: [[sum(e.event == k for e in ev) for k in ("$pageview", "purchase", "signup")]],
    ),
    (
        "SELECT if(event = 'purchase', 'money', 'other') AS k, count() FROM events GROUP BY k ORDER BY k",
        lambda ev, _: [[k, v] for k, v in sorted(Counter("money" if e.event == "purchase" else "other" for e in ev).items())],
    ),
    (
        "SELECT multiIf(toFloat64OrNull(properties.amount) >= 5, 'big', toFloat64OrNull(properties.amount) > 0, 'small', 'none') AS s, "
        "count() FROM events GROUP BY s ORDER BY s",
        lambda ev, _: [
            [k, v]
            for k, v in sorted(
                Counter(
                    "none" if "amount" not in props(e) else ("big" if props(e)["amount"] >= 5 else "small") for e in ev
                ).items()
            )
        ],
    ),
    (
        "SELECT lower(event), length(event), upper(substring(event, 1, 2)) FROM events WHERE event = 'signup'",
        lambda ev, _: [[e.event.lower(), len(e.event), e.event[:2].upper()] for e in ev if e.event == "signup"],
    ),
    (
        "SELECT JSONExtractString(properties, 'marker') AS m, count() FROM events GROUP BY m",
        lambda ev, _: [["mine", len(ev)]],
    ),
    (
        "SELECT arraySort(groupUniqArray(event)) FROM events",
        lambda ev, _: [[sorted({e.event for e in ev})]],
    ),
    (
        "SELECT arrayMap(x -> x * 2, [1, 2, 3]), has(['a', 'b'], 'a'), length(splitByChar('/', 'a/b/c'))",
        lambda ev, _: [[[2, 4, 6], True, 3]],
    ),
    (
        "SELECT event, count() FROM events GROUP BY event HAVING count() > 1 ORDER BY event LIMIT 1",
        lambda ev, _: [[k, v] for k, v in sorted(Counter(e.event for e in ev).items()) if v > 1][:1],
    ),
    (
        "SELECT e.event, count() FROM events AS e LEFT JOIN (SELECT id, properties.plan AS plan FROM persons) AS p "
        "ON p.id = e.person_id WHERE p.plan = 'pro' GROUP BY e.event ORDER BY e.event",
        lambda ev, ps: [
            [k, v]
            for k, v in sorted(
                Counter(
                    e.event for e in ev if next(json.loads(p.properties)["plan"] for p in ps if p.id == e.person_id) == "pro"
                ).items()
            )
        ],
    ),
    (
        "SELECT dateDiff('day', min(timestamp), max(timestamp)) FROM events",
        lambda ev, _: [[(max(e.timestamp for e in ev).date() - min(e.timestamp for e in ev).date()).days]],
    ),
    (
        "SELECT count() FROM (SELECT distinct_id FROM events GROUP BY distinct_id HAVING count() >= 2)",
        lambda ev, _: [[sum(1 for v in Counter(e.distinct_id for e in ev).values() if v >= 2)]],
    ),
    (
        "select EVENT_COUNT from (SELECT count() AS EVENT_COUNT FROM events) -- a trailing comment",
        lambda ev, _: [[len(ev)]],
    ),
]


def rows_of(outcome: Any) -> list[list[Any]]:
    found = json_format.MessageToDict(outcome.result.hogql).get("results", [])
    return [[int(c) if isinstance(c, float) and c.is_integer() else c for c in row] for row in found]


def normal(rows: list[list[Any]]) -> list[list[Any]]:
    return [[int(c) if isinstance(c, float) and c.is_integer() else c for c in row] for row in rows]


@pytest.mark.parametrize("sql,expect", CORPUS, ids=[str(i) for i in range(len(CORPUS))])
def test_corpus_query_returns_the_independently_computed_rows(loaded: Any, sql: str, expect: Expect) -> None:
    store, mine, events, persons = loaded
    outcome = run(store, mine, sql)
    got, want = rows_of(outcome), normal(expect(events, persons))
    if "ORDER BY" not in sql:
        # Without ORDER BY the engine returns rows in any order (UNION ALL branches run in parallel).
        got, want = sorted(got, key=json.dumps), sorted(want, key=json.dumps)
    assert got == want, outcome.sql
    assert "theirs" not in json.dumps(rows_of(outcome))


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 25


def test_result_shape_columns_types_limit_and_the_statement_as_run(loaded: Any) -> None:
    store, mine, _events, _ = loaded
    outcome = run(store, mine, "SELECT event AS e, count() AS c, min(timestamp) AS first FROM events GROUP BY e ORDER BY e")
    result = outcome.result.hogql
    assert list(result.columns) == ["e", "c", "first"]
    assert [(t.name, t.type) for t in result.types] == [("e", "String"), ("c", "UInt64"), ("first", "DateTime64(6, 'UTC')")]
    assert result.limit == 100 and not outcome.has_more
    assert "team_id" in result.clickhouse and "{__team_id: Int64}" in result.clickhouse
    assert "LIMIT 101" in result.clickhouse
    first = json_format.MessageToDict(result)["results"][0]
    assert first[2].endswith("+00:00")


def test_limit_is_applied_with_has_more(loaded: Any) -> None:
    store, mine, events, _ = loaded
    outcome = run(store, mine, "SELECT event FROM events ORDER BY timestamp LIMIT 3")
    assert len(outcome.result.hogql.rows) == 3 and outcome.has_more and outcome.result.hogql.limit == 3
    outcome = run(store, mine, f"SELECT event FROM events LIMIT {len(events)}")
    assert len(outcome.result.hogql.rows) == len(events) and not outcome.has_more
    outcome = run(store, mine, "SELECT number FROM (SELECT arrayJoin(range(200)) AS number)")
    assert len(outcome.result.hogql.rows) == 100 and outcome.has_more
    outcome = run(store, mine, "SELECT number FROM (SELECT arrayJoin(range(60000)) AS number) LIMIT 1000000")
    assert outcome.result.hogql.limit == 50_000 and len(outcome.result.hogql.rows) == 50_000 and outcome.has_more
