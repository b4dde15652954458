"""Independent pure-Python reference for the SQL insights' `sessions` table: one row per `$session_id`
of an environment's events, written from the README's column list (never from server/queries/)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

BOUNCE_SECONDS = 10


@dataclass(frozen=True)
class Session:
    """A session's row, under the table's column names (`$` dropped)."""

    session_id: str
    distinct_id: str
    person_id: uuid.UUID
    start_timestamp: dt.datetime
    end_timestamp: dt.datetime
    session_duration: int
    entry_current_url: str | None
    end_current_url: str | None
    pageview_count: int
    autocapture_count: int
    screen_count: int
    event_count: int
    is_bounce: bool | None

    @property
    def entry_pathname(self) -> str | None:
        return _path(self.entry_current_url)

    @property
    def end_pathname(self) -> str | None:
        return _path(self.end_current_url)


def engine_uuid_order(value: uuid.UUID) -> tuple[int, int]:
    """How the engine orders UUIDs: by their second 8 bytes, then their first."""
    return value.int & (2**64 - 1), value.int >> 64


def _path(url: str | None) -> str | None:
    return None if url is None else urlsplit(url).path


def _whole_seconds(start: dt.datetime, end: dt.datetime) -> int:
    """Second boundaries crossed from start to end (the engine's dateDiff('second', …))."""
    return int(end.replace(microsecond=0).timestamp() - start.replace(microsecond=0).timestamp())


def sessions(events: Iterable[Any]) -> dict[str, Session]:
    """Sessions of `events` (rows with uuid, event, distinct_id, person_id, timestamp and JSON
    properties), by id; events without a `$session_id` are in none. First and last go by time, then
    by uuid in the engine's order; the entry and end URLs are the first and last `$current_url` the events carry."""
    grouped: dict[str, list[Any]] = {}
    for e in events:
        sid = json.loads(e.properties).get("$session_id")
        if isinstance(sid, str) and sid:
            grouped.setdefault(sid, []).append(e)
    found: dict[str, Session] = {}
    for sid, members in grouped.items():
        ordered = sorted(members, key=lambda e: (e.timestamp, *engine_uuid_order(e.uuid)))
        urls = [
            u
            for u in (json.loads(e.properties).get("$current_url") for e in ordered)
            if isinstance(u, str) and u
        ]
        count = {
            name: sum(1 for e in ordered if e.event == name)
            for name in ("$pageview", "$autocapture", "$screen")
        }
        duration = _whole_seconds(ordered[0].timestamp, ordered[-1].timestamp)
        pageviews, autocaptures = count["$pageview"], count["$autocapture"]
        bounce = (
            None if pageviews == 0 else (pageviews <= 1 and autocaptures == 0 and duration < BOUNCE_SECONDS)
        )
        found[sid] = Session(
            session_id=sid,
            distinct_id=ordered[-1].distinct_id,
            person_id=ordered[-1].person_id,
            start_timestamp=ordered[0].timestamp,
            end_timestamp=ordered[-1].timestamp,
            session_duration=duration,
            entry_current_url=urls[0] if urls else None,
            end_current_url=urls[-1] if urls else None,
            pageview_count=pageviews,
            autocapture_count=autocaptures,
            screen_count=count["$screen"],
            event_count=len(ordered),
            is_bounce=bounce,
        )
    return found
