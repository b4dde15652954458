"""`events load`: JSON Lines and CSV files, bad rows, unparsable files; directly into the store and
through a running server's IngestEvents (the same rules either way)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.cli.loader import FileFormatError, LoadSummary, detect_format, load_file
from server.domain.ingest import person_id_for
from tests.integration.itkit import Server, Tenant, cli_flags, eventless_tenant

REPO = Path(__file__).resolve().parents[2]
DAY = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(microsecond=0)
MODES = ["direct", "server"]


@pytest.fixture
async def tenant(server: Server, make_tenant: Callable[[], Tenant]) -> Tenant:
    """A fresh tenant whose environment id has no events yet."""
    return await eventless_tenant(server, make_tenant)


def _iso(hours: int) -> str:
    return (DAY + dt.timedelta(hours=hours)).isoformat()


def good_records() -> list[dict[str, Any]]:
    return [
        {
            "event": "$pageview",
            "distinct_id": "ann",
            "timestamp": _iso(1),
            "properties": {"$browser": "Chrome"},
        },
        {
            "event": "signed_up",
            "distinct_id": "ann",
            "timestamp": _iso(2),
            "properties": {"plan": "pro", "n": 3},
            "person_properties": {"email": "ann@x.io"},
        },
        {"event": "$pageview", "distinct_id": 42, "timestamp": _iso(3).replace("+00:00", "Z")},
    ]


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def load(server: Server, tenant: Tenant, path: Path, mode: str, **kw: Any) -> LoadSummary:
    env = kw.pop("environment_id", tenant.environment_id)
    if mode == "direct":
        return await asyncio.to_thread(load_file, path, env, store=server.app.events, progress=False, **kw)
    key = tenant.key("event:write")
    return await asyncio.to_thread(
        load_file, path, env, target=server.target, api_key=key, progress=False, **kw
    )


async def stored(server: Server, env: int) -> list[tuple[Any, ...]]:
    return await asyncio.to_thread(
        server.app.events.query,
        "SELECT event, distinct_id, person_id, timestamp, properties, person_properties FROM events"
        " WHERE team_id = {env:Int64} ORDER BY timestamp",
        {"env": env},
    )


@pytest.mark.parametrize("mode", MODES)
async def test_a_good_jsonl_file_loads_every_event(
    server: Server, tenant: Tenant, tmp_path: Path, mode: str
) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [json.dumps(r) for r in good_records()])
    summary = await load(server, tenant, path, mode, batch_size=2)
    assert (summary.format, summary.loaded, summary.rejected) == ("jsonl", 3, 0)
    rows = await stored(server, tenant.environment_id)
    assert [(r[0], r[1]) for r in rows] == [("$pageview", "ann"), ("signed_up", "ann"), ("$pageview", "42")]
    assert rows[0][2] == person_id_for(tenant.environment_id, "ann")
    assert json.loads(rows[1][4]) == {"plan": "pro", "n": 3}
    assert json.loads(rows[1][5]) == {"email": "ann@x.io"}
    assert rows[2][3] == (DAY + dt.timedelta(hours=3)).replace(tzinfo=None)


@pytest.mark.parametrize("mode", MODES)
async def test_a_csv_file_loads_with_quoted_cells_and_line_numbers(
    server: Server, tenant: Tenant, tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "events.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["event", "distinct_id", "timestamp", "properties", "extra"])
        writer.writerow(["$pageview", "bob", _iso(1), '{"$current_url": "https://x.io/a,b"}', "ignored"])
        # A quoted cell may span lines.
        writer.writerow(["purchase", "bob", _iso(2), '{"amount": 9.5,\n "note": "a \\"quote\\""}', ""])
        writer.writerow(["$pageleave", "cy", _iso(3), "", ""])
        writer.writerow(["$pageleave", "", _iso(3), "", ""])  # line 6: no distinct_id
        writer.writerow(["$pageleave", "cy", _iso(3), "{", ""])  # line 7
    summary = await load(server, tenant, path, mode)
    assert (summary.format, summary.loaded, summary.rejected) == ("csv", 3, 2)
    assert [(r.index, r.reason) for r in summary.rejections] == [
        (6, "distinct_id is required"),
        (7, summary.rejections[1].reason),
    ]
    assert summary.rejections[1].reason.startswith("properties is not valid JSON")
    rows = await stored(server, tenant.environment_id)
    assert [r[0] for r in rows] == ["$pageview", "purchase", "$pageleave"]
    assert json.loads(rows[0][4]) == {"$current_url": "https://x.io/a,b"}
    assert json.loads(rows[1][4]) == {"amount": 9.5, "note": 'a "quote"'}
    assert rows[2][4] == "{}"


@pytest.mark.parametrize("mode", MODES)
async def test_bad_rows_are_reported_with_line_numbers_and_the_rest_loaded(
    server: Server, tenant: Tenant, tmp_path: Path, mode: str
) -> None:
    good = [json.dumps(r) for r in good_records()]
    lines = [
        good[0],  # 1
        "{not json",  # 2
        "",  # 3: blank lines are skipped, not rejected
        json.dumps({"event": "", "distinct_id": "x", "timestamp": _iso(1)}),  # 4
        good[1],  # 5
        json.dumps({"event": "e", "distinct_id": "x", "timestamp": "yesterday"}),  # 6
        json.dumps([1, 2]),  # 7
        json.dumps({"event": "e", "distinct_id": "x", "timestamp": _iso(1), "properties": [1]}),  # 8
        json.dumps({"event": "e", "distinct_id": "x"}),  # 9
        good[2],  # 10
    ]
    path = write_jsonl(tmp_path / "mixed.ndjson", lines)
    path.write_bytes(path.read_bytes() + b'{"event": "\xff"}\n')  # 11: not UTF-8
    summary = await load(server, tenant, path, mode, batch_size=3)
    assert (summary.loaded, summary.rejected) == (3, 7)
    reasons = {r.index: r.reason for r in summary.rejections}
    assert sorted(reasons) == [2, 4, 6, 7, 8, 9, 11]
    assert "JSON" in reasons[2]
    assert "event is required" in reasons[4]
    assert "ISO 8601" in reasons[6]
    assert "JSON object" in reasons[7]
    assert "properties" in reasons[8]
    assert "timestamp is required" in reasons[9]
    assert "UTF-8" in reasons[11]
    assert len(await stored(server, tenant.environment_id)) == 3


LINK = 'a.nav:attr__href="/pricing"href="/pricing"nth-child="1"nth-of-type="1"text="Pricing";nav:nth-child="1"nth-of-type="1"'
BUTTON = 'button:nth-child="2"nth-of-type="1"text="Say \\"hi\\"";form.f:nth-child="1"nth-of-type="1"'


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_files_carry_elements_chains(
    server: Server, tenant: Tenant, tmp_path: Path, mode: str, fmt: str
) -> None:
    records: list[dict[str, Any]] = [
        {"event": "$autocapture", "distinct_id": "ann", "timestamp": _iso(1), "elements_chain": LINK},
        {"event": "$autocapture", "distinct_id": "ann", "timestamp": _iso(2), "elements_chain": BUTTON},
        {"event": "$pageview", "distinct_id": "ann", "timestamp": _iso(3), "elements_chain": ""},
        {
            "event": "$autocapture",
            "distinct_id": "ann",
            "timestamp": _iso(4),
            "elements_chain": "a:" + "x" * 65_535,
        },
    ]
    if fmt == "jsonl":
        lines = [json.dumps(r) for r in records]
        lines.append(
            json.dumps({"event": "e", "distinct_id": "x", "timestamp": _iso(5), "elements_chain": ["a"]})
        )
        path = write_jsonl(tmp_path / "clicks.jsonl", lines)
    else:
        path = tmp_path / "clicks.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["event", "distinct_id", "timestamp", "elements_chain"])
            writer.writeheader()
            writer.writerows(records)
    summary = await load(server, tenant, path, mode)
    assert summary.loaded == 3
    reasons = sorted((r.index, r.reason) for r in summary.rejections)
    first = 1 if fmt == "jsonl" else 2  # the CSV header is line 1
    expected = [(first + 3, "elements_chain is 65537 bytes, more than the 65536 allowed")]
    if fmt == "jsonl":
        expected.append((5, "elements_chain must be a string"))
    assert reasons == expected
    rows = await asyncio.to_thread(
        server.app.events.query,
        "SELECT elements_chain, elements_chain_href, elements_chain_texts, elements_chain_elements FROM events"
        " WHERE team_id = {env:Int64} ORDER BY timestamp",
        {"env": tenant.environment_id},
    )
    assert rows == [
        (LINK, "/pricing", ["Pricing"], ["a"]),
        (BUTTON, "", ['Say "hi"'], ["button", "form"]),
        ("", "", [], []),
    ]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("blob.jsonl", b"\x00\x01\x02binary\x00" * 50, "binary"),
        ("blob.jsonl", b"\xff\xfe\xfa not utf-8 at all", "UTF-8"),
        ("words.jsonl", b"hello world\nthis is not json\n", "not JSON Lines"),
        ("array.json", b'[{"event": "e", "distinct_id": "d", "timestamp": "2024-01-01"}]\n', "JSON array"),
        ("scalars.jsonl", b"1\n2\n", "not a JSON object"),
        ("noheader.csv", b"$pageview,ann,2024-01-01T00:00:00\n", "header lacks"),
        ("partial.csv", b"event,timestamp\n$pageview,2024-01-01\n", "distinct_id"),
        ("unknown.txt", b"a;b;c\n1;2;3\n", "header lacks"),
    ],
)
async def test_an_unparsable_file_loads_nothing(
    server: Server, tenant: Tenant, tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    for mode in MODES:
        with pytest.raises(FileFormatError, match=message):
            await load(server, tenant, path, mode)
    assert await stored(server, tenant.environment_id) == []


def test_formats_are_detected_by_extension_then_by_content(tmp_path: Path) -> None:
    jsonl = tmp_path / "data.log"
    jsonl.write_text('{"event": "e"}\n')
    assert detect_format(jsonl) == "jsonl"
    table = tmp_path / "data.txt"
    table.write_text("\ufeffevent,distinct_id,timestamp\n")
    assert detect_format(table) == "csv"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert detect_format(empty) == "csv"


# The command line, in a subprocess (its own chDB path: one path per process).


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        *args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_loads_directly_when_no_server_answers(tmp_path: Path) -> None:
    flags = cli_flags(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    code, out, err = await _cli("events", "load", str(bad), *flags)
    assert code == 2, (out, err)
    assert "nothing was loaded" in err and "binary" in err

    mixed = write_jsonl(tmp_path / "mixed.jsonl", [json.dumps(r) for r in good_records()] + ["{oops"])
    code, out, err = await _cli("events", "load", str(mixed), *flags, "--batch-size", "2")
    assert code == 1, (out, err)
    assert "loaded 3 events" in out and "rejected 1" in out
    assert "line 4: not valid JSON" in out

    good = write_jsonl(tmp_path / "good.jsonl", [json.dumps(r) for r in good_records()])
    code, out, err = await _cli("events", "load", str(good), *flags)
    assert code == 0, (out, err)
    # The same rows on the same lines as in mixed.jsonl: recognised, not stored twice.
    assert f"loaded 0 events into chdb://{tmp_path / 'events'}" in out
    assert "3 events were already stored" in out

    more = write_jsonl(tmp_path / "more.jsonl", [json.dumps(r) for r in reversed(good_records())])
    code, out, err = await _cli("events", "load", str(more), *flags)
    assert code == 0, (out, err)
    # Rows without a uuid are told apart by line: other lines are other events (two rows stay
    # on their line: the middle one).
    assert f"loaded 2 events into chdb://{tmp_path / 'events'}" in out


async def test_cli_streams_through_a_running_server(
    server: Server, tenant: Tenant, tmp_path: Path, database_url: str
) -> None:
    path = write_jsonl(tmp_path / "events.jsonl", [json.dumps(r) for r in good_records()])
    flags = ["--listen", server.target, "--database-url", database_url, "--log-level", "WARNING"]
    env_flag = ["--environment", str(tenant.environment_id)]
    code, out, err = await _cli("events", "load", str(path), *flags, *env_flag, env={"INSIGHTS_API_KEY": ""})
    assert code == 2 and "--api-key" in err, (out, err)
    key = tenant.key("event:write")
    code, out, err = await _cli("events", "load", str(path), *flags, *env_flag, env={"INSIGHTS_API_KEY": key})
    assert code == 0, (out, err)
    assert f"through the server at {server.target}" in out
    assert len(await stored(server, tenant.environment_id)) == 3
    weak = tenant.key("insight:read")
    code, out, err = await _cli("events", "load", str(path), *flags, *env_flag, "--api-key", weak)
    assert code == 2 and "PERMISSION_DENIED" in err, (out, err)
