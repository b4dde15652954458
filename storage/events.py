"""The event store: ClickHouse through clickhouse-connect, embedded (chDB) or a server."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect


def parse_dsn(dsn: str) -> tuple[str, str]:
    """Splits a DSN into ("chdb", absolute path) or ("http", the URL itself)."""
    if dsn.startswith("chdb://"):
        location = dsn.removeprefix("chdb://")
        if not location:
            raise ValueError("chdb DSN needs a path, e.g. chdb://./var/events")
        return "chdb", str(Path(location).resolve())
    scheme = urlparse(dsn).scheme
    if scheme in ("http", "https"):
        return "http", dsn
    raise ValueError(f"unsupported events DSN {dsn!r}: use chdb://PATH or http(s)://host:port")


class EventStore:
    """A small pool of clickhouse-connect clients on one DSN.

    One client runs one query at a time, while several clients on the same chDB path run in
    parallel, so blocking calls borrow a client from the pool for their duration.
    """

    def __init__(self, dsn: str, *, pool_size: int = 4):
        self.dsn = dsn
        self.kind, self.target = parse_dsn(dsn)
        self._pool_size = pool_size
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> Any:
        if self.kind == "chdb":
            Path(self.target).mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(interface="chdb", path=self.target)
        return clickhouse_connect.get_client(dsn=self.target, connect_timeout=3, send_receive_timeout=300)

    @contextmanager
    def client(self) -> Iterator[Any]:
        """Borrows a client, opening one while fewer than pool_size exist."""
        if self._closed:
            raise ConnectionError("event store is closed")
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                grow = len(self._all) < self._pool_size
                if grow:
                    client = self._connect()
                    self._all.append(client)
            if not grow:
                client = self._idle.get()
        try:
            yield client
        finally:
            self._idle.put(client)

    def ping(self) -> None:
        """Raises unless the engine answers a trivial query."""
        with self.client() as client:
            client.query("SELECT 1")

    def close(self) -> None:
        """Closes every client; an unclosed chDB connection can crash the interpreter at exit."""
        self._closed = True
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()
