"""Node.js for the client tests: find node and npm (skip, or fail under CI), and `npm ci` a client."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.postgres import required as ci_required

# npm ci fetches from the registry on a cold cache: generous, but not forever.
INSTALL_TIMEOUT = 600
STAMP = ".installed-lock-sha256"


def node_and_npm() -> tuple[str, str]:
    """Paths of node and npm; a skip naming what is missing (a failure under CI, where .ci/run installs them)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return node, npm
    missing = " and ".join(name for name, found in (("node", node), ("npm", npm)) if not found)
    reason = f"{missing} not found (Debian: apt-get install nodejs npm)"
    if ci_required(os.environ):
        pytest.fail(f"the Node.js client test needs node and npm under CI (.ci/run installs them): {reason}", pytrace=False)
    pytest.skip(f"Node.js client test skipped: {reason}")


def npm_ci(npm: str, package_dir: Path) -> None:
    """`npm ci` into package_dir/node_modules unless it already holds this package-lock.json."""
    lock = hashlib.sha256((package_dir / "package-lock.json").read_bytes()).hexdigest()
    stamp = package_dir / "node_modules" / STAMP
    if stamp.exists() and stamp.read_text() == lock:
        return
    # --ignore-scripts: the dependencies are plain JavaScript; no install script has work to do here.
    done = subprocess.run(
        [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
        cwd=package_dir,
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, f"npm ci failed in {package_dir}:\n{done.stdout}\n{done.stderr}"
    stamp.write_text(lock)
