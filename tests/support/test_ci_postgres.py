"""Under CI a PostgreSQL that cannot start fails the run; elsewhere its tests are skipped, saying why."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support import postgres

ROOT = Path(__file__).resolve().parents[2]
NO_BINARIES = "no PostgreSQL server binaries"


@pytest.fixture
def no_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without PostgreSQL server binaries (the harness's own reason then applies)."""
    monkeypatch.setattr(postgres, "find_bin_dir", lambda: None)


def outcome(environ: dict[str, str]) -> BaseException:
    """What the postgres_url fixture raised: caught here, so that a skip cannot pass as this test's own."""
    try:
        next(postgres.session_postgres(environ))
    except BaseException as raised:  # pytest's skip and fail outcomes are BaseExceptions
        return raised
    raise AssertionError("a PostgreSQL URL was yielded where none can start")


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_under_ci_missing_binaries_fail_the_postgres_tests(no_binaries: None, ci: str) -> None:
    failed = outcome({"CI": ci})
    assert isinstance(failed, pytest.fail.Exception), repr(failed)
    assert NO_BINARIES in str(failed) and f"CI={ci}" in str(failed)


@pytest.mark.parametrize("environ", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "0"}])
def test_outside_ci_missing_binaries_skip_the_postgres_tests(no_binaries: None, environ: dict[str, str]) -> None:
    skipped = outcome(environ)
    assert isinstance(skipped, pytest.skip.Exception), repr(skipped)
    assert NO_BINARIES in str(skipped)


def test_under_ci_a_root_without_the_postgres_account_fails_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "find_bin_dir", lambda: Path("/usr/lib/postgresql/99/bin"))
    monkeypatch.setattr(postgres, "_is_root", lambda: True)
    monkeypatch.setattr(postgres, "SERVICE_ACCOUNT", "no-such-account-here")
    failed = outcome({"CI": "true"})
    assert isinstance(failed, pytest.fail.Exception), repr(failed)
    assert "no 'no-such-account-here' account" in str(failed)


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_ci_entry_point_runs_the_suite_with_ci_true(tmp_path: Path) -> None:
    """`.ci/run` exports CI=true itself: a CI system that does not set it still gets the failure."""
    fake = tmp_path / "bin"
    fake.mkdir()
    seen = tmp_path / "make-saw"
    # Stand-ins: `make` records how it was called instead of running the suite again, and
    # `apt-get` installs nothing should the script find a package missing here.
    _executable(fake / "make", f'#!/bin/sh\necho "$* CI=${{CI-unset}}" > "{seen}"\n')
    _executable(fake / "apt-get", "#!/bin/sh\nexit 0\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{fake}{os.pathsep}{env.get('PATH', '')}"
    subprocess.run(
        ["bash", str(ROOT / ".ci" / "run")],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert seen.read_text().split() == ["test", "CI=true"]
