"""Pure-Python reference computation of a PathsQuery (the "oracle").

Written from query-engine-semantics.md §8 and docs/decisions.md ("Paths") only, as a plain walk
over each person's events; it shares no code with server/queries/ and runs no SQL. The date range
and property filters come from the trends oracle (tests/oracle/trends.py), itself independent of
the engine. Cleaning regexes are applied with Python's `re` (the strategies draw only patterns
that mean the same in RE2).

API
---
``compute_paths(events, query, *, timezone, now, test_account_filters=None)`` returns the result
edges ``{source, target, value, average_conversion_time}`` heaviest first. ``pathGroupings`` are
matched as plain text with ``*`` wildcards (no regex), after the cleaning rules. A
``funnelPathsFilter`` follows the actors and step times of the funnel oracle's walks
(tests/oracle/funnels.py ``funnel_actors``: persons, or the funnel's group keys; one walk per
breakdown value, any of whose spans takes an event), sessions split at the funnel's window. With
``aggregation_group_type_index`` N the paths are those of each ``$group_N`` key (its members'
events in one stream); an event without the key is on no path.

``paths_actors(events, query, ...)`` lists the actors (sorted) of the node or edge the pathsFilter's
``pathStartKey`` / ``pathEndKey`` / ``pathDropoffKey`` pick, over the reference's per-person rows of
each path (``path_rows``: one per node with the node before it and the path's last node).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tests.oracle.expressions import evaluator
from tests.oracle.funnels import UNIT_SECONDS, funnel_actors
from tests.oracle.trends import Event, InvalidArgument, compile_properties, prop_text, resolve_date_range

SESSION_GAP_SECONDS = 1800
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _strip_slash(text: str) -> str:
    return text[:-1] if len(text) > 1 and text.endswith("/") else text


def _matches(item: str, grouping: str) -> bool:
    """Whether `item` contains a run matching `grouping`, where `*` stands for any characters and
    everything else is literal: its literal parts found left to right, each after the previous."""
    at = 0
    for part in grouping.split("*"):
        found = item.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


def _group(item: str, groupings: list[str]) -> str:
    """The first grouping `item` matches replaces it (the groupings follow the cleaning rules)."""
    for grouping in groupings:
        if _matches(item, grouping):
            return grouping
    return item


def _item(e: Event, cleaning: list[tuple[str, str]], types: set[str], expression: str | None) -> str:
    """The event's item: a $pageview's URL and a $screen's name when their type is listed (or no
    type is), else the pathsHogQLExpression's text (NULL: '') when "hogql" is listed (or no type
    is), else the event's name; then the cleaning rules."""
    if e.event == "$pageview" and (not types or "$pageview" in types):
        raw = e.properties.get("$current_url")
        item = _strip_slash(_text(raw))
    elif e.event == "$screen" and (not types or "$screen" in types):
        item = _text(e.properties.get("$screen_name"))
    elif expression:
        value = evaluator(expression)(e)
        item = "" if value is None else str(value)
    else:
        item = e.event
    for regex, alias in cleaning:
        item = re.sub(regex, alias.replace("\\", "\\\\"), item)
    return item


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _followed(e: Event, types: set[str]) -> bool:
    if not types - {"hogql"}:
        # "hogql" selects no events by itself: with no other type listed, every event is followed.
        return True
    return (
        ("$pageview" in types and e.event == "$pageview")
        or ("$screen" in types and e.event == "$screen")
        or ("custom_event" in types and not e.event.startswith("$"))
    )


def _cut(path: list[tuple[int, str]], start: str | None, end: str | None, n: int) -> list[tuple[int, str]] | None:
    """A session cut at its points and truncated to n steps; None when it lacks a point."""
    items = [item for _, item in path]
    if start is not None and end is not None:
        if start not in items:
            return None
        si = items.index(start)
        later = [j for j in range(si + 1, len(items)) if items[j] == end]
        if not later:
            return None
        path = path[si : later[0] + 1]
        if len(path) > n:
            h = n // 2
            dots = (path[h][0], "...")
            path = path[:h] + [dots] + (path[len(path) - h :] if h else [])
        return path
    if start is not None:
        if start not in items:
            return None
        return path[items.index(start) :][:n]
    if end is not None:
        if end not in items:
            return None
        path = path[: items.index(end) + 1]
        return path[-n:]
    return path[:n]


