"""No ORM row leaves the domain: what the servicers get from the objects they hold carries records.

`.importlinter` forbids the servicers to import storage.models, but a servicer can read attributes of
a row it was handed without importing anything; this walks the types instead. Starting from each
servicer's constructor, it follows the public methods' return types, dataclass fields and generic
arguments through the server's own classes, and fails on any storage.models class it reaches.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing
from typing import Any

import server.services
from storage.models import Base


def _servicers() -> list[type]:
    found = []
    for module in pkgutil.iter_modules(server.services.__path__):
        loaded = importlib.import_module(f"server.services.{module.name}")
        found += [c for n, c in vars(loaded).items() if n.endswith("Servicer") and c.__module__ == loaded.__name__]
    return found


def _hints(target: Any) -> dict[str, Any]:
    return typing.get_type_hints(target, vars(importlib.import_module(target.__module__)))


def _orm_paths(hint: Any, path: str, seen: set[Any]) -> list[str]:
    """Where an ORM class is reachable from `hint` (a type, a generic alias or a union)."""
    found: list[str] = []
    for arg in typing.get_args(hint):
        found += _orm_paths(arg, f"{path}[…]", seen)
    cls = typing.get_origin(hint) or hint
    if not inspect.isclass(cls) or cls in seen:
        return found
    seen.add(cls)
    if issubclass(cls, Base):
        return [*found, f"{path}: {cls.__name__}"]
    if not cls.__module__.startswith("server."):
        return found
    if dataclasses.is_dataclass(cls):
        for name, field_hint in _hints(cls).items():
            found += _orm_paths(field_hint, f"{path}.{name}", seen)
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if not name.startswith("_"):
            returned = _hints(member).get("return")
            if returned is not None:
                found += _orm_paths(returned, f"{path}.{name}()", seen)
    return found


def test_servicers_are_found() -> None:
    # Guards the test below: with no servicer found it would pass without checking anything.
    assert {s.__name__ for s in _servicers()} >= {
        "AlertsServicer",
        "EventsServicer",
        "InsightsServicer",
        "QueryServicer",
        "SharingServicer",
    }


def test_no_orm_row_reaches_a_servicer() -> None:
    seen: set[Any] = set()
    reached = []
    for servicer in _servicers():
        for name, hint in _hints(servicer.__init__).items():
            if name != "return":
                reached += _orm_paths(hint, f"{servicer.__name__}({name})", seen)
    assert reached == [], "the domain hands ORM rows to servicers (give the view a record instead):\n" + "\n".join(
        reached
    )
