"""Session-wide pytest fixtures shared by every test suite, and the hypothesis profile hooks."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from tests import hypothesis_profiles
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


# --- hypothesis profiles (tests/hypothesis_profiles.py) ---------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # tryfirst: hypothesis's own plugin loads the profile and the seed from these options.
    hypothesis_profiles.configure(config)


def pytest_report_header(config: pytest.Config) -> str:
    return hypothesis_profiles.replay_hint(config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and item.get_closest_marker("hypothesis") is not None:
        report.sections.append(("hypothesis", hypothesis_profiles.replay_hint(item.config)))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    failed = terminalreporter.stats.get("failed", [])
    if any("hypothesis" in report.keywords for report in failed):
        terminalreporter.write_line(hypothesis_profiles.replay_hint(terminalreporter.config))
