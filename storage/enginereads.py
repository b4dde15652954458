"""Rows the engine read for one statement, from the summary clickhouse-connect returns with its result.

A ClickHouse server's summary (the X-ClickHouse-Summary header) says `read_rows`: rows its storage
read. clickhouse-connect's chDB backend fills `read_rows` with chDB's `rows_read()`, which counts the
rows the statement *returned*; chDB keeps the storage's count as `storage_rows_read()`. `install()`
adds that count to the chDB backend's summaries as `storage_read_rows`, read here first.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("insights.events")

STORAGE_READ_ROWS = "storage_read_rows"
_installed = False


def rows_read(summary: Mapping[str, Any] | None, *, embedded: bool) -> int | None:
    """Rows the statement's storage read, or None when the backend did not say (`embedded`: chDB,
    whose own `read_rows` is not this count)."""
    if not summary:
        return None
    raw = summary.get(STORAGE_READ_ROWS if embedded else "read_rows")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def install() -> None:
    """Makes the chDB backend's summaries carry the rows its storage read (once per process).

    Without it (another clickhouse-connect whose backend differs) chDB statements report no rows
    read rather than the rows they returned.
    """
    global _installed
    if _installed:
        return
    _installed = True
    try:
        from clickhouse_connect.driver._backend import chdb_backend
    except ImportError:
        return
    backend = getattr(chdb_backend, "ChdbBackend", None)
    original = getattr(backend, "_summary", None)
    if backend is None or original is None:
        log.warning("clickhouse-connect's chDB backend changed: engine rows read are not counted")
        return

    def summary(result: Any, _original: Callable[[Any], dict[str, Any]] = original) -> dict[str, Any]:
        found = dict(_original(result))
        # A summary without the key counts nothing (never the rows returned in its place).
        with contextlib.suppress(Exception):
            found[STORAGE_READ_ROWS] = str(int(result.storage_rows_read()))
        return found

    backend._summary = staticmethod(summary)
