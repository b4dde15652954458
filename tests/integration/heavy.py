"""Millions of events inserted by the engine itself, and trends queries heavy enough to be stopped
mid-run: what the progress, cancel, deadline and shutdown tests compute."""

from __future__ import annotations

from typing import Any

from generated.insights.v1 import query_pb2 as qpb

BULK_EVENTS = 6_000_000
_BULK_SQL = """
INSERT INTO events (team_id, uuid, event, distinct_id, person_id, timestamp, properties, person_properties)
SELECT {team:Int64}, generateUUIDv4(number), '$pageview', toString(number % 50000),
       generateUUIDv4(number % 50000), now64(6) - toIntervalSecond(number % (5 * 86400)),
       concat('{"$browser":"', ['Chrome', 'Firefox', 'Safari', 'Edge'][number % 4 + 1], '"}'), '{}'
FROM numbers({count:UInt64})
"""


def bulk_insert(server: Any, environment_id: int, count: int = BULK_EVENTS) -> None:
    """`count` $pageview events over the last five days, written by one INSERT … SELECT."""
    with server.app.events.client() as client:
        client.command(_BULK_SQL, parameters={"team": environment_id, "count": count})


def bulk_insert_store(dsn: str, environment_id: int, count: int = BULK_EVENTS) -> None:
    """The same into the store at `dsn`, for a server process that is not running yet (a chDB
    path is opened by one process at a time, so call it from a process of its own)."""
    from storage.events import EventStore

    store = EventStore(dsn)
    try:
        store.ensure_schema()
        with store.client() as client:
            client.command(_BULK_SQL, parameters={"team": environment_id, "count": count})
    finally:
        store.close()


def heavy_trend(series: int = 1) -> qpb.QueryNode:
    """A trend whose every series reads every event of the range with per-row string work (a
    property filter, a regex and distinct persons per hour): one series takes about a second on
    two cores over BULK_EVENTS, and a run computes all its series in one engine statement."""
    node = qpb.SeriesNode(
        events_node=qpb.EventsNode(
            event="$pageview",
            math=qpb.MATH_TYPE_DAU,
            properties=[
                _filter("$browser", qpb.PROPERTY_OPERATOR_ICONTAINS, "r"),
                _filter("$browser", qpb.PROPERTY_OPERATOR_REGEX, "^(Ch|Fi|Sa)[a-z]+e?"),
            ],
        )
    )
    nodes = []
    for i in range(series):
        copy = qpb.SeriesNode()
        copy.CopyFrom(node)
        copy.events_node.custom_name = f"series {i}"
        nodes.append(copy)
    return qpb.QueryNode(
        trends_query=qpb.TrendsQuery(
            series=nodes, interval=qpb.INTERVAL_TYPE_HOUR, date_range=qpb.DateRange(date_from="-6d")
        )
    )


def _filter(key: str, op: qpb.PropertyOperator.ValueType, value: str) -> qpb.PropertyFilter:
    return qpb.PropertyFilter(
        key=key, operator=op, value=qpb.PropertyValue(string_value=value), type=qpb.PROPERTY_FILTER_TYPE_EVENT
    )
