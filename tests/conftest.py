"""Session-wide pytest fixtures shared by every test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.postgres import session_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a throwaway PostgreSQL, started on first use and stopped at session end."""
    # Lazy on purpose: a run that needs no PostgreSQL never pays for initdb. Under CI=true a missing
    # PostgreSQL fails the tests that need it instead of skipping them.
    yield from session_postgres(os.environ)


@pytest.fixture(scope="session")
def events_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one chDB path of the test process: chDB opens a single path per process at a time."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}/events"
