"""Pytest plugin for `make mutation` only: the same tests, started faster in each mutant's process.

mutmut forks one process per mutant from a server that has imported pytest and collected the
tests. What that server loads here, every mutant's process inherits instead of redoing: the
server's modules, and a migrated SQLite file that upgrade() copies instead of replaying Alembic.
Nothing a test asserts changes: the copy is the schema that the migrations produce.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import server.app  # noqa: F401  (loaded once by the fork server, inherited by every mutant)
import storage.migrate

_replay = storage.migrate.upgrade
# Under var/ of the tree the tests run in (mutants/ for mutmut): git-ignored, removed with it.
_template = Path(__file__).resolve().parents[2] / "var" / "mutation-schema.db"
_building = _template.with_name(f"{_template.name}.{os.getpid()}")
_building.unlink(missing_ok=True)
_replay(f"sqlite:///{_building}")
os.replace(_building, _template)  # whole or absent for a process copying it meanwhile


def _upgrade(database_url: str, revision: str = "head") -> None:
    """A new SQLite file at head starts as a copy of the template; anything else is migrated."""
    path = Path(database_url.removeprefix("sqlite:///"))
    if database_url.startswith("sqlite:///") and revision == "head" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_template, path)
        return
    _replay(database_url, revision)


storage.migrate.upgrade = _upgrade


def pytest_collection_modifyitems(items: list[Any]) -> None:
    # A mutant stops at its first failing test (-x): unit tests first, then the quickest
    # (mutmut's stats file holds each test's duration from the run that mapped tests to functions).
    stats = Path("mutmut-stats.json")
    durations: dict[str, float] = json.loads(stats.read_text())["duration_by_test"] if stats.exists() else {}
    items.sort(key=lambda item: ("tests/unit/" not in item.nodeid, durations.get(item.nodeid, 0.0)))