def _funnel_bounds(
    events: list[Event],
    fpf: dict[str, Any],
    timezone: str,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None,
) -> tuple[dict[str, list[tuple[int, int]]], int]:
    """Per actor of the funnel at `funnelStep`, the inclusive spans of times (µs) its paths
    follow (one per walk at the step: an actor walked per breakdown value may have several), and
    the session gap (the funnel's window, µs).

    funnelStep N > 0: walks that completed step N, bounded by step N's time; -N: walks that
    completed the last non-optional step before N and not N, bounded by the last step completed
    before N. Before: up to that time; after: from it (after a drop-off, from one window later);
    between: from the step completed before it to it (a drop-off with one step completed before
    it has none)."""
    source = fpf["funnelSource"]
    ff = source.get("funnelsFilter") or {}
    window_us = (ff.get("funnelWindowInterval") or 14) * UNIT_SECONDS[ff.get("funnelWindowIntervalUnit") or "day"] * 1_000_000
    step, kind = fpf["funnelStep"], fpf["funnelPathType"]
    target = abs(step) - 1
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    walks = funnel_actors(events, source, timezone=timezone, now=now, test_account_filters=test_account_filters)
    for walk in walks:
        done = [walk.at[k] for k in range(target) if walk.bits >> k & 1]
        if step > 0:
            if not walk.bits >> target & 1:
                continue
            to, since = walk.at[target], (done[-1] if done else None)
        else:
            required = max(k for k in range(target) if not walk.optional[k])
            if not walk.bits >> required & 1 or walk.bits >> target & 1:
                continue
            to, since = done[-1], (done[-2] if len(done) > 1 else None)
        if kind == "funnel_path_before_step":
            out[walk.actor].append((-(2**63), to))
        elif kind == "funnel_path_after_step":
            out[walk.actor].append((to + (window_us if step < 0 else 0), 2**63 - 1))
        elif since is not None:
            out[walk.actor].append((since, to))
    return out, window_us


