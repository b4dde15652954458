"""SQL insights on the real store: real-world queries over a fixed dataset, each compared with rows
computed independently in Python from the same dataset (and never a row of the other environment)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from google.protobuf import json_format

from storage.events import EventRow, EventStore, PersonRow
from tests.engine.sql_kit import run, two_environments
from tests.oracle.sessions import Session, sessions


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


def by_id(ev: list[EventRow]) -> list[Session]:
    """The oracle's sessions, in session id order."""
    return [v for _, v in sorted(sessions(ev).items())]


def day(value: Any) -> str:
    return str(value.date().isoformat())


def median_low(values: list[int]) -> int:
    """quantileExact(0.5): the element at position n // 2 of the sorted values."""
    return sorted(values)[len(values) // 2]


def next_day_returners(ev: list[EventRow]) -> int:
    """Distinct ids with an event on the day after their first day."""
    first: dict[str, Any] = {}
    for e in ev:
        first[e.distinct_id] = min(first.get(e.distinct_id, e.timestamp.date()), e.timestamp.date())
    return len({e.distinct_id for e in ev if (e.timestamp.date() - first[e.distinct_id]).days == 1})

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
    # Sessions (README "SQL insights: the sessions table"), checked against tests/oracle/sessions.py.
    (
        "SELECT session_id, $session_duration, $pageview_count, $autocapture_count, $event_count, $is_bounce "
        "FROM sessions ORDER BY session_id",
        lambda ev, _: [
            [s.session_id, s.session_duration, s.pageview_count, s.autocapture_count, s.event_count, s.is_bounce]
            for s in by_id(ev)
        ],
    ),
    (
        "SELECT session_id, distinct_id, person_id, $start_timestamp, $end_timestamp FROM sessions ORDER BY session_id",
        lambda ev, _: [
            [s.session_id, s.distinct_id, str(s.person_id), s.start_timestamp.isoformat(), s.end_timestamp.isoformat()]
            for s in by_id(ev)
        ],
    ),
    (
        "SELECT session_id, $entry_current_url, $entry_pathname, $end_current_url, $end_pathname, $exit_current_url "
        "FROM sessions ORDER BY session_id",
        lambda ev, _: [
            [s.session_id, s.entry_current_url, s.entry_pathname, s.end_current_url, s.end_pathname, s.end_current_url]
            for s in by_id(ev)
        ],
    ),
    (
        "SELECT toString(toDate($start_timestamp)) AS day, avg($session_duration) AS avg_duration, count() AS n "
        "FROM sessions GROUP BY day ORDER BY day",
        lambda ev, _: [
            [d, sum(s.session_duration for s in group) / len(group), len(group)]
            for d in sorted({day(s.start_timestamp) for s in by_id(ev)})
            for group in [[s for s in by_id(ev) if day(s.start_timestamp) == d]]
        ],
    ),
    (
        "SELECT round(100 * countIf($is_bounce) / countIf($is_bounce IS NOT NULL), 2) AS bounce_rate FROM sessions",
        lambda ev, _: [
            [
                round(
                    100 * sum(1 for s in by_id(ev) if s.is_bounce) / sum(1 for s in by_id(ev) if s.is_bounce is not None),
                    2,
                )
            ]
        ],
    ),
    (
        "SELECT $entry_pathname AS page, count() AS c FROM sessions WHERE page IS NOT NULL GROUP BY page "
        "ORDER BY c DESC, page",
        lambda ev, _: [
            [k, v]
            for k, v in sorted(
                Counter(s.entry_pathname for s in by_id(ev) if s.entry_pathname is not None).items(),
                key=lambda kv: (-kv[1], kv[0]),
            )
        ],
    ),
    (
        "SELECT s.session_id, count() AS n, any(s.$session_duration) AS d FROM events AS e "
        "JOIN sessions AS s ON s.session_id = e.$session_id GROUP BY s.session_id ORDER BY s.session_id",
        lambda ev, _: [[s.session_id, s.event_count, s.session_duration] for s in by_id(ev)],
    ),
    (
        "SELECT e.properties.$browser AS browser, count() FROM events e INNER JOIN sessions s "
        "ON e.$session_id = s.session_id WHERE s.$is_bounce GROUP BY browser ORDER BY browser",
        lambda ev, _: [
            [k, v]
            for k, v in sorted(
                Counter(
                    text(props(e).get("$browser"))
                    for e in ev
                    if props(e).get("$session_id") and sessions(ev)[props(e)["$session_id"]].is_bounce
                ).items()
            )
        ],
    ),
    (
        "SELECT p.properties.email AS email, count() AS n, sum(s.$session_duration) AS total FROM sessions AS s "
        "JOIN persons AS p ON p.id = s.person_id GROUP BY email ORDER BY email",
        lambda ev, ps: [
            [email, len(group), sum(s.session_duration for s in group)]
            for email in sorted({email_of(ps, s.person_id) for s in by_id(ev)})
            for group in [[s for s in by_id(ev) if email_of(ps, s.person_id) == email]]
        ],
    ),
    (
        "SELECT count() FROM events WHERE $session_id NOT IN (SELECT session_id FROM sessions)",
        lambda ev, _: [[sum(1 for e in ev if not props(e).get("$session_id"))]],
    ),
    (
        "WITH long_sessions AS (SELECT session_id FROM sessions WHERE $session_duration >= 10) "
        "SELECT count() FROM events WHERE $session_id IN (SELECT session_id FROM long_sessions)",
        lambda ev, _: [[sum(s.event_count for s in by_id(ev) if s.session_duration >= 10)]],
    ),
    (
        "SELECT distinct_id, session_id, row_number() OVER (PARTITION BY distinct_id ORDER BY $start_timestamp, session_id) "
        "AS nth FROM sessions ORDER BY distinct_id, nth",
        lambda ev, _: [
            [d, s.session_id, i + 1]
            for d in sorted({s.distinct_id for s in by_id(ev)})
            for i, s in enumerate(
                sorted((s for s in by_id(ev) if s.distinct_id == d), key=lambda s: (s.start_timestamp, s.session_id))
            )
        ],
    ),
    (
        "SELECT (SELECT count() FROM sessions) AS n, (SELECT uniq($session_id) FROM events WHERE $session_id != '') AS m",
        lambda ev, _: [[len(sessions(ev)), len({props(e)["$session_id"] for e in ev if props(e).get("$session_id")})]],
    ),
    (
        "SELECT quantileExact(0.5)($session_duration) AS median, max(duration) FROM sessions",
        lambda ev, _: [
            [median_low([s.session_duration for s in by_id(ev)]), max(s.session_duration for s in by_id(ev))]
        ],
    ),
    # Product questions over events.
    (
        "SELECT toString(toDate(timestamp)) AS d, uniq(person_id) AS dau FROM events GROUP BY d ORDER BY d",
        lambda ev, _: [
            [d, len({e.person_id for e in ev if day(e.timestamp) == d})] for d in sorted({day(e.timestamp) for e in ev})
        ],
    ),
    (
        "SELECT path(properties.$current_url) AS page, count() AS views FROM events WHERE event = '$pageview' "
        "GROUP BY page ORDER BY views DESC, page",
        lambda ev, _: [
            [k, v]
            for k, v in sorted(
                Counter(
                    urlsplit(props(e)["$current_url"]).path for e in ev if e.event == "$pageview"
                ).items(),
                key=lambda kv: (-kv[1], kv[0]),
            )
        ],
    ),
    (
        "SELECT count(DISTINCT f.distinct_id) FROM (SELECT distinct_id, min(toDate(timestamp)) AS first FROM events "
        "GROUP BY distinct_id) AS f JOIN events AS e ON e.distinct_id = f.distinct_id WHERE toDate(e.timestamp) = f.first + 1",
        lambda ev, _: [[next_day_returners(ev)]],
    ),
    (
        "SELECT event, count() AS n, round(100 * n / sum(n) OVER (), 1) AS share FROM events GROUP BY event "
        "ORDER BY n DESC, event",
        lambda ev, _: [
            [k, v, round(100 * v / len(ev), 1)]
            for k, v in sorted(Counter(e.event for e in ev).items(), key=lambda kv: (-kv[1], kv[0]))
        ],
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
    assert len(CORPUS) >= 40


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
