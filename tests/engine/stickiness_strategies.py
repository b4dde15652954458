"""Hypothesis strategies for stickiness: a few persons active in some of a query's periods.

The query (interval, intervalCount, series, criteria, date range) is drawn first; its window comes
from the oracle. Persons then get events mostly inside the window on the series' event names, in
bursts on a few buckets (so actors are active in 1, 2, 3... periods and criteria on the number of
events per period matter), a few at the window's edges, before and after it. A share of every
choice stays fully random, so empty results are compared too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.engine.strategies import NOWS, TEST_ACCOUNT_FILTERS, TIMEZONES
from tests.oracle import Event
from tests.oracle.trends import resolve_date_range

EVENTS = ("$pageview", "signup", "purchase")
PERSONS = ("p0", "p1", "p2", "p3", "p4", "p5")
BROWSERS = ("Chrome", "Firefox", "Safari 17", "")
INTERVALS = ("hour", "day", "week", "month")
_FROMS = {
    "hour": ("-6h", "-12h", "-1d"),
    "day": ("-3d", "-6d", "-14d"),
    "week": ("-3w", "-5w", "-20d"),
    "month": ("-2m", "-4m", "-75d"),
}
_TOS = {"hour": ("-2h",), "day": ("-2d",), "week": ("-1w",), "month": ("-1m",)}
_FILTERS = (
    {"key": "browser", "operator": "exact", "value": "Chrome"},
    {"key": "browser", "operator": "is_set"},
    {"key": "plan", "operator": "exact", "value": "pro"},
    {"key": "tier", "operator": "exact", "value": "pro", "type": "person"},
)
_QUERY_FILTERS = (
    {"key": "browser", "operator": "is_not", "value": "Firefox"},
    {"key": "tier", "operator": "exact", "value": ["pro", "free"], "type": "person"},
)

__all__ = ["TEST_ACCOUNT_FILTERS", "StickinessCase", "stickiness_cases"]


@dataclass
class StickinessCase:
    events: list[Event]
    query: dict[str, Any]
    timezone: str
    week_start_day: int
    now: dt.datetime
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)


@st.composite
def _series(draw: st.DrawFn, actions: dict[int, dict[str, Any]], with_actions: bool) -> dict[str, Any]:
    if with_actions and draw(st.integers(0, 2)):
        action_id = len(actions) + 1
        names = draw(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=2, unique=True))
        steps: list[dict[str, Any]] = [{"event": n} for n in names]
        if draw(st.integers(0, 2)) == 0:
            steps[0]["properties"] = [dict(draw(st.sampled_from(_FILTERS)))]
        actions[action_id] = {"id": action_id, "name": f"Action {action_id}", "steps": steps}
        node: dict[str, Any] = {"kind": "ActionsNode", "id": action_id}
    else:
        node = {"kind": "EventsNode", "event": draw(st.sampled_from(EVENTS))}
        if draw(st.integers(0, 10)) == 0:
            node["event"] = None  # every event
    if draw(st.integers(0, 4)) == 0:
        node["properties"] = [dict(draw(st.sampled_from(_FILTERS)))]
    if draw(st.integers(0, 5)) == 0:
        node["custom_name"] = "My series"
    return node


@st.composite
def _query(draw: st.DrawFn, with_actions: bool) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    actions: dict[int, dict[str, Any]] = {}
    interval = draw(st.sampled_from(INTERVALS))
    query: dict[str, Any] = {"kind": "StickinessQuery"}
    if interval != "day" or draw(st.booleans()):
        query["interval"] = interval
    query["series"] = [draw(_series(actions, with_actions)) for _ in range(draw(st.integers(1, 3)))]
    if interval != "week" and draw(st.integers(0, 3)) == 0:
        query["intervalCount"] = draw(st.integers(1, 3))
    sf: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        sf["stickinessCriteria"] = {
            "operator": draw(st.sampled_from(["gte", "lte", "exact"])),
            "value": draw(st.integers(1, 3)),
        }
    if draw(st.integers(0, 3)) == 0:
        sf["computedAs"] = "cumulative"
    elif draw(st.integers(0, 5)) == 0:
        sf["computedAs"] = "non_cumulative"
    if sf:
        query["stickinessFilter"] = sf
    shape = draw(st.integers(0, 3))
    if shape == 1:
        query["dateRange"] = {"date_from": draw(st.sampled_from(_FROMS[interval]))}
    elif shape == 2:
        query["dateRange"] = {
            "date_from": draw(st.sampled_from(_FROMS[interval])),
            "date_to": draw(st.sampled_from(_TOS[interval])),
        }
    if draw(st.integers(0, 4)) == 0:
        query["compareFilter"] = {"compare": True}
        if draw(st.integers(0, 3)) == 0:
            query["compareFilter"]["compare_to"] = draw(st.sampled_from(["-1d", "-1w", "-1m"]))
    if draw(st.integers(0, 5)) == 0:
        query["properties"] = [dict(draw(st.sampled_from(_QUERY_FILTERS)))]
    if draw(st.integers(0, 5)) == 0:
        query["filterTestAccounts"] = True
    return query, actions


@st.composite
def stickiness_cases(draw: st.DrawFn, with_actions: bool = False) -> StickinessCase:
    """A stickiness query and the events of a few persons around its window."""
    query, actions = draw(_query(with_actions))
    now = draw(st.sampled_from(NOWS))
    timezone = draw(st.sampled_from(TIMEZONES))
    week_start_day = draw(st.sampled_from([0, 1]))
    rng = resolve_date_range(
        query.get("dateRange"), query.get("interval", "day"), timezone=timezone, week_start_day=week_start_day, now=now
    )
    lower, upper = rng.lower, rng.upper
    span = max(int((upper - lower).total_seconds()), 1)
    names: list[str] = []
    for node in query["series"]:
        if node["kind"] == "ActionsNode":
            names.extend(step["event"] for step in actions[node["id"]]["steps"])
        elif node.get("event") is not None:
            names.append(node["event"])
    names = names or list(EVENTS)
    tiers = {p: draw(st.sampled_from(["free", "pro", "Pro"])) for p in PERSONS}
    emails = {
        p: draw(st.sampled_from(["a@example.com", "b@example.com", "c@example.com", "test@posthog.com"]))
        for p in PERSONS
    }
    events: list[Event] = []
    for person in PERSONS[: draw(st.integers(2, len(PERSONS)))]:
        for _ in range(draw(st.integers(1, 5))):  # bursts: several events close together
            where = draw(st.integers(0, 11))
            if where == 0 or (where == 3 and "compareFilter" in query):
                # before the window (in the compared period, when there is one)
                at = lower - dt.timedelta(seconds=draw(st.integers(1, max(span, 3 * 3600))))
            elif where == 1:
                at = upper + dt.timedelta(microseconds=draw(st.integers(1, 3600 * 10**6)))
            elif where == 2:
                at = draw(st.sampled_from([lower, upper]))
            else:
                at = lower + dt.timedelta(seconds=draw(st.integers(0, span - 1)))
            for _ in range(draw(st.integers(1, 3))):
                name = draw(st.sampled_from(names)) if draw(st.integers(0, 4)) else draw(st.sampled_from(EVENTS))
                props: dict[str, Any] = {}
                browser = draw(st.sampled_from(BROWSERS))
                if browser or draw(st.booleans()):
                    props["browser"] = browser
                if draw(st.booleans()):
                    props["plan"] = draw(st.sampled_from(["pro", "free"]))
                n = len(events)
                events.append(
                    Event(
                        uuid=f"00000000-0000-4000-8000-{n:012d}",
                        event=name,
                        distinct_id=f"d-{person}",
                        person_id=person,
                        timestamp=at,
                        properties=props,
                        person_properties={"tier": tiers[person], "email": emails[person]},
                    )
                )
    return StickinessCase(events, query, timezone, week_start_day, now, actions)
