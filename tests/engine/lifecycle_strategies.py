"""Hypothesis strategies for lifecycle: a few persons with activity around the query's range.

The query (interval, date range, series, filters) is drawn first; its grid comes from the trends
oracle. Persons then get events mostly inside the range on the series' event (so statuses are
mostly non-zero), with gaps, some in the period before the range (returning and dormancy at the
first period), on its edges, after it, and some of another event long before it (a created_at
before the range: a first activity that resurrects rather than is new). One query in four has an
exact range (explicitDate), half of those with an absolute date_from inside a period.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from tests.engine.strategies import NOWS, TEST_ACCOUNT_FILTERS, TIMEZONES
from tests.oracle import Event
from tests.oracle import resolve_date_range as oracle_range

EVENTS = ("$pageview", "signup", "purchase")
PERSONS = ("p0", "p1", "p2", "p3", "p4", "p5")
BROWSERS = ("Chrome", "Firefox", "Safari 17", "")
INTERVALS = ("hour", "day", "week", "month")
_RANGES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "hour": (("-12h", None), ("-1d", "-6h"), ("-6h", "-2h")),
    "day": (("-7d", None), ("-10d", "-2d"), ("-4d", "-1d")),
    "week": (("-4w", None), ("-6w", "-1w"), ("-20d", "-10d")),
    "month": (("-3m", None), ("-5m", "-1m"), ("-75d", "-40d")),
}
_PERIOD = {
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
    "week": dt.timedelta(weeks=1),
    "month": dt.timedelta(days=31),
}
_SERIES_FILTERS = (
    {"key": "browser", "operator": "exact", "value": "Chrome"},
    {"key": "browser", "operator": "is_set"},
    {"key": "tier", "operator": "exact", "value": "pro", "type": "person"},
)
_QUERY_FILTERS = (
    {"key": "browser", "operator": "is_not", "value": "Firefox"},
    {"key": "tier", "operator": "exact", "value": ["pro", "free"], "type": "person"},
)

__all__ = ["TEST_ACCOUNT_FILTERS", "LifecycleCase", "lifecycle_cases"]


@dataclass
class LifecycleCase:
    events: list[Event]
    query: dict[str, Any]
    timezone: str
    week_start_day: int
    now: dt.datetime
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)


@st.composite
def _series(
    draw: st.DrawFn, actions: dict[int, dict[str, Any]], with_actions: bool
) -> tuple[dict[str, Any], list[str]]:
    """The series node and the event names it counts."""
    if with_actions:
        names = draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=2, unique=True))
        steps: list[dict[str, Any]] = [{"event": n} for n in names]
        if draw(st.integers(0, 3)) == 0:
            steps[0]["properties"] = [dict(draw(st.sampled_from(_SERIES_FILTERS[:2])))]
        actions[1] = {"id": 1, "name": "Action 1", "steps": steps}
        node: dict[str, Any] = {"kind": "ActionsNode", "id": 1}
    else:
        choice = draw(st.integers(0, 9))
        names = [] if choice == 0 else [draw(st.sampled_from(EVENTS))]
        node = {"kind": "EventsNode", "event": names[0] if names else None}
        if draw(st.integers(0, 4)) == 0:
            node["custom_name"] = "Mine"
    if draw(st.integers(0, 4)) == 0:
        node["properties"] = [dict(draw(st.sampled_from(_SERIES_FILTERS)))]
    return node, names or list(EVENTS)


@st.composite
def lifecycle_cases(draw: st.DrawFn, with_actions: bool = False) -> LifecycleCase:
    """A lifecycle query and the events of a few persons around its range."""
    actions: dict[int, dict[str, Any]] = {}
    interval = draw(st.sampled_from(INTERVALS))
    node, names = draw(_series(actions, with_actions))
    query: dict[str, Any] = {"kind": "LifecycleQuery", "series": [node]}
    if interval != "day" or draw(st.booleans()):
        query["interval"] = interval
    date_from, date_to = draw(st.sampled_from(_RANGES[interval]))
    query["dateRange"] = {"date_from": date_from, **({"date_to": date_to} if date_to else {})}
    if draw(st.integers(0, 5)) == 0:
        query["properties"] = [dict(draw(st.sampled_from(_QUERY_FILTERS)))]
    if draw(st.integers(0, 5)) == 0:
        query["filterTestAccounts"] = True
    if draw(st.integers(0, 4)) == 4:  # the largest value: hypothesis favours the smallest
        # Lifecycles of groups: each event's $group_0 key (some have none), persons merged per key.
        query["aggregation_group_type_index"] = 0
    now = draw(st.sampled_from(NOWS))
    timezone = draw(st.sampled_from(TIMEZONES))
    week_start_day = draw(st.sampled_from([0, 1]))
    if draw(st.integers(0, 3)) == 3:  # the largest value: hypothesis favours the smallest
        # An exact range: date_to "now" is this instant (the last period partial), and sometimes
        # date_from an absolute local time inside the first period (the first one partial).
        query["dateRange"]["explicitDate"] = True
        if draw(st.booleans()):
            whole = oracle_range(query["dateRange"], interval, timezone=timezone, week_start_day=week_start_day, now=now)
            inside = whole.lower + _PERIOD[interval] * draw(st.sampled_from([0.25, 0.5]))
            local = inside.astimezone(ZoneInfo(timezone))
            query["dateRange"]["date_from"] = local.strftime("%Y-%m-%dT%H:%M:%S")
    grid = oracle_range(
        query["dateRange"], interval, timezone=timezone, week_start_day=week_start_day, now=now
    )
    period = _PERIOD[interval]
    lower, upper = grid.lower, grid.upper
    span = int((upper - lower).total_seconds())
    tiers = {p: draw(st.sampled_from(["free", "pro"])) for p in PERSONS}
    emails = {
        p: draw(st.sampled_from(["a@example.com", "b@example.com", "test@posthog.com"])) for p in PERSONS
    }
    events: list[Event] = []
    for person in PERSONS[: draw(st.integers(2, len(PERSONS)))]:
        if draw(st.integers(0, 2)) == 0:
            # Created long before the range by another event.
            events.append(
                _event(draw, person, "signup", lower - period * draw(st.integers(3, 6)), tiers, emails)
            )
        for _ in range(draw(st.integers(1, 8))):
            where = draw(st.integers(0, 11))
            if where == 0:
                when = lower - dt.timedelta(seconds=draw(st.integers(1, int(period.total_seconds()) * 2)))
            elif where == 1:
                when = upper + dt.timedelta(seconds=draw(st.integers(1, int(period.total_seconds()))))
            elif where == 2:
                when = draw(st.sampled_from([lower, upper, lower - period]))
            else:
                when = lower + dt.timedelta(seconds=draw(st.integers(0, max(span - 1, 0))))
            name = draw(st.sampled_from(names)) if draw(st.integers(0, 4)) else draw(st.sampled_from(EVENTS))
            events.append(_event(draw, person, name, when, tiers, emails))
    return LifecycleCase(events, query, timezone, week_start_day, now, actions)


def _event(
    draw: st.DrawFn, person: str, name: str, when: dt.datetime, tiers: dict[str, str], emails: dict[str, str]
) -> Event:
    props: dict[str, Any] = {}
    browser = draw(st.sampled_from(BROWSERS))
    if browser or draw(st.booleans()):
        props["browser"] = browser
    if draw(st.integers(0, 15)) == 0:
        props["$process_person_profile"] = False
    company = draw(st.sampled_from(["acme", "globex", "", None]))
    if company is not None:
        props["$group_0"] = company
    return Event(
        uuid=str(draw(st.uuids())),
        event=name,
        distinct_id=person,
        person_id=person,
        timestamp=when,
        properties=props,
        person_properties={"tier": tiers[person], "email": emails[person]},
    )
