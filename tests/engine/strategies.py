"""Hypothesis strategies: small random event sets and random valid TrendsQuery JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

from tests.oracle import Event

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
property_dicts = st.dictionaries(st.sampled_from(PROPERTY_KEYS), scalars, max_size=5)
session_ids = st.sampled_from(["s1", "s2", "s3", ""])
person_property_dicts = st.fixed_dictionaries(
    {},
    optional={
        "email": st.sampled_from(["a@example.com", "test@posthog.com", "b@example.com", ""]),
        "tier": st.sampled_from(["free", "pro", "Pro", "enterprise"]),
        "age": st.one_of(st.integers(10, 80), st.none(), st.sampled_from(["31", "n/a"])),
    },
)


@st.composite
def events(draw: st.DrawFn, now: dt.datetime, min_size: int = 0) -> list[Event]:
    """Up to ~40 events of a few persons within 40 days before `now` (and a few hours after)."""
    count = draw(st.integers(min_size, 40))
    persons = {p: draw(person_property_dicts) for p in PERSONS}
    out = []
    for n in range(count):
        person = draw(st.sampled_from(PERSONS))
        spread = draw(st.sampled_from([40 * 86400, 3 * 86400, 3 * 3600]))
        seconds = draw(st.integers(-spread, 2 * 3600))
        props = draw(property_dicts)
        if draw(st.booleans()):
            props["$session_id"] = draw(session_ids)
        person_props = persons[person] if draw(st.integers(0, 4)) else draw(person_property_dicts)
        # A distinct microsecond per event: no two events share a timestamp (first-event ties are
        # a known ambiguity the contract leaves open).
        when = now + dt.timedelta(seconds=seconds, microseconds=n)
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


@st.composite
def property_filter(draw: st.DrawFn) -> dict[str, Any]:
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
def properties(draw: st.DrawFn) -> Any:
    shape = draw(st.sampled_from(["none", "list", "group"]))
    if shape == "none":
        return None
    if shape == "list":
        return draw(st.lists(property_filter(), min_size=1, max_size=2))
    inner = [
        {
            "type": draw(st.sampled_from(["AND", "OR"])),
            "values": draw(st.lists(property_filter(), max_size=2)),
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


@st.composite
def math_fields(draw: st.DrawFn) -> dict[str, Any]:
    math = draw(st.sampled_from((*ALL_MATHS, "total", "total", "dau")))
    out: dict[str, Any] = {}
    if math != "total" or draw(st.booleans()):
        out["math"] = math
    if math in PROPERTY_MATHS:
        if draw(st.integers(0, 3)) == 0:
            out["math_property"] = "age"
            out["math_property_type"] = "person_properties"
        else:
            out["math_property"] = draw(st.sampled_from(NUMERIC_KEYS))
        if draw(st.integers(0, 3)) == 0:
            out["math_multiplier"] = draw(st.sampled_from([2, 0.5, -1]))
    return out


@st.composite
def events_node(draw: st.DrawFn, with_math: bool = True, filters: bool = True) -> dict[str, Any]:
    node: dict[str, Any] = {"kind": "EventsNode"}
    name = draw(st.one_of(st.none(), st.sampled_from(EVENT_NAMES)))
    if name is not None:
        node["event"] = name
    if filters and draw(st.integers(0, 2)) == 0:
        node["properties"] = draw(st.lists(property_filter(), min_size=1, max_size=2))
    if with_math:
        node.update(draw(math_fields()))
        if draw(st.integers(0, 5)) == 0:
            node["custom_name"] = draw(st.sampled_from(["My series", "Ünïcode — series"]))
    return node


@st.composite
def group_node(draw: st.DrawFn) -> dict[str, Any]:
    node: dict[str, Any] = {
        "kind": "GroupNode",
        "operator": "OR",
        "nodes": draw(st.lists(events_node(with_math=False), min_size=1, max_size=3)),
    }
    if draw(st.integers(0, 3)) == 0:
        node["properties"] = draw(st.lists(property_filter(), min_size=1, max_size=1))
    node.update(draw(math_fields()))
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


@st.composite
def trends_query(draw: st.DrawFn, dense: bool = False) -> dict[str, Any]:
    """A valid TrendsQuery; `dense` leaves out filters and always breaks down (more non-zero values)."""
    nodes = events_node(filters=not dense)
    series = draw(st.lists(st.one_of(nodes, nodes, group_node()), min_size=1, max_size=3))
    q: dict[str, Any] = {"kind": "TrendsQuery", "series": series}
    interval = draw(st.sampled_from(["day", "day", "hour", "week", "month", "minute"]))
    q["interval"] = interval
    date_range = dict(draw(st.sampled_from(DATE_CHOICES[interval])))
    if date_range:
        q["dateRange"] = date_range
    props = None if dense else draw(properties())
    if props is not None:
        q["properties"] = props
    if draw(st.integers(0, 4)) == 0:
        q["filterTestAccounts"] = True
    display = draw(
        st.sampled_from(
            [
                "ActionsLineGraph",
                "ActionsLineGraph",
                "ActionsLineGraphCumulative",
                "BoldNumber",
                "ActionsPie",
                "ActionsTable",
                "ActionsBar",
            ]
        )
    )
    trends_filter: dict[str, Any] = {"display": display}
    if len(series) > 1 and draw(st.integers(0, 2)) == 0:
        formulas = draw(
            st.lists(
                st.sampled_from(["A+B", "A/B", "(A-B)*2", "B*0.5 + 1", "-A", "a / (B - B)"]),
                min_size=1,
                max_size=2,
            )
        )
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
            bf["breakdown"] = draw(st.sampled_from(PROPERTY_KEYS))
            bf["breakdown_type"] = "event"
        elif shape == "person":
            bf["breakdown"] = draw(st.sampled_from(PERSON_KEYS))
            bf["breakdown_type"] = "person"
        else:
            dims = draw(
                st.lists(
                    st.one_of(
                        st.builds(lambda k: {"property": k, "type": "event"}, st.sampled_from(PROPERTY_KEYS)),
                        st.builds(lambda k: {"property": k, "type": "person"}, st.sampled_from(PERSON_KEYS)),
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


TEST_ACCOUNT_FILTERS = [
    {"key": "email", "value": "posthog.com", "operator": "not_icontains", "type": "person"},
    {"key": "browser", "value": "Safari 17", "operator": "is_not", "type": "event"},
]
