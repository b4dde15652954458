"""Hypothesis strategies for paths: a few persons' sessions of pages, screens and events.

Gaps are drawn around the 30-minute session boundary (29:59, exactly 30:00, 30:01) and well
inside it; some events fall just outside the range, repeat the previous page (collapsed), or
share a timestamp. Start/end points are drawn from the items the events carry (or a grouping's text), so most cuts
keep paths.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.engine.strategies import NOWS, TEST_ACCOUNT_FILTERS, TIMEZONES
from tests.oracle import Event
from tests.oracle import resolve_date_range as oracle_range

PERSONS = ("p0", "p1", "p2", "p3", "p4", "p5")
URLS = ("/", "/home", "/home/", "/pricing", "/a/1", "/a/22", "/it's odd", "/home", "/pricing")
SCREENS = ("Main", "Settings")
CUSTOM = ("signup", "purchase")
ITEMS = ("/", "/home", "/pricing", "/a/1", "/a/:id", "Main", "signup", "purchase")
# Inside a session.
GAPS = (5, 60, 600, 0, 30, 90)
# One gap in five is drawn from these: on the boundary, or a new session.
BOUNDARY_GAPS = (1799, 1800, 1801, 7200)
RANGES = (("-7d", None), ("-10d", "-2d"), ("-3d", "-1d"))
TYPES = ("$pageview", "$screen", "custom_event")
CLEANING = ({"regex": "/a/[0-9]+", "alias": "/a/:id"}, {"regex": "^/$", "alias": "/home"})
# Wildcard groupings: overlapping ("/a/*" and "*2"), matching inside a step ("ic"), after cleaning
# (":id"), and with regex metacharacters and quotes that must stay literal.
GROUPINGS = ("/a/*", "*2", "ic", ":id", "/home*", "/it's*", "(.)*", "/a/[0-9]+", "sign*p*", "Ma?n")

__all__ = ["TEST_ACCOUNT_FILTERS", "PathsCase", "paths_cases"]


@dataclass
class PathsCase:
    events: list[Event]
    query: dict[str, Any]
    timezone: str
    now: dt.datetime


@st.composite
def _filter(draw: st.DrawFn, events: list[Event]) -> dict[str, Any]:
    pf: dict[str, Any] = {}
    types = draw(st.sampled_from([["$pageview"], [], ["$pageview", "custom_event"], list(TYPES), ["$screen", "custom_event"]]))
    if types or draw(st.booleans()):
        pf["includeEventTypes"] = types
    # Points are items the events of the included types carry (before cleaning, which may rename
    # them), so most cuts keep paths; "/pricing" keeps one when no event carries an item.
    points = sorted({_raw_item(e) for e in events if _kind(e) in (types or TYPES)} - {None}) or ["/pricing"]
    point = draw(st.integers(0, 7))
    if point in (1, 3):
        pf["startPoint"] = draw(st.sampled_from(points))
    if point in (2, 3):
        pf["endPoint"] = draw(st.sampled_from(points))
    if draw(st.booleans()):
        pf["stepLimit"] = draw(st.integers(2, 6))
    if draw(st.integers(0, 3)) == 0:
        pf["edgeLimit"] = draw(st.integers(1, 6))
    if draw(st.integers(0, 6)) == 0:
        pf["minEdgeWeight"] = draw(st.integers(1, 2))
    if draw(st.integers(0, 6)) == 0:
        pf["maxEdgeWeight"] = draw(st.integers(1, 3))
    if draw(st.integers(0, 2)) == 0:
        pf["localPathCleaningFilters"] = draw(st.lists(st.sampled_from(CLEANING), min_size=1, max_size=2))
    if draw(st.integers(0, 2)) == 0:
        pf["pathGroupings"] = draw(st.lists(st.sampled_from(GROUPINGS), min_size=1, max_size=3))
        if point and draw(st.booleans()):
            # A grouping's text is a step its members become: a point that keeps paths.
            pf["startPoint" if point in (1, 3) else "endPoint"] = draw(st.sampled_from(pf["pathGroupings"]))
    if draw(st.integers(0, 4)) == 0:
        pf["excludeEvents"] = [draw(st.sampled_from(ITEMS + GROUPINGS))]
    return pf


@st.composite
def paths_cases(draw: st.DrawFn) -> PathsCase:
    """A paths query and a few persons' sessions around its range."""
    date_from, date_to = draw(st.sampled_from(RANGES))
    query: dict[str, Any] = {
        "kind": "PathsQuery",
        "dateRange": {"date_from": date_from, **({"date_to": date_to} if date_to else {})},
    }
    if draw(st.integers(0, 5)) == 0:
        query["properties"] = [{"key": "browser", "operator": "is_not", "value": "Firefox"}]
    if draw(st.integers(0, 5)) == 0:
        query["filterTestAccounts"] = True
    if draw(st.integers(0, 4)) == 4:
        # An exact range: "-7d" from this instant a week ago, not from the start of its day.
        query["dateRange"]["explicitDate"] = True
    if draw(st.integers(0, 3)) == 3:  # the largest value: hypothesis favours the smallest
        # Paths of groups: each event's $group_0 key (some have none), persons merged per key.
        query["aggregation_group_type_index"] = 0
    now = draw(st.sampled_from(NOWS))
    timezone = draw(st.sampled_from(TIMEZONES))
    grid = oracle_range(query["dateRange"], "day", timezone=timezone, week_start_day=0, now=now)
    span = int((grid.upper - grid.lower).total_seconds())
    events: list[Event] = []
    for person in PERSONS[: draw(st.integers(3, len(PERSONS)))]:
        # Test accounts are one person in four, so filtering them out mostly leaves paths.
        email = draw(st.sampled_from(["a@example.com", "b@example.com", "c@example.com", "test@posthog.com"]))
        for _ in range(draw(st.integers(1, 3))):
            edge = draw(st.integers(0, 11))  # one session in six starts at an end of the range
            if edge == 0:
                when = grid.lower - dt.timedelta(seconds=draw(st.integers(1, 120)))
            elif edge == 1:
                when = grid.upper - dt.timedelta(seconds=draw(st.integers(0, 120)))
            else:
                when = grid.lower + dt.timedelta(seconds=draw(st.integers(0, max(span - 8000, 0))))
            for _ in range(draw(st.integers(3, 8))):
                gaps = BOUNDARY_GAPS if draw(st.integers(0, 4)) == 0 else GAPS
                when += dt.timedelta(seconds=draw(st.sampled_from(gaps)), microseconds=draw(st.integers(0, 3)))
                events.append(_event(draw, person, when, email))
    query["pathsFilter"] = draw(_filter(events))
    return PathsCase(events, query, timezone, now)


