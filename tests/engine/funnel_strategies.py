"""Hypothesis strategies for funnels: small random event sets shaped to exercise the funnel rules.

Events sit on a grid of fractions of the conversion window, so that conversions land exactly on
the window's edge, several attempts overlap, and distinct steps share one instant (ties). Most
events carry a step's event name (a few are noise, which breaks strict funnels), persons repeat
steps, and a share of every choice stays fully random, so empty results are compared too.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.engine.strategies import NOWS, TEST_ACCOUNT_FILTERS, TIMEZONES, property_filter
from tests.oracle import Event, OracleError, resolve_date_range
from tests.oracle.funnels import UNIT_SECONDS

STEP_EVENTS = ("a", "b", "c", "$pageview")
NOISE_EVENTS = ("x", "noise")
PERSONS = ("p0", "p1", "p2", "p3", "p4", "p5")
BROWSERS = ("Chrome", "Firefox", "Safari", "")
UNITS = tuple(UNIT_SECONDS)

URLS = ("https://x.com/a", "https://x.com/b?q=1", "https://y.org/a")
# Parts of an action step beside its event name: URL tests (each matching) and property filters.
_URL_PARTS = (
    {"url": "x.com", "url_matching": "contains"},
    {"url": "https://x.com/a", "url_matching": "exact"},
    {"url": r"^https://[xy]\.\w+/a$", "url_matching": "regex"},
)

__all__ = [
    "TEST_ACCOUNT_FILTERS",
    "FunnelCase",
    "funnel_action_cases",
    "funnel_actor_cases",
    "funnel_cases",
    "funnel_expression_cases",
    "funnel_trends_cases",
    "time_to_convert_cases",
    "unordered_cases",
]


@dataclass
class FunnelCase:
    events: list[Event]
    query: dict[str, Any]
    timezone: str
    week_start_day: int
    now: dt.datetime
    # The environment's live actions by id (reference JSON) the steps and exclusions may name.
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)


_STEP_FILTERS = (
    {"key": "browser", "operator": "exact", "value": "Chrome"},
    {"key": "browser", "operator": "is_set"},
    {"key": "browser", "operator": "is_not", "value": "Firefox"},
    {"key": "plan", "operator": "exact", "value": "pro"},
    {"key": "tier", "operator": "exact", "value": "pro", "type": "person"},
)


@st.composite
def _step(draw: st.DrawFn, names: list[str]) -> dict[str, Any]:
    node: dict[str, Any] = {"kind": "EventsNode"}
    if draw(st.integers(0, 12)):
        node["event"] = draw(st.sampled_from(names))
    if draw(st.integers(0, 4)) == 0:
        node["properties"] = [dict(draw(st.sampled_from(_STEP_FILTERS)))]
    if draw(st.integers(0, 8)) == 0:
        node["custom_name"] = draw(st.sampled_from(["Signed up", "Ünïcode step"]))
    return node


@st.composite
def _funnel(draw: st.DrawFn, breakdown: bool) -> tuple[dict[str, Any], int]:
    """A query and its window in seconds."""
    names = list(STEP_EVENTS[: draw(st.integers(2, 4))])
    n = draw(st.integers(2, 4))
    series = [draw(_step(names)) for _ in range(n)]
    order = draw(st.sampled_from(["ordered", "ordered", "strict", "unordered"]))
    unit = draw(st.sampled_from(UNITS))
    interval = draw(st.integers(1, 3))
    ff: dict[str, Any] = {"funnelWindowInterval": interval, "funnelWindowIntervalUnit": unit}
    if order != "ordered" or draw(st.booleans()):
        ff["funnelOrderType"] = order
    if order != "unordered" and n > 2 and draw(st.integers(0, 2)) == 0:
        for k in draw(st.sets(st.integers(1, n - 2), min_size=1, max_size=2)):
            if draw(st.integers(0, 3)) == 0 or series[k].get("event") != series[k + 1].get("event"):
                series[k]["optionalInFunnel"] = True
    if draw(st.integers(0, 2)) == 0:
        if order == "unordered" and draw(st.integers(0, 9)):
            start, end = 0, n - 1  # unordered funnels take full-range exclusions only (else refused)
        else:
            start = draw(st.integers(0, n - 2))
            end = draw(st.integers(start + 1, n - 1))
        exclusion: dict[str, Any] = {
            "kind": "EventsNode",
            # Mostly an event no step takes; a step's event sometimes (refused inside its range).
            "event": draw(st.sampled_from(NOISE_EVENTS)) if draw(st.integers(0, 4)) else draw(st.sampled_from(names)),
            "funnelFromStep": start,
            "funnelToStep": end,
        }
        if draw(st.integers(0, 3)) == 0:
            exclusion["properties"] = [dict(draw(st.sampled_from(_STEP_FILTERS)))]
        ff["exclusions"] = [exclusion]
    query: dict[str, Any] = {"kind": "FunnelsQuery", "series": series, "funnelsFilter": ff}
    if breakdown:
        bf: dict[str, Any] = {}
        if draw(st.integers(0, 3)) == 0:
            bf["breakdowns"] = [{"property": "browser", "type": "event"}, {"property": "tier", "type": "person"}]
        elif draw(st.integers(0, 3)) == 0:
            bf["breakdown"], bf["breakdown_type"] = "tier", "person"
        else:
            bf["breakdown"] = "browser"
            if draw(st.booleans()):
                bf["breakdown_type"] = "event"
        if draw(st.booleans()):
            bf["breakdown_limit"] = draw(st.integers(1, 3))
        query["breakdownFilter"] = bf
        attribution = draw(st.sampled_from(["first_touch", "last_touch", "all_events", "step", None]))
        if attribution is not None:
            ff["breakdownAttributionType"] = attribution
        if attribution == "step":
            ff["breakdownAttributionValue"] = 0 if order == "unordered" else draw(st.integers(0, n - 1))
    if draw(st.integers(0, 7)) == 0:
        query["properties"] = [draw(property_filter()) if draw(st.integers(0, 2)) == 0 else dict(draw(st.sampled_from(_STEP_FILTERS)))]
    if draw(st.integers(0, 4)) == 0:
        query["filterTestAccounts"] = True
    return query, interval * UNIT_SECONDS[unit]


@st.composite
def funnel_cases(draw: st.DrawFn, breakdown: bool = False, long: bool = False) -> FunnelCase:
    """A funnel and the events of a few persons, placed on a grid of fractions of its window.

    `long`: up to 40 events per person over 40 grid slots, most of them off the grid (so that
    each person makes many attempts, mostly without ties)."""
    query, window = draw(_funnel(breakdown))
    most, slots, spans = (40, 40, 45) if long else (8, 10, 15)
    now = draw(st.sampled_from(NOWS))
    timezone = draw(st.sampled_from(TIMEZONES))
    # Every grid slot below fits in the range (fifteen windows, at least two days; 45 when long),
    # so attempts start, convert and expire inside it.
    span_days = max(2, -(-spans * window // 86400) + 1)
    query["dateRange"] = {"date_from": f"-{span_days}d"}
    try:
        rng = resolve_date_range(query["dateRange"], timezone=timezone, week_start_day=0, now=now)
    except OracleError:  # pragma: no cover - relative ranges always resolve
        rng = None
    assert rng is not None
    step_names = sorted({s["event"] for s in query["series"] if "event" in s}) or list(STEP_EVENTS[:2])
    entry = query["series"][0].get("event") or step_names[0]
    grid_us = window * 1_000_000 // draw(st.sampled_from([1, 2, 3, 4]))
    first = rng.lower + dt.timedelta(seconds=draw(st.integers(0, 3600)))
    events: list[Event] = []
    persons = {p: {"tier": draw(st.sampled_from(["free", "pro", "Pro"]))} for p in PERSONS}
    for person in PERSONS[: draw(st.integers(1, len(PERSONS)))]:
        start = first + dt.timedelta(microseconds=grid_us * draw(st.integers(0, 4)))
        person_events: list[Event] = []
        for _ in range(draw(st.integers(0, most))):
            slot = draw(st.integers(0, slots))
            # Short streams sit on the grid four times in five, long ones one in five.
            on_grid = draw(st.integers(0, 4)) != 0
            spread = grid_us // 2 if long else 1_000_000
            jitter = 0 if on_grid != long else draw(st.integers(-spread, spread))
            when = start + dt.timedelta(microseconds=grid_us * slot + jitter)
            if draw(st.integers(0, 9)) == 0:
                when = rng.lower - dt.timedelta(seconds=draw(st.integers(1, 3600)))  # before the range
            name = draw(st.sampled_from(step_names)) if draw(st.integers(0, 5)) else draw(st.sampled_from(NOISE_EVENTS))
            if not person_events and draw(st.integers(0, 2)):
                name = entry  # most persons start with the first step's event
            props: dict[str, Any] = {}
            browser = draw(st.sampled_from(BROWSERS))
            if browser or draw(st.booleans()):
                props["browser"] = browser
            if draw(st.integers(0, 3)) == 0:
                props["plan"] = draw(st.sampled_from(["pro", "free"]))
            n = len(events) + len(person_events)
            person_events.append(
                Event(
                    uuid=f"00000000-0000-4000-8000-{n:012d}",
                    event=name,
                    distinct_id=f"d-{person}",
                    person_id=person,
                    timestamp=when,
                    properties=props,
                    person_properties=dict(persons[person]),
                )
            )
        events.extend(person_events)
    return FunnelCase(events, query, timezone, 0, now)


@st.composite
def _action_step(draw: st.DrawFn, event: str | None, names: list[str]) -> dict[str, Any]:
    """An action step around `event` (the step's own event name, mostly kept, so the action
    usually selects the events drawn for that step): maybe a URL test or a property filter."""
    step: dict[str, Any] = {}
    if event is not None and draw(st.integers(0, 5)):
        step["event"] = event
    elif draw(st.booleans()):
        step["event"] = draw(st.sampled_from(names))
    if draw(st.integers(0, 3)) == 0:
        step.update(draw(st.sampled_from(_URL_PARTS)))
    if draw(st.integers(0, 4)) == 0:
        step["properties"] = [dict(draw(st.sampled_from(_STEP_FILTERS)))]
    return step


@st.composite
def funnel_action_cases(draw: st.DrawFn, breakdown: bool = False) -> FunnelCase:
    """A funnel case whose steps (the first always, others one in two) and exclusions (one in
    two) become ActionsNodes of actions drawn around their event (keeping their filters, custom
    names and optional flags); events get URLs; one in ten names an action that does not exist."""
    case = draw(funnel_cases(breakdown))
    for e in case.events:
        if draw(st.integers(0, 2)):
            e.properties["$current_url"] = draw(st.sampled_from(URLS))
    names = sorted({e.event for e in case.events}) or list(STEP_EVENTS[:2])
    missing = draw(st.integers(0, 9)) == 0

    def as_action(node: dict[str, Any]) -> dict[str, Any]:
        event = node.get("event")
        # Nodes of one event share one action (so that a step can equal an exclusion or the next step).
        key = event or "*"
        found = next((a for a in case.actions.values() if a["key"] == key), None)
        if found is None:
            steps = draw(st.lists(_action_step(event, names), min_size=1, max_size=2))
            action_id = len(case.actions) + 1
            name = draw(st.sampled_from(["Clicked", "Ünïcode action"])) + f" {action_id}"
            found = case.actions[action_id] = {"id": action_id, "name": name, "steps": steps, "key": key}
        kept = {k: v for k, v in node.items() if k not in ("kind", "event", "name")}
        return {"kind": "ActionsNode", "id": 99 if missing and draw(st.booleans()) else found["id"], **kept}

    series = case.query["series"]
    for i, node in enumerate(series):
        if i == 0 or draw(st.booleans()):
            series[i] = as_action(node)
    for i, node in enumerate(case.query["funnelsFilter"].get("exclusions") or []):
        if draw(st.booleans()):
            case.query["funnelsFilter"]["exclusions"][i] = as_action(node)
    for action in case.actions.values():
        del action["key"]
    return case


@st.composite
def time_to_convert_cases(draw: st.DrawFn) -> FunnelCase:
    """A funnel case (no breakdown) with the time_to_convert visualisation: a random step range
    (often the default), and binCount absent, in range or out of it (clamped)."""
    case = draw(funnel_cases(breakdown=False))
    ff = case.query["funnelsFilter"]
    ff["funnelVizType"] = "time_to_convert"
    n = len(case.query["series"])
    if ff.get("funnelOrderType") == "unordered" and draw(st.integers(0, 7)):
        # An unordered funnel credits an event to the first step it matches, so steps that repeat
        # an event or match all events are never all completed: mostly give each step its own.
        for step, name in zip(case.query["series"], draw(st.permutations(STEP_EVENTS)), strict=False):
            step["event"] = name
    if n > 2 and draw(st.integers(0, 3)):
        # Mostly a range ending before the last step (more persons reach it: non-zero bins).
        start = draw(st.integers(0, n - 2))
        if start or draw(st.booleans()):
            ff["funnelFromStep"] = start
        ff["funnelToStep"] = start + 1 if draw(st.integers(0, 2)) else draw(st.integers(start + 1, n - 1))
    if draw(st.booleans()):
        ff["binCount"] = draw(st.sampled_from([-1, 0, 1, 2, 3, 7, 90, 120]))
    # Random persons seldom complete every step: most examples add a few who walk the steps in
    # order inside the window (their own, so strict funnels keep them), at random gaps.
    window_us = ff["funnelWindowInterval"] * UNIT_SECONDS[ff["funnelWindowIntervalUnit"]] * 1_000_000
    rng = resolve_date_range(case.query["dateRange"], timezone=case.timezone, week_start_day=0, now=case.now)
    for c in range(draw(st.integers(1, 3)) if draw(st.integers(0, 9)) < 9 else 0):
        when = rng.lower + dt.timedelta(seconds=draw(st.integers(0, 86400)))
        for k, step in enumerate(case.query["series"]):
            if k:
                when += dt.timedelta(microseconds=draw(st.integers(0, window_us // (n - 1))))
            case.events.append(
                Event(
                    uuid=f"00000000-0000-4000-9000-{c * 100 + k:012d}",
                    event=step.get("event") or STEP_EVENTS[0],
                    distinct_id=f"d-walker{c}",
                    person_id=f"walker{c}",
                    timestamp=when,
                    properties={"browser": "Chrome", "plan": "pro"},
                    person_properties={"tier": "pro", "email": "walker@example.com"},
                )
            )
    walkers = [e for e in case.events if e.person_id.startswith("walker")]
    if walkers and "properties" in case.query and draw(st.integers(0, 3)):
        # A random query filter mostly drops the walkers too: mostly one a walker's event passes.
        case.query["properties"] = [draw(property_filter(witness=draw(st.sampled_from(walkers))))]
    return case


SESSIONS = ("s1", "s2", "s3", "s4")
COMPANIES = ("acme", "initech", "umbrella")
# funnelAggregateByHogQL values: the session expression (and whitespace variants), the person one.
_EXPRESSIONS = ("properties.$session_id", "properties.$session_id", " properties . $session_id ", "person_id")


@st.composite
def funnel_actor_cases(draw: st.DrawFn, breakdown: bool = False) -> FunnelCase:
    """A funnel case with first-time steps (some steps, with their event also happening before
    the range now and then, so the in-range one is not the first) and who is counted: persons, a
    group type's keys (`$group_0`/`$group_1`, shared by persons, sometimes missing or empty) or
    sessions (`$session_id`, mostly one per person's stretch of events, sometimes missing)."""
    case = draw(funnel_cases(breakdown))
    series = case.query["series"]
    for node in series:
        if draw(st.integers(0, 2)) == 0:
            node["math"] = draw(st.sampled_from(["first_time_for_user", "first_time_for_user_with_filters"]))
            if "properties" not in node and draw(st.booleans()):
                # Filters are where the two first-time maths differ.
                node["properties"] = [dict(draw(st.sampled_from(_STEP_FILTERS[:3])))]
    rng = resolve_date_range(case.query["dateRange"], timezone=case.timezone, week_start_day=0, now=case.now)
    firsts = {node.get("event") for node in series if "math" in node}
    earlier: list[Event] = []
    for person in sorted({e.person_id for e in case.events}):
        mine = [e for e in case.events if e.person_id == person and (e.event in firsts or None in firsts)]
        if mine and draw(st.integers(0, 4)) == 0:
            # One of its events again before the range: the person's in-range one is not the first.
            e = draw(st.sampled_from(mine))
            earlier.append(
                Event(
                    uuid=e.uuid.replace("-8000-", "-a000-"),
                    event=e.event,
                    distinct_id=e.distinct_id,
                    person_id=e.person_id,
                    timestamp=rng.lower - dt.timedelta(days=draw(st.integers(1, 30))),
                    properties=dict(e.properties),
                    person_properties=dict(e.person_properties),
                )
            )
    case.events.extend(earlier)
    how = draw(st.sampled_from(["person", "group", "session", "session"]))
    ff = case.query["funnelsFilter"]
    if how == "group":
        # Hypothesis draws the smallest integer far more often than its share: the rare invalid
        # choice is the largest one.
        index = draw(st.sampled_from([0, 0, 1])) if draw(st.integers(0, 19)) < 19 else 5  # 5: invalid
        case.query["aggregation_group_type_index"] = index
        companies = {e.person_id: draw(st.sampled_from(COMPANIES)) for e in case.events}
        for e in case.events:
            roll = draw(st.integers(0, 9))
            if roll == 0:
                e.properties["$group_0"] = draw(st.sampled_from(["", None]))
            elif roll > 1:  # one in ten has none at all
                e.properties["$group_0"] = companies[e.person_id]
            if draw(st.booleans()):
                e.properties["$group_1"] = draw(st.sampled_from(COMPANIES))
    elif how == "session":
        ff["funnelAggregateByHogQL"] = draw(st.sampled_from(_EXPRESSIONS)) if draw(st.integers(0, 19)) < 19 else "count()"
        # A person's session changes now and then along its events (in time order); sessions are
        # shared by persons sometimes.
        current: dict[str, str] = {}
        for e in sorted(case.events, key=lambda x: x.timestamp):
            if e.person_id not in current or draw(st.integers(0, 4)) == 0:
                current[e.person_id] = draw(st.sampled_from(SESSIONS)) + (
                    "" if draw(st.integers(0, 3)) == 0 else f"-{e.person_id}"
                )
            if draw(st.integers(0, 9)):
                e.properties["$session_id"] = current[e.person_id]
            elif draw(st.booleans()):
                e.properties["$session_id"] = ""
    elif draw(st.booleans()):
        ff["funnelAggregateByHogQL"] = "person_id"
    return case


@st.composite
def funnel_trends_cases(draw: st.DrawFn) -> FunnelCase:
    """A funnel case (with a breakdown one in two) with the trends visualisation: an interval
    (hours only over short ranges), a week start, a random step range (often the default), and
    persons who enter again and again at random times of the range (so that one person enters in
    several periods), walking the steps in order inside the window, sometimes stopping early."""
    case = draw(funnel_cases(breakdown=draw(st.booleans())))
    ff = case.query["funnelsFilter"]
    ff["funnelVizType"] = "trends"
    if ff.get("funnelOrderType") == "unordered" and draw(st.integers(0, 7)) < 7:
        # An unordered funnel credits an event to the first step it matches, so steps that repeat
        # an event or match all events are never all completed: mostly give each step its own.
        for step, name in zip(case.query["series"], draw(st.permutations(STEP_EVENTS)), strict=False):
            step["event"] = name
    if ff.get("funnelOrderType") != "unordered" and ff.get("breakdownAttributionType") == "step":
        ff["breakdownAttributionValue"] = draw(st.integers(0, len(case.query["series"]) - 1))
    span_days = int(case.query["dateRange"]["date_from"][1:-1])
    intervals = ["day", "day", "week", "month"] + (["hour", "hour"] if span_days <= 20 else [])
    interval = draw(st.sampled_from(intervals))
    if interval != "day" or draw(st.booleans()):
        case.query["interval"] = interval
    case.week_start_day = draw(st.sampled_from([0, 1]))
    n = len(case.query["series"])
    if draw(st.integers(0, 2)) == 0:
        start = draw(st.integers(0, n - 2))
        if start or draw(st.booleans()):
            ff["funnelFromStep"] = start
        ff["funnelToStep"] = draw(st.integers(start + 1, n - 1))
    window_us = ff["funnelWindowInterval"] * UNIT_SECONDS[ff["funnelWindowIntervalUnit"]] * 1_000_000
    rng = resolve_date_range(case.query["dateRange"], timezone=case.timezone, week_start_day=0, now=case.now)
    span_us = int((rng.upper - rng.lower).total_seconds() * 1_000_000)
    for c in range(draw(st.integers(1, 4))):
        # Mostly a browser every step filter drawn passes, so that walkers mostly convert.
        browser = "Chrome" if draw(st.integers(0, 2)) else draw(st.sampled_from(BROWSERS))
        for attempt in range(draw(st.integers(1, 3))):
            when = rng.lower + dt.timedelta(microseconds=draw(st.integers(0, span_us)))
            last = n - 1 if draw(st.integers(0, 2)) else draw(st.integers(0, n - 1))
            for k, step in enumerate(case.query["series"][: last + 1]):
                if k:
                    when += dt.timedelta(microseconds=draw(st.integers(0, window_us // (n - 1))))
                case.events.append(
                    Event(
                        uuid=f"00000000-0000-4000-9000-{c * 1000 + attempt * 100 + k:012d}",
                        event=step.get("event") or STEP_EVENTS[0],
                        distinct_id=f"d-walker{c}",
                        person_id=f"walker{c}",
                        timestamp=when,
                        properties={"browser": browser, "plan": "pro"},
                        person_properties={"tier": "pro", "email": "walker@example.com"},
                    )
                )
    return case


@st.composite
def unordered_cases(draw: st.DrawFn, trends: bool = False) -> FunnelCase:
    """An unordered funnel case (steps, or the trends visualisation): each step mostly its own
    event (an event counts for the first step it matches, so repeated events never complete every
    step), a full-range exclusion one in two (mostly a noise event, sometimes a step's: refused),
    with a breakdown one in two, attributed to step 0 one in two, and walkers who do the steps
    in a random order inside the window, some with an exclusion event in between."""
    case = draw(funnel_trends_cases() if trends else funnel_cases(breakdown=draw(st.booleans())))
    query, ff = case.query, case.query["funnelsFilter"]
    ff["funnelOrderType"] = "unordered"
    series = query["series"]
    for node in series:
        node.pop("optionalInFunnel", None)
    n = len(series)
    if draw(st.integers(0, 7)) < 7:  # Hypothesis favours the smallest integer: the rare choice is 7
        for step, name in zip(series, draw(st.permutations(STEP_EVENTS)), strict=False):
            step["event"] = name
    ff.pop("exclusions", None)
    if draw(st.booleans()):
        exclusion: dict[str, Any] = {"kind": "EventsNode", "funnelFromStep": 0, "funnelToStep": n - 1}
        exclusion["event"] = draw(st.sampled_from(NOISE_EVENTS)) if draw(st.integers(0, 9)) < 9 else series[0].get("event", "a")
        if draw(st.integers(0, 4)) == 0:
            exclusion["properties"] = [dict(draw(st.sampled_from(_STEP_FILTERS)))]
        ff["exclusions"] = [exclusion]
    if "breakdownFilter" not in query and draw(st.booleans()):
        query["breakdownFilter"] = {"breakdown": "browser"}
    if "breakdownFilter" in query and draw(st.booleans()):
        ff["breakdownAttributionType"], ff["breakdownAttributionValue"] = "step", 0
    elif ff.get("breakdownAttributionType") == "step":
        ff["breakdownAttributionValue"] = 0
    window_us = ff["funnelWindowInterval"] * UNIT_SECONDS[ff["funnelWindowIntervalUnit"]] * 1_000_000
    rng = resolve_date_range(query["dateRange"], timezone=case.timezone, week_start_day=0, now=case.now)
    span_us = int((rng.upper - rng.lower).total_seconds() * 1_000_000)
    excluded = [e["event"] for e in ff.get("exclusions") or []]
    for c in range(draw(st.integers(1, 4))):
        # Mostly a browser every step filter drawn passes, now and then another one (so that the
        # value at an attempt's first event differs from its other events').
        browser = "Chrome" if draw(st.integers(0, 2)) else draw(st.sampled_from(BROWSERS))
        for attempt in range(draw(st.integers(1, 2))):
            when = rng.lower + dt.timedelta(microseconds=draw(st.integers(0, span_us)))
            names = [s.get("event") or STEP_EVENTS[0] for s in draw(st.permutations(series))]
            names = names[: draw(st.integers(1, n))] if draw(st.integers(0, 2)) == 0 else names
            if excluded and draw(st.integers(0, 2)) == 0:
                names.insert(draw(st.integers(0, len(names))), excluded[0])
            for k, name in enumerate(names):
                if k:
                    when += dt.timedelta(microseconds=draw(st.sampled_from([0, window_us // (2 * n), window_us // n])))
                case.events.append(
                    Event(
                        uuid=f"00000000-0000-4000-b000-{c * 1000 + attempt * 100 + k:012d}",
                        event=name,
                        distinct_id=f"d-unordered{c}",
                        person_id=f"unordered{c}",
                        timestamp=when,
                        properties={"browser": browser if draw(st.integers(0, 3)) else "Firefox", "plan": "pro"},
                        person_properties={"tier": "pro", "email": "walker@example.com"},
                    )
                )
    return case


ACCOUNTS = ("acme", "Acme", " acme", "initech")
_LITERALS = ("'x'", "'-'", "'Pro'", "'it''s'", "'acme'")
# Refused alike by the engine and the oracle: an aggregate, an unknown field, text that does not parse.
_INVALID_EXPRESSIONS = ("count()", "nosuchfield", "lower(properties.account")


def _expression(draw: st.DrawFn, depth: int) -> str:
    """A string expression of the event, from the part of HogQL the oracle evaluates
    (tests/oracle/expressions.py): fields, literals and calls that mostly keep a value."""
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(
            st.sampled_from(
                [
                    "properties.account",
                    "properties.account",
                    "properties.browser",
                    "properties.plan",
                    "person.properties.tier",
                    "event",
                    "distinct_id",
                    draw(st.sampled_from(_LITERALS)),
                ]
            )
        )

    def sub() -> str:
        return _expression(draw, depth - 1)

    shape = draw(st.integers(0, 10))
    if shape <= 2:
        return f"{draw(st.sampled_from(['lower', 'upper', 'trim', 'toString']))}({sub()})"
    if shape <= 4:
        return f"concat({sub()}, {draw(st.sampled_from(_LITERALS))}, {sub()})" if draw(st.booleans()) else f"concat({sub()}, {sub()})"
    if shape <= 6:
        return f"{draw(st.sampled_from(['coalesce', 'ifNull', 'nullIf']))}({sub()}, {sub()})"
    if shape <= 8:
        return f"if({sub()} {draw(st.sampled_from(['=', '!=']))} {sub()}, {sub()}, {sub()})"
    return f"substring({sub()}, {draw(st.integers(1, 3))}, {draw(st.integers(1, 4))})"


@st.composite
def funnel_expression_cases(draw: st.DrawFn, breakdown: bool = False) -> FunnelCase:
    """A funnel case counting the values of a drawn HogQL expression (`funnelAggregateByHogQL`):
    an account shared by persons (its case and spaces vary, so lower/trim fold values), the
    browser, plan and person tier, sometimes missing, combined by string calls; now and then an
    expression both refuse. With `breakdown`: half the time by persons, and mostly a hogql
    breakdown (alone or beside the browser)."""
    case = draw(funnel_cases(breakdown))
    accounts = {p: draw(st.sampled_from(ACCOUNTS)) for p in PERSONS}
    for e in case.events:
        roll = draw(st.integers(0, 9))
        if roll == 0:
            e.properties["account"] = draw(st.sampled_from(["", None]))
        elif roll > 1:  # one in ten has none
            e.properties["account"] = accounts[e.person_id] if draw(st.integers(0, 3)) else draw(st.sampled_from(ACCOUNTS))
    def drawn() -> str:
        if draw(st.integers(0, 19)) == 0:
            return draw(st.sampled_from(_INVALID_EXPRESSIONS))
        return _expression(draw, draw(st.integers(0, 2)))

    if not breakdown or draw(st.booleans()):
        case.query["funnelsFilter"]["funnelAggregateByHogQL"] = drawn()
    bf = case.query.get("breakdownFilter")
    if bf is not None and draw(st.integers(0, 2)):
        # A hogql breakdown: alone, or one of two dimensions.
        bf.pop("breakdown", None)
        bf.pop("breakdown_type", None)
        bf.pop("breakdowns", None)
        if draw(st.booleans()):
            bf["breakdown"], bf["breakdown_type"] = drawn(), "hogql"
        else:
            bf["breakdowns"] = [{"property": "browser", "type": "event"}, {"property": drawn(), "type": "hogql"}]
    return case
