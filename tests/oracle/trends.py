"""Pure-Python reference computation of a TrendsQuery (the "oracle").

It implements docs/engine-semantics.md literally, over an in-memory list of events, with the
standard library plus dateutil/zoneinfo. It is deliberately naive (loops over events) and shares no
code with the SQL engine in server/queries/.

API
---
``compute_trends(events, query, *, timezone, week_start_day, now, test_account_filters=None)``
returns a :class:`TrendsOutput` named tuple ``(results, has_more)``:

* ``results``: the list of result items in reference JSON shape, in the contract's order. Each item
  has ``data, days, labels, count, label, order``; plus ``breakdown_value`` when the query has a
  breakdown; ``compare`` (True) and ``compare_label`` when compare is on; ``aggregated_value`` for
  total-value displays (then ``data``, ``days`` and ``labels`` are ``[]`` and ``count`` is 0.0);
  ``raw_data`` (the line before smoothing) when ``smoothingIntervals`` > 1 smoothed ``data``.
  All numbers are floats. The legacy ``action``/``filter`` echoes are not produced.
* ``has_more``: True when a breakdown cut values into the Other bucket (any series, any period).

``results, has_more = compute_trends(...)`` works, and so do ``out.results`` / ``out.has_more``.

Errors are raised as :class:`InvalidArgument` / :class:`FailedPrecondition` (both
:class:`OracleError`, with a ``code`` attribute naming the gRPC status the engine must return).

``resolve_date_range`` / ``previous_date_range`` expose the resolved range (bounds, bucket grid,
``days`` and ``labels``) for tests of the date machinery on its own.

Floating point: sums use ``math.fsum``; compare the engine's values with a relative tolerance.
Property text assumes the engine stores ``json.dumps(properties)`` (see :meth:`Event.properties_json`).

Decisions where the contract is silent are marked ``DECISION:`` in comments.
"""

from __future__ import annotations

import calendar
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from fractions import Fraction
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from tests.oracle import breakdown_shapes as shapes_
from tests.support.jsontext import number_text
from tests.support.jsontext import value_text as canonical_text

NULL_LABEL = "$$_posthog_breakdown_null_$$"
OTHER_LABEL = "$$_posthog_breakdown_other_$$"

MAX_BUCKETS = 10_000
DEFAULT_BREAKDOWN_LIMIT = 25
INTERVALS = ("minute", "hour", "day", "week", "month")
TOTAL_VALUE_DISPLAYS = frozenset({"BoldNumber", "ActionsPie", "ActionsBarValue", "ActionsTable", "WorldMap"})
CUMULATIVE_DISPLAY = "ActionsLineGraphCumulative"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_END_OF_DAY = time(23, 59, 59, 999999)


# --------------------------------------------------------------------------------------------------
# Public types


class OracleError(Exception):
    """A query the contract rejects; ``code`` is the gRPC status name the engine must use."""

    code = "UNKNOWN"


class InvalidArgument(OracleError):
    code = "INVALID_ARGUMENT"


class FailedPrecondition(OracleError):
    code = "FAILED_PRECONDITION"


@dataclass
class Event:
    """One stored event. ``timestamp`` must be timezone-aware (it is normalised to UTC)."""

    uuid: str
    event: str
    distinct_id: str
    person_id: str
    timestamp: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    person_properties: dict[str, Any] = field(default_factory=dict)
    elements_chain: str = ""

    def __post_init__(self) -> None:
        if self.timestamp.tzinfo is None:
            raise ValueError("Event.timestamp must be timezone-aware")
        self.timestamp = self.timestamp.astimezone(UTC)

    def properties_json(self) -> str:
        """The JSON text the oracle assumes is stored (number text is ``json.dumps`` of the value)."""
        return json.dumps(self.properties)

    def person_properties_json(self) -> str:
        return json.dumps(self.person_properties)


class TrendsOutput(NamedTuple):
    results: list[dict[str, Any]]
    has_more: bool


@dataclass(frozen=True)
class DateRange:
    """A resolved period. Bucket keys are local dates (day/week/month) or UTC instants (hour/minute)."""

    interval: str
    date_from: datetime  # aware, environment time zone (resolved date_from, before lower-bound truncation)
    date_to: datetime  # aware, environment time zone (last instant counted)
    lower: datetime  # aware UTC: first instant whose events count
    upper: datetime  # aware UTC: last instant whose events count
    bucket_keys: tuple[Any, ...]
    days: tuple[str, ...]
    labels: tuple[str, ...]


# --------------------------------------------------------------------------------------------------
# Property text and numbers

_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def prop_text(props: dict[str, Any], key: str) -> str | None:
    """What a filter or breakdown sees: flat key, JSON null / '' / missing → None."""
    if key not in props:
        return None
    value = props[key]
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or None
    # Numbers, objects, arrays: the canonical text of the contract (ClickHouse's JSON parser):
    # 5.0 → "5", 1.5e-07 → "1.5e-7", objects minified.
    return canonical_text(value) or ""


def to_float_or_null(text: str | None) -> float | None:
    """toFloatOrNull. DECISION: decimal and exponent notation with an optional sign only; no
    whitespace, no inf/nan, no hex (anything else is NULL)."""
    if text is None or not _FLOAT_RE.fullmatch(text):
        return None
    return float(text)


def value_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return number_text(value)  # the same canonical form as a stored number's text
    raise InvalidArgument(f"unsupported property filter value {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------------
# Property filters

Pred = Callable[[Event], bool]
TextPred = Callable[[str | None], bool]

_OPERATORS = frozenset(
    {
        "exact",
        "is_not",
        "icontains",
        "not_icontains",
        "regex",
        "not_regex",
        "gt",
        "gte",
        "lt",
        "lte",
        "min",
        "max",
        "between",
        "not_between",
        "is_set",
        "is_not_set",
        "is_date_exact",
        "is_date_before",
        "is_date_after",
        "in",
        "not_in",
    }
)
_NEGATED_LIST_AND = frozenset({"is_not", "not_icontains", "not_regex"})
# Constructs Python's `re` accepts but RE2 rejects (lookaround, backreferences).
_NOT_RE2 = re.compile(r"\(\?<?[=!]|\\[1-9]|\(\?P=")


def _true(_: Any) -> bool:
    return True


def _compile_regex(pattern: str) -> re.Pattern[str]:
    # DECISION: Python `re` stands in for RE2; patterns using constructs RE2 lacks are rejected
    # like an invalid pattern. Tests should stay in the common subset.
    if _NOT_RE2.search(pattern):
        raise InvalidArgument(f"invalid regex {pattern!r}")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InvalidArgument(f"invalid regex {pattern!r}: {exc}") from None


def _compare(op: str, left: Any, right: Any) -> bool:
    if op in ("gt",):
        return bool(left > right)
    if op in ("gte", "min"):
        return bool(left >= right)
    if op in ("lt",):
        return bool(left < right)
    return bool(left <= right)  # lte, max


@dataclass(frozen=True)
class _When:
    """A parsed datetime text: a calendar day (date_only) or an instant."""

    date_only: bool
    day: date  # the local calendar day
    instant: datetime  # UTC; for a date-only value, local midnight


_ISO_RE = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
    r"(?:[T ](?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?"
)


def _parse_iso(text: str, tz: ZoneInfo) -> tuple[datetime, bool] | None:
    """ISO date / datetime → (naive local wall clock, date_only). Offsets are converted to ``tz``."""
    m = _ISO_RE.fullmatch(text.strip())
    if not m:
        return None
    try:
        naive = datetime(
            int(m["y"]),
            int(m["mo"]),
            int(m["d"]),
            int(m["h"] or 0),
            int(m["mi"] or 0),
            int(m["s"] or 0),
            int((m["f"] or "0").ljust(6, "0")),
        )
    except ValueError:
        return None
    date_only = m["h"] is None
    offset = m["tz"]
    if offset:
        if offset == "Z":
            off = UTC
        else:
            digits = offset[1:].replace(":", "")
            minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
            off = dt_timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
        naive = naive.replace(tzinfo=off).astimezone(tz).replace(tzinfo=None)
        date_only = False
    return naive, date_only


def _parse_when(text: str | None, tz: ZoneInfo) -> _When | None:
    # DECISION: "best effort" = ISO 8601 dates/datetimes (T or space, optional fraction, Z or
    # ±hh[:mm]); unix-timestamp numbers and other free forms are unparsable (→ false).
    if text is None:
        return None
    parsed = _parse_iso(text, tz)
    if parsed is None:
        return None
    naive, date_only = parsed
    return _When(date_only, naive.date(), _to_utc(naive, tz))