def _kind(event: Event) -> str:
    """The includeEventTypes member that takes `event`."""
    return event.event if event.event in ("$pageview", "$screen") else "custom_event"


def _raw_item(event: Event) -> str | None:
    """The path item `event` is before cleaning: its page, screen or event name."""
    if event.event == "$pageview":
        return event.properties.get("$current_url")
    if event.event == "$screen":
        return event.properties.get("$screen_name")
    return event.event


def _event(draw: st.DrawFn, person: str, when: dt.datetime, email: str) -> Event:
    # Screens and custom events often enough that a query of those types alone finds paths.
    kind = draw(st.integers(0, 11))
    props: dict[str, Any] = {"browser": draw(st.sampled_from(["Chrome", "Firefox", "Safari 17"]))}
    company = draw(st.sampled_from(["acme", "globex", "", None]))
    if company is not None:
        props["$group_0"] = company
    if kind <= 5:
        name = "$pageview"
        if draw(st.integers(0, 12)):
            props["$current_url"] = draw(st.sampled_from(URLS))
    elif kind <= 7:
        name = "$screen"
        props["$screen_name"] = draw(st.sampled_from(SCREENS))
    elif kind == 8:
        name = "$autocapture"
    else:
        name = draw(st.sampled_from(CUSTOM))
    return Event(
        uuid=str(draw(st.uuids())),
        event=name,
        distinct_id=person,
        person_id=person,
        timestamp=when,
        properties=props,
        person_properties={"email": email},
    )
