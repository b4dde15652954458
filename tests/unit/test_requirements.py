"""The pinned requirements split in three (runtime, embedded engine, tools): each pin once, and the
runtime set complete on its own, so that a deployment against a ClickHouse server installs only it."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
PARTS = ("runtime", "embedded", "dev")
# Installed by pip itself, never pinned: grpcio-tools' build-time dependency.
UNPINNED = {"setuptools", "pip"}


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _pins(part: str) -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / f"{part}.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"requirements/{part}.txt: {line!r} is not pinned with =="
        pins[_name(name)] = version
    return pins


def _depends(name: str) -> set[str]:
    """What an installed distribution requires (no extras, markers of this interpreter)."""
    found = set()
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            found.add(_name(requirement.name))
    return found


def test_requirements_txt_is_the_three_parts() -> None:
    lines = [line for line in (REPO / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines == [f"-r requirements/{part}.txt" for part in PARTS]


def test_each_package_is_pinned_once_at_the_installed_version() -> None:
    seen: dict[str, str] = {}
    for part in PARTS:
        for name, version in _pins(part).items():
            assert name not in seen, f"{name} is pinned in {seen[name]} and {part}"
            seen[name] = part
            assert metadata.version(name) == version, f"{name}: {part} pins {version}"


def test_runtime_and_embedded_are_closed_under_their_dependencies() -> None:
    runtime, embedded = set(_pins("runtime")), set(_pins("embedded"))
    for name in runtime:
        missing = _depends(name) - runtime - UNPINNED
        assert not missing, f"{name} (runtime) needs {sorted(missing)}, not in requirements/runtime.txt"
    for name in embedded:
        missing = _depends(name) - runtime - embedded - UNPINNED
        assert not missing, f"{name} (embedded) needs {sorted(missing)}, not in runtime or embedded"
    assert {"chdb", "pandas", "pyarrow"} <= embedded and not {"chdb", "pandas", "pyarrow"} & runtime


def test_the_service_imports_without_the_embedded_engine() -> None:
    # What a server-backed deployment loads: the composition root, the command line, the loader.
    code = (
        "import sys\n"
        "import server.app, server.cli.main, server.cli.loader\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(loaded & {'chdb', 'chdb_core', 'pandas', 'pyarrow'}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
