"""Hypothesis strategies for funnel paths: a paths case (paths_strategies.py) with a funnel over the
events it draws, the funnel step and the kind of paths.

The funnels use the events the sessions carry (pageviews, signup, purchase, screens) so that most
persons enter them; windows of 30 minutes to a day make the step times and the session gap (the
window) fall inside the drawn sessions; sometimes an exclusion, a strict order, a page property on
a step, a funnel range other than the paths', an optional step, a breakdown by browser (every
attribution), or a funnel of `$group_0` keys. Some persons walk through the funnel's steps (or
its first steps) with pages around them. Five cases in six drop the paths' start/end points
and edge bounds, which with the funnel's cut would leave most examples without edges.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from tests.engine.paths_strategies import GAPS, RANGES, SCREENS, URLS, PathsCase, paths_cases
from tests.oracle import Event
from tests.oracle import resolve_date_range as oracle_range
from tests.oracle.funnels import UNIT_SECONDS

STEP_EVENTS = ("$pageview", "signup", "purchase", "$screen")
WINDOWS = ((30, "minute"), (1, "hour"), (2, "hour"), (1, "day"), (1800, "second"))
KINDS = ("funnel_path_before_step", "funnel_path_after_step", "funnel_path_between_steps")


@st.composite
def _funnel(draw: st.DrawFn, date_range: dict[str, Any]) -> dict[str, Any]:
    n = draw(st.integers(2, 3))
    series: list[dict[str, Any]] = []
    for k in range(n):
        # Half the funnels start at a pageview, the commonest event, so that most persons enter.
        first = k == 0 and draw(st.booleans())
        node: dict[str, Any] = {"kind": "EventsNode", "event": "$pageview" if first else draw(st.sampled_from(STEP_EVENTS))}
        # A page filter on a first step mostly: other pages then fill the time between the steps
        # rather than start new attempts.
        if node["event"] == "$pageview" and draw(st.integers(0, 3)) < (3 if k == 0 else 1):
            node["properties"] = [{"key": "$current_url", "operator": "icontains", "value": "home", "type": "event"}]
        series.append(node)
    # Each option below is drawn at the largest value: hypothesis favours the smallest, and its
    # first, smallest examples would otherwise all carry it.
    if optional := draw(st.integers(0, 3)) == 3:
        # An optional step (not the first; never the same event as the step after it, which the
        # funnel refuses): persons may skip it, and the bounds take the steps they completed.
        k = draw(st.integers(1, n - 1))
        if k == n - 1 or series[k]["event"] != series[k + 1]["event"]:
            series[k]["optionalInFunnel"] = True
    interval, unit = draw(st.sampled_from(WINDOWS))
    ff: dict[str, Any] = {"funnelWindowInterval": interval, "funnelWindowIntervalUnit": unit}
    order = draw(st.integers(0, 4))
    if order == 0:
        ff["funnelOrderType"] = "strict"
    elif order == 4 and not optional:  # the largest value: hypothesis favours the smallest
        ff["funnelOrderType"] = "unordered"  # (unordered funnels have no optional steps)
    else:
        order = 1
    if draw(st.integers(0, 4)) == 0:
        # $autocapture is never a step: an exclusion between the first two steps (unordered
        # funnels take exclusions over every step only).
        last = n - 1 if order == 4 else 1
        ff["exclusions"] = [{"kind": "EventsNode", "event": "$autocapture", "funnelFromStep": 0, "funnelToStep": last}]
    if draw(st.integers(0, 4)) == 0:
        date_from, date_to = draw(st.sampled_from(RANGES))
        date_range = {"date_from": date_from, **({"date_to": date_to} if date_to else {})}
    query: dict[str, Any] = {"kind": "FunnelsQuery", "series": series, "funnelsFilter": ff, "dateRange": date_range}
    if draw(st.integers(0, 3)) == 3:
        # A breakdown by browser: all_events and step attribution walk a person once per value,
        # each walk at the step a span of its paths; first and last touch once.
        query["breakdownFilter"] = {"breakdown": "browser", "breakdown_type": "event"}
        attribution = draw(st.sampled_from(["all_events", "step", "first_touch", "last_touch"]))
        ff["breakdownAttributionType"] = attribution
        if attribution == "step":
            ff["breakdownAttributionValue"] = 0 if order == 4 else draw(st.integers(0, n - 1))
    if draw(st.integers(0, 4)) == 4:
        # A funnel of groups: its $group_0 keys walk, and their paths are the keys' streams.
        query["aggregation_group_type_index"] = 0
    return query


@st.composite
def funnel_paths_cases(draw: st.DrawFn) -> PathsCase:
    """A paths case following the persons of a funnel at a step (or a drop-off)."""
    case = draw(paths_cases())
    if draw(st.integers(0, 5)):
        # Five cases in six keep whole sessions: the funnel's persons and times already cut them.
        for key in ("startPoint", "endPoint", "minEdgeWeight", "maxEdgeWeight", "edgeLimit"):
            case.query["pathsFilter"].pop(key, None)
    source = draw(_funnel(case.query["dateRange"]))
    if "aggregation_group_type_index" not in source or draw(st.booleans()):
        # The paths follow the funnel's actors: the paths' own type, when given, is the funnel's
        # (another one is INVALID_ARGUMENT, test_funnel_paths_rules).
        case.query.pop("aggregation_group_type_index", None)
    else:
        case.query["aggregation_group_type_index"] = 0
    n = len(source["series"])
    kind = draw(st.sampled_from(KINDS))
    # Steps: 1..n reached; -2..-n dropped off. Between needs a step after the first.
    steps = [s for s in [*range(1, n + 1), *range(-n, -1)] if kind != "funnel_path_between_steps" or s not in (1, -2)]
    step = draw(st.sampled_from(steps))
    case.query["funnelPathsFilter"] = {"funnelSource": source, "funnelPathType": kind, "funnelStep": step}
    _journeys(draw, case, source)
    return case


def _journeys(draw: st.DrawFn, case: PathsCase, source: dict[str, Any]) -> None:
    """Adds, for some persons, a walk through the funnel's steps (or the first of them: a drop-off)
    with pages before, between and after, gaps mostly inside the window, so that most examples
    have persons at the step and pages around their step times."""
    persons = sorted({e.person_id for e in case.events})
    emails = {e.person_id: e.person_properties.get("email") for e in case.events}
    grid = oracle_range(case.query["dateRange"], "day", timezone=case.timezone, week_start_day=0, now=case.now)
    span = int((grid.upper - grid.lower).total_seconds())
    ff = source["funnelsFilter"]
    window = ff["funnelWindowInterval"] * UNIT_SECONDS[ff["funnelWindowIntervalUnit"]]
    step = case.query["funnelPathsFilter"]["funnelStep"]
    n = len(source["series"])
    for person in draw(st.lists(st.sampled_from(persons), min_size=1, max_size=3, unique=True)):
        # The walk's group (funnels of groups) and browser (breakdowns): mostly one per walk, so
        # that group and value walks find their steps.
        company = draw(st.sampled_from(["acme", "globex"]))
        browser = draw(st.sampled_from(["Chrome", "Firefox"]))
        when = grid.lower + dt.timedelta(seconds=draw(st.integers(0, max(span - 8000, 0))))
        # Half the walks stop where the drop-off asked for does.
        reached = -step - 1 if step < 0 and draw(st.booleans()) else draw(st.integers(1, n))
        steps = source["series"][:reached]
        for node in [*steps, None]:
            for i in range(draw(st.integers(0, 3))):
                gap = draw(st.sampled_from(GAPS))
                if node is None and i == 0 and draw(st.integers(0, 2)) == 0:
                    gap += window  # pages a window after the walk: what follows a drop-off
                when += dt.timedelta(seconds=gap)
                url = draw(st.sampled_from(URLS))
                case.events.append(_made(draw, person, when, "$pageview", {"$current_url": url}, emails[person], company, browser))
            if node is not None:
                when += dt.timedelta(seconds=draw(st.sampled_from(GAPS)))
                props = {"$current_url": "/home"} if node["event"] == "$pageview" else {}
                if node["event"] == "$screen":
                    props = {"$screen_name": draw(st.sampled_from(SCREENS))}
                case.events.append(_made(draw, person, when, node["event"], props, emails[person], company, browser))


def _made(
    draw: st.DrawFn, person: str, when: dt.datetime, name: str, props: dict[str, Any], email: Any, company: str, browser: str
) -> Event:
    # One event in five takes another browser (a person in two breakdown values).
    if draw(st.integers(0, 4)) == 0:
        browser = draw(st.sampled_from(["Chrome", "Firefox", "Safari 17"]))
    return Event(
        uuid=str(draw(st.uuids())),
        event=name,
        distinct_id=person,
        person_id=person,
        timestamp=when,
        properties={"browser": browser, "$group_0": company, **props},
        person_properties={"email": email},
    )
