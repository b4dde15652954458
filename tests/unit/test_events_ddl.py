"""The event-store DDL (single node and cluster) and the rule that every value is a bound parameter."""

from __future__ import annotations

import re

import pytest

from storage.events import (
    EVENT_COLUMNS,
    EventStore,
    check_cluster_name,
    ddl_statements,
    unbound_parameters,
)


def _squash(sql: str) -> str:
    return re.sub(r"\s+", " ", sql)


def test_single_node_ddl_is_replacing_events_and_persons() -> None:
    events, persons = (_squash(s) for s in ddl_statements())
    assert events.startswith("CREATE TABLE IF NOT EXISTS events (")
    # The reference's layout: copies of an event share the sorting key, so merges fold them.
    assert "ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(timestamp)" in events
    assert "ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))" in events
    assert "SAMPLE BY cityHash64(distinct_id)" in events
    assert "timestamp DateTime64(6, 'UTC')" in events
    assert "created_at DateTime64(6, 'UTC') DEFAULT now64(6)" in events
    assert "`$session_id` String MATERIALIZED JSONExtractString(properties, '$session_id')" in events
    for column in EVENT_COLUMNS:
        assert re.search(rf"\b{column} ", events), column
    assert persons.startswith("CREATE TABLE IF NOT EXISTS persons (")
    # Person rows are full states: merges keep the highest version (storage/persons.py).
    assert "ENGINE = ReplacingMergeTree(version) ORDER BY (team_id, id)" in persons
    assert "version UInt64 DEFAULT 0" in persons and "property_times Map(String, Int64)" in persons
    assert "elements_chain String," in events
    for derived in ("elements_chain_href String", "elements_chain_texts Array(String)", "elements_chain_ids"):
        assert f"{derived}" in events and "MATERIALIZED" in events.split(derived)[1][:30]
    assert "ON CLUSTER" not in events + persons
    assert ddl_statements("") == ddl_statements(None)


def test_cluster_ddl_is_replicated_local_tables_behind_distributed_ones() -> None:
    statements = [_squash(s) for s in ddl_statements("analytics")]
    assert len(statements) == 4
    events_local, events, persons_local, persons = statements
    assert events_local.startswith("CREATE TABLE IF NOT EXISTS events_local ON CLUSTER analytics (")
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/events_local', '{replica}')"
        in events_local
    )
    assert (
        "ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))"
        in events_local
    )
    assert "SAMPLE BY cityHash64(distinct_id)" in events_local
    assert events == (
        "CREATE TABLE IF NOT EXISTS events ON CLUSTER analytics AS events_local "
        "ENGINE = Distributed(analytics, currentDatabase(), events_local, cityHash64(distinct_id))"
    )
    assert (
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/persons_local', '{replica}', version)"
        in persons_local
    )
    assert persons.endswith("Distributed(analytics, currentDatabase(), persons_local, cityHash64(id))")
    # Local tables are created before the Distributed tables that point at them.
    assert statements.index(events_local) < statements.index(events)


def test_upgrades_add_the_new_columns_in_place_and_idempotently() -> None:
    from storage.events import upgrade_statements

    events, persons = upgrade_statements()
    assert events.startswith(
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS elements_chain String AFTER person_properties, "
    )
    assert events.count("ADD COLUMN IF NOT EXISTS") == 5 and events.count(" MATERIALIZED ") == 4
    assert persons == (
        "ALTER TABLE persons ADD COLUMN IF NOT EXISTS version UInt64 DEFAULT 0, "
        "ADD COLUMN IF NOT EXISTS property_times Map(String, Int64)"
    )
    cluster = upgrade_statements("analytics")
    assert [s.split(" ADD ")[0] for s in cluster] == [
        "ALTER TABLE events_local ON CLUSTER analytics",
        "ALTER TABLE events ON CLUSTER analytics",
        "ALTER TABLE persons_local ON CLUSTER analytics",
        "ALTER TABLE persons ON CLUSTER analytics",
    ]
    # The Distributed tables get plain columns: they read the local tables' columns by name.
    assert "MATERIALIZED" in cluster[0] and "MATERIALIZED" not in cluster[1]
    assert "elements_chain_href String," in cluster[1] and "AFTER" not in cluster[1]
    assert "version UInt64," in cluster[3] and "DEFAULT" not in cluster[3]


@pytest.mark.parametrize(
    "name", ["", "a-b", "1cluster", "x; DROP TABLE events", "c l", "a'b", "`c`", "x" * 65, "имя"]
)
def test_bad_cluster_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cluster name"):
        check_cluster_name(name)
    if name:
        with pytest.raises(ValueError, match="cluster name"):
            ddl_statements(name)
        with pytest.raises(ValueError, match="cluster name"):
            EventStore("chdb:///nonexistent/never-opened", cluster=name)


def test_good_cluster_names_pass() -> None:
    for name in ("default", "_x", "prod_cluster_2"):
        assert check_cluster_name(name) == name


def test_cluster_setting_is_validated() -> None:
    from server.config import Settings
    from server.errors import InvalidArgument

    assert Settings.from_env({"INSIGHTS_CLICKHOUSE_CLUSTER": "main"}).clickhouse_cluster == "main"
    with pytest.raises(InvalidArgument) as exc:
        Settings.from_env({"INSIGHTS_CLICKHOUSE_CLUSTER": "main; DROP"})
    assert exc.value.violations[0].field == "clickhouse_cluster"


def test_parameters_must_have_server_side_placeholders() -> None:
    sql = "SELECT count() FROM events WHERE team_id = {team_id:Int64} AND event = {event:String}"
    assert unbound_parameters(sql, {"team_id": 1, "event": "x"}) == []
    # A %(name)s parameter would be formatted into the SQL client-side: refused.
    assert unbound_parameters("SELECT %(x)s", {"x": 1}) == ["x"]
    assert unbound_parameters(sql, {"team_id": 1, "event": "x", "extra": 2}) == ["extra"]


def test_bound_values_travel_as_http_parameters_not_sql_text() -> None:
    """What the HTTP backend sends: the SQL unchanged plus param_* values (server-side binding)."""
    from clickhouse_connect.driver.binding import bind_query

    hostile = "'); DROP TABLE events; --\\"
    sql = "SELECT JSONExtract(properties, {key:String}, 'Nullable(String)') FROM events WHERE team_id = {t:Int64}"
    final, params = bind_query(sql, {"key": hostile, "t": 7})
    assert final == sql
    assert params == {"param_key": "\\'); DROP TABLE events; --\\\\", "param_t": "7"}


def test_materialized_properties_get_columns_of_their_own() -> None:
    from storage.events import materialized_columns, materialized_ddl

    columns = materialized_columns(["$browser", "$current_url", "plan.tier"])
    assert columns == {
        "$browser": "mat__browser",
        "$current_url": "mat__current_url",
        "plan.tier": "mat_plan_tier",
    }
    (first, *_) = materialized_ddl(columns)
    assert first == (
        "ALTER TABLE events ADD COLUMN IF NOT EXISTS mat__browser Nullable(String) MATERIALIZED "
        "nullIf(JSONExtract(properties, '$browser', 'Nullable(String)'), '')"
    )


@pytest.mark.parametrize("key", ["a'b", "x y", "", "k" * 65, "a;DROP", "é"])
def test_a_materialized_key_must_be_plain(key: str) -> None:
    from storage.events import materialized_columns

    with pytest.raises(ValueError):
        materialized_columns([key])


def test_two_keys_cannot_share_a_column() -> None:
    from storage.events import materialized_columns

    with pytest.raises(ValueError, match="same column"):
        materialized_columns(["a.b", "a_b"])