def _compile_scalar(op: str, value: Any, tz: ZoneInfo) -> TextPred:
    if isinstance(value, dict | list | tuple):
        raise InvalidArgument(f"operator {op} does not take {value!r}")
    vt = value_text(value)
    if vt is None:
        # DECISION: a null value: exact → is NULL, is_not → is not NULL (reference `a = NULL`);
        # every other value-taking operator rejects it.
        if op == "exact":
            return lambda t: t is None
        if op == "is_not":
            return lambda t: t is not None
        raise InvalidArgument(f"operator {op} needs a value")
    if op == "exact":
        return lambda t: t is not None and t == vt
    if op == "is_not":
        return lambda t: t is None or t != vt
    if op in ("icontains", "not_icontains"):
        needle = vt.lower()
        if op == "icontains":
            return lambda t: t is not None and needle in t.lower()
        return lambda t: t is None or needle not in t.lower()
    if op in ("regex", "not_regex"):
        rx = _compile_regex(vt)
        if op == "regex":
            return lambda t: t is not None and rx.search(t) is not None
        return lambda t: t is None or rx.search(t) is None
    if op in ("gt", "gte", "lt", "lte", "min", "max"):
        # DECISION: a bool value is not a number (compares as the string "true"/"false").
        number = (
            float(value) if _is_number(value) else to_float_or_null(vt) if isinstance(value, str) else None
        )
        if number is not None:

            def numeric(t: str | None) -> bool:
                x = to_float_or_null(t)
                return x is not None and _compare(op, x, number)

            return numeric
        return lambda t: t is not None and _compare(op, t, vt)
    if op in ("is_date_exact", "is_date_before", "is_date_after"):
        # DECISION: an unparsable filter value makes the filter false (not an error).
        target = _parse_when(vt, tz)

        def date_test(t: str | None) -> bool:
            if target is None:
                return False
            w = _parse_when(t, tz)
            if w is None:
                return False
            if target.date_only:
                a, b = w.day, target.day
            else:
                a, b = w.instant, target.instant  # type: ignore[assignment]
            if op == "is_date_exact":
                return a == b
            return a < b if op == "is_date_before" else a > b

        return date_test
    raise InvalidArgument(f"unknown operator {op}")  # pragma: no cover - filtered earlier


def _compile_operator(op: str, value: Any, tz: ZoneInfo) -> TextPred:
    if op == "is_set":
        return lambda t: t is not None
    if op == "is_not_set":
        return lambda t: t is None
    if op in ("between", "not_between"):
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise InvalidArgument(f"{op} needs a list of two numbers")
        bounds: list[float] = []
        for v in value:
            # DECISION: numeric strings are accepted as bounds.
            number = float(v) if _is_number(v) else to_float_or_null(v) if isinstance(v, str) else None
            if number is None:
                raise InvalidArgument(f"{op} needs a list of two numbers")
            bounds.append(number)
        lo, hi = bounds
        if lo > hi:
            raise InvalidArgument(f"{op}: min > max")
        if op == "between":
            return lambda t: (x := to_float_or_null(t)) is not None and lo <= x <= hi
        return lambda t: (x := to_float_or_null(t)) is not None and (x < lo or x > hi)
    if isinstance(value, list | tuple):
        # DECISION: "an empty list matches everything" applies to every list-valued operator,
        # in/not_in included (reference: a zero-length list is `true`).
        if not value:
            return _true
        if any(v is None or isinstance(v, dict | list | tuple) for v in value):
            # Contract: a list value holds strings, numbers or booleans (null items are invalid).
            raise InvalidArgument(f"a list value holds strings, numbers or booleans, not {value!r}")
        if op == "exact":
            op = "in"
        elif op == "is_not":
            op = "not_in"
        if op in ("in", "not_in"):
            return _membership(op, list(value))
        if len(value) == 1:
            return _compile_scalar(op, value[0], tz)
        parts = [_compile_scalar(op, v, tz) for v in value]
        if op in _NEGATED_LIST_AND:
            return lambda t: all(p(t) for p in parts)
        return lambda t: any(p(t) for p in parts)
    if op in ("in", "not_in"):
        # DECISION: a scalar value with in/not_in is a one-item list.
        return _membership(op, [value])
    return _compile_scalar(op, value, tz)


def _membership(op: str, values: list[Any]) -> TextPred:
    texts = {value_text(v) for v in values}  # None items match NULL text (transform_null_in=1)
    if op == "in":
        return lambda t: t in texts
    return lambda t: t not in texts


def _is_group(item: dict[str, Any]) -> bool:
    return "values" in item and item.get("type") in ("AND", "OR")


# A cohort filter's cohort id → "is this person id in it" (see compute_trends: cohorts).
CohortTest = Callable[[int], Callable[[str], bool]]


def cohort_filter_id(props: dict[str, Any]) -> int:
    """The cohort a cohort filter names (`{"type": "cohort", "key": "id", "value": <id>}`)."""
    key = props.get("key")
    if key is not None and key != "id":
        raise InvalidArgument('a cohort filter\'s key is "id"')
    if props.get("operator") not in (None, "in", "not_in", "exact"):
        raise InvalidArgument("a cohort filter's operator is in or not_in")
    value = props.get("value")
    # DECISION: the id as an integer, or (legacy filters) as a text of digits.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise InvalidArgument("a cohort filter's value is a positive cohort id")
    return value


def _cohort_filter(props: dict[str, Any], cohorts: CohortTest | None) -> Pred:
    cohort_id = cohort_filter_id(props)
    if cohorts is None:
        raise InvalidArgument("cohort filters are not supported here")
    inside = cohorts(cohort_id)
    # Reference: not_in or negation (either, or both) keeps the persons outside the cohort.
    if props.get("negation") or props.get("operator") == "not_in":
        return lambda e: not inside(e.person_id)
    return lambda e: inside(e.person_id)


def compile_properties(props: Any, tz: ZoneInfo, cohorts: CohortTest | None = None) -> Pred:
    """A list (AND), a group {type: AND|OR, values}, or a single filter → predicate on events;
    `cohorts` evaluates cohort filters (without it they are refused)."""
    if props is None:
        return _true
    if isinstance(props, list):
        preds = [compile_properties(p, tz, cohorts) for p in props]
        return lambda e: all(p(e) for p in preds)
    if not isinstance(props, dict):
        raise InvalidArgument(f"bad property filter {props!r}")
    if _is_group(props):
        preds = [compile_properties(p, tz, cohorts) for p in props.get("values") or []]
        if props["type"] == "AND":
            return lambda e: all(p(e) for p in preds)
        if not preds:
            return _true  # an empty group matches everything
        return lambda e: any(p(e) for p in preds)
    if not props:
        return _true  # EmptyPropertyFilter
    ftype = props.get("type") or "event"
    if props.get("negation") and ftype != "cohort":
        # DECISION: negation belongs to cohort filters; elsewhere the operator says it.
        raise InvalidArgument("negation applies to cohort filters only")
    if ftype == "cohort":
        return _cohort_filter(props, cohorts)
    if ftype in ("hogql", "element"):
        from tests.oracle import filter_types  # it reads this module's Event and value texts

        if ftype == "hogql":
            return filter_types.hogql_filter(props)
        return filter_types.element_filter(props, _compile_regex)
    if ftype not in ("event", "person"):
        raise InvalidArgument(f"unsupported property filter type {ftype!r}")
    key = props.get("key")
    if key is None or key == "":
        # Contract ("Property filters"): a filter without a key is INVALID_ARGUMENT (the reference
        # ignores it; we name the field instead).
        raise InvalidArgument("a property filter needs a key")
    key = str(key)
    op = props.get("operator") or "exact"
    if op not in _OPERATORS:
        raise InvalidArgument(f"unsupported operator {op!r}")
    test = _compile_operator(op, props.get("value"), tz)
    if ftype == "event":
        return lambda e: test(prop_text(e.properties, key))
    return lambda e: test(prop_text(e.person_properties, key))


# --------------------------------------------------------------------------------------------------
# Dates


def _to_utc(naive: datetime, tz: ZoneInfo) -> datetime:
    """Local wall-clock → instant (fold=0: the earlier of an ambiguous time; a gap time uses the
    pre-transition offset)."""
    return naive.replace(tzinfo=tz).astimezone(UTC)


