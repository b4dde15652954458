"""SQL insights against hostile statements: each is refused with INVALID_ARGUMENT naming `query` and
the construct, or runs and returns only the caller's rows; never an internal error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf import json_format

from server.errors import ResourceExhausted, Unimplemented
from server.queries.common.errors import QueryError
from server.queries.sql.runner import SqlLimits
from storage.events import EventStore
from tests.engine.sql_kit import dataset, run, two_environments


@pytest.fixture(scope="module")
def teams(store: EventStore) -> Iterator[tuple[EventStore, int, int]]:
    mine, other, _, _ = two_environments(store)
    yield store, mine, other


# (statement, a fragment the refusal must contain). Every one is refused.
REFUSED: list[tuple[str, str]] = [
    # Other statements, several statements.
    ("INSERT INTO events SELECT * FROM events", "only SELECT"),
    ("DROP TABLE events", "only SELECT"),
    ("ALTER TABLE events DELETE WHERE 1", "only SELECT"),
    ("SYSTEM FLUSH LOGS", "only SELECT"),
    ("KILL QUERY WHERE 1", "KILL"),
    ("SET readonly = 0", "only SELECT"),
    ("OPTIMIZE TABLE events FINAL", "only SELECT"),
    ("ATTACH TABLE x", "only SELECT"),
    ("DETACH TABLE events", "SELECT"),
    ("TRUNCATE TABLE events", "SELECT"),
    ("CREATE TABLE x (a Int8) ENGINE = Memory", "only SELECT"),
    ("SHOW TABLES", "only SELECT"),
    ("DESCRIBE TABLE events", "only SELECT"),
    ("EXPLAIN SELECT 1", "EXPLAIN"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    ("SELECT 1; DROP TABLE events", "exactly one statement"),
    ("", "empty"),
    ("   -- only a comment", "empty"),
    # Table functions.
    ("SELECT * FROM numbers(10)", "table functions"),
    ("SELECT * FROM url('http://169.254.169.254/', CSV)", "table functions"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "table functions"),
    ("SELECT * FROM s3('http://x/y', 'CSV')", "table functions"),
    ("SELECT * FROM remote('127.0.0.1', default.events)", "table functions"),
    ("SELECT * FROM cluster('default', default.events)", "table functions"),
    ("SELECT * FROM executable('x.sh', 'TSV', 'a String')", "table functions"),
    ("SELECT * FROM input('a String')", "table functions"),
    ("SELECT * FROM merge(currentDatabase(), '^ev')", "table functions"),
    ("SELECT * FROM view(SELECT * FROM events)", "table functions"),
    ("SELECT * FROM generateRandom('a Int8')", "table functions"),
    ("SELECT * FROM events e JOIN numbers(3) n ON 1", "table functions"),
    # System, information_schema, database-qualified and unknown tables.
    ("SELECT * FROM system.tables", "database-qualified"),
    ("SELECT * FROM system.processes", "database-qualified"),
    ("SELECT * FROM information_schema.tables", "database-qualified"),
    ("SELECT * FROM INFORMATION_SCHEMA.COLUMNS", "database-qualified"),
    ("SELECT * FROM default.events", "database-qualified"),
    ("SELECT * FROM `default`.`events`", "database-qualified"),
    ("SELECT count() FROM events_local", "unknown table"),
    ("SELECT count() FROM EVENTS", "unknown table"),
    ("SELECT count() FROM Persons", "unknown table"),
    ("SELECT * FROM events WHERE uuid IN (SELECT uuid FROM system.one)", "database-qualified"),
    ("SELECT * FROM (SELECT * FROM raw_events)", "unknown table"),
    # Clauses only the service sets.
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
    ("SELECT count() FROM events SETTINGS max_execution_time = 100000", "SETTINGS"),
    ("SELECT * FROM (SELECT 1 SETTINGS max_threads = 1)", "SETTINGS"),
    ("SELECT 1 FORMAT JSON", "FORMAT"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "parsed"),
    ("SELECT {__team_id:Int64}", "'{'"),
    ("SELECT count() FROM events WHERE 1 = {x:UInt8}", "'{'"),
    ("SELECT ?", "placeholders"),
    ("SELECT @x", "not allowed"),
    ("WITH RECURSIVE a AS (SELECT 1) SELECT * FROM a", "RECURSIVE"),
    # Functions outside the allowlist.
    ("SELECT sleep(3)", "sleep"),
    ("SELECT sleepEachRow(1) FROM events", "sleepEachRow"),
    ("SELECT file('/etc/passwd')", "file"),
    ("SELECT url('http://x')", "url"),
    ("SELECT dictGet('d', 'a', 1)", "dictGet"),
    ("SELECT dictGetString('d', 'a', toUInt64(1))", "dictGetString"),
    ("SELECT joinGet('j', 'a', 1)", "joinGet"),
    ("SELECT getSetting('readonly')", "getSetting"),
    ("SELECT currentDatabase()", "CURRENT_DATABASE"),
    ("SELECT currentUser()", "currentUser"),
    ("SELECT hostName()", "hostName"),
    ("SELECT version()", "VERSION"),
    ("SELECT uptime()", "uptime"),
    ("SELECT throwIf(1, 'secret')", "throwIf"),
    ("SELECT getMacro('shard')", "getMacro"),
    ("SELECT hasColumnInTable('default', 'events', 'team_id')", "hasColumnInTable"),
    ("SELECT randomString(1000000000)", "randomString"),
    ("SELECT count() FROM events WHERE SLEEP(1) = 0", "SLEEP"),
    ("SELECT filesystemAvailable()", "filesystemAvailable"),
    ("SELECT count() FROM events WHERE event IN (SELECT * FROM file('x'))", "table functions"),
    # Shadowing and reserved names.
    ("WITH events AS (SELECT 1 AS x) SELECT * FROM events", "shadow"),
    ("WITH persons AS (SELECT * FROM events) SELECT count() FROM persons", "shadow"),
    ("SELECT * FROM persons AS events", "shadow"),
    ("SELECT count() FROM events AS persons", "shadow"),
    ("SELECT 1 AS events", "shadow"),
    ("SELECT team_id FROM events", "reserved"),
    ("SELECT count() FROM events WHERE team_id > 0", "reserved"),
    ("SELECT `team_id` FROM events", "reserved"),
    ("SELECT __e.team_id FROM events", "reserved"),
    ("WITH 1 AS team_id SELECT count() FROM events", "reserved"),
    ("SELECT count() FROM events AS __e", "reserved"),
    ("SELECT count() FROM __cte_0", "reserved"),
    ("SELECT 1 IN events", "IN"),
    ("SELECT count() FROM persons WHERE id IN events", "IN"),
    ("SELECT count() FROM persons WHERE id IN (events)", "IN"),
    ("SELECT system.one.dummy", "not a column"),
    # Limits written as expressions.
    ("SELECT 1 LIMIT 1 + 1", "LIMIT"),
    ("SELECT 1 LIMIT 1 OFFSET 100000000", "OFFSET"),
    # Comment, quoting, unicode and case tricks.
    ("SELECT 1 /* ; DROP TABLE events */ ; DROP TABLE events", "exactly one statement"),
    ("SELECT * FROM system/**/.tables", "database-qualified"),
    ("SELECT * FROM `system`.`tables`", "database-qualified"),
    ('SELECT * FROM "system"."tables"', "database-qualified"),
    ("SELECT * FROM `system.tables`", "unknown table"),
    ("SELECT * FROM `events_local`", "unknown table"),
    ("SELECT * FROM ｅｖｅｎｔｓ", "unknown table"),
    ("SELECT * FROM еvents", "unknown table"),  # Cyrillic е
    ("SELECT * FROM sYsTeM.TaBlEs", "database-qualified"),
    ("sElEcT SlEeP(1)", "SlEeP"),
    ("SELECT 1 -- comment\n; DROP TABLE events", "exactly one statement"),
    ("SELECT 1 # comment\n, sleep(1)", "sleep"),
    ("SELECT count() FROM events WHERE event = 'x' OR 1=1 UNION ALL SELECT count() FROM system.one", "database-qualified"),
    ("SELECT properties FROM persons FINAL", "FINAL"),
    ("SELECT properties FROM events FINAL", "FINAL"),
    ("SELECT properties FROM events SAMPLE 1", "SAMPLE"),
    ("SELECT sumState(1)", "aggregate state"),
    ("SELECT map(x)", "cannot be parsed"),  # the parser raised IndexError inside it
    # The sessions table: the same refusals as events and persons.
    ("WITH sessions AS (SELECT 1) SELECT * FROM sessions", "shadow"),
    ("SELECT count() FROM events AS sessions", "shadow"),
    ("SELECT 1 AS sessions", "shadow"),
    ("SELECT * FROM default.sessions", "database-qualified"),
    ("SELECT * FROM raw_sessions", "unknown table"),
    ("SELECT * FROM Sessions", "unknown table"),
    ("SELECT * FROM sessions FINAL", "FINAL"),
    ("SELECT * FROM sessions SAMPLE 0.1", "SAMPLE"),
    ("SELECT team_id FROM sessions", "reserved"),
    ("SELECT __s.team_id FROM sessions", "reserved"),
    ("SELECT count() FROM sessions WHERE session_id IN sessions", "IN"),
    ("SELECT " + "(" * 3000 + "1" + ")" * 3000, "nested too deeply"),
    # Not built yet: refused, never dropped.
    ("SELECT count() FROM events WHERE {filters.dateRange.from}", "{filters.dateRange.from}"),
]


@pytest.mark.parametrize("sql,fragment", REFUSED, ids=[str(i) for i in range(len(REFUSED))])
def test_hostile_statement_is_refused_naming_the_construct(teams: Any, sql: str, fragment: str) -> None:
    store, mine, _ = teams
    with pytest.raises((QueryError, Unimplemented)) as caught:
        run(store, mine, sql)
    error = caught.value
    assert fragment in error.message
    if isinstance(error, QueryError):
        assert error.path == "query"
    else:
        assert error.metadata["field"] == "query"


# Statements that reach other environments' rows if a reference escaped the guard: each runs (or is
# refused by the engine as INVALID_ARGUMENT) and returns only the caller's rows.
OWN_ROWS_ONLY: list[str] = [
    "SELECT * FROM events",
    "SELECT properties FROM events e",
    "SELECT properties FROM events WHERE 1 = 1 OR 1 = 1",
    "SELECT properties FROM events e JOIN events f ON e.uuid = f.uuid",
    "SELECT properties FROM events, persons",
    "SELECT * FROM events CROSS JOIN persons",
    "SELECT properties FROM (SELECT * FROM events)",
    "SELECT properties FROM (SELECT * FROM (SELECT * FROM events))",
    "WITH x AS (SELECT * FROM events) SELECT properties FROM x",
    "WITH x AS (SELECT * FROM events), y AS (SELECT * FROM x) SELECT properties FROM y",
    "SELECT properties FROM events UNION ALL SELECT properties FROM events",
    "SELECT properties FROM events WHERE 0 UNION ALL SELECT properties FROM persons",
    "SELECT properties FROM events WHERE uuid IN (SELECT uuid FROM events)",
    "SELECT properties FROM events WHERE distinct_id NOT IN (SELECT 'x')",
    "SELECT (SELECT groupArray(properties) FROM events)",
    "SELECT (SELECT groupArray(properties) FROM persons)",
    "SELECT arrayMap(x -> x, (SELECT groupArray(properties) FROM events))",
    "SELECT properties FROM events e WHERE EXISTS (SELECT 1 FROM events)",
    "SELECT properties FROM events ARRAY JOIN [1, 2] AS n",
    "SELECT properties FROM events AS events",
    "SELECT `properties` FROM `events`",
    'SELECT "properties" FROM "events"',
    "SELECT properties FROM events -- ) OR (1=1",
    "SELECT properties FROM events /* WHERE team_id = 1 */",
    "SELECT properties FROM events WHERE event = '\\' OR 1=1 --'",
    "SELECT properties FROM events WHERE event = 'x'' OR ''1''=''1'",
    "SELECT properties FROM events LEFT JOIN persons ON 1 = 1",
    "SELECT person.properties.email, properties FROM events",
    "SELECT properties.`') OR 1=1 --` FROM events",
    "SELECT properties.marker FROM events",
    "SELECT properties FROM events GLOBAL JOIN persons USING (properties)",
    "SELECT properties FROM events WHERE event GLOBAL IN (SELECT event FROM events)",
    "SELECT e.properties FROM events e INNER JOIN (SELECT * FROM persons) p ON p.id = e.person_id",
    "SELECT properties FROM events INTERSECT SELECT properties FROM events",
    "SELECT properties FROM events EXCEPT SELECT 'x'",
    "SELECT * FROM (SELECT properties FROM events LIMIT 1 BY event)",
    "SELECT groupArray(properties) OVER () FROM events",
    # The sessions table in every position (the other environment has sessions of the same ids).
    "SELECT * FROM sessions",
    "SELECT * FROM sessions AS sessions",
    "SELECT * FROM `sessions`",
    "SELECT * FROM sessions WHERE 1 = 1 OR 1 = 1",
    "SELECT * FROM (SELECT * FROM (SELECT * FROM sessions))",
    "WITH x AS (SELECT * FROM sessions) SELECT * FROM x",
    "SELECT * FROM sessions s JOIN events e ON e.$session_id = s.session_id",
    "SELECT * FROM events e LEFT JOIN sessions s ON 1 = 1",
    "SELECT * FROM sessions s1 JOIN sessions s2 USING (session_id)",
    "SELECT * FROM sessions GLOBAL JOIN persons ON persons.id = sessions.person_id",
    "SELECT $entry_current_url FROM sessions UNION ALL SELECT $end_current_url FROM sessions",
    "SELECT properties FROM events WHERE $session_id IN (SELECT session_id FROM sessions)",
    "SELECT (SELECT groupArray($entry_current_url) FROM sessions)",
    "SELECT arrayMap(x -> x, (SELECT groupArray($end_current_url) FROM sessions))",
    "SELECT * FROM sessions WHERE EXISTS (SELECT 1 FROM sessions)",
]


def _leaks(outcome: Any) -> bool:
    return "theirs" in json.dumps(json_format.MessageToDict(outcome.result.hogql).get("results", []))


@pytest.mark.parametrize("sql", OWN_ROWS_ONLY, ids=[str(i) for i in range(len(OWN_ROWS_ONLY))])
def test_hostile_reference_returns_only_the_callers_rows(teams: Any, sql: str) -> None:
    store, mine, _ = teams
    try:
        outcome = run(store, mine, sql)
    except QueryError as error:
        assert error.path == "query" and error.message
        assert "team_id" not in error.message and "__" not in error.message
        return
    assert not _leaks(outcome), sql


def test_enough_hostile_statements() -> None:
    assert len(REFUSED) + len(OWN_ROWS_ONLY) >= 60
    assert len(REFUSED) >= 60


def test_the_other_environment_sees_its_own_rows_through_the_same_statement(teams: Any) -> None:
    store, _mine, other = teams
    theirs = run(store, other, "SELECT JSONExtractString(properties, 'marker') AS m, count() FROM events GROUP BY m")
    assert json_format.MessageToDict(theirs.result.hogql)["results"] == [["theirs", len(dataset(other, "theirs")[0])]]


def test_engine_errors_are_invalid_argument_with_a_cleaned_message(teams: Any) -> None:
    store, mine, _ = teams
    with pytest.raises(QueryError) as caught:
        run(store, mine, "SELECT nosuch FROM events")
    assert "nosuch" in caught.value.message and caught.value.path == "query"
    assert "__e" not in caught.value.message and "team_id" not in caught.value.message
    assert "SELECT" not in caught.value.message
    with pytest.raises(QueryError) as caught:
        run(store, mine, "SELECT event + 1 FROM events")
    assert "__" not in caught.value.message and "In scope" not in caught.value.message
    with pytest.raises(QueryError) as caught:
        run(store, mine, "SELECT count() FROM (SELECT * FROM events) AS x FINAL")
    assert "SELECT" not in caught.value.message


def test_a_tripped_limit_is_resource_exhausted_naming_it(teams: Any) -> None:
    store, mine, _ = teams
    with pytest.raises(ResourceExhausted) as caught:
        run(store, mine, "SELECT sum(length(event)) FROM events", SqlLimits(max_rows_to_read=2))
    assert caught.value.metadata["limit"] == "max_rows_to_read" and "max_rows_to_read" in caught.value.message
    with pytest.raises(ResourceExhausted) as caught:
        run(store, mine, "SELECT groupArray(x) FROM (SELECT arrayJoin(range(5000000)) AS x)", SqlLimits(max_memory_bytes=10**7))
    assert caught.value.metadata["limit"] == "max_memory_usage"


def test_the_statement_cannot_write_even_past_the_checks(teams: Any) -> None:
    """readonly travels with the engine call: the store refuses a write sent with the runner's settings."""
    store, _, _ = teams
    with pytest.raises(Exception, match="readonly"):
        store.query("INSERT INTO events (team_id) VALUES (1)", {}, settings=SqlLimits().settings())
