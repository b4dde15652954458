"""Session-wide pytest fixtures shared by every test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import postgres_unavailable_reason, running_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a throwaway PostgreSQL, started on first use and stopped at session end."""
    # Lazy on purpose: a run that needs no PostgreSQL never pays for initdb.
    reason = postgres_unavailable_reason()
    if reason is not None:
        pytest.skip(f"PostgreSQL tests skipped: {reason}")
    with running_postgres() as url:
        yield url


@pytest.fixture(scope="session")
def events_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one chDB path of the test process: chDB opens a single path per process at a time."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}/events"
