"""Pure-Python reference computation of a RetentionQuery (the "oracle").

Written from query-engine-semantics.md §5 and docs/decisions.md ("Retention") only, as a plain walk
over each person's events; it shares no code with server/queries/. Date strings and property
filters come from the trends oracle (tests/oracle/trends.py), which is independent of the engine too.

API
---
``compute_retention(events, query, *, timezone, week_start_day, now, test_account_filters=None,
actions=None)`` returns :class:`RetentionOutput` ``(results, has_more)``: one dict per cohort
``{date, label, values: [{count, label}], breakdown_value?}``, the cohorts of each breakdown value in
turn (rank order, "Other" last). Refusals raise InvalidArgument, Unimplemented or
FailedPrecondition (each an OracleError).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from tests.oracle import breakdown_shapes as shapes_
from tests.oracle.expressions import evaluator
from tests.oracle.funnels import Unimplemented
from tests.oracle.trends import (
    NULL_LABEL,
    OTHER_LABEL,
    Event,
    InvalidArgument,
    _action_of,
    compile_properties,
    prop_text,
    resolve_date_range,
    to_float_or_null,
)

PERIODS = {"Hour": "hour", "Day": "day", "Week": "week", "Month": "month"}
TYPES = ("retention_recurring", "retention_first_time", "retention_first_ever_occurrence")
DEFAULT_TOTAL_INTERVALS = 7
DEFAULT_LIMIT = 25

Pred = Callable[[Event], bool]


class RetentionOutput(NamedTuple):
    results: list[dict[str, Any]]
    has_more: bool


@dataclass(frozen=True)
class _Entity:
    full: Pred  # the entity with its own property filters
    bare: Pred  # the event name or action alone


def _entity(node: dict[str, Any] | None, tz: ZoneInfo, actions: dict[int, dict[str, Any]]) -> _Entity:
    if node is None:
        node = {"id": "$pageview", "type": "events"}
    kind = node.get("kind")
    is_action = kind == "ActionsNode" or (kind is None and node.get("type") == "actions")
    props = compile_properties(node.get("properties") or [], tz)
    if is_action:
        bare, _ = _action_of({"id": node.get("id")}, actions, tz)
    else:
        name = node.get("id")
        if name is not None and not isinstance(name, str):
            raise InvalidArgument("an events entity's id is an event name")

        def bare(e: Event, name: str | None = name) -> bool:
            return name is None or e.event == name

    return _Entity(lambda e: bare(e) and props(e), bare)


# --------------------------------------------------------------------------------------------------
# Periods: a period is named by its start, a local date (day, week, month) or a UTC instant (hour).


def _week_start(d: date, week_start_day: int) -> date:
    return d - timedelta(days=d.isoweekday() % 7 if week_start_day == 0 else d.weekday())


def _period_of(instant: datetime, period: str, tz: ZoneInfo, week_start_day: int) -> Any:
    local = instant.astimezone(tz)
    if period == "hour":
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    if period == "day":
        return local.date()
    if period == "week":
        return _week_start(local.date(), week_start_day)
    return local.date().replace(day=1)


def _moved(start: Any, period: str, n: int) -> Any:
    if period == "hour":
        return start + timedelta(hours=n)
    if period == "day":
        return start + timedelta(days=n)
    if period == "week":
        return start + timedelta(weeks=n)
    return start + relativedelta(months=n)


def _instant(start: Any, tz: ZoneInfo) -> datetime:
    """When a period starts (UTC)."""
    if isinstance(start, datetime):
        return start
    return datetime.combine(start, time()).replace(tzinfo=tz).astimezone(UTC)


# --------------------------------------------------------------------------------------------------


def compute_retention(
    events: Iterable[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
) -> RetentionOutput:
    """Evaluate a reference-JSON RetentionQuery over ``events`` (all of the environment's events)."""
    events = list(events)
    tz = ZoneInfo(timezone)
    if query.get("samplingFactor") not in (None, 1, 1.0):
        raise NotImplementedError("the oracle does not sample")
    group = query.get("aggregation_group_type_index")
    # Who is retained: the person, or with a group type the event's $group_N key (none: nobody).
    group_key = None if group is None else f"$group_{group}"
    rf = query.get("retentionFilter") or {}
    period = PERIODS.get(rf.get("period") or "Day")
    if period is None:
        raise InvalidArgument("period")
    total = rf.get("totalIntervals") or DEFAULT_TOTAL_INTERVALS
    kind = rf.get("retentionType") or "retention_recurring"
    if kind not in TYPES:
        raise InvalidArgument("retentionType")
    least = rf.get("minimumOccurrences") or 1
    rolling = rf.get("timeWindowMode") == "24_hour_windows"
    if rolling and rf.get("cumulative"):
        raise InvalidArgument("cumulative retention with 24-hour windows")
    target = _entity(rf.get("targetEntity"), tz, actions or {})
    returning = _entity(rf.get("returningEntity"), tz, actions or {})
    bf = query.get("breakdownFilter") or {}
    shape = shapes_.filter_shapes(bf)[0]
    has_key = bf.get("breakdowns") or bf.get("breakdown") not in (None, "")
    if shape != shapes_.PLAIN and (not has_key or (bf.get("breakdown_type") == "cohort" and not bf.get("breakdowns"))):
        raise InvalidArgument("a histogram or URL normalising needs a property breakdown")
    breakdown = _breakdown(query.get("breakdownFilter"))

    cohorts = _cohorts(query, period, total, tz, week_start_day, now, events)
    index = {p: i for i, p in enumerate(cohorts)}
    lower, upper = _instant(cohorts[0], tz), _instant(_moved(cohorts[-1], period, 1), tz)

    query_props = compile_properties(query.get("properties"), tz)
    test_props = (
        compile_properties(test_account_filters or [], tz) if query.get("filterTestAccounts") else None
    )


    def text_of(e: Event) -> str | None:
        assert breakdown is not None
        key, source = breakdown[0], breakdown[1]
        if source == "hogql":
            # The expression's text (toString); '' is no value, as a property's.
            value = evaluator(key)(e)
            if value is not None and not isinstance(value, str | int):
                raise NotImplementedError("the oracle's breakdown texts are of strings and whole numbers")
            return None if value is None or value == "" else str(value)
        return prop_text(e.properties if source == "event" else e.person_properties, key)

    def actor_of(e: Event) -> str:
        return e.person_id if group_key is None else prop_text(e.properties, group_key) or ""

    grid = shapes_.grid((), 1)
    if shape.bins:
        # DECISION: a histogram's bounds come from the window's events (the query's filters, with
        # an actor) of the target or the returning entity, whatever the retention type.
        grid = shapes_.grid(
            (
                x
                for e in events
                if lower <= e.timestamp < upper
                and query_props(e)
                and (test_props is None or test_props(e))
                and actor_of(e) != ""
                and (target.full(e) or returning.full(e))
                and (x := shapes_.number(text_of(e), to_float_or_null)) is not None
            ),
            shape.bins,
        )

    def value_of(e: Event) -> str:
        if breakdown is None:
            return ""
        text = text_of(e)
        if shape.bins:
            text = grid.label(shapes_.number(text, to_float_or_null))
        elif shape.normalize_url:
            text = shapes_.normalized(text)
        return NULL_LABEL if text is None else text

    # With a breakdown, each (person, value) is walked on its own, as the reference groups them.
    walks: dict[tuple[str, str], list[Event]] = defaultdict(list)
    for e in events:
        if not query_props(e) or (test_props is not None and not test_props(e)):
            continue
        actor = e.person_id if group_key is None else prop_text(e.properties, group_key) or ""
        if actor == "":
            continue
        walks[(actor, value_of(e))].append(e)

    counts: Counter[tuple[str, int, int]] = Counter()

    def idx(e: Event) -> int | None:
        """The cohort index of the event's period; None outside the window."""
        if not lower <= e.timestamp < upper:
            return None
        return index.get(_period_of(e.timestamp, period, tz, week_start_day))

    for (_, value), mine in walks.items():
        if rolling:
            for s, k in _rolling(mine, kind, target, returning, idx, period, total, least):
                counts[(value, s, k)] += 1
            continue
        if kind == "retention_recurring":
            starts = sorted({i for e in mine if target.full(e) and (i := idx(e)) is not None})
        else:
            targets = [e for e in mine if target.full(e)]
            starts = []
            if targets:
                first = min(targets, key=lambda e: e.timestamp)
                # First ever: the earliest event of the bare entity must be (at) the matching one.
                ever = kind != "retention_first_ever_occurrence" or first.timestamp == min(
                    e.timestamp for e in mine if target.bare(e)
                )
                if ever and (i := idx(first)) is not None:
                    starts = [i]
        per_period = Counter(i for e in mine if returning.full(e) and (i := idx(e)) is not None)
        returns = {i for i, n in per_period.items() if n >= least}
        for s in starts:
            ks = {0} | {r - s for r in returns if 0 < r - s < total}
            if rf.get("cumulative"):
                ks = set(range(max(ks) + 1))
            for k in ks:
                counts[(value, s, k)] += 1

    name = period.title()

    def cohort_list(
        value: str, found: Counter[tuple[str, int, int]], with_value: bool
    ) -> list[dict[str, Any]]:
        out = []
        for i, p in enumerate(cohorts):
            item: dict[str, Any] = {
                "date": _instant(p, tz).astimezone(tz).isoformat(),
                "label": f"{name} {i}",
                "values": [{"count": found[(value, i, k)], "label": f"{name} {k}"} for k in range(total)],
            }
            if with_value:
                item["breakdown_value"] = value
            out.append(item)
        return out

    if breakdown is None:
        return RetentionOutput(cohort_list("", counts, False), False)
    limit, hide_other = breakdown[2], breakdown[3]
    sizes: Counter[str] = Counter()
    for (value, _, k), n in counts.items():
        if k == 0:
            sizes[value] += n
    ranked = sorted(sizes, key=lambda v: (-sizes[v], v))
    kept, cut = ranked[:limit], ranked[limit:]
    merged: Counter[tuple[str, int, int]] = Counter()
    for (value, s, k), n in counts.items():
        merged[(value if value in kept else OTHER_LABEL, s, k)] += n
    results = []
    for value in kept + ([OTHER_LABEL] if cut and not hide_other else []):
        results.extend(cohort_list(value, merged, True))
    return RetentionOutput(results, bool(cut))


def _rolling(
    mine: list[Event], kind: str, target: Any, returning: Any, idx: Any, period: str, total: int, least: int
) -> list[tuple[int, int]]:
    """24-hour windows: (cohort, k) pairs of one walk. The anchor is the first target event in the
    window (first-time types: the first of all time, which must be in it); its cohort is its
    period; k counts whole windows (an hour, 24 hours, 7 or 30 days) of elapsed time from the
    anchor to a returning event in the window, 0 always, others below `total` with `least` events."""
    targets = sorted((e for e in mine if target.full(e)), key=lambda e: e.timestamp)
    if kind == "retention_recurring":
        targets = [e for e in targets if idx(e) is not None]
    if not targets:
        return []
    anchor = targets[0]
    if kind == "retention_first_ever_occurrence" and anchor.timestamp != min(e.timestamp for e in mine if target.bare(e)):
        return []
    s = idx(anchor)
    if s is None:
        return []
    window = timedelta(seconds={"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400}[period])
    per_window = Counter(
        (e.timestamp - anchor.timestamp) // window
        for e in mine
        if returning.full(e) and idx(e) is not None and e.timestamp >= anchor.timestamp
    )
    return [(s, 0)] + [(s, k) for k, n in per_window.items() if 0 < k < total and n >= least]


def _cohorts(
    query: dict[str, Any],
    period: str,
    total: int,
    tz: ZoneInfo,
    week_start_day: int,
    now: datetime,
    events: list[Event],
) -> list[Any]:
    """The cohorts' periods (§5.2): the resolved end's period is the last one."""
    dr = dict(query.get("dateRange") or {})
    given_from = dr.get("date_from")
    if not given_from:
        dr["date_from"] = dr.get("date_to")
    base = resolve_date_range(
        dr, period, timezone=str(tz), week_start_day=week_start_day, now=now, events=events
    )
    end = _moved(_period_of(base.date_to, period, tz, week_start_day), period, 1)
    if given_from:
        start = _period_of(base.date_from, period, tz, week_start_day)
    else:
        start = _moved(end, period, -total)
    cohorts = []
    p = start
    while _instant(p, tz) < _instant(end, tz):
        cohorts.append(p)
        p = _moved(p, period, 1)
    return cohorts


def window(
    query: dict[str, Any], *, timezone: str, week_start_day: int, now: datetime
) -> tuple[datetime, datetime]:
    """The UTC bounds [lower, upper) of the events a query's cohorts and returns count."""
    tz = ZoneInfo(timezone)
    rf = query.get("retentionFilter") or {}
    period = PERIODS[rf.get("period") or "Day"]
    cohorts = _cohorts(
        query, period, rf.get("totalIntervals") or DEFAULT_TOTAL_INTERVALS, tz, week_start_day, now, []
    )
    return _instant(cohorts[0], tz), _instant(_moved(cohorts[-1], period, 1), tz)


def _breakdown(bf: dict[str, Any] | None) -> tuple[str, str, int, bool] | None:
    """(key, "event" | "person" | "hogql", limit, hide other) or None."""
    if not bf:
        return None
    items = bf.get("breakdowns") or []
    if len(items) > 1:
        raise InvalidArgument("one breakdown")
    if items:
        key, kind = items[0].get("property"), items[0].get("type")
    else:
        key, kind = bf.get("breakdown"), bf.get("breakdown_type")
    if key is None or key == "":
        return None
    kind = kind or "event"
    if kind in ("cohort", "group"):
        raise Unimplemented(f"{kind} breakdowns")
    if kind not in ("event", "person", "hogql"):
        raise InvalidArgument("breakdown type")
    if kind == "hogql":
        evaluator(str(key))  # InvalidArgument when the engine refuses the expression
    limit = bf.get("breakdown_limit") or DEFAULT_LIMIT
    return str(key), kind, limit, bool(bf.get("breakdown_hide_other_aggregation"))
