"""Whether another process holds an embedded chDB store, asked before this process opens it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def holder_of(path: str | Path) -> str | None:
    """None when no other process holds the chDB store at `path`; else what its status file says
    about the holder ("pid 123, started at ...", or "another process").

    chDB, like ClickHouse, takes an exclusive flock on `<path>/status` for as long as it runs;
    opening a held store fails deep inside the engine with an unhelpful error. Call this only from
    a process that has not opened the store itself: flock locks belong to the open file, so this
    process's own engine would count as another holder.
    """
    status = Path(path) / "status"
    try:
        fd = os.open(status, os.O_RDONLY)
    except FileNotFoundError:
        return None  # a store never opened (or not created yet) has no holder
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(status)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _describe(status: Path) -> str:
    """The holder as the status file tells it (ClickHouse writes `PID: n` and `Started at: t`)."""
    try:
        text = status.read_text(errors="replace")
    except OSError:
        return "another process"
    fields = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    pid, started = fields.get("PID", "").strip(), fields.get("Started at", "").strip()
    if not pid:
        return "another process"
    return f"process {pid}" + (f", started at {started}" if started else "")
