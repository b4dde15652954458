"""A store created before elements chains and person versions is upgraded in place by ensure_schema:
its rows stay, read with the new columns' defaults, and new rows use every new column."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Runs in its own process: a chDB path is held by the process that opened it.
_SCRIPT = """
import datetime as dt, json, sys, uuid
from storage.events import EventRow, EventStore

store = EventStore("chdb://" + sys.argv[1])
with store.client() as client:
    # The tables as the previous version created them.
    client.command(
        "CREATE TABLE events (team_id Int64, uuid UUID, event String, distinct_id String, person_id UUID,"
        " timestamp DateTime64(6, 'UTC'), properties String, person_properties String,"
        " created_at DateTime64(6, 'UTC') DEFAULT now64(6),"
        " `$session_id` String MATERIALIZED JSONExtractString(properties, '$session_id'))"
        " ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(timestamp)"
        " ORDER BY (team_id, toDate(timestamp), event, cityHash64(distinct_id), cityHash64(uuid))"
        " SAMPLE BY cityHash64(distinct_id)"
    )
    client.command(
        "CREATE TABLE persons (team_id Int64, id UUID, properties String, created_at DateTime64(6, 'UTC'))"
        " ENGINE = ReplacingMergeTree ORDER BY (team_id, id)"
    )
    old = uuid.uuid4()
    when = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    client.insert(
        "events",
        [[3, uuid.uuid4(), "$pageview", "ann", old, when, "{}", "{}"]],
        column_names=["team_id", "uuid", "event", "distinct_id", "person_id", "timestamp", "properties",
                      "person_properties"],
    )
    client.insert("persons", [[3, old, '{"plan": "free"}', when]],
                  column_names=["team_id", "id", "properties", "created_at"])

store.ensure_schema()
store.ensure_schema()  # idempotent
chain = 'a.nav:href="/pricing"nth-child="1"nth-of-type="1"text="Pricing";form:attr_id="f"nth-child="1"nth-of-type="1"'
later = dt.datetime(2024, 2, 2, tzinfo=dt.UTC)
store.insert_new_events([
    EventRow(3, uuid.uuid4(), "$autocapture", "ann", old, later,
             json.dumps({"$set": {"email": "a@x.io"}, "$set_once": {"plan": "trial"}}), "{}", chain),
    EventRow(3, uuid.uuid4(), "$pageview", "bob", uuid.uuid5(old, "bob"), later, json.dumps({"$set": {"n": 1}}), "{}"),
])
events = store.query(
    "SELECT event, elements_chain, elements_chain_href, elements_chain_texts, elements_chain_ids,"
    " toString(elements_chain_elements) FROM events ORDER BY timestamp"
)
persons = {str(k): [json.loads(v[0]), v[1].isoformat()] for k, v in store.current_persons(3).items()}
store.query("OPTIMIZE TABLE persons FINAL")
merged = {str(k): [json.loads(v[0]), v[1].isoformat()] for k, v in store.current_persons(3).items()}
engines = store.query(
    "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() ORDER BY name"
)
print(json.dumps({
    "events": [list(r) for r in events],
    "persons": persons,
    "merged": merged,
    "old": str(old),
    "bob": str(uuid.uuid5(old, "bob")),
    "engines": {name: full.split(" ")[0] for name, full in engines},
    "rows": store.query("SELECT count() FROM persons")[0][0],
}))
store.close()
"""


async def test_an_old_store_is_upgraded_in_place(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SCRIPT,
        str(tmp_path / "events"),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    found = json.loads(out.decode().strip().splitlines()[-1])
    chain = 'a.nav:href="/pricing"nth-child="1"nth-of-type="1"text="Pricing";form:attr_id="f"nth-child="1"nth-of-type="1"'
    assert found["events"] == [
        # The row stored before the upgrade reads the defaults.
        ["$pageview", "", "", [], [], "[]"],
        ["$autocapture", chain, "/pricing", ["Pricing"], ["f"], "['a','form']"],
        ["$pageview", "", "", [], [], "[]"],
    ]
    expected = {
        # The old person kept its key against the later $set_once, and took the $set.
        found["old"]: [{"plan": "free", "email": "a@x.io"}, "2024-02-01T00:00:00+00:00"],
        found["bob"]: [{"n": 1}, "2024-02-02T00:00:00+00:00"],
    }
    assert found["persons"] == expected
    assert found["merged"] == expected
    assert found["rows"] == 2  # the old table's merges kept the latest version
    # The engines stay what they were (they cannot change in place).
    assert found["engines"] == {"events": "ReplacingMergeTree", "persons": "ReplacingMergeTree"}
