"""Pure-Python reference computation of a LifecycleQuery (the "oracle").

Written from query-engine-semantics.md §7 and docs/decisions.md ("Lifecycle") only, as a plain walk
over each person's periods; it shares no code with server/queries/ and runs no SQL. It walks each
person's whole history (no one-period margin): the engine's margin must give the same statuses.
A person's created_at is their earliest event of any kind, as ingestion sets it (with a group type:
the actor is the event's `$group_N` key, created with its first event). The grid, date
strings and property filters come from the trends oracle (tests/oracle/trends.py), itself
independent of the engine.

API
---
``compute_lifecycle(events, query, *, timezone, week_start_day, now, test_account_filters=None,
actions=None)`` returns the four result items ``{action, data, count, labels, days, label,
status}`` in the order new, returning, resurrecting, dormant. Refusals raise InvalidArgument,
Unimplemented or FailedPrecondition (each an OracleError). With ``dateRange.explicitDate`` the
events inside the grid count only from the exact date_from to the exact date_to (the first and last
periods may be partial); the history before the grid counts whole.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from tests.oracle.funnels import Unimplemented
from tests.oracle.trends import (
    Event,
    InvalidArgument,
    _action_of,
    compile_properties,
    prop_text,
    resolve_date_range,
)

STATUSES = ("new", "returning", "resurrecting", "dormant")
INTERVALS = ("hour", "day", "week", "month")


def _period(instant: datetime, interval: str, tz: ZoneInfo, week_start_day: int) -> Any:
    """The period holding `instant`: a local date (day, week, month) or the UTC instant of its local hour."""
    local = instant.astimezone(tz)
    if interval == "hour":
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    d = local.date()
    if interval == "day":
        return d
    if interval == "week":
        # Sunday-start weeks go back isoweekday % 7 days, Monday-start weeks weekday() days.
        return d - timedelta(days=d.isoweekday() % 7 if week_start_day == 0 else d.weekday())
    return d.replace(day=1)


def _next(period: Any, interval: str) -> Any:
    if interval == "hour":
        return period + timedelta(hours=1)
    if interval == "day":
        return period + timedelta(days=1)
    if interval == "week":
        return period + timedelta(weeks=1)
    assert isinstance(period, date)
    return period + relativedelta(months=1)


def compute_lifecycle(
    events: Iterable[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate a reference-JSON LifecycleQuery over ``events`` (all of the environment's events)."""
    events = list(events)
    tz = ZoneInfo(timezone)
    if query.get("samplingFactor") not in (None, 1, 1.0):
        raise Unimplemented("sampling")
    group = query.get("aggregation_group_type_index")
    # Whose lifecycle: the person's, or with a group type the event's $group_N key (none: nobody's).
    group_key = None if group is None else f"$group_{group}"

    def actor_of(e: Event) -> str:
        return e.person_id if group_key is None else prop_text(e.properties, group_key) or ""
    interval = query.get("interval") or "day"
    if interval == "minute":
        raise Unimplemented("minute lifecycles")
    if interval not in INTERVALS:
        raise InvalidArgument("interval")
    series = query.get("series") or []
    if len(series) != 1:
        raise InvalidArgument("one series")
    node = series[0]
    kind = node.get("kind") or "EventsNode"
    props = compile_properties(node.get("properties") or [], tz)
    if kind == "ActionsNode":
        matches, name = _action_of(node, actions or {}, tz)
        ident: str | None = str(node["id"])
        label_name, kind_name = name, "actions"
    else:
        event_name = node.get("event")

        def matches(e: Event) -> bool:
            return event_name is None or e.event == event_name

        ident, name, label_name, kind_name = (
            event_name,
            event_name or "All events",
            event_name or "",
            "events",
        )
    grid = resolve_date_range(
        query.get("dateRange"),
        interval,
        timezone=timezone,
        week_start_day=week_start_day,
        now=now,
        events=events,
    )
    query_filter = compile_properties(query.get("properties"), tz)
    test_filter = (
        compile_properties(test_account_filters or [], tz) if query.get("filterTestAccounts") else None
    )

    # An actor is created with its first event of any kind (a group too: there is no groups table).
    created: dict[str, datetime] = {}
    for e in events:
        who = actor_of(e)
        if who and (who not in created or e.timestamp < created[who]):
            created[who] = e.timestamp
    active: dict[str, set[Any]] = defaultdict(set)
    exact = bool((query.get("dateRange") or {}).get("explicitDate"))
    first = grid.bucket_keys[0] if grid.bucket_keys else None
    for e in events:
        if prop_text(e.properties, "$process_person_profile") == "false":
            continue
        if exact and (
            e.timestamp > grid.upper
            or (e.timestamp < grid.lower and _period(e.timestamp, interval, tz, week_start_day) >= first)
        ):
            # An exact range: inside the grid only its events count; everything before it stays
            # (the history that decides the first period's statuses).
            continue
        if not (matches(e) and props(e) and query_filter(e)):
            continue
        if test_filter is not None and not test_filter(e):
            continue
        if actor_of(e):
            active[actor_of(e)].add(_period(e.timestamp, interval, tz, week_start_day))

    counts: dict[tuple[Any, str], int] = defaultdict(int)
    for person, periods in active.items():
        ordered = sorted(periods)
        born = _period(created[person], interval, tz, week_start_day)
        for j, p in enumerate(ordered):
            if j == 0:
                status = "new" if p == born else "resurrecting"
            else:
                status = "returning" if _next(ordered[j - 1], interval) == p else "resurrecting"
            counts[(p, status)] += 1
            after = _next(p, interval)
            if after not in periods:
                counts[(after, "dormant")] += 1

    results = []
    for status in STATUSES:
        sign = -1 if status == "dormant" else 1
        data = [float(sign * counts.get((key, status), 0)) for key in grid.bucket_keys]
        action: dict[str, Any] = {"name": name, "type": kind_name, "order": 0, "math": "total"}
        if ident is not None:
            action["id"] = ident
        if node.get("custom_name"):
            action["custom_name"] = node["custom_name"]
        results.append(
            {
                "action": action,
                "data": data,
                "count": float(sum(data)),
                "labels": list(grid.labels),
                "days": list(grid.days),
                "label": f"{label_name} - {status}",
                "status": status,
            }
        )
    return results
