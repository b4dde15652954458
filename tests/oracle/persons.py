"""Independent model of persons kept by ingestion, from the reference's rule: a person starts at
its first event; updates apply in event-time order, `$set_once` setting only absent keys, then
`$set` overwriting, then `$unset` removing (within one event, in that order). One documented
difference: a key once removed is not set again by a later `$set_once` (docs/decisions.md,
"Persons: $unset")."""

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
    unset: tuple[str, ...] = ()


def expected_persons(events: Iterable[PersonEvent]) -> dict[str, tuple[dict[str, Any], dt.datetime]]:
    """person -> (properties, created_at), applying the events in time order (times must differ)."""
    persons: dict[str, tuple[dict[str, Any], dt.datetime]] = {}
    removed: dict[str, set[str]] = {}
    for e in sorted(events, key=lambda e: e.timestamp):
        properties, created = persons.get(e.person, ({}, e.timestamp))
        gone = removed.setdefault(e.person, set())
        for key, value in e.set_once.items():
            if key not in gone:
                properties.setdefault(key, value)
        properties.update(e.set)
        for key in e.unset:
            properties.pop(key, None)
            gone.add(key)
        persons[e.person] = (properties, min(created, e.timestamp))
    return persons
