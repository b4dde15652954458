"""The metadata database: engine, connection settings per dialect, and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from server import tracing


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
        _trace_statements(self.engine, self.dialect)
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


def _trace_statements(engine: Engine, dialect: str) -> None:
    """A CLIENT span per statement while tracing is on: its SQL text (parameters are bound
    separately and never tagged) and the dialect."""
    system = "postgresql" if dialect.startswith("postgres") else dialect

    def before(conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool) -> None:
        if tracing.enabled():
            span = tracing.tracer().start_span(
                "metadata.query",
                kind=tracing.trace.SpanKind.CLIENT,
                attributes={"db.system": system, "db.statement": tracing.statement(statement)},
            )
            context._insights_span = span

    def after(conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool) -> None:
        span = getattr(context, "_insights_span", None)
        if span is not None:
            span.end()

    def failed(exception_context: Any) -> None:
        span = getattr(exception_context.execution_context, "_insights_span", None)
        if span is not None:
            failure = type(exception_context.original_exception).__name__
            span.set_status(tracing.trace.Status(tracing.trace.StatusCode.ERROR, failure))
            span.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    # WAL lets readers proceed while one writer writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
