"""Pure-Python reference computation of a FunnelsQuery, steps, time_to_convert and trends views (the "oracle").

Written from query-engine-semantics.md §4 and docs/funnels-semantics.md only, as a straightforward
walk over each person's events; it shares no code with server/queries/. Dates and property filters
come from the trends oracle (tests/oracle/trends.py), which is independent of the engine too.

API
---
``compute_funnels(events, query, *, timezone, week_start_day, now, test_account_filters=None)``
returns :class:`FunnelsOutput` ``(results, has_more)``:

* ``results``: one list of step dicts per breakdown value, in the result order (without a
  breakdown exactly one list, with zero counts when nobody entered; with a breakdown and nobody,
  ``[]``). A step dict has ``action_id, name, custom_name, order, count, type,
  average_conversion_time, median_conversion_time`` (None where unset), plus ``breakdown`` and
  ``breakdown_value`` (lists of strings) with a breakdown.
* ``has_more``: whether breakdown values were cut into "Other".

``funnel_actors(...)`` gives every walk of an actor who entered (one per breakdown value), its
completed steps and the best attempt's time of each (for funnel paths, tests/oracle/paths.py).

``compute_time_to_convert(...)`` (same arguments) computes a ``funnelVizType: time_to_convert``
query from the same walk: ``{"bins": [[start_seconds, persons], ...], "average_conversion_time"}``.

First-time steps (``math: first_time_for_user`` / ``first_time_for_user_with_filters``) match only
the person's first event (by time, then uuid text) of the step's event or action up to the end of
the range, from all of the environment's events (the latter: the first that passes the step's
filters too); the step's filters, the range and the query's filters still apply to that event.
``aggregation_group_type_index`` N counts the events' ``$group_N`` keys, ``funnelAggregateByHogQL:
properties.$session_id`` their session ids; events without one (missing, '', null) are dropped. Any
other ``funnelAggregateByHogQL`` counts the values (as text) of that expression of the event
(tests/oracle/expressions.py): NULL and '' are no actor.

``compute_funnel_trends(...)`` (same arguments) computes a ``funnelVizType: trends`` query with the
same walk run once per person and entrance period: ``FunnelsOutput`` whose ``results`` are the
series dicts (see its docstring).

Breakdowns of ``breakdown_type: hogql`` (or a ``breakdowns`` item of that type) take the text of
that expression of the event as the value ('' for NULL), evaluated as the aggregation's.

Cohort breakdowns (``breakdown_type: cohort``, ``breakdown`` an id, "all"/0 or a list of them) need
``cohorts`` (OracleCohort by id) and ``persons`` (the environment's persons rows): membership comes
from tests/oracle/cohorts.py. Each listed cohort's funnel is the funnel computed separately over the
events of its members (an actor counts in every cohort it is in; all users hold everyone), whatever
the attribution; nothing is cut into "Other"; equal counts keep the listed order (the trends view:
the id descending, as the reference). A step shows ``breakdown`` the cohort's name ("all users" for
0) and ``breakdown_value`` its id; a trends series ``breakdown_value`` the name. A breakdown of a
time_to_convert funnel is refused (InvalidArgument): the reference draws one histogram over all.

Refusals raise :class:`InvalidArgument` (an invalid funnel), :class:`Unimplemented` (a funnel the
engine does not compute yet) or :class:`FailedPrecondition` (a missing action or cohort), each an
OracleError.
Steps and exclusions that are ActionsNodes match their action's events (tests/oracle/actions.py)
and their own filters; an action step is named by the action, its ``action_id`` the action's id.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from tests.oracle import breakdown_shapes as shapes_
from tests.oracle.expressions import actor_text, evaluator
from tests.oracle.trends import (
    DateRange,
    Event,
    FailedPrecondition,
    InvalidArgument,
    OracleError,
    _action_of,
    _bucket_key,
    _cohort_ids,
    compile_properties,
    prop_text,
    resolve_date_range,
    to_float_or_null,
)

DEFAULT_WINDOW = 14
# Seconds per conversion-window unit; a month is 31 days, as the reference's funnel UDF counts it.
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 31 * 86400}
DEFAULT_BREAKDOWN_LIMIT = 25
OTHER = ("Other",)
MAX_STEPS = 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Unimplemented(OracleError):
    code = "UNIMPLEMENTED"


class FunnelsOutput(NamedTuple):
    results: list[list[dict[str, Any]]]
    has_more: bool


# --------------------------------------------------------------------------------------------------
# The query


@dataclass(frozen=True)
class _Step:
    event: str | None  # the step's name: its event, or its action's name
    action_id: Any  # its event, or its action's id
    type: str  # "events" | "actions"
    custom_name: str | None
    optional: bool
    matches: Any  # Event -> bool
    first_time: str | None = None  # the step's first-time math
    entity: Any = None  # Event -> bool: its event or action alone (no filters)


@dataclass(frozen=True)
class _Funnel:
    steps: list[_Step]
    order: str  # ordered | strict | unordered
    window_us: int
    exclusions: list[tuple[int, int, Any]]  # (from, to, Event -> bool)
    breakdown: list[tuple[str, str]] | None  # (key, "event" | "person") per dimension
    attribution: str
    attribution_step: int | None
    limit: int
    viz: str  # steps | time_to_convert | trends
    from_step: int  # time_to_convert: the steps timed, trends: the conversion measured, from ...
    to_step: int  # ... to
    bin_count: int | None
    actor_key: str | None = None  # the event property counted instead of persons
    # A cohort breakdown: the cohorts listed (0: all users) and each one's member person ids.
    cohorts: tuple[int, ...] | None = None
    members: dict[int, set[str]] = field(default_factory=dict)
    # The funnelAggregateByHogQL expression counted instead (Event -> its value), tests/oracle/expressions.py.
    actor_of: Any = None
    # Per breakdown dimension: histogram / URL normalising, and a histogram's buckets once known.
    shapes: tuple[shapes_.Shape, ...] = ()
    grids: dict[int, shapes_.Grid] = field(default_factory=dict)


def _filter_repr(f: dict[str, Any]) -> tuple[str, str, str, str]:
    return (f.get("type") or "event", str(f.get("key")), f.get("operator") or "exact", repr(f.get("value")))


def _same_event(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same event name, or (ActionsNodes) same action id; an event is never an action."""
    if (a.get("kind") == "ActionsNode") != (b.get("kind") == "ActionsNode"):
        return False
    if a.get("kind") == "ActionsNode":
        return a.get("id") == b.get("id")
    return a.get("event") == b.get("event")


