"""Independent model of persons kept by ingestion, from the reference's rule: a person starts at
its first event; updates apply in event-time order, `$set_once` setting only absent keys and then
`$set` overwriting (within one event, in that order)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PersonEvent:
    """What one event says about its person."""

    person: str
    timestamp: dt.datetime
    set_once: dict[str, Any] = field(default_factory=dict)
    set: dict[str, Any] = field(default_factory=dict)


def expected_persons(events: Iterable[PersonEvent]) -> dict[str, tuple[dict[str, Any], dt.datetime]]:
    """person -> (properties, created_at), applying the events in time order (times must differ)."""
    persons: dict[str, tuple[dict[str, Any], dt.datetime]] = {}
    for e in sorted(events, key=lambda e: e.timestamp):
        properties, created = persons.get(e.person, ({}, e.timestamp))
        for key, value in e.set_once.items():
            properties.setdefault(key, value)
        properties.update(e.set)
        persons[e.person] = (properties, min(created, e.timestamp))
    return persons
