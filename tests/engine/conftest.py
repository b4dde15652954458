"""The event store of the engine tests: one per module, on the process's single chDB path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage.events import DEFAULT_MATERIALIZED, EventStore


@pytest.fixture(scope="module")
def store(events_dsn: str) -> Iterator[EventStore]:
    # Two of the generated keys are materialized, so both property paths meet the oracle.
    store = EventStore(events_dsn, materialized=(*DEFAULT_MATERIALIZED, "browser", "amount"))
    store.ensure_schema()
    yield store
    store.close()