def _local_naive(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


_REL_RE = re.compile(r"-?(?P<n>\d+)?(?P<unit>[a-zA-Z])(?P<pos>Start|End)?")
# The reference table's units h d w m M s q y (M = minutes); the reference regex also accepts the
# upper-case H D W Q Y (and S), which mean the same as the lower-case ones (contract: "Date range").
_REL_UNITS = frozenset("hdwmMsqyHDWQYS")


def _relative_delta(unit: str, n: int) -> relativedelta:
    if unit == "h":
        return relativedelta(hours=n)
    if unit == "d":
        return relativedelta(days=n)
    if unit == "w":
        return relativedelta(weeks=n)
    if unit == "m":
        return relativedelta(months=n)
    if unit == "M":
        return relativedelta(minutes=n)
    if unit == "s":
        return relativedelta(seconds=n)
    if unit == "q":
        return relativedelta(weeks=13 * n)
    return relativedelta(years=n)


@dataclass(frozen=True)
class _Parsed:
    value: datetime  # naive local wall clock
    unit: str | None  # relative unit letter; None when absolute
    n: int


def _parse_relative(text: str) -> tuple[str, int, str | None] | None:
    m = _REL_RE.fullmatch(text.strip())
    if not m or m["unit"] not in _REL_UNITS:
        return None
    unit = m["unit"] if m["unit"] == "M" else m["unit"].lower()
    return unit, int(m["n"] or 0), m["pos"]


def _apply_relative(base: datetime, unit: str, n: int, pos: str | None) -> datetime:
    """``base`` (naive local wall clock) minus the delta, with the table's Start/End fields set."""
    value = base - _relative_delta(unit, n)
    # Start/End only where the reference table defines them; elsewhere they are ignored.
    if unit == "h" and pos == "Start":
        value = value.replace(minute=0, second=0, microsecond=0)
    elif unit == "h" and pos == "End":
        value = value.replace(minute=59, second=59, microsecond=999999)
    elif unit == "d" and pos == "Start":
        value = datetime.combine(value.date(), time())
    elif unit == "d" and pos == "End":
        value = datetime.combine(value.date(), _END_OF_DAY)
    elif unit == "m" and pos == "Start":
        value = value.replace(day=1)
    elif unit in ("m", "y") and pos == "End":
        # Literal reference table: End sets day=31 (clamped to the month's end); for `y` too.
        value = value.replace(day=min(31, calendar.monthrange(value.year, value.month)[1]))
    elif unit == "y" and pos == "Start":
        value = value.replace(month=1, day=1)
    return value


def _parse_date(text: str, tz: ZoneInfo, now: datetime, always_truncate: bool) -> _Parsed:
    absolute = _parse_iso(text, tz)
    if absolute is not None:
        return _Parsed(absolute[0], None, 0)
    rel = _parse_relative(text)
    if rel is None:
        raise InvalidArgument(f"unparsable date {text!r}")
    unit, n, pos = rel
    # DECISION: relative arithmetic is wall-clock arithmetic in the environment time zone
    # (so -24h across a DST change is 24 wall-clock hours, as with an aware zoneinfo datetime).
    value = _apply_relative(now, unit, n, pos)
    if always_truncate:
        if unit == "h":
            value = value.replace(minute=0, second=0, microsecond=0)
        else:
            value = datetime.combine(value.date(), time())
    return _Parsed(value, unit, n)


def _week_start(d: date, week_start_day: int) -> date:
    back = d.isoweekday() % 7 if week_start_day == 0 else d.weekday()
    return d - timedelta(days=back)


def _next_month(d: date) -> date:
    return date(d.year + (d.month == 12), d.month % 12 + 1, 1)


def _bucket_key(ts: datetime, interval: str, tz: ZoneInfo, week_start_day: int) -> Any:
    local = ts.astimezone(tz)
    if interval == "day":
        return local.date()
    if interval == "week":
        return _week_start(local.date(), week_start_day)
    if interval == "month":
        return local.date().replace(day=1)
    # hour/minute: the local wall-clock floor, as an instant (keeps both halves of a DST fold apart).
    if interval == "hour":
        return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
    return local.replace(second=0, microsecond=0).astimezone(UTC)


def _day_label(d: date) -> str:
    return f"{d.day}-{_MONTHS[d.month - 1]}-{d.year}"


def _week_label(start: date, range_from: date, range_to: date) -> str:
    lo = max(start, range_from)
    hi = min(start + timedelta(days=6), range_to)
    if lo >= hi:
        return _day_label(lo)
    if lo.year != hi.year:
        return f"{_day_label(lo)} – {_day_label(hi)}"
    if lo.month != hi.month:
        return f"{lo.day}-{_MONTHS[lo.month - 1]} – {hi.day}-{_MONTHS[hi.month - 1]}"
    return f"{lo.day}–{hi.day} {_MONTHS[lo.month - 1]}"


def _grid(
    interval: str, from_naive: datetime, to_naive: datetime, tz: ZoneInfo, week_start_day: int
) -> tuple[tuple[Any, ...], tuple[str, ...], tuple[str, ...]]:
    keys: list[Any] = []
    days: list[str] = []
    labels: list[str] = []

    def check() -> None:
        if len(keys) > MAX_BUCKETS:
            raise InvalidArgument(f"more than {MAX_BUCKETS} buckets")

    if interval in ("day", "week", "month"):
        d = from_naive.date()
        if interval == "week":
            d = _week_start(d, week_start_day)
        elif interval == "month":
            d = d.replace(day=1)
        # (date_from after date_to is rejected before; a previous period gets its count by moving date_to.)
        while datetime.combine(d, time()) <= to_naive:
            keys.append(d)
            check()
            days.append(d.isoformat())
            if interval == "day":
                labels.append(_day_label(d))
                d += timedelta(days=1)
            elif interval == "week":
                labels.append(_week_label(d, from_naive.date(), to_naive.date()))
                d += timedelta(days=7)
            else:
                labels.append(f"{_MONTHS[d.month - 1]} {d.year}")
                d = _next_month(d)
    else:
        # DECISION: hour/minute buckets step in absolute time from the local-aligned start, so a
        # DST fall-back day has 25 hour buckets (two labelled 01:00) and a spring-forward day 23.
        if interval == "hour":
            start = from_naive.replace(minute=0, second=0, microsecond=0)
            step = timedelta(hours=1)
        else:
            start = from_naive.replace(second=0, microsecond=0)
            step = timedelta(minutes=1)
        instant = _to_utc(start, tz)
        upper = _to_utc(to_naive, tz)
        while instant <= upper:
            keys.append(instant)
            check()
            local = instant.astimezone(tz)
            days.append(local.strftime("%Y-%m-%d %H:%M:%S"))
            labels.append(f"{local.day}-{_MONTHS[local.month - 1]} {local.hour:02d}:{local.minute:02d}")
            instant += step
    return tuple(keys), tuple(days), tuple(labels)


@dataclass(frozen=True)
class _RangeInputs:
    interval: str
    from_naive: datetime
    to_naive: datetime
    from_unit: str | None  # relative unit of date_from (None: absolute or "all")
    from_n: int
    from_is_all: bool
    to_given: bool
    use_start_of_interval: bool
    total_value: bool


class _Env:
    def __init__(self, timezone: str, week_start_day: int, now: datetime, events: Sequence[Event]) -> None:
        if week_start_day not in (0, 1):
            raise ValueError("week_start_day must be 0 (Sunday) or 1 (Monday)")
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.tz = ZoneInfo(timezone)
        self.week_start_day = week_start_day
        self.now = _local_naive(now, self.tz)
        first = min((e.timestamp for e in events), default=None)
        self.first_event = _local_naive(first, self.tz) if first is not None else self.now
        # Every session's duration in whole seconds, from all the environment's events (contract:
        # "$session_duration"): second boundaries between its first and its last event.
        spans: dict[str, tuple[datetime, datetime]] = {}
        for e in events:
            sid = _session_id(e)
            if sid:
                low, high = spans.get(sid, (e.timestamp, e.timestamp))
                spans[sid] = (min(low, e.timestamp), max(high, e.timestamp))
        self.session_seconds = {
            sid: (high.replace(microsecond=0) - low.replace(microsecond=0)).total_seconds()
            for sid, (low, high) in spans.items()
        }


def _lower_naive(inputs: _RangeInputs, from_naive: datetime) -> datetime:
    if not inputs.use_start_of_interval:
        return from_naive
    if inputs.interval == "minute":
        return from_naive.replace(second=0, microsecond=0)
    if inputs.interval == "hour":
        return from_naive.replace(minute=0, second=0, microsecond=0)
    if inputs.interval == "month":
        return datetime.combine(from_naive.date().replace(day=1), time())
    return datetime.combine(from_naive.date(), time())  # day, and week (the first week is partial)


def _range_inputs(
    date_range: dict[str, Any] | None, interval: str, display: str | None, env: _Env
) -> _RangeInputs:
    dr = date_range or {}
    total_value = display in TOTAL_VALUE_DISPLAYS
    if total_value:
        interval = "day"
    exact = display == "BoldNumber"
    explicit = bool(dr.get("explicitDate"))
    raw_from = dr.get("date_from") or None
    from_is_all = raw_from == "all"
    if from_is_all:
        # DECISION: "all" behaves as an absolute date_from (truncated like one).
        parsed_from = _Parsed(env.first_event, None, 0)
    elif raw_from is None:
        # Reference §2.2: a missing date_from is today 00:00 - 7 days, for every display (BoldNumber's
        # exact range applies to a given relative date_from only); it counts as "-7d" for the kludge.
        parsed_from = _Parsed(datetime.combine(env.now.date() - timedelta(days=7), time()), "d", 7)
    else:
        parsed_from = _parse_date(
            raw_from, env.tz, env.now, always_truncate=not (interval == "minute" or exact)
        )
    raw_to = dr.get("date_to")
    to_given = bool(raw_to)
    if to_given:
        parsed_to = _parse_date(raw_to, env.tz, env.now, always_truncate=False)
        to_relative = parsed_to.unit is not None
    else:
        parsed_to = _Parsed(env.now, None, 0)
        to_relative = True
    to_naive = parsed_to.value
    if exact and not to_given:
        pass  # exactly now
    elif not explicit:
        if interval not in ("hour", "minute"):
            to_naive = datetime.combine(to_naive.date(), _END_OF_DAY)
        elif interval == "hour" and to_relative:
            to_naive = to_naive.replace(minute=59, second=59, microsecond=999999)
        elif interval == "minute" and to_relative:
            to_naive = to_naive.replace(second=59, microsecond=999999)
    from_naive = parsed_from.value
    if from_is_all and _to_utc(from_naive, env.tz) > _to_utc(to_naive, env.tz):
        # The first event lies after the range's end: a range of one instant (one bucket).
        from_naive = to_naive
    if _to_utc(from_naive, env.tz) > _to_utc(to_naive, env.tz):
        # Contract ("Date range"): date_from after date_to is INVALID_ARGUMENT.
        raise InvalidArgument(f"date_from {from_naive} is after date_to {to_naive}")
    from_relative = parsed_from.unit is not None
    use_start = not (
        exact
        or explicit
        or (interval in ("hour", "minute") and from_relative)
        or (interval == "day" and parsed_from.unit == "h")
    )
    return _RangeInputs(
        interval=interval,
        from_naive=from_naive,
        to_naive=to_naive,
        from_unit=parsed_from.unit,
        from_n=parsed_from.n,
        from_is_all=from_is_all,
        to_given=to_given,
        use_start_of_interval=use_start,
        total_value=total_value,
    )


def _build_range(inputs: _RangeInputs, from_naive: datetime, to_naive: datetime, env: _Env) -> DateRange:
    tz = env.tz
    if inputs.total_value:
        keys: tuple[Any, ...] = ()
        days: tuple[str, ...] = ()
        labels: tuple[str, ...] = ()
    else:
        keys, days, labels = _grid(inputs.interval, from_naive, to_naive, tz, env.week_start_day)
    return DateRange(
        interval=inputs.interval,
        date_from=from_naive.replace(tzinfo=tz),
        date_to=to_naive.replace(tzinfo=tz),
        lower=_to_utc(_lower_naive(inputs, from_naive), tz),
        upper=_to_utc(to_naive, tz),
        bucket_keys=keys,
        days=days,
        labels=labels,
    )


def _previous_bounds(inputs: _RangeInputs, compare_to: str | None, env: _Env) -> tuple[datetime, datetime]:
    """The previous period's (date_from, date_to), naive local, with as many buckets as the current one."""
    prev_from, prev_to = _shifted_bounds(inputs, compare_to, env)
    return prev_from, _with_bucket_count(inputs, prev_from, prev_to, env)


def _shifted_bounds(inputs: _RangeInputs, compare_to: str | None, env: _Env) -> tuple[datetime, datetime]:
    f, t = inputs.from_naive, inputs.to_naive
    tz = env.tz
    if compare_to:
        rel = _parse_relative(compare_to)
        if rel is None:
            # DECISION: compare_to must be a relative string.
            raise InvalidArgument(f"compare_to must be relative, got {compare_to!r}")
        # Contract ("Compare"): both bounds shifted as a relative date_from would be, Start/End included.
        return _apply_relative(f, *rel), _apply_relative(t, *rel)
    start, end = _to_utc(f, tz), _to_utc(t, tz)
    if inputs.interval == "minute" or (inputs.interval == "hour" and end - start < timedelta(days=1)):
        # Contract ("Compare"): a minute range, or an hour range shorter than a day, compares with
        # the immediately preceding span of elapsed time; when that span starts in the same bucket
        # as the current one, it starts one interval earlier; hour: from the start of its hour.
        elapsed = end - start
        step = timedelta(minutes=1) if inputs.interval == "minute" else timedelta(hours=1)

        def bucket(instant: datetime) -> datetime:
            return _bucket_key(instant, inputs.interval, tz, env.week_start_day)  # type: ignore[no-any-return]

        prev = start - elapsed
        if bucket(prev) >= bucket(start):
            prev = start - step
        if inputs.interval == "hour":
            prev = bucket(prev)
        return _local_naive(prev, tz), _local_naive(prev + elapsed, tz)
    diff = t - f
    # day/week/month (and hour over a day or more): keep the clock times of the current bounds.
    prev_from = datetime.combine((f - diff).date(), f.time())
    if prev_from >= f:
        # An explicit range shorter than a day: the previous period is the day before.
        prev_from -= timedelta(days=1)
    if (
        inputs.interval == "day"
        and inputs.from_unit == "d"
        and inputs.from_n > 0
        and inputs.from_n % 7 == 0
        and not inputs.to_given
    ):
        # The week-over-week kludge. DECISION: applied before prev_to is derived, so the previous
        # period is shifted by a day as a whole (-7d: previous = days -14..-7, overlapping the
        # current period's first day). It also applies to BoldNumber (interval forced to day).
        prev_from += timedelta(days=1)
    return prev_from, prev_from + diff


def _with_bucket_count(inputs: _RangeInputs, prev_from: datetime, prev_to: datetime, env: _Env) -> datetime:
    """Contract ("Compare"): the previous period has the current period's bucket count; when the
    shifted period would have another count, its date_to moves to the end of bucket number
    ``count`` (the instant before bucket ``count + 1`` starts)."""
    tz, wsd, interval = env.tz, env.week_start_day, inputs.interval
    count = len(_grid(interval, inputs.from_naive, inputs.to_naive, tz, wsd)[0])
    in_order = _to_utc(prev_from, tz) <= _to_utc(prev_to, tz)
    if in_order and len(_grid(interval, prev_from, prev_to, tz, wsd)[0]) == count:
        return prev_to
    far = {
        "minute": timedelta(minutes=count + 3),
        "hour": timedelta(hours=count + 3),
        "day": timedelta(days=count + 2),
        "week": timedelta(weeks=count + 2),
    }.get(interval, relativedelta(months=count + 2))
    keys = _grid(interval, prev_from, prev_from + far, tz, wsd)[0]
    start = keys[count]
    if isinstance(start, datetime):  # hour/minute keys are UTC instants
        return _local_naive(start - timedelta(microseconds=1), tz)
    return _local_naive(_to_utc(datetime.combine(start, time()), tz) - timedelta(microseconds=1), tz)


def resolve_date_range(
    date_range: dict[str, Any] | None,
    interval: str = "day",
    *,
    display: str | None = None,
    timezone: str,
    week_start_day: int,
    now: datetime,
    events: Sequence[Event] = (),
) -> DateRange:
    """The current period of a query (``events`` only matter for ``date_from: "all"``)."""
    env = _Env(timezone, week_start_day, now, events)
    inputs = _range_inputs(date_range, _check_interval(interval), display, env)
    return _build_range(inputs, inputs.from_naive, inputs.to_naive, env)


def previous_date_range(
    date_range: dict[str, Any] | None,
    interval: str = "day",
    *,
    compare_to: str | None = None,
    display: str | None = None,
    timezone: str,
    week_start_day: int,
    now: datetime,
    events: Sequence[Event] = (),
) -> DateRange:
    """The compare (previous) period of a query; labels here are still dates (not "day N")."""
    env = _Env(timezone, week_start_day, now, events)
    inputs = _range_inputs(date_range, _check_interval(interval), display, env)
    prev_from, prev_to = _previous_bounds(inputs, compare_to, env)
    return _build_range(inputs, prev_from, prev_to, env)


def _check_interval(interval: str | None) -> str:
    interval = interval or "day"
    if interval not in INTERVALS:
        # DECISION: "second" (and anything else) is INVALID_ARGUMENT.
        raise InvalidArgument(f"unsupported interval {interval!r}")
    return interval


# --------------------------------------------------------------------------------------------------
# Series

_BASE_MATHS = frozenset(
    {
        "total",
        "dau",
        "weekly_active",
        "monthly_active",
        "unique_session",
        "first_time_for_user",
        "first_matching_event_for_user",
    }
)
_QUANTILES = {"median": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}
_PROPERTY_MATHS = frozenset({"sum", "avg", "min", "max", *_QUANTILES})
_COUNT_PER_ACTOR = {f"{agg}_count_per_actor": agg for agg in ("avg", "min", "max", *_QUANTILES)}
_FIRST_TIME = frozenset({"first_time_for_user", "first_matching_event_for_user"})


@dataclass
class _Series:
    index: int
    label: str
    math: str
    math_property: str | None
    math_property_person: bool
    multiplier: float
    name_match: Pred  # event name(s) only
    match: Pred  # the full series predicate (names + node properties), without query/test filters
    math_hogql: str | None = None  # math "hogql": the aggregate expression


def _event_name_pred(name: str | None) -> Pred:
    if name is None:
        return _true
    return lambda e: e.event == name


def _action_of(node: dict[str, Any], actions: dict[int, dict[str, Any]], tz: ZoneInfo) -> tuple[Pred, str]:
    """(predicate, name) of the stored action an ActionsNode names."""
    from tests.oracle.actions import action_pred

    action_id = node.get("id")
    if not isinstance(action_id, int) or action_id <= 0:
        raise InvalidArgument("an ActionsNode needs a positive id")
    action = actions.get(action_id)
    if action is None:
        # DECISION: a missing or deleted action is FAILED_PRECONDITION (it may be restored).
        raise FailedPrecondition(f"action {action_id} does not exist")
    pred = action_pred(action, lambda props: compile_properties(props, tz), prop_text, _compile_regex)
    return pred, str(action["name"])


def _parse_series(
    node: dict[str, Any],
    index: int,
    tz: ZoneInfo,
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: CohortTest | None = None,
) -> _Series:
    if not isinstance(node, dict):
        raise InvalidArgument("series entries must be objects")
    kind = node.get("kind") or "EventsNode"
    if kind == "ActionsNode":
        action_match, action_name = _action_of(node, actions or {}, tz)
        action_props = compile_properties(node.get("properties"), tz, cohorts)

        def name_match(e: Event) -> bool:
            return action_match(e)

        def match(e: Event) -> bool:
            return action_match(e) and action_props(e)

        # DECISION: an action's series is labelled with its custom name, else the action's name.
        default_label = action_name
        node = {k: v for k, v in node.items() if k != "name"}
    elif kind == "EventsNode":
        name = node.get("event")
        name_match = _event_name_pred(name)
        props = compile_properties(node.get("properties"), tz, cohorts)

        def match(e: Event) -> bool:
            return name_match(e) and props(e)

        default_label = name if name is not None else "All events"
    elif kind == "GroupNode":
        # DECISION: GroupNode is always the OR of its nodes (its `operator` field is ignored); an
        # empty `nodes` list is INVALID_ARGUMENT; a member ActionsNode counts its action.
        nodes = node.get("nodes") or []
        if not nodes:
            raise InvalidArgument("GroupNode needs nodes")
        parts: list[tuple[Pred, Pred]] = []
        names: list[str] = []
        for sub in nodes:
            sub_kind = (sub or {}).get("kind") or "EventsNode"
            if sub_kind == "ActionsNode":
                sub_match, sub_label = _action_of(sub, actions or {}, tz)
                names.append(sub_label)
                parts.append((sub_match, compile_properties(sub.get("properties"), tz, cohorts)))
                continue
            if sub_kind != "EventsNode":
                raise InvalidArgument(f"unsupported GroupNode member {sub_kind!r}")
            sub_name = sub.get("event")
            names.append(sub_name if sub_name is not None else "All events")
            parts.append((_event_name_pred(sub_name), compile_properties(sub.get("properties"), tz, cohorts)))
        group_props = compile_properties(node.get("properties"), tz, cohorts)

        def name_match(e: Event) -> bool:
            return any(n(e) for n, _ in parts)

        def match(e: Event) -> bool:
            return any(n(e) and p(e) for n, p in parts) and group_props(e)

        # DECISION: a GroupNode without custom_name/name is labelled with its nodes' event names
        # joined by ", ".
        default_label = ", ".join(names)
    else:
        # DECISION: DataWarehouseNode and unknown kinds are INVALID_ARGUMENT.
        raise InvalidArgument(f"unsupported series kind {kind!r}")
    math_name = node.get("math") or "total"
    if (
        math_name not in _BASE_MATHS
        and math_name not in _PROPERTY_MATHS
        and math_name not in _COUNT_PER_ACTOR
        and math_name != "hogql"
    ):
        # DECISION: unique_group and other maths are INVALID_ARGUMENT.
        raise InvalidArgument(f"unsupported math {math_name!r}")
    math_hogql = None
    if math_name == "hogql":
        # math_hogql: an aggregate expression of the bucket's events (tests/oracle/expressions.py).
        from tests.oracle.expressions import aggregator

        math_hogql = node.get("math_hogql")
        if not math_hogql:
            raise InvalidArgument("math hogql needs math_hogql")
        aggregator(math_hogql)
    math_property = node.get("math_property")
    if math_name in _PROPERTY_MATHS and not math_property:
        raise InvalidArgument(f"math {math_name} needs math_property")
    property_type = node.get("math_property_type")
    if property_type not in (None, "event_properties", "person_properties", "session_properties"):
        raise InvalidArgument(f"unsupported math_property_type {property_type!r}")
    if property_type == "session_properties" and math_property != SESSION_DURATION:
        # DECISION: $session_duration is the only session property a math aggregates.
        raise InvalidArgument(f"unsupported session property {math_property!r}")
    multiplier = node.get("math_multiplier")
    if multiplier is None:
        multiplier = 1.0
    if not _is_number(multiplier):
        raise InvalidArgument("math_multiplier must be a number")
    label = node.get("custom_name") or node.get("name") or default_label
    return _Series(
        index=index,
        label=label,
        math=math_name,
        math_property=math_property,
        # DECISION: math_property_type "person_properties" reads the person's properties.
        math_property_person=node.get("math_property_type") == "person_properties",
        multiplier=float(multiplier),
        name_match=name_match,
        match=match,
        math_hogql=math_hogql,
    )


# --------------------------------------------------------------------------------------------------
# Aggregations


def quantile(values: Sequence[float], p: float) -> float:
    """Exact quantile with linear interpolation (R7, numpy's default); no values → 0."""
    if not values:
        return 0.0
    xs = sorted(values)
    h = (len(xs) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def _aggregate(kind: str, values: Sequence[float]) -> float:
    if not values:
        return 0.0
    if kind == "sum":
        return math.fsum(values)
    if kind == "avg":
        return math.fsum(values) / len(values)
    if kind == "min":
        return float(min(values))
    if kind == "max":
        return float(max(values))
    return quantile(values, _QUANTILES[kind])


def _session_id(e: Event) -> str:
    return prop_text(e.properties, "$session_id") or ""


SESSION_DURATION = "$session_duration"


def _agg_events(series: _Series, math_name: str, events: Sequence[Event], env: _Env) -> float:
    """One bucket (or the whole range) of a math that is a plain aggregate over its events."""
    if math_name in _PROPERTY_MATHS and series.math_property == SESSION_DURATION:
        # DECISION: each session with an event here counts once, with its whole duration; events
        # without a $session_id are in no session.
        sessions = {_session_id(e) for e in events} - {""}
        return _aggregate(math_name, [env.session_seconds[s] * series.multiplier for s in sessions])
    if math_name in ("total", "first_time_for_user", "first_matching_event_for_user"):
        return float(len(events))
    if math_name == "dau":
        return float(len({e.person_id for e in events}))
    if math_name == "unique_session":
        return float(len({_session_id(e) for e in events}))
    if math_name in _PROPERTY_MATHS:
        assert series.math_property is not None
        values = []
        for e in events:
            source = e.person_properties if series.math_property_person else e.properties
            x = to_float_or_null(prop_text(source, series.math_property))
            if x is not None:
                values.append(x * series.multiplier)
        return _aggregate(math_name, values)
    if math_name == "hogql":
        from tests.oracle.expressions import aggregator

        assert series.math_hogql is not None
        return aggregator(series.math_hogql)(events)
    if math_name in _COUNT_PER_ACTOR:
        counts = [float(c) for c in Counter(e.person_id for e in events).values()]
        return _aggregate(_COUNT_PER_ACTOR[math_name], counts)
    raise AssertionError(math_name)  # pragma: no cover


@dataclass
class _Values:
    raw: list[float]  # per bucket, before cumulative ([] for total-value displays)
    shown: list[float]  # per bucket, as displayed
    aggregated: float | None  # total-value displays
    unsmoothed: list[float] | None = None  # `shown` before smoothing replaced it

    @property
    def rank_total(self) -> float:
        # DECISION: breakdown ranking uses the non-cumulative per-bucket sum (aggregated value for
        # total-value displays), also for non-additive maths (sum of the bucket values); for
        # cumulative dau the per-bucket values are the new actors (see _Period.evaluate).
        return self.aggregated if self.aggregated is not None else math.fsum(self.raw)


class _Period:
    """Computes one series over one period, for any subset of its (filtered) events."""

    def __init__(
        self, rng: DateRange, series: _Series, env: _Env, cumulative: bool, total_value: bool
    ) -> None:
        self.rng = rng
        self.series = series
        self.env = env
        self.cumulative = cumulative
        self.total_value = total_value
        math_name = series.math
        # weekly_active with week buckets is dau; with month buckets both are dau.
        if not total_value and (
            (math_name == "weekly_active" and rng.interval in ("week", "month"))
            or (math_name == "monthly_active" and rng.interval == "month")
        ):
            math_name = "dau"
        self.math = math_name
        self.index = {k: i for i, k in enumerate(rng.bucket_keys)}

    def in_range(self, e: Event) -> bool:
        return self.rng.lower <= e.timestamp <= self.rng.upper

    def key(self, e: Event) -> Any:
        return _bucket_key(e.timestamp, self.rng.interval, self.env.tz, self.env.week_start_day)

    def evaluate(self, events: Sequence[Event]) -> _Values | None:
        """None when the subset contributes nothing (no such breakdown value)."""
        if self.math in ("weekly_active", "monthly_active"):
            return self._active(events)
        used = [e for e in events if self.in_range(e)]
        if not used:
            return None
        if self.total_value:
            return _Values([], [], _agg_events(self.series, self.math, used, self.env))
        per_bucket: list[list[Event]] = [[] for _ in self.rng.bucket_keys]
        for e in used:
            per_bucket[self.index[self.key(e)]].append(e)
        raw = [_agg_events(self.series, self.math, evs, self.env) for evs in per_bucket]
        if not self.cumulative:
            return _Values(raw, raw, None)
        if self.math == "dau":
            # Each actor counted once, at their first bucket in range.
            first: dict[str, int] = {}
            for i, evs in enumerate(per_bucket):
                for e in evs:
                    first.setdefault(e.person_id, i)
            increments = [0.0] * len(per_bucket)
            for i in first.values():
                increments[i] += 1
            # Contract ("Breakdowns"): the ranking total is the sum of the values before the running
            # sum; for cumulative dau those are the new actors per bucket (the reference's inner query),
            # so the total is the number of distinct actors in the range.
            raw = increments
        else:
            increments = raw
        shown, running = [], 0.0
        for x in increments:
            running += x
            shown.append(running)
        return _Values(raw, shown, None)

    def _active(self, events: Sequence[Event]) -> _Values | None:
        lookback = 7 if self.math == "weekly_active" else 30
        tz = self.env.tz
        upper = self.rng.upper
        candidates = [e for e in events if e.timestamp <= upper]
        if self.total_value:
            start = _to_utc(_local_naive(upper, tz) - timedelta(days=lookback), tz)
            actors = {e.person_id for e in candidates if start < e.timestamp}
            if not actors:
                return None
            return _Values([], [], float(len(actors)))
        interval = self.rng.interval
        if interval in ("day", "week"):
            # (d - L days, d] over timestamps truncated to the day (also for week buckets).
            def trunc(e: Event) -> Any:
                return e.timestamp.astimezone(tz).date()

            def window_start(d: Any) -> Any:
                return d - timedelta(days=lookback)
        else:

            def trunc(e: Event) -> Any:
                return self.key(e)

            def window_start(d: Any) -> Any:
                return _to_utc(_local_naive(d, tz) - timedelta(days=lookback), tz)

        marked = [(trunc(e), e.person_id) for e in candidates]
        raw: list[float] = []
        used = False
        for d in self.rng.bucket_keys:
            ws = window_start(d)
            actors = {actor for t, actor in marked if ws < t <= d}
            used = used or bool(actors)
            raw.append(float(len(actors)))
        if not used:
            return None
        if not self.cumulative:
            return _Values(raw, raw, None)
        # DECISION: cumulative weekly/monthly_active is the running sum of the window values
        # (only dau, including the week/month rewrites to dau, counts each actor once).
        shown, running = [], 0.0
        for x in raw:
            running += x
            shown.append(running)
        return _Values(raw, shown, None)


def _first_events(series: _Series, matched: Pred, events: Sequence[Event], rng: DateRange) -> list[Event]:
    """The qualifying first event per actor (first_time_for_user / first_matching_event_for_user)."""
    by_actor: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        if e.timestamp > rng.upper:
            continue
        if series.math == "first_time_for_user":
            if series.name_match(e):
                by_actor[e.person_id].append(e)
        elif matched(e):
            by_actor[e.person_id].append(e)
    chosen: list[Event] = []
    for evs in by_actor.values():
        first_ts = min(e.timestamp for e in evs)
        if not rng.lower <= first_ts <= rng.upper:
            continue
        tied = sorted((e for e in evs if e.timestamp == first_ts), key=lambda e: e.uuid)
        # DECISION: with several events at the actor's first timestamp, the actor counts when any
        # of them matches the filters; the breakdown value comes from the matching one with the
        # smallest uuid. (Tests should avoid such ties.)
        hits = [e for e in tied if matched(e)]
        if hits:
            chosen.append(hits[0])
    return chosen


# --------------------------------------------------------------------------------------------------
# Breakdowns


@dataclass(frozen=True)
class _Breakdown:
    dims: tuple[tuple[str, str], ...]  # (source, key): source is "event" or "person"
    multi: bool
    limit: int
    hide_other: bool
    shapes: tuple[shapes_.Shape, ...] = ()
    # Per histogram dimension (index → its buckets), set once the numbers are known.
    grids: dict[int, shapes_.Grid] = field(default_factory=dict)

    def raw(self, e: Event, i: int) -> str | None:
        source, key = self.dims[i]
        if source == "hogql":
            # The expression's text (toString), '' being no value as a property's.
            from tests.oracle.expressions import evaluator

            value = evaluator(key)(e)
            if value is not None and not isinstance(value, str | int):
                raise NotImplementedError("the oracle's breakdown texts are of strings and whole numbers")
            return None if value is None or value == "" else str(value)
        return prop_text(e.properties if source == "event" else e.person_properties, key)

    def value(self, e: Event) -> Any:
        texts = []
        for i in range(len(self.dims)):
            t = self.raw(e, i)
            shape = self.shapes[i] if self.shapes else shapes_.PLAIN
            if shape.bins:
                t = self.grids[i].label(shapes_.number(t, to_float_or_null))
            elif shape.normalize_url:
                t = shapes_.normalized(t)
            texts.append(NULL_LABEL if t is None else t)
        return tuple(texts) if self.multi else texts[0]

    def other(self) -> Any:
        return tuple(OTHER_LABEL for _ in self.dims) if self.multi else OTHER_LABEL

    def is_null(self, value: Any) -> bool:
        # DECISION: with multiple breakdowns a value is "the null bucket" when any part is null.
        return NULL_LABEL in value if self.multi else value == NULL_LABEL

    def is_other(self, value: Any) -> bool:
        return OTHER_LABEL in value if self.multi else value == OTHER_LABEL


MAX_BREAKDOWN_COHORTS = 20


@dataclass(frozen=True)
class _CohortBreakdown:
    """A cohort breakdown: the cohorts in the order given, 0 for all users."""

    ids: tuple[int, ...]

    def is_null(self, value: Any) -> bool:
        return False

    def is_other(self, value: Any) -> bool:
        return False


def _cohort_ids(given: Any) -> tuple[int, ...]:
    # DECISION: an id, "all" (0) or a list of them; empty, duplicated or more than
    # MAX_BREAKDOWN_COHORTS ids are INVALID_ARGUMENT.
    items = given if isinstance(given, list) else [given]
    if not items:
        raise InvalidArgument("a cohort breakdown lists at least one cohort id")
    if len(items) > MAX_BREAKDOWN_COHORTS:
        raise InvalidArgument("too many cohorts")
    ids: list[int] = []
    for item in items:
        if isinstance(item, str) and item.strip() == "all":
            item = 0
        elif isinstance(item, str) and item.strip().isascii() and item.strip().isdigit():
            item = int(item.strip())
        if not isinstance(item, int) or isinstance(item, bool) or item < 0:
            raise InvalidArgument(f"bad cohort breakdown value {item!r}")
        if item in ids:
            raise InvalidArgument(f"cohort {item} listed twice")
        ids.append(item)
    return tuple(ids)


def _checked(source: str, key: str) -> str:
    """`source`, a hogql dimension's expression read first (InvalidArgument when refused)."""
    if source == "hogql":
        from tests.oracle.expressions import evaluator

        evaluator(key)
    return source


def _parse_breakdown(bf: dict[str, Any] | None) -> _Breakdown | _CohortBreakdown | None:
    if not bf:
        return None
    shapes = tuple(shapes_.filter_shapes(bf))
    if bf.get("breakdown_type") == "cohort" and not bf.get("breakdowns"):
        if shapes != (shapes_.PLAIN,):
            raise InvalidArgument("a cohort breakdown has no histogram and no URLs")
        if bf.get("breakdown") is None:
            raise InvalidArgument("a cohort breakdown lists cohort ids")
        # DECISION (reference): breakdown_limit and hide-other do not apply to cohorts.
        return _CohortBreakdown(_cohort_ids(bf["breakdown"]))
    dims: list[tuple[str, str]] = []
    multi = False

    def source_of(kind: str | None) -> str:
        kind = kind or "event"
        if kind not in ("event", "person", "hogql"):
            raise InvalidArgument(f"unsupported breakdown type {kind!r}")
        return kind

    breakdowns = bf.get("breakdowns") or []
    if breakdowns:
        # DECISION: `breakdowns` (when non-empty) wins over `breakdown`; more than 3 items is
        # INVALID_ARGUMENT (the schema's maximum).
        if len(breakdowns) > 3:
            raise InvalidArgument("at most 3 breakdowns")
        multi = True
        for b in breakdowns:
            prop = b.get("property")
            if prop is None or prop == "":
                raise InvalidArgument("breakdown without property")
            dims.append((_checked(source_of(b.get("type")), str(prop)), str(prop)))
    else:
        prop = bf.get("breakdown")
        if prop is None or prop == "":
            if shapes != (shapes_.PLAIN,):
                raise InvalidArgument("a histogram or URL normalising needs a breakdown")
            return None
        if isinstance(prop, list):
            raise InvalidArgument("list breakdowns (cohorts) are not supported")
        dims.append((_checked(source_of(bf.get("breakdown_type")), str(prop)), str(prop)))
    limit = bf.get("breakdown_limit")
    # DECISION: a missing or 0 limit is the default 25 (reference `limit or 25`); negative is invalid.
    if limit is None or limit == 0:
        limit = DEFAULT_BREAKDOWN_LIMIT
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise InvalidArgument("breakdown_limit must be a positive integer")
    return _Breakdown(tuple(dims), multi, limit, bool(bf.get("breakdown_hide_other_aggregation")), shapes)


def _value_label(value: Any) -> str:
    return "::".join(value) if isinstance(value, tuple) else str(value)


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------------------------------
# Formulas


class _Formula:
    """A tiny safe evaluator: letters (series by index), + - * /, parentheses, unary ±, numbers."""

    _TOKEN = re.compile(r"\s*(?:(\d+\.?\d*|\.\d+)|([A-Za-z])|([-+*/()]))")

    def __init__(self, text: str, n_series: int) -> None:
        self.text = text
        self.tokens: list[tuple[str, Any]] = []
        pos = 0
        stripped = text.rstrip()
        while pos < len(stripped):
            m = self._TOKEN.match(stripped, pos)
            if not m:
                raise InvalidArgument(f"bad formula {text!r}")
            if m.group(1) is not None:
                self.tokens.append(("num", float(m.group(1))))
            elif m.group(2) is not None:
                # DECISION: letters are case-insensitive (reference), `a` = `A`.
                idx = ord(m.group(2).upper()) - ord("A")
                if idx >= n_series:
                    raise InvalidArgument(f"formula {text!r} refers to a missing series {m.group(2)}")
                self.tokens.append(("var", idx))
            else:
                self.tokens.append(("op", m.group(3)))
            pos = m.end()
        self.pos = 0
        self.tree = self._expr()
        if self.pos != len(self.tokens) or not self.tokens:
            raise InvalidArgument(f"bad formula {text!r}")

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _expr(self) -> Any:
        node = self._term()
        while (tok := self._peek()) and tok[0] == "op" and tok[1] in "+-":
            self.pos += 1
            node = (tok[1], node, self._term())
        return node

    def _term(self) -> Any:
        node = self._unary()
        while (tok := self._peek()) and tok[0] == "op" and tok[1] in "*/":
            self.pos += 1
            node = (tok[1], node, self._unary())
        return node

    def _unary(self) -> Any:
        tok = self._peek()
        if tok and tok[0] == "op" and tok[1] in "+-":
            # DECISION: unary plus is accepted too (reference: unary ±).
            self.pos += 1
            return ("neg" if tok[1] == "-" else "pos", self._unary())
        return self._primary()

    def _primary(self) -> Any:
        tok = self._peek()
        if tok is None:
            raise InvalidArgument(f"bad formula {self.text!r}")
        self.pos += 1
        if tok[0] in ("num", "var"):
            return tok
        if tok == ("op", "("):
            node = self._expr()
            if self._peek() != ("op", ")"):
                raise InvalidArgument(f"bad formula {self.text!r}")
            self.pos += 1
            return node
        raise InvalidArgument(f"bad formula {self.text!r}")

    def evaluate(self, columns: Sequence[Sequence[float]], length: int) -> list[float]:
        return [self._eval(self.tree, columns, i) for i in range(length)]

    def _eval(self, node: Any, columns: Sequence[Sequence[float]], i: int) -> float:
        kind = node[0]
        if kind == "num":
            return float(node[1])
        if kind == "var":
            return float(columns[node[1]][i])
        if kind == "neg":
            return -self._eval(node[1], columns, i)
        if kind == "pos":
            return self._eval(node[1], columns, i)
        a = self._eval(node[1], columns, i)
        b = self._eval(node[2], columns, i)
        if kind == "+":
            return a + b
        if kind == "-":
            return a - b
        if kind == "*":
            return a * b
        return 0.0 if b == 0 else a / b


def _formulas(trends_filter: dict[str, Any], n_series: int) -> list[tuple[_Formula, str]]:
    # DECISION: formulaNodes wins over formulas, which wins over formula; blank formula strings are
    # ignored (no formula).
    nodes = trends_filter.get("formulaNodes") or []
    entries: list[tuple[str, str | None]] = []
    if nodes:
        entries = [(n.get("formula") or "", n.get("custom_name")) for n in nodes]
    elif trends_filter.get("formulas"):
        entries = [(f or "", None) for f in trends_filter["formulas"]]
    elif trends_filter.get("formula"):
        entries = [(trends_filter["formula"], None)]
    out = []
    for text, custom in entries:
        if not text.strip():
            continue
        out.append((_Formula(text, n_series), custom or f"Formula ({text})"))
    return out


# --------------------------------------------------------------------------------------------------
# Smoothing

MAX_SMOOTHING_INTERVALS = 10_000


def _smoothing_intervals(trends_filter: dict[str, Any]) -> int:
    k = trends_filter.get("smoothingIntervals")
    if k is None:
        return 1
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SMOOTHING_INTERVALS:
        # DECISION: 1 to 10,000 (the bucket limit); anything else is INVALID_ARGUMENT.
        raise InvalidArgument(f"smoothingIntervals must be 1 to {MAX_SMOOTHING_INTERVALS} (got {k!r})")
    return k


def _smooth(values: list[float], k: int) -> list[float]:
    """floor of the exact mean of the last k values (fewer at the start); when the window holds a
    non-integer, a mean within 1e-12 (relative, at least 1) of an integer is that integer."""
    out = []
    for i in range(len(values)):
        window = [Fraction(v) for v in values[max(0, i - k + 1) : i + 1]]
        mean = sum(window, Fraction(0)) / len(window)
        nearest = round(mean)
        noisy = any(x.denominator != 1 for x in window)
        if noisy and abs(mean - nearest) <= Fraction(1, 10**12) * max(Fraction(1), abs(mean)):
            out.append(float(nearest))
        else:
            out.append(float(math.floor(mean)))
    return out


# --------------------------------------------------------------------------------------------------
# The query


@dataclass
class _Row:
    series: int
    value: Any  # breakdown value (str or tuple) or None without breakdown
    values: _Values


def _period_rows(
    series_list: list[_Series],
    filters: Pred,
    events: Sequence[Event],
    rng: DateRange,
    env: _Env,
    breakdown: _Breakdown | None,
    cumulative: bool,
    total_value: bool,
) -> tuple[list[_Row], bool]:
    rows: list[_Row] = []
    has_more = False
    for s in series_list:
        period = _Period(rng, s, env, cumulative, total_value)

        def matched(e: Event, s: _Series = s) -> bool:
            return s.match(e) and filters(e)

        if s.math in _FIRST_TIME:
            pool = _first_events(s, matched, events, rng)
        else:
            pool = [e for e in events if matched(e)]
        if breakdown is None:
            values = period.evaluate(pool)
            if values is None:
                if total_value:
                    values = _Values([], [], 0.0)
                else:
                    zeros = [0.0] * len(rng.bucket_keys)
                    values = _Values(zeros, zeros, None)
            rows.append(_Row(s.index, None, values))
            continue
        # DECISION: ranking and the Other cut are per (series, period); a breakdown value exists when
        # its events contribute to the math (for weekly/monthly_active that includes the lookback
        # before date_from; for first_time maths, the counted first events).
        groups: dict[Any, list[Event]] = defaultdict(list)
        for e in pool:
            groups[breakdown.value(e)].append(e)
        present = [(v, vals) for v, evs in groups.items() if (vals := period.evaluate(evs)) is not None]
        present.sort(key=lambda item: (breakdown.is_null(item[0]), -item[1].rank_total, item[0]))
        kept, cut = present[: breakdown.limit], present[breakdown.limit :]
        rows.extend(_Row(s.index, v, vals) for v, vals in kept)
        if cut:
            has_more = True
            if not breakdown.hide_other:
                # Recomputed over the events of the cut values (equal to the sum for additive maths).
                cut_values = {v for v, _ in cut}
                other = period.evaluate([e for e in pool if breakdown.value(e) in cut_values])
                assert other is not None
                rows.append(_Row(s.index, breakdown.other(), other))
    return rows, has_more


def _item(
    rng: DateRange,
    values: _Values,
    label: str,
    order: int,
    breakdown_value: Any,
    with_breakdown: bool,
    compare_label: str | None,
    cumulative: bool,
    total_value: bool,
) -> dict[str, Any]:
    if total_value:
        item: dict[str, Any] = {"data": [], "days": [], "labels": [], "count": 0.0}
    else:
        data = list(values.shown)
        count = (data[-1] if data else 0.0) if cumulative else math.fsum(data)
        labels = [f"day {i}" for i in range(len(data))] if compare_label else list(rng.labels)
        item = {"data": data, "days": list(rng.days), "labels": labels, "count": float(count)}
        if values.unsmoothed is not None:
            item["raw_data"] = list(values.unsmoothed)
    item["label"] = label
    item["order"] = order
    if with_breakdown:
        item["breakdown_value"] = _json_value(breakdown_value)
    if compare_label:
        item["compare"] = True
        item["compare_label"] = compare_label
    if total_value:
        item["aggregated_value"] = float(values.aggregated or 0.0)
    return item


def _formula_items(
    formulas: list[tuple[_Formula, str]],
    rows: list[_Row],
    n_series: int,
    rng: DateRange,
    breakdown: _Breakdown | None,
    compare_label: str | None,
    cumulative: bool,
    total_value: bool,
) -> list[dict[str, Any]]:
    # DECISION: formulas run on the displayed data (cumulative arrays for the cumulative display),
    # and a formula row keeps the formula's label even with a breakdown (no "<label> - <value>").
    width = 1 if total_value else len(rng.bucket_keys)

    def column(values: _Values | None) -> list[float]:
        if values is None:
            return [0.0] * width
        return [values.aggregated or 0.0] if total_value else list(values.shown)

    items: list[dict[str, Any]] = []
    if breakdown is None:
        by_series = {r.series: r.values for r in rows}
        columns = [column(by_series.get(i)) for i in range(n_series)]
        for order, (formula, label) in enumerate(formulas):
            result = formula.evaluate(columns, width)
            values = _Values([], [], result[0]) if total_value else _Values(result, result, None)
            items.append(
                _item(rng, values, label, order, None, False, compare_label, cumulative, total_value)
            )
    else:
        table: dict[Any, dict[int, _Values]] = defaultdict(dict)
        for r in rows:
            table[r.value][r.series] = r.values
        for order, (formula, label) in enumerate(formulas):
            block = []
            for value, per_series in table.items():
                columns = [column(per_series.get(i)) for i in range(n_series)]
                result = formula.evaluate(columns, width)
                values = _Values([], [], result[0]) if total_value else _Values(result, result, None)
                block.append(
                    _item(rng, values, label, order, value, True, compare_label, cumulative, total_value)
                )

            # DECISION (reference): formula rows with a breakdown are sorted descending by
            # (normal 0 / null -1 / Other -2, aggregated value or sum(data), count, data, repr(value)).
            def sort_key(item: dict[str, Any]) -> tuple[Any, ...]:
                value = item["breakdown_value"]
                value = tuple(value) if isinstance(value, list) else value
                group = -2 if breakdown.is_other(value) else -1 if breakdown.is_null(value) else 0
                total = item["aggregated_value"] if total_value else math.fsum(item["data"])
                return (group, total, item["count"], item["data"], repr(value))

            block.sort(key=sort_key, reverse=True)
            items.extend(block)
    if compare_label:
        # DECISION (reference): with compare, formula items of a period are ordered by count descending.
        items.sort(key=lambda item: -item["count"])
    return items


class _Memberships:
    """Cohort membership for cohort filters and breakdowns: cohorts are noted while the query is
    parsed, and computed (FailedPrecondition for one that is missing, deleted, or whose stored
    definition does not compute) once all of it is parsed."""

    def __init__(
        self,
        cohorts: Mapping[int, Any],
        persons: Sequence[Any],
        events: list[Event],
        timezone: str,
        now: datetime,
        actions: dict[int, dict[str, Any]],
    ):
        self.cohorts, self.persons, self.events = cohorts, persons, events
        self.timezone, self.now, self.actions = timezone, now, actions
        self.needed: list[int] = []
        self.members: dict[int, set[str]] = {}

    def test(self, cohort_id: int) -> Callable[[str], bool]:
        self.needed.append(cohort_id)
        return lambda person_id: person_id in self.members[cohort_id]

    def resolve(self) -> None:
        from tests.oracle.cohorts import CohortUnavailable, members

        for cohort_id in self.needed:
            cohort = self.cohorts.get(cohort_id)
            if cohort is None or cohort.deleted:
                raise FailedPrecondition(f"cohort {cohort_id} does not exist or is deleted")
            if cohort_id in self.members:
                continue
            try:
                self.members[cohort_id] = members(
                    cohort,
                    self.cohorts,
                    self.persons,
                    self.events,
                    timezone=self.timezone,
                    now=self.now,
                    actions=self.actions,
                )
            except (CohortUnavailable, InvalidArgument) as exc:
                # DECISION: a stored cohort that does not compute is the cohort's fault, not the query's.
                raise FailedPrecondition(f"cohort {cohort_id} cannot be computed: {exc!r}") from None

    def name(self, value: Any) -> str:
        """A cohort breakdown's label: the cohort's name, "all users" for all."""
        return "all users" if value == "all" else str(self.cohorts[value].name)


def _cohort_rows(
    series_list: list[_Series],
    filters: Pred,
    events: Sequence[Event],
    rng: DateRange,
    env: _Env,
    breakdown: _CohortBreakdown,
    memberships: _Memberships,
    cumulative: bool,
    total_value: bool,
) -> tuple[list[_Row], bool]:
    """Rows of a cohort breakdown (reference: one query per cohort): per cohort in the order given,
    every series over that cohort's persons; a cohort whose events add nothing has no row. Nothing
    is cut."""
    rows: list[_Row] = []
    for cohort_id in breakdown.ids:
        inside = memberships.members.get(cohort_id)
        for s in series_list:
            period = _Period(rng, s, env, cumulative, total_value)

            def matched(e: Event, s: _Series = s, inside: set[str] | None = inside) -> bool:
                return s.match(e) and filters(e) and (inside is None or e.person_id in inside)

            if s.math in _FIRST_TIME:
                pool = _first_events(s, matched, events, rng)
            else:
                pool = [e for e in events if matched(e)]
            values = period.evaluate(pool)
            if values is not None:
                rows.append(_Row(s.index, cohort_id or "all", values))
    return rows, False


def compute_trends(
    events: Iterable[Event],
    query: dict[str, Any],
    *,
    timezone: str,
    week_start_day: int,
    now: datetime,
    test_account_filters: list[dict[str, Any]] | dict[str, Any] | None = None,
    actions: dict[int, dict[str, Any]] | None = None,
    cohorts: Mapping[int, Any] | None = None,
    persons: Sequence[Any] | None = None,
) -> TrendsOutput:
    """Evaluate a reference-JSON TrendsQuery over ``events`` (all of the environment's events);
    ``actions`` are the environment's live actions by id (reference JSON); ``cohorts`` its cohorts
    by id (tests/oracle/cohorts.py OracleCohort, deleted ones included) and ``persons`` its
    `persons` rows (tests/oracle/cohorts.py Person), for cohort filters and breakdowns."""
    events = list(events)
    env = _Env(timezone, week_start_day, now, events)
    tz = env.tz
    memberships = _Memberships(cohorts or {}, persons or [], events, timezone, now, actions or {})
    kind = query.get("kind")
    if kind not in (None, "TrendsQuery"):
        raise InvalidArgument(f"not a TrendsQuery: {kind!r}")
    if query.get("samplingFactor") not in (None, 1, 1.0):
        # The oracle cannot reproduce cityHash64 sampling.
        raise NotImplementedError("the oracle does not sample")
    if query.get("aggregation_group_type_index") is not None:
        # DECISION: group aggregation is INVALID_ARGUMENT (groups are not stored).
        raise InvalidArgument("group aggregation is not supported")
    raw_series = query.get("series") or []
    if not raw_series:
        # DECISION: a query without series is INVALID_ARGUMENT.
        raise InvalidArgument("a TrendsQuery needs series")
    series_list = [_parse_series(node, i, tz, actions, memberships.test) for i, node in enumerate(raw_series)]
    trends_filter = query.get("trendsFilter") or {}
    display = trends_filter.get("display") or "ActionsLineGraph"
    # DECISION: only the contract's five displays are total-value; CalendarHeatmap, ActionsProgress
    # and unknown displays are treated as time series.
    total_value = display in TOTAL_VALUE_DISPLAYS
    cumulative = display == CUMULATIVE_DISPLAY
    interval = _check_interval(query.get("interval"))

    query_props = compile_properties(query.get("properties"), tz, memberships.test)
    test_props = (
        compile_properties(test_account_filters or [], tz, memberships.test)
        if query.get("filterTestAccounts")
        else _true
    )

    def filters(e: Event) -> bool:
        return query_props(e) and test_props(e)

    bf = query.get("breakdownFilter")
    legacy_bins = trends_filter.get("breakdown_histogram_bin_count")
    if legacy_bins is not None and (bf or {}).get("breakdown_histogram_bin_count") is None:
        # DECISION: the deprecated trendsFilter field is the bin count when breakdownFilter gives none.
        if isinstance(legacy_bins, bool) or not isinstance(legacy_bins, int) or not 1 <= legacy_bins <= 100:
            raise InvalidArgument("a histogram has between 1 and 100 bins")
        if not bf or bf.get("breakdowns") or bf.get("breakdown") in (None, "") or bf.get("breakdown_type") == "cohort":
            raise InvalidArgument("a histogram needs a single property breakdown")
        bf = {**bf, "breakdown_histogram_bin_count": legacy_bins}
    breakdown = _parse_breakdown(bf)
    formulas = _formulas(trends_filter, len(series_list))

    inputs = _range_inputs(query.get("dateRange"), interval, display, env)
    current = _build_range(inputs, inputs.from_naive, inputs.to_naive, env)
    periods: list[tuple[DateRange, str | None]] = [(current, None)]
    compare_filter = query.get("compareFilter") or {}
    # DECISION: compare needs compare=true (compare_to alone does nothing); with date_from "all"
    # compare is disabled (reference) and the items carry no compare keys.
    if compare_filter.get("compare") and not inputs.from_is_all:
        prev_from, prev_to = _previous_bounds(inputs, compare_filter.get("compare_to"), env)
        previous = _build_range(inputs, prev_from, prev_to, env)
        periods = [(current, "current"), (previous, "previous")]

    smoothing = _smoothing_intervals(trends_filter)
    if isinstance(breakdown, _Breakdown):
        # DECISION: one set of histogram buckets per query, from the numbers of the events any
        # series matches (its filters and the query's) inside any period's range.
        for i, shape in enumerate(breakdown.shapes):
            if shape.bins:
                numbers = [
                    n
                    for e in events
                    if filters(e)
                    and any(rng.lower <= e.timestamp <= rng.upper for rng, _ in periods)
                    and any(s.match(e) for s in series_list)
                    and (n := shapes_.number(breakdown.raw(e, i), to_float_or_null)) is not None
                ]
                breakdown.grids[i] = shapes_.grid(numbers, shape.bins)
    if isinstance(breakdown, _CohortBreakdown):
        for cohort_id in breakdown.ids:
            if cohort_id:
                memberships.test(cohort_id)
    # DECISION: the query is checked whole before any cohort it names must be usable.
    memberships.resolve()

    results: list[dict[str, Any]] = []
    has_more = False
    multi_series = len(series_list) > 1
    for rng, compare_label in periods:
        if isinstance(breakdown, _CohortBreakdown):
            rows, more = _cohort_rows(
                series_list, filters, events, rng, env, breakdown, memberships, cumulative, total_value
            )
        else:
            rows, more = _period_rows(
                series_list, filters, events, rng, env, breakdown, cumulative, total_value
            )
        has_more = has_more or more
        if smoothing > 1 and not total_value:
            # DECISION: smoothing applies to the displayed line (the running total when cumulative),
            # per period, after the breakdown cut; formulas run on the smoothed lines; total-value
            # displays have no line and are unchanged.
            for r in rows:
                r.values = _Values(r.values.raw, _smooth(r.values.shown, smoothing), None, r.values.shown)
        if formulas:
            results.extend(
                _formula_items(
                    formulas, rows, len(series_list), rng, breakdown, compare_label, cumulative, total_value
                )
            )
            continue
        for r in rows:
            s = series_list[r.series]
            if breakdown is None:
                label = s.label
            else:
                label = memberships.name(r.value) if isinstance(breakdown, _CohortBreakdown) else _value_label(r.value)
                if multi_series:
                    label = f"{s.label} - {label}"
            results.append(
                _item(
                    rng,
                    r.values,
                    label,
                    s.index,
                    r.value,
                    breakdown is not None,
                    compare_label,
                    cumulative,
                    total_value,
                )
            )
    return TrendsOutput(results, has_more)
