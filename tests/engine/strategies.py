"""Hypothesis strategies: small random event sets and random valid TrendsQuery JSON.

`cases()` draws whole engine-vs-oracle examples built to compare something: most events fall
inside the range the query counts, and one of them (the witness) is made to match the series'
event names and property filters, so most results are not all zero. A share of every choice
stays fully random, so empty and non-matching results are still compared.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from storage.elements import Element, to_chain
from tests.oracle import Event, OracleError, resolve_date_range
from tests.oracle.elements import derived, parse_chain
from tests.oracle.trends import prop_text

NOWS = (
    dt.datetime(2024, 3, 20, 15, 30, 12, tzinfo=dt.UTC),  # America/New_York sprang forward on 10 March
    dt.datetime(
        2024, 11, 12, 4, 17, 45, tzinfo=dt.UTC
    ),  # New York fell back on 3 November, Europe on 27 October
)
TIMEZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata")
EVENT_NAMES = ("$pageview", "signup", "purchase", "it's odd")
PERSONS = ("p0", "p1", "p2", "p3", "p4")
PROPERTY_KEYS = ("browser", "amount", "plan", "flag", "$session_id", "a.b")
NUMERIC_KEYS = ("amount", "plan", "flag")
PERSON_KEYS = ("email", "tier", "age")

scalars = st.one_of(
    st.sampled_from(["Chrome", "Firefox", "chrome", "Safari 17", "", "5", "2.50", "x'y", "ü"]),
    st.integers(-3, 50),
    st.sampled_from([0.5, 2.5, 5.0, -1.25, 1e-7, 100.0]),
    st.booleans(),
    st.none(),
)
_DROPPED = object()
numbers = st.one_of(st.integers(-3, 50), st.sampled_from([0.5, 2.5, 5.0, -1.25, 1e-7, 100.0]))
# The math keys hold numbers two times in three, so property maths mostly have values to aggregate.
property_dicts = st.fixed_dictionaries(
    {},
    optional={k: st.one_of(numbers, numbers, scalars) if k in NUMERIC_KEYS else scalars for k in PROPERTY_KEYS},
)
session_ids = st.sampled_from(["s1", "s2", "s3", ""])
SESSION_DURATION = "$session_duration"
person_property_dicts = st.fixed_dictionaries(
    {},
    optional={
        "email": st.sampled_from(["a@example.com", "test@posthog.com", "b@example.com", ""]),
        "tier": st.sampled_from(["free", "pro", "Pro", "enterprise"]),
        "age": st.one_of(st.integers(10, 80), st.integers(10, 80), st.none(), st.sampled_from(["31", "n/a"])),
    },
)


Window = tuple[dt.datetime, dt.datetime]


@st.composite
def events(
    draw: st.DrawFn,
    now: dt.datetime,
    min_size: int = 0,
    window: Window | None = None,
    sessions: bool = False,
) -> list[Event]:
    """Up to ~40 events of a few persons within 40 days before `now` (and a few hours after);
    with a `window` (UTC bounds), about three in four fall inside it. With `sessions`, nearly every
    event belongs to one of a few sessions (so sessions have several events and a duration)."""
    count = draw(st.integers(min_size, 40))
    persons = {p: draw(person_property_dicts) for p in PERSONS}
    out = []
    for n in range(count):
        person = draw(st.sampled_from(PERSONS))
        if window is not None and draw(st.integers(0, 3)) < 3:
            base, span = window[0], int((window[1] - window[0]).total_seconds())
            seconds = draw(st.integers(0, max(span - 1, 0)))
        else:
            spread = draw(st.sampled_from([40 * 86400, 3 * 86400, 3 * 3600]))
            base, seconds = now, draw(st.integers(-spread, 2 * 3600))
        props = draw(property_dicts)
        if draw(st.booleans()) or (sessions and draw(st.integers(0, 5))):
            props["$session_id"] = draw(session_ids)
        person_props = persons[person] if draw(st.integers(0, 4)) else draw(person_property_dicts)
        # A distinct microsecond per event: no two events share a timestamp (first-event ties are
        # a known ambiguity the contract leaves open).
        when = base + dt.timedelta(seconds=seconds, microseconds=n)
        out.append(
            Event(
                uuid=f"00000000-0000-4000-8000-{n:012d}",
                event=draw(st.sampled_from(EVENT_NAMES)),
                distinct_id=f"d-{person}",
                person_id=person,
                timestamp=when,
                properties=props,
                person_properties=person_props,
            )
        )
    return out


OPERATORS = (
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
    "is_set",
    "is_not_set",
    "between",
    "not_between",
    "in",
    "not_in",
    "is_date_before",
    "is_date_after",
    "is_date_exact",
)


_ABSENT = "zzz-absent"
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9 .]+")


@st.composite
def matching_filter(draw: st.DrawFn, witness: Event) -> dict[str, Any]:
    """A property filter the `witness` event passes: built from one of its own values (or the
    absence of one), with an operator that holds for that value."""
    kind = draw(st.sampled_from(["event", "event", "person"]))
    props = witness.properties if kind == "event" else witness.person_properties
    keys = PROPERTY_KEYS if kind == "event" else PERSON_KEYS
    key = draw(st.sampled_from(sorted(props) + [k for k in keys if k not in props][:1]))
    raw = props.get(key)
    options: list[tuple[str, Any]] = []
    if raw is None or raw == "":
        options += [("is_not_set", None), ("exact", None), ("is_not", _ABSENT), ("not_in", [_ABSENT])]
    else:
        options += [
            ("exact", raw),
            ("exact", [_ABSENT, raw]),
            ("in", [raw, _ABSENT]),
            ("is_set", None),
            ("is_not", _ABSENT),
            ("not_in", [_ABSENT]),
        ]
    if isinstance(raw, str) and raw:
        start = draw(st.integers(0, len(raw) - 1))
        part = raw[start : draw(st.integers(start + 1, len(raw)))]
        options += [
            ("icontains", draw(st.sampled_from([part, part.upper()]))),
            ("not_icontains", _ABSENT),
            ("not_regex", "^zzz"),
        ]
        if _PLAIN_TEXT.fullmatch(raw):
            options.append(("regex", "^" + re.escape(raw[: len(part)])))
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        low, high = int(raw // 1), int(-(-raw // 1))
        options += [
            ("gte", low),
            ("lte", high),
            ("between", [low, high]),
            ("gt", low - 1),
            ("lt", high + 1),
            ("not_between", [high + 1, high + 2]),
        ]
    op, value = draw(st.sampled_from(options))
    f: dict[str, Any] = {"key": key, "type": kind, "operator": op}
    if op != "is_set" and op != "is_not_set":
        f["value"] = value
    return f


def _hogql_text(text: str) -> str:
    """`text` as a HogQL string literal (backslash and quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# Keys a hogql filter reads as `properties.<key>` (a dot in a key would read as nesting).
_HOGQL_KEYS = tuple(k for k in PROPERTY_KEYS if "." not in k)


@st.composite
def matching_typed_filter(draw: st.DrawFn, witness: Event) -> dict[str, Any]:
    """A hogql or (when the witness has a chain) element filter the `witness` event passes."""
    chain = parse_chain(witness.elements_chain) if witness.elements_chain else []
    if chain and draw(st.booleans()):
        href, texts = derived(witness.elements_chain)[:2]
        options: list[dict[str, Any]] = [
            {"key": "tag_name", "value": draw(st.sampled_from(chain)).tag_name},
            {"key": "tag_name", "operator": "is_not", "value": "marquee"},
            {"key": "href", "value": href},
            {"key": "href", "operator": "not_icontains", "value": "zzz"},
        ]
        if texts:
            text = draw(st.sampled_from(texts))
            options += [
                {"key": "text", "value": text},
                {"key": "text", "operator": "icontains", "value": text[: draw(st.integers(1, len(text)))].upper()},
                {"key": "text", "operator": "regex", "value": "^" + _regex_of(text)},
            ]
        return {"type": "element", **draw(st.sampled_from(options))}
    person = draw(st.booleans())
    props = witness.person_properties if person else witness.properties
    keys = PERSON_KEYS if person else _HOGQL_KEYS
    key = draw(st.sampled_from(keys))
    field = f"{'person.' if person else ''}properties.{key}"
    text = prop_text(props, key)
    if text is None:
        key_text = f"coalesce({field}, 'none') = 'none'"
    elif draw(st.integers(0, 2)) == 0:
        key_text = f"{field} != {_hogql_text(_ABSENT)}"
    elif draw(st.booleans()):
        key_text = f"lower({field}) = lower({_hogql_text(text)})"
    else:
        key_text = f"{field} = {_hogql_text(text)}"
    return {"type": "hogql", "key": key_text}


@st.composite
def typed_filter(draw: st.DrawFn) -> dict[str, Any]:
    """A random hogql or element filter (now and then one both refuse: a String-valued expression)."""
    if draw(st.booleans()):
        key = draw(st.sampled_from(["tag_name", "selector", "href", "text"]))
        op = draw(st.sampled_from(["exact", "is_not"] if key in ("tag_name", "selector") else ["exact", "is_not", "icontains", "not_regex"]))
        value = draw(st.sampled_from(TAGS)) if key in ("tag_name", "selector") else draw(st.sampled_from(TEXTS + HREFS))
        return {"type": "element", "key": key, "operator": op, "value": value}
    if draw(st.integers(0, 9)) == 0:
        return {"type": "hogql", "key": "properties.browser"}
    left = draw(st.sampled_from([f"properties.{k}" for k in _HOGQL_KEYS] + ["event", "distinct_id", "person.properties.tier"]))
    right = draw(st.sampled_from(["'Chrome'", "'pro'", "'5'", "'x\\'y'", "'$pageview'", "'p1'"]))
    return {"type": "hogql", "key": f"{left} {draw(st.sampled_from(['=', '!=']))} {right}"}


@st.composite
def property_filter(draw: st.DrawFn, witness: Event | None = None) -> dict[str, Any]:
    """A random filter; given a `witness`, usually one that event passes. One in six is a hogql or
    element filter."""
    if draw(st.integers(0, 5)) == 5:
        if witness is not None and draw(st.integers(0, 9)) < 9:
            return draw(matching_typed_filter(witness))
        return draw(typed_filter())
    if witness is not None and draw(st.integers(0, 9)) < 9:
        return draw(matching_filter(witness))
    kind = draw(st.sampled_from(["event", "event", "person"]))
    key = draw(st.sampled_from(PROPERTY_KEYS if kind == "event" else PERSON_KEYS))
    op = draw(st.sampled_from(OPERATORS))
    f: dict[str, Any] = {"key": key, "type": kind, "operator": op}
    value_scalars = st.one_of(
        st.sampled_from(["Chrome", "chrome", "pro", "5", "2.5", "example", "true", "a"]),
        st.integers(-2, 40),
        st.sampled_from([2.5, 5.0, 0.5]),
        st.booleans(),
    )
    if op in ("is_set", "is_not_set"):
        pass
    elif op in ("between", "not_between"):
        low = draw(st.integers(-2, 30))
        f["value"] = [low, low + draw(st.integers(0, 20))]
    elif op in ("in", "not_in"):
        f["value"] = draw(st.lists(value_scalars, max_size=3))
    elif op in ("regex", "not_regex"):
        f["value"] = draw(st.sampled_from(["^Ch", "fox$", "[0-9]+", "(?i)chrome", "a|b", "^$"]))
    elif op.startswith("is_date"):
        f["value"] = draw(st.sampled_from(["2024-03-01", "2024-11-01 10:00:00", "2020-01-01"]))
    elif op in ("exact", "is_not") and draw(st.integers(0, 4)) == 0:
        f["value"] = draw(st.lists(value_scalars, max_size=3))
    elif op in ("exact", "is_not") and draw(st.integers(0, 5)) == 0:
        f["value"] = None  # contract: exact null is IS NULL, is_not null is IS NOT NULL
    else:
        f["value"] = draw(value_scalars)
    return f


@st.composite
def properties(draw: st.DrawFn, witness: Event | None = None) -> Any:
    shape = draw(st.sampled_from(["none", "list", "group"]))
    if shape == "none":
        return None
    if shape == "list":
        return draw(st.lists(property_filter(witness), min_size=1, max_size=2))
    inner = [
        {
            "type": draw(st.sampled_from(["AND", "OR"])),
            "values": draw(st.lists(property_filter(witness), max_size=2)),
        }
        for _ in range(draw(st.integers(1, 2)))
    ]
    return {"type": draw(st.sampled_from(["AND", "OR"])), "values": inner}


COUNT_MATHS = ("total", "dau", "unique_session", "weekly_active", "monthly_active")
FIRST_MATHS = ("first_time_for_user", "first_matching_event_for_user")
PROPERTY_MATHS = ("sum", "avg", "min", "max", "median", "p75", "p90", "p95", "p99")
PER_ACTOR_MATHS = tuple(
    f"{a}_count_per_actor" for a in ("avg", "min", "max", "median", "p75", "p90", "p95", "p99")
)
ALL_MATHS = COUNT_MATHS + FIRST_MATHS + PROPERTY_MATHS + PER_ACTOR_MATHS


def _nonzero_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value != 0


@st.composite
def math_fields(draw: st.DrawFn, witness: Event | None = None, sessions: bool = False) -> dict[str, Any]:
    """Math fields; given a `witness`, a property math usually reads a number it holds. With
    `sessions`, half of the series aggregate session durations."""
    if sessions and draw(st.booleans()):
        math = draw(st.sampled_from(PROPERTY_MATHS))
    else:
        math = draw(st.sampled_from((*ALL_MATHS, "total", "total", "dau")))
    out: dict[str, Any] = {}
    if math != "total" or draw(st.booleans()):
        out["math"] = math
    if math in PROPERTY_MATHS and draw(st.integers(0, 4 if not sessions else 1)) == 0:
        # The session's duration, whatever the type says (as the reference), or with its own type.
        out["math_property"] = SESSION_DURATION
        kind = draw(st.sampled_from([None, "session_properties", "session_properties", "event_properties"]))
        if kind is not None:
            out["math_property_type"] = kind
        if draw(st.integers(0, 3)) == 0:
            out["math_multiplier"] = draw(st.sampled_from([2, 0.5, -1]))
    elif math in PROPERTY_MATHS:
        numbers = [] if witness is None else [k for k in NUMERIC_KEYS if _nonzero_number(witness.properties.get(k))]
        if witness is not None and _nonzero_number(witness.person_properties.get("age")):
            numbers.append("age")
        key = draw(st.sampled_from(numbers)) if numbers and draw(st.integers(0, 4)) < 4 else None
        if key == "age" or (key is None and draw(st.integers(0, 3)) == 0):
            out["math_property"] = "age"
            out["math_property_type"] = "person_properties"
        else:
            out["math_property"] = key or draw(st.sampled_from(NUMERIC_KEYS))
        if draw(st.integers(0, 3)) == 0:
            out["math_multiplier"] = draw(st.sampled_from([2, 0.5, -1]))
    return out


@st.composite
def events_node(
    draw: st.DrawFn,
    with_math: bool = True,
    filters: bool = True,
    witness: Event | None = None,
    sessions: bool = False,
) -> dict[str, Any]:
    """A series; given a `witness`, usually one whose event name and filters that event passes."""
    node: dict[str, Any] = {"kind": "EventsNode"}
    names = st.one_of(st.none(), st.sampled_from(EVENT_NAMES))
    if witness is not None and draw(st.integers(0, 5)) < 5:
        names = st.sampled_from([witness.event, None])
    name = draw(names)
    if name is not None:
        node["event"] = name
    if filters and draw(st.integers(0, 2)) == 0:
        node["properties"] = draw(st.lists(property_filter(witness), min_size=1, max_size=2))
    if with_math:
        node.update(draw(math_fields(witness, sessions)))
        if draw(st.integers(0, 5)) == 0:
            node["custom_name"] = draw(st.sampled_from(["My series", "Ünïcode — series"]))
    return node


@st.composite
def group_node(draw: st.DrawFn, witness: Event | None = None, sessions: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {
        "kind": "GroupNode",
        "operator": "OR",
        "nodes": draw(st.lists(events_node(with_math=False, witness=witness), min_size=1, max_size=3)),
    }
    if draw(st.integers(0, 3)) == 0:
        node["properties"] = draw(st.lists(property_filter(witness), min_size=1, max_size=1))
    node.update(draw(math_fields(witness, sessions)))
    return node


DATE_CHOICES: dict[str, list[dict[str, Any]]] = {
    "minute": [{"date_from": "-90M"}, {"date_from": "-45M", "date_to": "-5M"}],
    "hour": [
        {"date_from": "-24h"},
        {"date_from": "-48h"},
        {"date_from": "-6h"},
        {"date_from": "-3d"},
        {"date_from": "dStart"},
        {"date_from": "-2d", "date_to": "-1d"},
        {"date_from": "-36H"},
        {"date_from": "-2h", "date_to": "-1h"},
    ],
    "day": [
        {},
        {"date_from": "-7d"},
        {"date_from": "-14d"},
        {"date_from": "-30d"},
        {"date_from": "-10d", "date_to": "-3d"},
        {"date_from": "-1mStart", "date_to": "-1mEnd"},
        {"date_from": "mStart"},
        {"date_from": "-48h"},
        {"date_from": "dStart"},
        {"date_from": "-2w"},
        {"date_from": "all"},
        {"date_from": "-7D"},
        {"date_from": "-1W"},
        {"date_from": "-1d", "date_to": "-3d"},  # date_from after date_to: INVALID_ARGUMENT
        {"date_from": "-5d", "date_to": "-2d", "explicitDate": True},
    ],
    "week": [{"date_from": "-30d"}, {"date_from": "-5w"}, {"date_from": "-14d", "date_to": "-2d"}],
    "month": [{"date_from": "-60d"}, {"date_from": "-2mStart"}, {"date_from": "-1y"}],
}


FORMULAS = ("A+B", "A/B", "(A-B)*2", "B*0.5 + 1", "-A")
DISPLAYS = (
    "ActionsLineGraph",
    "ActionsLineGraph",
    "ActionsLineGraphCumulative",
    "BoldNumber",
    "ActionsPie",
    "ActionsTable",
    "ActionsBar",
)


@dataclass(frozen=True)
class Frame:
    """The time shape of a query: what decides which events it counts before any filter."""

    interval: str
    date_range: dict[str, Any]
    display: str


@st.composite
def frames(draw: st.DrawFn, lines: bool = False) -> Frame:
    """A frame; with `lines`, mostly a time-series display (what smoothing changes)."""
    interval = draw(st.sampled_from(["day", "day", "hour", "week", "month", "minute"]))
    date_range = dict(draw(st.sampled_from(DATE_CHOICES[interval])))
    displays = (*DISPLAYS[:3], "ActionsBar", "ActionsTable") if lines else DISPLAYS
    return Frame(interval, date_range, draw(st.sampled_from(displays)))


@st.composite
def trends_query(
    draw: st.DrawFn,
    dense: bool = False,
    frame: Frame | None = None,
    witness: Event | None = None,
    focus: bool = False,
) -> dict[str, Any]:
    """A valid TrendsQuery; `dense` leaves out filters and always breaks down (more non-zero values);
    `focus` always smooths (now and then with an out-of-range window) and often aggregates session
    durations.

    Given a `witness` event, its series, filters and breakdowns usually select that event."""
    frame = frame or draw(frames())
    nodes = events_node(filters=not dense, witness=witness, sessions=focus)
    series = draw(
        st.lists(st.one_of(nodes, nodes, group_node(witness, sessions=focus)), min_size=1, max_size=3)
    )
    q: dict[str, Any] = {"kind": "TrendsQuery", "series": series, "interval": frame.interval}
    if frame.date_range:
        q["dateRange"] = dict(frame.date_range)
    props = None if dense else draw(properties(witness))
    if props is not None:
        q["properties"] = props
    if draw(st.integers(0, 4)) == 4:
        q["filterTestAccounts"] = True
    display = frame.display
    trends_filter: dict[str, Any] = {"display": display}
    if focus:
        # Out-of-range windows (0, 10_001) inside the list: Hypothesis favours the ends of a range,
        # which made them a third of some runs' examples (rule tests cover them in full).
        windows = [2, 3, 7, 3, 7, 0, 3, 7, 3, 7, 3, 7, 10_001, 3, 7, 3, 2]
        trends_filter["smoothingIntervals"] = draw(st.sampled_from(windows))
    elif draw(st.integers(0, 3)) == 0:
        trends_filter["smoothingIntervals"] = draw(st.sampled_from([1, 2, 3, 7]))
    if len(series) > 1 and draw(st.integers(0, 2)) == 0:
        # Division by zero (always 0) only as a second formula: a first one that is always zero
        # would make the whole example compare zeros.
        formulas = [
            draw(st.sampled_from(FORMULAS)),
            *draw(st.lists(st.sampled_from((*FORMULAS, "a / (B - B)")), max_size=1)),
        ]
        if draw(st.booleans()):
            trends_filter["formulaNodes"] = [
                {"formula": f, **({"custom_name": "Ratio"} if i == 1 else {})} for i, f in enumerate(formulas)
            ]
        else:
            trends_filter["formula"] = formulas[0]
    q["trendsFilter"] = trends_filter
    shape = draw(
        st.sampled_from(
            ["event", "person", "multi"] if dense else ["none", "none", "event", "person", "multi"]
        )
    )
    if shape != "none":
        bf: dict[str, Any] = {}
        if shape == "event":
            bf["breakdown"] = draw(_breakdown_key(PROPERTY_KEYS, witness and witness.properties))
            bf["breakdown_type"] = "event"
        elif shape == "person":
            bf["breakdown"] = draw(_breakdown_key(PERSON_KEYS, witness and witness.person_properties))
            bf["breakdown_type"] = "person"
        else:
            dims = draw(
                st.lists(
                    st.one_of(
                        st.builds(
                            lambda k: {"property": k, "type": "event"},
                            _breakdown_key(PROPERTY_KEYS, witness and witness.properties),
                        ),
                        st.builds(
                            lambda k: {"property": k, "type": "person"},
                            _breakdown_key(PERSON_KEYS, witness and witness.person_properties),
                        ),
                    ),
                    min_size=1,
                    max_size=2,
                )
            )
            bf["breakdowns"] = dims
        if draw(st.booleans()):
            bf["breakdown_limit"] = draw(st.integers(1, 3))
        if draw(st.integers(0, 3)) == 0:
            bf["breakdown_hide_other_aggregation"] = True
        q["breakdownFilter"] = bf
    if draw(st.integers(0, 3)) == 0:
        cf: dict[str, Any] = {"compare": True}
        if draw(st.integers(0, 2)) == 0:
            cf["compare_to"] = draw(st.sampled_from(["-1w", "-2d", "-1m", "-26h", "-1mStart", "-3D"]))
        q["compareFilter"] = cf
    return q


def _breakdown_key(keys: tuple[str, ...], present: dict[str, Any] | None) -> st.SearchStrategy[str]:
    """A breakdown key; usually one the witness holds a value for (so its bucket is not only null)."""
    held = [k for k in keys if (present or {}).get(k) not in (None, "")]
    if not held:
        return st.sampled_from(keys)
    return st.one_of(st.sampled_from(held), st.sampled_from(held), st.sampled_from(keys))


@dataclass(frozen=True)
class Case:
    """One engine-vs-oracle example: the environment's settings, its events and the query."""

    now: dt.datetime
    timezone: str
    week_start_day: int
    events: list[Event]
    query: dict[str, Any]
    witness: Event | None  # the event the query was built to select (for diagnostics)
    # The environment's actions by id (reference JSON), for ActionsNode series.
    actions: dict[int, dict[str, Any]] = field(default_factory=dict)


def window(frame: Frame, timezone: str, week_start_day: int, now: dt.datetime) -> Window | None:
    """The UTC instants the frame counts, as the oracle resolves them; None when they depend on
    the events ("all") or the range is invalid."""
    if frame.date_range.get("date_from") == "all":
        return None
    try:
        resolved = resolve_date_range(
            frame.date_range or None,
            frame.interval,
            display=frame.display,
            timezone=timezone,
            week_start_day=week_start_day,
            now=now,
        )
    except OracleError:
        return None
    return resolved.lower, resolved.upper


@st.composite
def cases(draw: st.DrawFn, dense: bool = False, focus: bool = False) -> Case:
    """An example built to compare something: events mostly inside the queried range, and a query
    whose series, filters and breakdowns usually select one of them (the witness). `focus`: see
    trends_query; the events then mostly belong to sessions, and the witness to one of them."""
    now = draw(st.sampled_from(NOWS), label="now")
    tz = draw(st.sampled_from(TIMEZONES), label="tz")
    week_start_day = draw(st.sampled_from([0, 1]), label="week_start_day")
    frame = draw(frames(lines=focus), label="frame")
    bounds = window(frame, tz, week_start_day, now)
    evs = draw(events(now, min_size=8 if dense else 3, window=bounds, sessions=focus), label="events")
    inside = [e for e in evs if bounds is None or bounds[0] <= e.timestamp <= bounds[1]]
    if focus:
        inside = [e for e in inside if e.properties.get("$session_id")] or inside
    witness = draw(st.sampled_from(inside), label="witness") if inside else None
    query = draw(trends_query(dense, frame=frame, witness=witness, focus=focus), label="query")
    return Case(now, tz, week_start_day, evs, query, witness)


TEST_ACCOUNT_FILTERS = [
    {"key": "email", "value": "posthog.com", "operator": "not_icontains", "type": "person"},
    {"key": "browser", "value": "Safari 17", "operator": "is_not", "type": "event"},
]


# ------------------------------------------------------------------------------------- actions

TAGS = ("a", "button", "div", "span", "form")
CLASSES = ("btn", "primary", "nav-link", "x_y")
# Values with regex metacharacters, quotes and `;`: every one must be matched literally.
TEXTS = ("Go", "Sign up", "a.b (1)", 'Say "hi"', "x;y")
HREFS = ("/signup", "/a?b=1", "https://x.com/*")
IDS = ("hero", "main")
ATTR_VALUES = ("1", 'a"b;c', "x.*", "[z]")
URLS = ("https://x.com/a?b=1", "https://x.com/signup", "http://y.org/a.b")
URL_REGEXES = (r"x\.com/a", r"^https?://", r"signup$", r"a\.b")
TEXT_REGEXES = (r"^Go$", r"\(1\)", r'"hi"', r"Sign\s")

elements = st.builds(
    Element,
    tag_name=st.sampled_from(TAGS),
    classes=st.lists(st.sampled_from(CLASSES), max_size=2, unique=True).map(tuple),
    text=st.sampled_from(("", "", *TEXTS)),
    href=st.sampled_from(("", "", *HREFS)),
    attr_id=st.sampled_from(("", "", *IDS)),
    attributes=st.dictionaries(st.just("attr__data-x"), st.sampled_from(ATTR_VALUES), max_size=1),
)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def _selector_part(draw: st.DrawFn, element: Element) -> str:
    part = element.tag_name if draw(st.booleans()) else ""
    if element.attr_id and draw(st.booleans()):
        part += "#" + element.attr_id
    for name in element.classes:
        if draw(st.booleans()):
            part += "." + name
    for key, value in element.attributes.items():
        if draw(st.booleans()):
            part += f"[{key.removeprefix('attr__')}={_quoted(value)}]"
    return part or element.tag_name


@st.composite
def selectors(draw: st.DrawFn, chain: list[Element]) -> str:
    """A selector some element of `chain` (clicked first) matches, with some of its ancestors."""
    k = draw(st.integers(0, len(chain) - 1))
    parts, at = [draw(_selector_part(chain[k]))], k
    while at + 1 < len(chain) and draw(st.booleans()):
        nxt = draw(st.integers(at + 1, len(chain) - 1))
        joiner = " > " if nxt == at + 1 and draw(st.booleans()) else " "
        parts.insert(0, draw(_selector_part(chain[nxt])) + joiner)
        at = nxt
    return "".join(parts)


def _regex_of(text: str) -> str:
    """A regex matching `text` literally (RE2 and Python agree on these escapes)."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in text)


@st.composite
def _matching(draw: st.DrawFn, value: str, regexes: tuple[str, ...]) -> tuple[str, str]:
    """(matching, pattern) that `value` passes, or now and then a random one."""
    how = draw(st.sampled_from(["exact", "contains", "regex"]))
    if how == "exact":
        return how, value
    if how == "contains":
        start = draw(st.integers(0, max(len(value) - 1, 0)))
        return how, value[start : start + draw(st.integers(1, 6))] or value
    if draw(st.integers(0, 2)) < 2:
        return how, "^" + _regex_of(value[: draw(st.integers(1, len(value)))]) if value else ".*"
    return how, draw(st.sampled_from(regexes))


@st.composite
def action_steps(draw: st.DrawFn, witness: Event | None, chain: list[Element] | None) -> dict[str, Any]:
    """A step; given a witness (and its chain), its parts usually match that event."""
    step: dict[str, Any] = {}
    # Hypothesis draws small integers most often: the common (faithful) branch is the small one.
    faithful = witness is not None and draw(st.integers(0, 5)) < 5
    if draw(st.integers(0, 2)) == 0:
        step["event"] = witness.event if witness and faithful else draw(st.sampled_from(EVENT_NAMES))
    url = witness.properties.get("$current_url") if witness and faithful else None
    if (url and draw(st.integers(0, 2)) == 0) or draw(st.integers(0, 15)) == 15:
        step["url_matching"], step["url"] = draw(_matching(url or draw(st.sampled_from(URLS)), URL_REGEXES))
    if not (chain and faithful):
        chain = draw(st.lists(elements, min_size=1, max_size=3))
    hrefs = [e.href for e in chain if e.href]
    if (hrefs and draw(st.integers(0, 2)) == 0) or draw(st.integers(0, 15)) == 15:
        href = hrefs[0] if hrefs else draw(st.sampled_from(HREFS))
        step["href_matching"], step["href"] = draw(_matching(href, (r"^/", r"\?b=")))
    texts = [e.text for e in chain if e.text]
    if (texts and draw(st.integers(0, 2)) == 0) or draw(st.integers(0, 15)) == 15:
        text = draw(st.sampled_from(texts)) if texts else draw(st.sampled_from(TEXTS))
        step["text_matching"], step["text"] = draw(_matching(text, TEXT_REGEXES))
    if draw(st.integers(0, 4)) == 0:
        step["tag_name"] = draw(st.sampled_from(chain)).tag_name
    if draw(st.integers(0, 1)) == 0:
        step["selector"] = draw(selectors(chain))
    if draw(st.integers(0, 5)) == 0:
        step["properties"] = [draw(property_filter(witness))]
    return step


@st.composite
def action_cases(draw: st.DrawFn) -> Case:
    """A trends example whose series count stored actions: events get autocapture chains and URLs,
    actions are drawn around the witness (so they usually select it), EventsNodes become
    ActionsNodes (keeping their math and filters); now and then an action is missing."""
    case = draw(cases())
    chains: dict[str, list[Element]] = {}
    for e in case.events:
        # The witness always has a chain (steps are drawn around it); other events mostly.
        if e is case.witness or draw(st.integers(0, 3)):
            chains[e.uuid] = draw(st.lists(elements, min_size=1, max_size=4))
            e.elements_chain = to_chain(chains[e.uuid])
        if draw(st.integers(0, 2)):
            e.properties["$current_url"] = draw(st.sampled_from(URLS))
    witness = case.witness
    chain = chains.get(witness.uuid) if witness else None
    actions: dict[int, dict[str, Any]] = {}
    for action_id in (1, 2):
        steps = draw(st.lists(action_steps(witness, chain), min_size=0 if action_id == 2 else 1, max_size=2))
        actions[action_id] = {"id": action_id, "name": draw(st.sampled_from(["Clicked", "Ünïcode action"])) + f" {action_id}", "steps": steps}
    ids = st.sampled_from([1, 1, 2, 3]) if draw(st.integers(0, 9)) == 9 else st.sampled_from([1, 1, 2])

    def as_action(node: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in node.items() if k not in ("kind", "event", "name")}
        return {"kind": "ActionsNode", "id": draw(ids), **kept}

    series = case.query["series"]
    for i, node in enumerate(series):
        kind = node.get("kind")
        if kind == "EventsNode" and (i == 0 or draw(st.booleans())):
            series[i] = as_action(node)
        elif kind == "GroupNode" and (i == 0 or draw(st.booleans())):
            node["nodes"][0] = as_action(node["nodes"][0])
    return Case(case.now, case.timezone, case.week_start_day, case.events, case.query, witness, actions)
