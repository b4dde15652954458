"""`events load` as a newcomer meets it, through the real command line in a subprocess: a store held
by a running server, the help, and exit codes that scripts can rely on."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from tests.integration.itkit import Server, free_port, unique

REPO = Path(__file__).resolve().parents[2]


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "server",
        *args,
        cwd=REPO,
        env={**os.environ, "INSIGHTS_API_KEY": ""},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode()


async def test_load_into_a_store_a_server_holds_ends_with_one_line_and_exit_code_2(
    server: Server, events_dsn: str, tmp_path: Path
) -> None:
    # The session's server (this process) holds the embedded store; nothing answers at --listen,
    # as when the server was started with another address.
    who = unique("held")
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"event": "$pageview", "distinct_id": who, "timestamp": "2026-01-01T00:00:00Z"}))
    code, out, err = await _cli(
        "events",
        "load",
        str(path),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--database-url",
        f"sqlite:///{tmp_path / 'meta.db'}",
        "--events-dsn",
        events_dsn,
        "--log-level",
        "WARNING",
    )
    assert code == 2, (out, err)
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"error: the event store {events_dsn} is in use by process {os.getpid()}")
    assert "--listen" in line and "nothing was loaded" in line
    assert "Traceback" not in err
    rows = await asyncio.to_thread(
        server.app.events.query,
        "SELECT count() FROM events WHERE distinct_id = {who:String}",
        {"who": who},
    )
    assert rows[0][0] == 0


async def test_an_unexpected_load_failure_is_one_line_and_exit_code_2_not_1(tmp_path: Path) -> None:
    # Exit code 1 means "some rows were rejected": a traceback's 1 would say that falsely.
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"event": "e", "distinct_id": "u", "timestamp": "2026-01-01T00:00:00Z"}))
    code, out, err = await _cli(
        "events",
        "load",
        str(path),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--database-url",
        f"sqlite:///{tmp_path / 'meta.db'}",
        "--events-dsn",
        "ftp://nowhere/events",
        "--log-level",
        "WARNING",
    )
    assert code == 2, (out, err)
    assert err.strip().splitlines() == [
        "error: ValueError: unsupported events DSN 'ftp://nowhere/events': use chdb://PATH or "
        "http(s)://host:port; nothing more was loaded (--log-level DEBUG shows where)"
    ]


async def test_load_help_says_what_listen_is_for_and_the_exit_codes() -> None:
    code, out, err = await _cli("events", "load", "--help")
    assert code == 0, err
    text = " ".join(out.split())
    assert "--listen HOST:PORT host:port of the server to load through" in text
    assert "with none there the file goes straight into --events-dsn" in text
    assert "exit codes: 0 every row of the file was loaded" in text
    assert "1 some rows were rejected" in text
    assert "2 an error stopped the load, or no row was valid" in text
