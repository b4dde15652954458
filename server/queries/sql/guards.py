"""The subqueries a virtual table becomes: the store's rows of the caller's environment only, with the
environment id a bound parameter and only the columns a caller may see."""

from __future__ import annotations

from sqlglot import exp

from server.queries.sql.dialect import parse

# The bound parameter holding the caller's environment id (callers cannot write parameters at all).
TEAM_PARAM = "__team_id"

# What `events` shows: the store's columns a caller may read (no team_id, no internal helpers).
EVENT_COLUMNS = (
    "uuid",
    "event",
    "timestamp",
    "distinct_id",
    "person_id",
    "properties",
    "elements_chain",
    "created_at",
    "$session_id",
)
# What `persons` shows: each person's current state (the store keeps versions).
PERSON_COLUMNS = ("id", "properties", "created_at")
# The column of `events` that `person.properties.x` reads: the person's current properties, joined
# only when a statement reads them.
PERSON_PROPERTIES = "person_properties"

# Names are qualified by an alias a caller cannot write (names starting with "__" are refused), so
# no alias of the caller's statement can stand for a column of these filters.
_CURRENT_PERSONS = (
    "SELECT __pv.id AS id, argMax(__pv.properties, __pv.version) AS properties, "
    "min(__pv.created_at) AS created_at FROM persons AS __pv "
    f"WHERE __pv.team_id = {{{TEAM_PARAM}:Int64}} GROUP BY __pv.id"
)


def _columns(alias: str, names: tuple[str, ...]) -> str:
    return ", ".join(f"{alias}.`{name}` AS `{name}`" for name in names)


def _events_sql(with_person: bool) -> str:
    columns = _columns("__e", EVENT_COLUMNS)
    if not with_person:
        return f"SELECT {columns} FROM events AS __e WHERE __e.team_id = {{{TEAM_PARAM}:Int64}}"
    return (
        f"SELECT {columns}, __ep.properties AS `{PERSON_PROPERTIES}` FROM events AS __e "
        f"LEFT JOIN ({_CURRENT_PERSONS}) AS __ep ON __ep.id = __e.person_id "
        f"WHERE __e.team_id = {{{TEAM_PARAM}:Int64}}"
    )


def _persons_sql() -> str:
    return f"SELECT {_columns('__p', PERSON_COLUMNS)} FROM ({_CURRENT_PERSONS}) AS __p"


def guard(table: str, *, with_person: bool) -> exp.Query:
    """A fresh tree of the guarded subquery standing for virtual table `table`."""
    sql = _events_sql(with_person) if table == "events" else _persons_sql()
    tree = parse(sql)[0]
    assert isinstance(tree, exp.Query)
    return tree


VIRTUAL_TABLES = ("events", "persons")
