"""Pure-Python reference computation of a StickinessQuery (the "oracle").

Written from query-engine-semantics.md §6 and docs/decisions.md ("Stickiness") only, as a plain
walk over each person's events; it shares no code with server/queries/. Date ranges and property
filters come from the trends oracle (tests/oracle/trends.py), which is independent of the engine too.

API
---
``compute_stickiness(events, query, *, timezone, week_start_day, now, test_account_filters=None,
actions=None)`` returns one dict per series ``{data, days, labels, count, label, action}``.
Refusals raise InvalidArgument, Unimplemented or FailedPrecondition (each an OracleError).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tests.oracle.funnels import Unimplemented
from tests.oracle.trends import (
    Event,
    InvalidArgument,
    _action_of,
    _bucket_key,
    compile_properties,
    previous_date_range,
    resolve_date_range,
)

INTERVALS = ("hour", "day", "week", "month")
_CHECKS = {"gte": lambda n, v: n >= v, "lte": lambda n, v: n <= v, "exact": lambda n, v: n == v}


def compute_stickiness(
    events: Iterable[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Evaluates a reference-JSON StickinessQuery over all of an environment's events."""
    events = list(events)
    if query.get("samplingFactor") not in (None, 1, 1.0):
        raise NotImplementedError("the oracle does not sample")
    series = query.get("series") or []
    if not series:
        raise InvalidArgument("a StickinessQuery needs series")
    interval = query.get("interval") or "day"
    if interval == "minute":
        raise Unimplemented("minute stickiness")
    if interval not in INTERVALS:
        raise InvalidArgument(f"interval {interval!r}")
    per = query.get("intervalCount") or 1
    if per < 1 or (per > 1 and interval == "week"):
        raise InvalidArgument("intervalCount")
    sf = query.get("stickinessFilter") or {}
    criteria = sf.get("stickinessCriteria") or {}
    operator, least = criteria.get("operator", "gte"), criteria.get("value", 1)
    if operator not in _CHECKS or least < 1:
        raise InvalidArgument("stickinessCriteria")
    cumulative = sf.get("computedAs") == "cumulative"

    rng = resolve_date_range(
        query.get("dateRange"), interval, timezone=timezone, week_start_day=week_start_day, now=now, events=events
    )
    tz = ZoneInfo(timezone)
    ranges = [("", rng)]
    compare = query.get("compareFilter") or {}
    if compare.get("compare") and (query.get("dateRange") or {}).get("date_from") != "all":
        previous = previous_date_range(
            query.get("dateRange"),
            interval,
            compare_to=compare.get("compare_to"),
            timezone=timezone,
            week_start_day=week_start_day,
            now=now,
            events=events,
        )
        ranges = [("current", rng), ("previous", previous)]
    query_props = compile_properties(query.get("properties"), tz)
    tests = compile_properties(test_account_filters or [], tz) if query.get("filterTestAccounts") else None
    out = []
    for order, node in enumerate(series):
        kind = node.get("kind") or "EventsNode"
        if kind == "ActionsNode":
            bare, action_name = _action_of(node, actions or {}, tz)
            name: str = node.get("custom_name") or action_name
            action: dict[str, Any] = {"id": str(node["id"]), "type": "actions"}
        elif kind == "EventsNode":
            event = node.get("event")

            def bare(e: Event, event: str | None = event) -> bool:
                return event is None or e.event == event

            name = node.get("custom_name") or node.get("name") or (event if event is not None else "All events")
            action = {"type": "events"} | ({"id": event} if event is not None else {})
        else:
            raise Unimplemented(kind)
        own = compile_properties(node.get("properties"), tz)

        def keep(e: Event, bare: Any = bare, own: Any = own) -> bool:
            return bool(bare(e) and own(e) and query_props(e) and (tests is None or tests(e)))

        for compare_label, current in ranges:
            walk = _Walk(tz, week_start_day, per, operator, least, cumulative)
            out.append(walk.item(events, current, compare_label, keep, order, name, dict(action), node))
    return out


@dataclass(frozen=True)
class _Walk:
    tz: ZoneInfo
    week_start_day: int
    per: int
    operator: str
    least: int
    cumulative: bool

    def item(
        self,
        events: list[Event],
        rng: Any,
        compare_label: str,
        keep: Any,
        order: int,
        name: str,
        action: dict[str, Any],
        node: dict[str, Any],
    ) -> dict[str, Any]:
        """One item: per person, the events of each period (intervalCount buckets counted back from
        the last bucket of the range), then the persons per number of periods kept by the criteria."""
        per, operator, least, cumulative = self.per, self.operator, self.least, self.cumulative
        index = {key: i for i, key in enumerate(rng.bucket_keys)}
        buckets = len(rng.bucket_keys)
        periods = -(-buckets // per)
        per_person: dict[str, Counter[int]] = defaultdict(Counter)
        for e in events:
            if not (rng.lower <= e.timestamp <= rng.upper) or not keep(e):
                continue
            i = index.get(_bucket_key(e.timestamp, rng.interval, self.tz, self.week_start_day))
            if i is None:
                continue
            per_person[e.person_id][(buckets - 1 - i) // per] += 1
        exact = [0] * periods
        for counts in per_person.values():
            active = sum(1 for n in counts.values() if _CHECKS[operator](n, least))
            if active:
                exact[active - 1] += 1
        data = [sum(exact[i:]) for i in range(periods)] if cumulative else exact
        action |= {"order": order, "name": name}
        if node.get("custom_name"):
            action["custom_name"] = node["custom_name"]
        item: dict[str, Any] = {
            "data": [float(v) for v in data],
            "days": list(range(1, periods + 1)),
            "labels": [_label(k, rng.interval, per, cumulative) for k in range(1, periods + 1)],
            "count": float(sum(exact)),
            "label": name,
            "action": action,
        }
        if compare_label:
            item |= {"compare": True, "compare_label": compare_label}
        return item


def _label(k: int, interval: str, per: int, cumulative: bool) -> str:
    if per == 1:
        text = f"{k} {interval}" + ("" if k == 1 else "s")
    else:
        text = f"{k} period" + ("" if k == 1 else "s") + f" of {per} {interval}s"
    return text + (" or more" if cumulative else "")