def actor_paths(
    events: list[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
) -> dict[str, list[list[tuple[int, str]]]]:
    """Each actor's paths (sessions collapsed, cut and truncated): (µs, item) steps in order."""
    pf = query.get("pathsFilter") or {}
    types = set(pf.get("includeEventTypes") or [])
    expression = pf.get("pathsHogQLExpression") if not types or "hogql" in types else None
    if pf.get("pathsHogQLExpression") and expression is None:
        raise InvalidArgument("pathsHogQLExpression without the hogql type")
    if expression:
        evaluator(expression)  # InvalidArgument when the engine refuses it
    cleaning = [(r["regex"], r.get("alias") or "") for r in pf.get("localPathCleaningFilters") or []]
    groupings = list(pf.get("pathGroupings") or [])
    start = _strip_slash(pf["startPoint"]) if pf.get("startPoint") else None
    end = _strip_slash(pf["endPoint"]) if pf.get("endPoint") else None
    n = pf.get("stepLimit", 5)
    exclude = set(pf.get("excludeEvents") or [])
    grid = resolve_date_range(query.get("dateRange"), "day", timezone=timezone, week_start_day=0, now=now, events=events)
    query_filter = compile_properties(query.get("properties"), ZoneInfo(timezone))
    test_filter = compile_properties(test_account_filters or [], ZoneInfo(timezone)) if query.get("filterTestAccounts") else None

    group = query.get("aggregation_group_type_index")
    if query.get("funnelPathsFilter"):
        # Funnel paths follow the funnel's actors: its group type's keys, or persons.
        source_group = query["funnelPathsFilter"]["funnelSource"].get("aggregation_group_type_index")
        if group is not None and group != source_group:
            raise InvalidArgument("funnel paths follow the funnel's actors: aggregation_group_type_index")
        group = source_group
    # Whose path an event is on: its person's, or with a group type its group key's (no key: nobody's).
    group_key = None if group is None else f"$group_{group}"
    gap_us = SESSION_GAP_SECONDS * 1_000_000
    bounds: dict[str, list[tuple[int, int]]] | None = None
    if query.get("funnelPathsFilter"):
        bounds, gap_us = _funnel_bounds(events, query["funnelPathsFilter"], timezone, now, test_account_filters)

    by_person: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for e in events:
        if not grid.lower <= e.timestamp <= grid.upper or not _followed(e, types):
            continue
        if not query_filter(e) or (test_filter is not None and not test_filter(e)):
            continue
        item = _group(_item(e, cleaning, types, expression), groupings)
        if item in exclude:
            continue
        actor = e.person_id if group_key is None else prop_text(e.properties, group_key) or ""
        if actor == "":
            continue
        micros = (e.timestamp - _EPOCH) // timedelta(microseconds=1)
        if bounds is not None and not any(lo <= micros <= hi for lo, hi in bounds.get(actor, [])):
            continue
        by_person[actor].append((micros, item))

    out: dict[str, list[list[tuple[int, str]]]] = {}
    for actor, steps in by_person.items():
        steps.sort()
        sessions: list[list[tuple[int, str]]] = []
        for i, step in enumerate(steps):
            if i == 0 or step[0] - steps[i - 1][0] >= gap_us:
                sessions.append([])
            sessions[-1].append(step)
        for session in sessions:
            # A run of one item keeps its last event.
            collapsed = [s for j, s in enumerate(session) if j == len(session) - 1 or s[1] != session[j + 1][1]]
            path = _cut(collapsed, start, end, n)
            if path is not None:
                out.setdefault(actor, []).append(path)
    return out


def compute_paths(
    events: list[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The result edges of `query` over `events`."""
    pf = query.get("pathsFilter") or {}
    limit = pf.get("edgeLimit", 50)
    found = actor_paths(events, query, timezone=timezone, now=now, test_account_filters=test_account_filters)
    counts: dict[tuple[str, str], list[int]] = defaultdict(list)
    for actor_sessions in found.values():
        for path in actor_sessions:
            for i in range(1, len(path)):
                source = f"{i}_{path[i - 1][1]}"
                target = f"{i + 1}_{path[i][1]}"
                counts[(source, target)].append(path[i][0] - path[i - 1][0])

    edges = [(len(gaps), s, t, sum(gaps) / len(gaps)) for (s, t), gaps in counts.items()]
    lo, hi = pf.get("minEdgeWeight"), pf.get("maxEdgeWeight")
    edges = [x for x in edges if (lo is None or x[0] >= lo) and (hi is None or x[0] <= hi)]
    edges.sort(key=lambda x: (-x[0], x[1].encode(), x[2].encode()))
    edges = edges[:limit]
    # Keep what a walk from the first steps reaches.
    reached = {s for _, s, _, _ in edges if s.startswith("1_")}
    grown = True
    while grown:
        grown = False
        for _, s, t, _ in edges:
            if s in reached and t not in reached:
                reached.add(t)
                grown = True
    return [
        {"source": s, "target": t, "value": float(v), "average_conversion_time": g / 1000}
        for v, s, t, g in edges
        if s in reached
    ]


def path_rows(path: list[tuple[int, str]]) -> list[tuple[str | None, str, str]]:
    """The reference's per-person rows of one path: (last_path_key, path_key, path_dropoff_key),
    one per node, the first without a previous key, the drop-off key the path's last node."""
    keys = [f"{i + 1}_{item}" for i, (_, item) in enumerate(path)]
    return [(keys[i - 1] if i else None, key, keys[-1]) for i, key in enumerate(keys)]


def paths_actors(
    events: list[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
) -> list[str]:
    """The actors (ids, sorted as text) of the node or edge the pathsFilter's drill-down keys pick:
    a row whose previous key is pathStartKey and/or whose key is pathEndKey; with pathDropoffKey
    D, a row whose key and drop-off key are D; with no key, every actor with a path."""
    pf = query.get("pathsFilter") or {}
    # An empty key is no key.
    start, end, dropoff = pf.get("pathStartKey") or None, pf.get("pathEndKey") or None, pf.get("pathDropoffKey") or None
    found = actor_paths(events, query, timezone=timezone, now=now, test_account_filters=test_account_filters)
    picked = set()
    for actor, actor_sessions in found.items():
        for path in actor_sessions:
            for last, key, dropped in path_rows(path):
                if dropoff is not None:
                    hit = dropped == dropoff and key == dropoff
                else:
                    hit = (start is None or last == start) and (end is None or key == end)
                if hit:
                    picked.add(actor)
    return sorted(picked, key=lambda a: a.encode())
