"""The event store of the engine tests: one per module, on the process's single chDB path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.events import EventStore


@pytest.fixture(scope="module")
def store(events_dsn: str) -> Iterator[EventStore]:
    store = EventStore(events_dsn)
    store.ensure_schema()
    yield store
    store.close()
