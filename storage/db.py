"""The metadata database: engine, connection settings per dialect, and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker


class Database:
    """One SQLAlchemy engine and its session factory."""

    def __init__(self, url: str, *, pool_size: int = 8):
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            # Threads of the executor share connections; wait on locks instead of failing.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 15}
            if parsed.database not in (None, "", ":memory:"):
                # One connection per worker thread, kept open: reopening re-runs the pragmas.
                kwargs.update(pool_size=pool_size, max_overflow=pool_size)
        else:
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        """Raises unless the database answers (and, for SQLite, its folder exists)."""
        if self.dialect == "sqlite":
            database = make_url(self.url).database
            if database and database != ":memory:" and not Path(database).parent.is_dir():
                raise ConnectionError(f"SQLite folder does not exist: {Path(database).parent}")
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL lets readers proceed while one writer writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
