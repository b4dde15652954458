"""Starts a throwaway PostgreSQL server from the machine's binaries for the test session."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# The role initdb creates as superuser; the service's URL names it.
USER = "insights"
# The account that runs the server when we are root: PostgreSQL refuses to run as root.
SERVICE_ACCOUNT = "postgres"
# pg_ctl -w gives up after this many seconds; a slow CI machine still starts well within it.
START_TIMEOUT_SECONDS = 60


def _version_key(path: Path) -> tuple[int, ...]:
    """Sorts /usr/lib/postgresql/<version>/bin by version (so 15 beats 9.6)."""
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_bin_dir() -> Path | None:
    """The directory holding initdb/pg_ctl of the newest installed server, if any."""
    # Debian keeps server binaries off PATH, one directory per major version.
    candidates = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if candidates:
        return max(candidates, key=lambda d: _version_key(d))
    # Elsewhere (other distributions, Homebrew) pg_config or PATH knows where they are.
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            bindir = Path(out.stdout.strip())
            if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
                return bindir
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def _is_root() -> bool:
    return os.geteuid() == 0


def postgres_unavailable_reason() -> str | None:
    """Why no throwaway server can be started here, or None when one can."""
    if find_bin_dir() is None:
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl) found under /usr/lib/postgresql/*/bin, "
            "pg_config --bindir or PATH; install them (Debian: apt-get install postgresql)"
        )
    if _is_root():
        refused = "running as root (PostgreSQL refuses root)"
        try:
            pwd.getpwnam(SERVICE_ACCOUNT)
        except KeyError:
            return f"{refused} and no {SERVICE_ACCOUNT!r} account exists to run it as"
        if shutil.which("runuser") is None:
            return f"{refused} and runuser is missing to become {SERVICE_ACCOUNT!r}"
    return None


def required(environ: Mapping[str, str]) -> bool:
    """Whether a missing PostgreSQL fails the run: under CI (`CI=true`, which `.ci/run` exports)."""
    # CI systems set CI=true (some 1); a seventh of the suite silently skipped there is a false green.
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def refuse_unavailable(reason: str, environ: Mapping[str, str]) -> None:
    """Fails (under CI) or skips the test that needs PostgreSQL, saying why none can start."""
    if required(environ):
        pytest.fail(
            f"PostgreSQL is required under CI={environ.get('CI')} and cannot start: {reason}", pytrace=False
        )
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def session_postgres(environ: Mapping[str, str]) -> Iterator[str]:
    """The `postgres_url` fixture: a running server's URL, or a skip (a failure under CI) saying why not."""
    reason = postgres_unavailable_reason()
    if reason is not None:
        refuse_unavailable(reason, environ)
    with running_postgres() as url:
        yield url


def _free_port() -> int:
    """A loopback port nothing listens on right now."""
    # Small race (another process could take it before postgres binds), acceptable for tests.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs a PostgreSQL binary, as the service account when we are root."""
    if _is_root():
        cmd = ["runuser", "-u", SERVICE_ACCOUNT, "--", *cmd]
    # cwd is the scratch dir: the service account may not be allowed into the caller's cwd.
    # LC_ALL=C keeps messages parseable and avoids failures on machines missing the caller's locale.
    env = {**os.environ, "LC_ALL": "C"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _check(result: subprocess.CompletedProcess[str], what: str, log: Path | None = None) -> None:
    """Raises with everything a reader needs to see why a step failed."""
    if result.returncode == 0:
        return
    detail = f"{result.stdout}\n{result.stderr}".strip()
    if log is not None and log.exists():
        detail += f"\n--- server log {log} ---\n{log.read_text(errors='replace')}"
    raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{detail}")


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Runs a fresh PostgreSQL on a free loopback port; yields its SQLAlchemy URL, then removes it."""
    reason = postgres_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    bindir = find_bin_dir()
    assert bindir is not None  # checked by postgres_unavailable_reason
    # Short path under /tmp: the unix socket lives here too, and socket paths are limited to ~100 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="insights-pg-"))
    if _is_root():
        account = pwd.getpwnam(SERVICE_ACCOUNT)
        os.chown(scratch, account.pw_uid, account.pw_gid)
    data, log = scratch / "data", scratch / "log"
    port = _free_port()
    started = False
    try:
        # trust auth and no fsync: the data is thrown away at the end, speed matters more.
        _check(
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-A",
                    "trust",
                    "-U",
                    USER,
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                scratch,
            ),
            "initdb",
        )
        options = (
            f"-p {port} -k {scratch} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        started = True  # from here on, a half-started server must still be stopped
        _check(
            _run(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(START_TIMEOUT_SECONDS),
                    "start",
                ],
                scratch,
            ),
            "pg_ctl start",
            log,
        )
        yield f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            # -m fast disconnects sessions a test left open instead of waiting for them.
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], scratch)
        shutil.rmtree(scratch, ignore_errors=True)
