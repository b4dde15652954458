"""Hypothesis strategies for retention: small random event sets shaped to exercise the retention rules.

The query (period, totalIntervals, type, entities, date range) is drawn first; its window comes from
the oracle. Persons then get events mostly inside the window, on the entities' event names (so
most cohorts have people, returns fall in later periods, in the start period and on period edges),
a few before the window (first-time types then see an earlier first event) and after it. A share
of every choice stays fully random, so empty cohorts are compared too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.engine.strategies import NOWS, TEST_ACCOUNT_FILTERS, TIMEZONES
from tests.oracle import Event
from tests.oracle.retention import window

EVENTS = ("$pageview", "signup", "purchase")
PERSONS = ("p0", "p1", "p2", "p3", "p4", "p5")
BROWSERS = ("Chrome", "Firefox", "Safari 17", "")
PERIODS = ("Hour", "Day", "Week", "Month")
# date_from values per period that give a few cohorts (None: totalIntervals periods back).
_FROMS = {
    "Hour": ("-6h", "-12h", "-1d"),
    "Day": ("-3d", "-6d", "-10d"),
    "Week": ("-2w", "-4w", "-20d"),
    "Month": ("-2m", "-4m", "-75d"),
}
_TOS = {"Hour": ("-2h", "-1d"), "Day": ("-2d", "-1w"), "Week": ("-1w", "-10d"), "Month": ("-1m", "-40d")}
# (date_from, date_to) pairs, the start before the end.
_RANGES = {
    "Hour": (("-12h", "-2h"), ("-1d", "-6h")),
    "Day": (("-10d", "-2d"), ("-6d", "-1d")),
    "Week": (("-4w", "-1w"), ("-20d", "-10d")),
    "Month": (("-4m", "-1m"), ("-75d", "-40d")),
}
_ENTITY_FILTERS = (
    {"key": "browser", "operator": "exact", "value": "Chrome"},
    {"key": "browser", "operator": "is_set"},
    {"key": "plan", "operator": "exact", "value": "pro"},
    {"key": "tier", "operator": "exact", "value": "pro", "type": "person"},
)
_QUERY_FILTERS = (
    {"key": "browser", "operator": "is_not", "value": "Firefox"},
    {"key": "tier", "operator": "exact", "value": ["pro", "free"], "type": "person"},
)

__all__ = ["TEST_ACCOUNT_FILTERS", "RetentionCase", "retention_cases"]


@dataclass
class RetentionCase:
    events: list[Event]
    query: dict[str, Any]
    timezone: str
    week_start_day: int
    now: dt.datetime
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)


@st.composite
def _entity(draw: st.DrawFn, actions: dict[int, dict[str, Any]], with_actions: bool) -> dict[str, Any] | None:
    choice = draw(st.integers(0, 9))
    if choice == 0:
        return None  # the default: $pageview
    if with_actions and choice <= 3:
        action_id = len(actions) + 1
        names = draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=2, unique=True))
        steps: list[dict[str, Any]] = [{"event": n} for n in names]
        if draw(st.integers(0, 2)) == 0:
            steps[0]["properties"] = [dict(draw(st.sampled_from(_ENTITY_FILTERS)))]
        actions[action_id] = {"id": action_id, "name": f"Action {action_id}", "steps": steps}
        node: dict[str, Any] = {"id": action_id, "type": "actions"}
        if draw(st.booleans()):
            node["kind"] = "ActionsNode"
    else:
        node = {"id": draw(st.sampled_from(EVENTS)), "type": "events"}
        if draw(st.integers(0, 12)) == 0:
            node["id"] = None  # every event
        if draw(st.booleans()):
            node["kind"] = "EventsNode"
    if draw(st.integers(0, 4)) == 0:
        node["properties"] = [dict(draw(st.sampled_from(_ENTITY_FILTERS)))]
    return node


@st.composite
def _query(
    draw: st.DrawFn, breakdown: bool, with_actions: bool
) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    actions: dict[int, dict[str, Any]] = {}
    period = draw(st.sampled_from(PERIODS))
    rf: dict[str, Any] = {}
    if period != "Day" or draw(st.booleans()):
        rf["period"] = period
    if draw(st.integers(0, 3)):
        rf["totalIntervals"] = draw(st.integers(1, 6))
    kind = draw(
        st.sampled_from(
            ["retention_recurring", "retention_first_time", "retention_first_ever_occurrence", None]
        )
    )
    if kind is not None:
        rf["retentionType"] = kind
    target = draw(_entity(actions, with_actions))
    if target is not None:
        rf["targetEntity"] = target
    returning = (
        target
        if target is not None and draw(st.integers(0, 3)) == 0
        else draw(_entity(actions, with_actions))
    )
    if returning is not None:
        rf["returningEntity"] = returning
    if draw(st.integers(0, 3)) == 0:
        rf["cumulative"] = True
    if draw(st.integers(0, 3)) == 3:  # the largest value: hypothesis favours the smallest
        # 24-hour windows: elapsed windows from each person's first start event (with cumulative
        # retention, refused alike; mostly drawn without it).
        rf["timeWindowMode"] = "24_hour_windows"
        if draw(st.integers(0, 4)):
            rf.pop("cumulative", None)
    elif draw(st.integers(0, 9)) == 0:
        rf["timeWindowMode"] = "strict_calendar_dates"
    if draw(st.integers(0, 4)) == 0:
        rf["minimumOccurrences"] = draw(st.integers(1, 3))
    query: dict[str, Any] = {"kind": "RetentionQuery", "retentionFilter": rf}
    shape = draw(st.integers(0, 4))
    if shape == 1:
        query["dateRange"] = {"date_from": draw(st.sampled_from(_FROMS[period]))}
    elif shape == 2:
        query["dateRange"] = {"date_to": draw(st.sampled_from(_TOS[period]))}
    elif shape == 3:
        date_from, date_to = draw(st.sampled_from(_RANGES[period]))
        query["dateRange"] = {"date_from": date_from, "date_to": date_to}
    if breakdown:
        bf: dict[str, Any] = {}
        if draw(st.integers(0, 3)) == 0:
            bf["breakdown"], bf["breakdown_type"] = "tier", "person"
        elif draw(st.integers(0, 4)) == 0:
            bf["breakdowns"] = [{"property": "browser", "type": "event"}]
        else:
            bf["breakdown"] = "browser"
            if draw(st.booleans()):
                bf["breakdown_type"] = "event"
        if draw(st.booleans()):
            bf["breakdown_limit"] = draw(st.integers(1, 3))
        if draw(st.integers(0, 4)) == 0:
            bf["breakdown_hide_other_aggregation"] = True
        query["breakdownFilter"] = bf
    if draw(st.integers(0, 6)) == 0:
        query["properties"] = [dict(draw(st.sampled_from(_QUERY_FILTERS)))]
    if draw(st.integers(0, 5)) == 0:
        query["filterTestAccounts"] = True
    if draw(st.integers(0, 4)) == 4:  # the largest value: hypothesis favours the smallest
        # Retention of groups: each event's $group_0 key (some have none), persons merged per key.
        query["aggregation_group_type_index"] = 0
    return query, actions


@st.composite
def retention_cases(draw: st.DrawFn, breakdown: bool = False, with_actions: bool = False) -> RetentionCase:
    """A retention query and the events of a few persons around its window."""
    query, actions = draw(_query(breakdown, with_actions))
    now = draw(st.sampled_from(NOWS))
    timezone = draw(st.sampled_from(TIMEZONES))
    week_start_day = draw(st.sampled_from([0, 1]))
    lower, upper = window(query, timezone=timezone, week_start_day=week_start_day, now=now)
    span = int((upper - lower).total_seconds())
    rf = query["retentionFilter"]
    names = []
    for entity in (rf.get("targetEntity"), rf.get("returningEntity")):
        if entity is None:
            names.append("$pageview")
        elif isinstance(entity.get("id"), int):
            names.extend(step["event"] for step in actions[entity["id"]]["steps"])
        elif isinstance(entity.get("id"), str):
            names.append(entity["id"])
    names = names or list(EVENTS)
    tiers = {p: draw(st.sampled_from(["free", "pro", "Pro"])) for p in PERSONS}
    # Test accounts (posthog.com) are one person in four, so filterTestAccounts keeps most people.
    emails = {
        p: draw(st.sampled_from(["a@example.com", "b@example.com", "c@example.com", "test@posthog.com"]))
        for p in PERSONS
    }
    events: list[Event] = []
    for person in PERSONS[: draw(st.integers(2, len(PERSONS)))]:
        for _ in range(draw(st.integers(1, 8))):
            where = draw(st.integers(0, 11))
            if where == 0:
                when = lower - dt.timedelta(
                    seconds=draw(st.integers(1, max(span, 3600)))
                )  # before the window
            elif where == 1:
                when = upper + dt.timedelta(seconds=draw(st.integers(0, 3600)))  # at or after its end
            elif where == 2:
                when = draw(
                    st.sampled_from([lower, upper - dt.timedelta(microseconds=1)])
                )  # the window's edges
            else:
                when = lower + dt.timedelta(seconds=draw(st.integers(0, span - 1)))
            name = draw(st.sampled_from(names)) if draw(st.integers(0, 4)) else draw(st.sampled_from(EVENTS))
            props: dict[str, Any] = {}
            browser = draw(st.sampled_from(BROWSERS))
            if browser or draw(st.booleans()):
                props["browser"] = browser
            if draw(st.booleans()):
                props["plan"] = draw(st.sampled_from(["pro", "free"]))
            company = draw(st.sampled_from(["acme", "globex", "", None]))
            if company is not None:
                props["$group_0"] = company
            n = len(events)
            events.append(
                Event(
                    uuid=f"00000000-0000-4000-8000-{n:012d}",
                    event=name,
                    distinct_id=f"d-{person}",
                    person_id=person,
                    timestamp=when,
                    properties=props,
                    person_properties={"tier": tiers[person], "email": emails[person]},
                )
            )
    return RetentionCase(events, query, timezone, week_start_day, now, actions)