def _node_pred(node: dict[str, Any], tz: ZoneInfo, actions: dict[int, dict[str, Any]]) -> tuple[Any, str | None, Any]:
    """(Event -> bool, name, action_id) of a step or exclusion: its event (or action) and its filters."""
    props = compile_properties(node.get("properties") or [], tz)
    if node.get("kind") == "ActionsNode":
        pred, name = _action_of(node, actions, tz)
        return (lambda e: pred(e) and props(e)), name, node["id"]
    event = node.get("event")
    return (lambda e: (event is None or e.event == event) and props(e)), event, event


def _entity_pred(node: dict[str, Any], tz: ZoneInfo, actions: dict[int, dict[str, Any]]) -> Any:
    """Event -> bool: the node's event (or action) alone, without its own filters."""
    return _node_pred({k: v for k, v in node.items() if k != "properties"}, tz, actions)[0]


def _props_multiset(node: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return sorted(_filter_repr(f) for f in node.get("properties") or [] if f)


def _is_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _same_event(a, b) and _props_multiset(a) == _props_multiset(b)


def _is_superset(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Node `a` matches at least what `b` matches: same event, a's filters a sub-multiset of b's."""
    if not _same_event(a, b):
        return False
    rest = list(_props_multiset(b))
    for item in _props_multiset(a):
        if item not in rest:
            return False
        rest.remove(item)
    return True


# Cohort id → its members' person ids (FailedPrecondition for one missing, deleted or not computable).
Membership = Any


def _parse(
    query: dict[str, Any], tz: ZoneInfo, actions: dict[int, dict[str, Any]], membership: Membership = None
) -> _Funnel:
    if query.get("kind") not in (None, "FunnelsQuery"):
        raise InvalidArgument("not a FunnelsQuery")
    series = query.get("series") or []
    if len(series) < 2:
        raise InvalidArgument("a funnel needs at least two steps")
    if len(series) > MAX_STEPS:
        raise InvalidArgument("a funnel has at most 20 steps")
    ff = query.get("funnelsFilter") or {}
    order = ff.get("funnelOrderType") or "ordered"
    n = len(series)
    steps = []
    for node in series:
        math = node.get("math")
        if math not in (None, "total", "first_time_for_user", "first_time_for_user_with_filters"):
            raise InvalidArgument("not a funnel math")
        if node.get("kind") == "ActionsNode" and not (isinstance(node.get("id"), int) and node["id"] > 0):
            raise InvalidArgument("an ActionsNode needs a positive id")
        first_time = math if math in ("first_time_for_user", "first_time_for_user_with_filters") else None
        steps.append(
            _Step(None, None, "events", node.get("custom_name"), bool(node.get("optionalInFunnel")), None, first_time)
        )
    if any(s.optional for s in steps):
        if steps[0].optional:
            raise InvalidArgument("the first step cannot be optional")
        if order == "unordered":
            raise InvalidArgument("unordered funnels have no optional steps")
        for i in range(n - 1):
            a, b = series[i], series[i + 1]
            if steps[i].optional and not steps[i + 1].optional and (_is_equal(a, b) or _is_superset(b, a)):
                raise InvalidArgument("an optional step cannot be the same as the following required step")
    from_step, to_step = ff.get("funnelFromStep"), ff.get("funnelToStep")
    if from_step is not None and not 0 <= from_step <= n - 2:
        raise InvalidArgument("funnelFromStep out of range")
    if to_step is not None and not 1 <= to_step <= n - 1:
        raise InvalidArgument("funnelToStep out of range")
    if from_step is not None and to_step is not None and from_step >= to_step:
        raise InvalidArgument("funnelFromStep must be before funnelToStep")
    exclusions = []
    for node in ff.get("exclusions") or []:
        if node.get("kind") == "ActionsNode" and not (isinstance(node.get("id"), int) and node["id"] > 0):
            raise InvalidArgument("an ActionsNode needs a positive id")
        lo, hi = node.get("funnelFromStep"), node.get("funnelToStep")
        if lo is None or hi is None or not 0 <= lo < hi <= n - 1:
            raise InvalidArgument("bad exclusion range")
        for step_node in series[lo : hi + 1]:
            if _is_equal(step_node, node) or _is_superset(step_node, node):
                raise InvalidArgument("an exclusion cannot match a step of its range")
        if order == "unordered" and (lo, hi) != (0, n - 1):
            raise InvalidArgument("unordered funnels take full-range exclusions only")
        exclusions.append((lo, hi, node))
    interval = ff.get("funnelWindowInterval")
    interval = DEFAULT_WINDOW if interval is None else interval
    if not 0 <= interval <= 100_000:
        raise InvalidArgument("funnelWindowInterval out of range")
    unit = ff.get("funnelWindowIntervalUnit") or "day"
    bf = query.get("breakdownFilter") or {}
    breakdown: list[tuple[str, str]] | None = None
    cohort_ids: tuple[int, ...] | None = None
    if bf.get("breakdown_type") == "cohort" and not bf.get("breakdowns") and bf.get("breakdown") is not None:
        cohort_ids = _cohort_ids(bf["breakdown"])
        breakdown = [("cohort", "cohort")]
    elif bf.get("breakdowns"):
        breakdown = [(b["property"], b.get("type") or "event") for b in bf["breakdowns"]]
    elif bf.get("breakdown") is not None:
        breakdown = [(bf["breakdown"], bf.get("breakdown_type") or "event")]
    shapes = tuple(shapes_.filter_shapes(bf))
    if shapes != (shapes_.PLAIN,) and (breakdown is None or cohort_ids is not None):
        raise InvalidArgument("a histogram or URL normalising needs a property breakdown")
    for key, source in breakdown or []:
        if source == "hogql":
            evaluator(key)  # an expression the engine refuses: InvalidArgument
    limit = bf.get("breakdown_limit") or DEFAULT_BREAKDOWN_LIMIT
    attribution = ff.get("breakdownAttributionType") or "first_touch"
    attribution_step = None
    if attribution == "step":
        attribution_step = ff.get("breakdownAttributionValue")
        if attribution_step is None or not 0 <= attribution_step <= n - 1:
            raise InvalidArgument("breakdownAttributionValue out of range")
        if order == "unordered" and attribution_step != 0:
            raise InvalidArgument("unordered funnels attribute to the first step only")
    viz = ff.get("funnelVizType") or "steps"
    if viz == "time_to_convert" and breakdown:
        raise InvalidArgument("a breakdown does not apply to time_to_convert (one histogram over all actors)")
    # An aggregation not built yet is refused with the other options not built yet, after the
    # definitions the funnel names are found missing.
    later: Unimplemented | None = None
    actor_of = None
    try:
        actor_key = _actor_key(query.get("aggregation_group_type_index"), ff.get("funnelAggregateByHogQL"))
    except Unimplemented as exc:
        actor_key, later = None, exc
    if actor_key == _EXPRESSION:
        actor_key, actor_of = None, evaluator(ff["funnelAggregateByHogQL"])
    # The steps' and exclusions' actions: a missing one is refused once every filter is checked,
    # before options not built yet.
    missing: list[FailedPrecondition] = []

    def resolved(node: dict[str, Any]) -> tuple[Any, str | None, Any]:
        try:
            return _node_pred(node, tz, actions)
        except FailedPrecondition as exc:
            missing.append(exc)
            return (lambda e: False), None, None

    for k, node in enumerate(series):
        pred, name, action_id = resolved(node)
        kind = "actions" if node.get("kind") == "ActionsNode" else "events"
        try:
            entity = _entity_pred(node, tz, actions)
        except FailedPrecondition:
            entity = None  # refused below with the step's own predicate
        steps[k] = replace(steps[k], event=name, action_id=action_id, type=kind, matches=pred, entity=entity)
    exclusions = [(lo, hi, resolved(node)[0]) for lo, hi, node in exclusions]
    members: dict[int, set[str]] = {}
    if cohort_ids is not None:
        if membership is None:
            raise ValueError("a cohort breakdown needs the environment's cohorts and persons")
        members = {c: membership(c) for c in cohort_ids if c != 0}
    if missing:
        raise missing[0]
    if cohort_ids is not None:
        # A cohort's funnel is computed over its members' events alone: separately per value,
        # whatever attribution was asked (each event of that walk is the cohort's), never cut.
        attribution, attribution_step, limit = "all_events", None, len(cohort_ids)
    # Computable but not built yet (refused when computing).
    if later is not None:
        raise later
    return _Funnel(
        steps, order, interval * UNIT_SECONDS[unit] * 1_000_000, exclusions, breakdown, attribution,
        attribution_step, limit, viz,
        0 if from_step is None else from_step, n - 1 if to_step is None else to_step, ff.get("binCount"),
        actor_key, cohort_ids, members, actor_of=actor_of, shapes=shapes if cohort_ids is None else (),
    )


def _actor_key(group: Any, expression: Any) -> str | None:
    """The event property whose value is the actor (None: the person)."""
    by_person = expression is None or "".join(str(expression).split()) in ("", "person_id")
    if group is not None:
        if not (isinstance(group, int) and 0 <= group <= 4):
            raise InvalidArgument("aggregation_group_type_index is 0 to 4")
        if not by_person:
            raise Unimplemented("a group type together with an expression")
        return f"$group_{group}"
    if by_person:
        return None
    if "".join(str(expression).split()) == "properties.$session_id":
        return "$session_id"
    return _EXPRESSION


# _actor_key's answer for any other expression: its value is the actor (evaluated per event).
_EXPRESSION = "<expression>"


# --------------------------------------------------------------------------------------------------
# One person's walk


@dataclass
class _Ev:
    t: int  # microseconds since the epoch
    id: int  # position in the person's sorted stream
    codes: list[int]  # step k matched → k + 1; "excluded between step i-1 and i" → -(i + 1)
    value: tuple[str, ...]


@dataclass(frozen=True)
class _Attempt:
    entry: int
    excluded: bool = False
    times: tuple[int, ...] = ()  # timestamps of the mandatory steps completed
    used: tuple[int, ...] = ()  # events that completed them
    bits: int = 0  # bit k: step k completed
    at: tuple[tuple[int, int], ...] = ()  # (step k, its time) of every step completed, optional ones too


@dataclass
class _Outcome:
    furthest: int  # steps completed along the best attempt (ordered) / distinct steps (unordered)
    bits: int
    step_seconds: list[float | None]  # per step: seconds from the previous mandatory step (None: none)
    times: tuple[int, ...] = ()  # the best attempt's mandatory step times (µs; unordered: sorted)
    person: str = ""
    at: dict[int, int] = field(default_factory=dict)  # step k -> its time in the best attempt (completed ones)


def _by_timestamp(evs: list[_Ev]) -> Iterable[list[_Ev]]:
    group: list[_Ev] = []
    for e in evs:
        if group and e.t != group[0].t:
            yield group
            group = []
        group.append(e)
    if group:
        yield group


def _walk_ordered(f: _Funnel, evs: list[_Ev], value: tuple[str, ...]) -> _Outcome | None:
    """Slots 0..n: slot s holds the latest attempt that completed step s-1 (slot 0: an attempt
    entering at the current timestamp). The best attempt is the first to reach the furthest slot."""
    n = len(f.steps)
    optional = [False] + [s.optional for s in f.steps]  # by slot (= 1-based step number)
    slots: list[_Attempt | None] = [None] * (n + 1)
    best_slot, best = 0, _Attempt(0)
    window = f.window_us

    def valid(p: int, t: int) -> bool:
        slot = slots[p]
        return slot is not None and t - slot.entry <= window

    def process(e: _Ev, codes: list[int], multi: bool) -> None:
        nonlocal best_slot, best
        for code in reversed(codes):
            s, exclusion = abs(code), code < 0
            p = s - 1
            # Walk back over optional steps that hold no attempt within the window.
            while p > 0 and not valid(p, e.t) and optional[p]:
                p -= 1
            prev = slots[p]
            if prev is None or e.t - prev.entry > window:
                continue
            here = slots[s]
            if here is not None and here.entry == prev.entry:
                continue  # this attempt already completed step s
            if exclusion:
                if not prev.excluded:
                    slots[p] = replace(prev, excluded=True)
                    if best_slot == p and e.t - best.entry <= window:
                        best = replace(best, excluded=True)
                continue
            if f.attribution_step is not None and p == f.attribution_step and e.value != value:
                continue
            if multi and e.id in prev.used:
                continue
            skip = optional[s]
            new = _Attempt(
                prev.entry,
                prev.excluded,
                prev.times if skip else (*prev.times, e.t),
                prev.used if skip else (*prev.used, e.id),
                prev.bits | (1 << (s - 1)),
                (*prev.at, (s - 1, e.t)),
            )
            if not prev.excluded:
                slots[s] = new
            if s > best_slot or (s == best_slot and best.excluded):
                best_slot, best = s, new
        if f.order == "strict" and not multi:
            for i in range(1, n + 1):
                if i not in codes:
                    slots[i] = None

    for group in _by_timestamp(evs):
        slots[0] = _Attempt(group[0].t)
        if len(group) == 1 or all(e.codes == group[0].codes for e in group):
            for e in group:
                process(e, e.codes, False)
        else:
            # Distinct step sets at one instant: one event per matched step, in step order;
            # exclusions and the strict rule do not apply to them.
            singles = sorted(((c, e) for e in group for c in e.codes if c > 0), key=lambda item: item[0])
            for c, e in singles:
                process(e, [c], True)
    if best_slot == 0 or best.excluded:
        return None
    # The j-th gap between mandatory step times belongs to the j-th mandatory step after the first.
    mandatory = [k for k in range(n) if not f.steps[k].optional]
    seconds: list[float | None] = [None] * n
    for j in range(1, len(best.times)):
        seconds[mandatory[j]] = (best.times[j] - best.times[j - 1]) / 1e6
    return _Outcome(best_slot, best.bits, seconds, best.times, at=dict(best.at))


def _walk_unordered(f: _Funnel, evs: list[_Ev], entry: Any = None) -> _Outcome | None:
    """Unordered attempts: one starting at every event that matches a step (and passes `entry`,
    an _Ev -> bool: its period for trends, its value for step attribution). An event counts for
    the first step it matches; an attempt covers the steps with an event from its entry's instant
    to entry + window (edge included), its times the gaps between those steps' first events there,
    sorted. It is excluded when an exclusion event falls strictly after the entry and strictly
    before its end: its last step when it covers every step, else entry + window. The best is the
    first attempt with the most steps that is not excluded; when every such attempt is excluded,
    the person is out."""
    n = len(f.steps)
    attempts = []  # (count, sorted first times, excluded), in walk order
    for start in evs:
        if not any(c > 0 for c in start.codes) or (entry is not None and not entry(start)):
            continue
        lo, hi = start.t, start.t + f.window_us
        firsts: dict[int, int] = {}
        for e in evs:
            steps = [c for c in e.codes if c > 0]
            if steps and lo <= e.t <= hi:
                step = min(steps)
                firsts[step] = min(firsts.get(step, e.t), e.t)
        times = sorted(firsts.values())
        end = times[-1] if len(times) == n else hi
        excluded = any(any(c < 0 for c in e.codes) and lo < e.t < end for e in evs)
        attempts.append((len(times), times, excluded))
    if not attempts:
        return None
    most = max(count for count, _, _ in attempts)
    kept = [times for count, times, excluded in attempts if count == most and not excluded]
    if not kept:
        return None
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(kept[0])]
    seconds: list[float | None] = [None] * n
    for k in range(1, n):
        if k - 1 < len(gaps):
            seconds[k] = gaps[k - 1]
    return _Outcome(most, (1 << most) - 1, seconds, tuple(kept[0]), at=dict(enumerate(kept[0])))


# --------------------------------------------------------------------------------------------------
# Everything


def _values_of(e: Event, f: _Funnel) -> list[tuple[str, ...]]:
    """The event's breakdown value; with a cohort breakdown, one per listed cohort its person is in."""
    if f.cohorts is not None:
        return [(str(c),) for c in f.cohorts if c == 0 or e.person_id in f.members[c]]
    if f.breakdown is None:
        return [()]
    return [tuple(_text(e, f, i) or "" for i in range(len(f.breakdown)))]


def _raw_text(e: Event, key: str, source: str) -> str | None:
    """A dimension's text before shaping: a hogql expression's or a property's (None: missing)."""
    if source == "hogql":
        return actor_text(evaluator(key)(e)) or None
    return prop_text(e.properties if source == "event" else e.person_properties, key)


def _text(e: Event, f: _Funnel, i: int) -> str | None:
    """Dimension `i`'s text, as a histogram bucket or a normalised URL when asked."""
    assert f.breakdown is not None
    key, source = f.breakdown[i]
    text = _raw_text(e, key, source)
    shape = f.shapes[i] if i < len(f.shapes) else shapes_.PLAIN
    if shape.bins:
        return f.grids[i].label(shapes_.number(text, to_float_or_null))
    if shape.normalize_url:
        return shapes_.normalized(text)
    return text


def _membership(
    cohorts: Mapping[int, Any] | None,
    persons: Sequence[Any] | None,
    events: list[Event],
    timezone: str,
    now: datetime,
    actions: dict[int, dict[str, Any]] | None,
) -> Membership:
    """Cohort id → member person ids as of `now` (tests/oracle/cohorts.py); None without cohorts."""
    if cohorts is None or persons is None:
        return None
    from tests.oracle.cohorts import CohortUnavailable, members

    def of(cohort_id: int) -> set[str]:
        cohort = cohorts.get(cohort_id)
        if cohort is None or cohort.deleted:
            raise FailedPrecondition(f"cohort {cohort_id} does not exist or is deleted")
        try:
            return members(cohort, cohorts, persons, events, timezone=timezone, now=now, actions=actions)
        except (CohortUnavailable, InvalidArgument) as exc:
            # A stored cohort that does not compute is the cohort's fault, not the query's.
            raise FailedPrecondition(f"cohort {cohort_id} cannot be computed: {exc!r}") from None

    return of


def _attributed(f: _Funnel, evs: list[_Ev]) -> list[tuple[str, ...]]:
    """The breakdown values a person's funnel is computed for."""
    if f.breakdown is None:
        return [()]
    blank = ("",) * len(f.breakdown)
    if f.attribution in ("first_touch", "last_touch"):
        candidates = [e for e in evs if any(v != "" for v in e.value)]
        if not candidates:
            return [blank]
        # Ties at one instant: the smallest value first, the largest last (a deterministic choice).
        if f.attribution == "first_touch":
            return [min(candidates, key=lambda e: (e.t, e.value)).value]
        return [max(candidates, key=lambda e: (e.t, e.value)).value]
    if f.attribution == "all_events":
        return sorted({e.value for e in evs})
    assert f.attribution_step is not None
    if f.order == "unordered":
        # Step 0 of an unordered attempt is its first event, which may match any step.
        return sorted({e.value for e in evs if any(c > 0 for c in e.codes)})
    return sorted({e.value for e in evs if f.attribution_step + 1 in e.codes})


def _valued(f: _Funnel, value: tuple[str, ...]) -> Any:
    """Step attribution of an unordered funnel: an attempt's first event must carry `value`."""
    if f.attribution_step is None or f.breakdown is None:
        return None
    return lambda e: e.value == value


def compute_funnels(
    events: Iterable[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: Mapping[int, Any] | None = None,
    persons: Sequence[Any] | None = None,
) -> FunnelsOutput:
    """Evaluate a reference-JSON FunnelsQuery (steps visualisation) over ``events`` (all of the
    environment's events); ``actions``: the environment's live actions by id (reference JSON);
    ``cohorts`` and ``persons``: its cohorts (OracleCohort by id) and persons rows."""
    f, rows = _walk_all(events, query, timezone, week_start_day, now, test_account_filters, actions, cohorts, persons)
    if f.viz != "steps":
        raise ValueError("compute_funnels computes the steps visualisation; see compute_time_to_convert")
    return _shape(f, rows, query, cohorts)


def _cohort_name(cohort_id: int, cohorts: Mapping[int, Any] | None) -> str:
    """A breakdown cohort as shown: its name, "all users" for 0."""
    return "all users" if cohort_id == 0 else str((cohorts or {})[cohort_id].name)


def _walk_all(
    events: Iterable[Event],
    query: dict[str, Any],
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None,
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: Mapping[int, Any] | None = None,
    persons: Sequence[Any] | None = None,
) -> tuple[_Funnel, list[tuple[tuple[str, ...], _Outcome]]]:
    """The funnel and, per person and breakdown value entered, the walk's outcome."""
    f, _, streams = _streams(
        events, query, timezone, week_start_day, now, test_account_filters, actions, cohorts, persons
    )
    rows: list[tuple[tuple[str, ...], _Outcome]] = []
    for person, evs in streams:
        for value in _attributed(f, evs):
            mine = [e for e in evs if e.value == value] if f.attribution == "all_events" else evs
            if f.order == "unordered":
                outcome = _walk_unordered(f, mine, _valued(f, value))
            else:
                outcome = _walk_ordered(f, mine, value)
            if outcome is not None:
                outcome.person = person
                rows.append((value, outcome))
    return f, rows


def _streams(
    events: Iterable[Event],
    query: dict[str, Any],
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None,
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: Mapping[int, Any] | None = None,
    persons: Sequence[Any] | None = None,
) -> tuple[_Funnel, DateRange, list[tuple[str, list[_Ev]]]]:
    """The funnel, its date range and each person's (actor's) funnel events in walking order (with
    a cohort breakdown, one copy of an event per listed cohort its person is in)."""
    events = list(events)
    tz = ZoneInfo(timezone)
    if query.get("samplingFactor") not in (None, 1, 1.0):
        raise NotImplementedError("the oracle does not sample")
    f = _parse(query, tz, actions or {}, _membership(cohorts, persons, events, timezone, now, actions))
    rng = resolve_date_range(
        query.get("dateRange"),
        query.get("interval") or "day",
        timezone=timezone,
        week_start_day=week_start_day,
        now=now,
        events=events,
    )
    firsts = _first_events(f, events, rng.upper)
    query_props = compile_properties(query.get("properties"), tz)
    test_props = compile_properties(test_account_filters or [], tz) if query.get("filterTestAccounts") else None
    n = len(f.steps)
    kept: list[tuple[Event, str, list[int]]] = []
    for e in events:
        if not rng.lower <= e.timestamp <= rng.upper:
            continue
        if not query_props(e) or (test_props is not None and not test_props(e)):
            continue
        if f.actor_of is not None:
            actor = actor_text(f.actor_of(e))
            if actor == "":
                continue  # NULL or '': nobody's event, as a missing group key
        elif f.actor_key is None:
            actor = e.person_id
        else:
            actor = prop_text(e.properties, f.actor_key) or ""
            if actor == "":
                continue  # no group key (session id): nobody's event
        steps = [
            k + 1
            for k, step in enumerate(f.steps)
            if step.matches(e) and (step.first_time is None or e.uuid in firsts[k])
        ]
        kept.append((e, actor, steps))
    for i, shape in enumerate(f.shapes):
        if shape.bins:
            # DECISION: a histogram's bounds come from the events of the range (and the query's
            # filters, with an actor) that match a step, whatever the attribution.
            assert f.breakdown is not None
            key, source = f.breakdown[i]
            numbers = [
                x
                for e, _, steps in kept
                if steps
                and (x := shapes_.number(_raw_text(e, key, source), to_float_or_null)) is not None
            ]
            f.grids[i] = shapes_.grid(numbers, shape.bins)
    per_person: dict[str, list[tuple[int, str, list[int], tuple[str, ...]]]] = {}
    for e, actor, steps in kept:
        codes = list(steps)
        codes += [
            -(i + 1) for i in range(1, n) if any(lo < i <= hi and match(e) for lo, hi, match in f.exclusions)
        ]
        if not codes and f.order != "strict":
            continue
        t = (e.timestamp - _EPOCH) // timedelta(microseconds=1)
        for value in _values_of(e, f):
            per_person.setdefault(actor, []).append((t, e.uuid, codes, value))

    streams = []
    for person, stream in per_person.items():
        # One instant's events are taken in the order of their step codes, then values (the
        # reference leaves it to the engine's row order; it matters when an event may complete
        # a step another event of that instant completes too).
        stream.sort(key=lambda item: (item[0], item[2], item[3], item[1]))
        streams.append((person, [_Ev(t, i, codes, value) for i, (t, _, codes, value) in enumerate(stream)]))
    return f, rng, streams


def _first_events(f: _Funnel, events: list[Event], upper: datetime) -> dict[int, set[str]]:
    """Per first-time step, the uuids of each person's first event of its event or action (with
    filters: of the events passing its filters too), among all events up to `upper`; one
    instant's events are ordered by uuid text."""
    out: dict[int, set[str]] = {}
    for k, step in enumerate(f.steps):
        if step.first_time is None:
            continue
        test = step.matches if step.first_time == "first_time_for_user_with_filters" else step.entity
        first: dict[str, Event] = {}
        for e in events:
            if e.timestamp > upper or test is None or not test(e):
                continue
            held = first.get(e.person_id)
            if held is None or (e.timestamp, e.uuid) < (held.timestamp, held.uuid):
                first[e.person_id] = e
        out[k] = {e.uuid for e in first.values()}
    return out


class FunnelActor(NamedTuple):
    """One walk of an actor who entered the funnel (one per breakdown value it is walked for)."""

    actor: str
    bits: int  # bit k: step k completed by the best attempt
    at: dict[int, int]  # step k -> its time (µs) in the best attempt; unordered: when k + 1 steps were done
    optional: tuple[bool, ...]  # per step: whether it is optional


def funnel_actors(
    events: Iterable[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
) -> list[FunnelActor]:
    """Every walk of an actor who entered the funnel (for funnel paths): with a breakdown, one per
    value the actor is walked for; its completed steps and their times along the best attempt."""
    f, rows = _walk_all(events, query, timezone, 0, now, test_account_filters, actions)
    optional = tuple(s.optional for s in f.steps)
    return [FunnelActor(o.person, o.bits, o.at, optional) for _, o in rows]


@dataclass
class _Group:
    counts: list[int]
    seconds: list[list[float]] = field(default_factory=list)


def _group(f: _Funnel, rows: list[tuple[tuple[str, ...], _Outcome]]) -> dict[tuple[str, ...], _Group]:
    n = len(f.steps)
    groups: dict[tuple[str, ...], _Group] = {}
    for value, outcome in rows:
        g = groups.setdefault(value, _Group([0] * n, [[] for _ in range(n)]))
        for k in range(n):
            if outcome.bits >> k & 1:
                g.counts[k] += 1
            s = outcome.step_seconds[k]
            if s is not None and s > 0:
                g.seconds[k].append(s)
    return groups


def _rank(value: tuple[str, ...], g: _Group) -> tuple[Any, ...]:
    return (*(-c for c in reversed(g.counts)), value)


def _shape(
    f: _Funnel,
    rows: list[tuple[tuple[str, ...], _Outcome]],
    query: dict[str, Any],
    cohorts: Mapping[int, Any] | None = None,
) -> FunnelsOutput:
    n = len(f.steps)
    groups = _group(f, rows)
    has_more = False
    if f.cohorts is not None:
        # Every cohort kept; equal counts in the order the cohorts are listed.
        listed_at = {(str(c),): i for i, c in enumerate(f.cohorts)}
        ordered = sorted(groups.items(), key=lambda item: (*(-c for c in reversed(item[1].counts)), listed_at[item[0]]))
    elif f.breakdown is not None:
        ranked = sorted(groups.items(), key=lambda item: _rank(*item))
        merged: dict[tuple[str, ...], _Group] = {}
        for position, (value, g) in enumerate(ranked):
            key = value if position < f.limit else OTHER
            has_more = has_more or position >= f.limit
            into = merged.setdefault(key, _Group([0] * n, [[] for _ in range(n)]))
            into.counts = [a + b for a, b in zip(into.counts, g.counts, strict=True)]
            into.seconds = [a + b for a, b in zip(into.seconds, g.seconds, strict=True)]
        ordered = sorted(merged.items(), key=lambda item: _rank(*item))
    else:
        ordered = [((), groups.get((), _Group([0] * n, [[] for _ in range(n)])))]
    results = []
    for value, g in ordered:
        steps = []
        for k in range(n):
            step = f.steps[k]
            times = g.seconds[k]
            item: dict[str, Any] = {
                "action_id": step.action_id,
                "name": step.event,
                "custom_name": step.custom_name,
                "order": k,
                "count": g.counts[k],
                "type": step.type,
                "average_conversion_time": statistics.fmean(times) if k > 0 and times else None,
                "median_conversion_time": statistics.median(times) if k > 0 and times else None,
            }
            if f.order == "unordered":
                item.update(action_id=None, name=f"Completed {k + 1} step{'s' if k else ''}", custom_name=None)
            if f.cohorts is not None:
                item["breakdown"] = _cohort_name(int(value[0]), cohorts)
                item["breakdown_value"] = int(value[0])
            elif f.breakdown is not None:
                item["breakdown"] = list(value)
                item["breakdown_value"] = list(value)
            steps.append(item)
        results.append(steps)
    return FunnelsOutput(results, has_more)


# --------------------------------------------------------------------------------------------------
# time_to_convert


def compute_time_to_convert(
    events: Iterable[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    cohorts: Mapping[int, Any] | None = None,
    persons: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """A time_to_convert FunnelsQuery: ``{"bins": [[start_seconds, actors], ...],
    "average_conversion_time": float | None}`` (None when nobody converted)."""
    f, rows = _walk_all(events, query, timezone, week_start_day, now, test_account_filters, None, cohorts, persons)
    if f.viz != "time_to_convert":
        raise ValueError("not a time_to_convert funnel")
    took: list[int] = []  # microseconds, per actor who completed to_step
    for _, outcome in rows:
        if not outcome.bits >> f.to_step & 1:
            continue
        parts = outcome.step_seconds[f.from_step + 1 : f.to_step + 1]
        took.append(sum(round(s * 1e6) for s in parts if s is not None))
    low = math.floor(min(took) / 1e6) if took else 0
    high = math.ceil(max(took) / 1e6) if took else 1
    if f.bin_count is not None:
        count = min(max(f.bin_count, 1), 90)
    else:
        cube = 0
        while cube**3 < len(took):
            cube += 1
        count = min(max(cube, 1), 60)
    width = math.ceil((high - low) / count) or 60
    bins = [[low + i * width, 0] for i in range(count + 1)]
    for t in took:
        bins[math.floor((t / 1e6 - low) / width)][1] += 1
    mean = round(statistics.fmean(took) / 1e6, 2) if took else None
    return {"bins": bins, "average_conversion_time": mean}


# --------------------------------------------------------------------------------------------------
# trends


def compute_funnel_trends(
    events: Iterable[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: Mapping[int, Any] | None = None,
    persons: Sequence[Any] | None = None,
) -> FunnelsOutput:
    """A ``funnelVizType: trends`` FunnelsQuery: ``results`` is one dict per breakdown value
    ``{count, data, days, labels, reached_from_step_count, reached_to_step_count[,
    breakdown_value]}``, in the result order (without a breakdown exactly one, zero-filled when
    nobody entered; with a breakdown and nobody, none); ``has_more`` whether values were cut.

    A person counts in each period they have a first-step event in: the period's walk is the
    ordinary walk over all their events in which only first-step events of that period may enter
    (first-step events of other periods count as not matching the first step; they may still be
    later steps). The person reached step k in the period when that walk's furthest step is k or
    later (a person whose best attempt there is excluded counts nowhere in that period).

    Unordered funnels: a person counts in each period one of their step events is in; that
    period's walk takes only the attempts whose entry (first event) is in the period.
    """
    f, rng, streams = _streams(
        events, query, timezone, week_start_day, now, test_account_filters, actions, cohorts, persons
    )
    if f.viz != "trends":
        raise ValueError("not a trends funnel")
    tz = ZoneInfo(timezone)
    index = {key: i for i, key in enumerate(rng.bucket_keys)}
    interval = rng.interval

    def period(e: _Ev) -> int:
        return index[_bucket_key(_EPOCH + timedelta(microseconds=e.t), interval, tz, week_start_day)]

    periods = len(rng.bucket_keys)
    counts: dict[tuple[str, ...], tuple[list[int], list[int]]] = {}
    for _, evs in streams:
        if f.order == "unordered":
            entered = sorted({period(e) for e in evs if any(c > 0 for c in e.codes)})
        else:
            entered = sorted({period(e) for e in evs if 1 in e.codes})
        for value in _attributed(f, evs):
            mine = [e for e in evs if e.value == value] if f.attribution == "all_events" else evs
            for p in entered:
                if f.order == "unordered":
                    # The attempts whose first event (their entry) is in the period.
                    valued = _valued(f, value)
                    outcome = _walk_unordered(
                        f, mine, lambda e, p=p, valued=valued: period(e) == p and (valued is None or valued(e))
                    )
                else:
                    only_p = [e if period(e) == p else replace(e, codes=[c for c in e.codes if c != 1]) for e in mine]
                    outcome = _walk_ordered(f, only_p, value)
                if outcome is None:
                    continue
                reached_from, reached_to = counts.setdefault(value, ([0] * periods, [0] * periods))
                reached_from[p] += outcome.furthest >= f.from_step + 1
                reached_to[p] += outcome.furthest >= f.to_step + 1
    # Values by actors who reached the from step over all periods, descending, then by value
    # descending; the first `limit` kept.
    if f.cohorts is not None:
        # A cohort's value is its id: equal totals by the id, descending (the reference's prop DESC).
        ranked = sorted(counts.items(), key=lambda item: (-sum(item[1][0]), -int(item[0][0])))
    else:
        ranked = sorted(counts.items(), key=lambda item: (-sum(item[1][0]), tuple(_Desc(v) for v in item[0])))
    has_more = len(ranked) > f.limit
    ranked = ranked[: f.limit]
    if f.breakdown is None and not ranked:
        ranked = [((), ([0] * periods, [0] * periods))]
    results = []
    for value, (reached_from, reached_to) in ranked:
        item: dict[str, Any] = {
            "count": periods,
            "data": [round(100 * t / fr, 2) if fr else 0.0 for fr, t in zip(reached_from, reached_to, strict=True)],
            "days": list(rng.days),
            "labels": list(rng.labels),
            "reached_from_step_count": reached_from,
            "reached_to_step_count": reached_to,
        }
        if f.cohorts is not None:
            item["breakdown_value"] = _cohort_name(int(value[0]), cohorts)
        elif f.breakdown is not None:
            item["breakdown_value"] = [v or "None" for v in value]
        results.append(item)
    return FunnelsOutput(results, has_more)


class _Desc:
    """A text that sorts in descending order."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __lt__(self, other: _Desc) -> bool:
        return self.text > other.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and self.text == other.text
