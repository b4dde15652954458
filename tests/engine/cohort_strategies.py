"""Hypothesis strategies for cohorts: definitions drawn around a witness person (so they usually
hold someone), and trends examples whose filters and breakdowns name them (`cohort_cases`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.engine.strategies import (
    EVENT_NAMES,
    PERSON_KEYS,
    PERSONS,
    TEST_ACCOUNT_FILTERS,
    Case,
    action_cases,
    cases,
    person_property_dicts,
    property_filter,
)
from tests.oracle import Event, OracleError
from tests.oracle.cohorts import CohortUnavailable, OracleCohort, Person, members

TIERS = ("free", "pro", "Pro", "enterprise")
COHORT_NAMES = ("Paying users", "Ünïcode — cohort", "all users")
# An id no cohort has: a filter or breakdown naming it is FAILED_PRECONDITION.
MISSING_COHORT = 99


def _iso(moment: dt.datetime, with_time: bool) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S" if with_time else "%Y-%m-%d")


@st.composite
def behavioral(
    draw: st.DrawFn, now: dt.datetime, evs: list[Event], witness: str | None, actions: list[int] | None = None
) -> dict[str, Any]:
    """A behavioural criterion; given a `witness` person, usually one they meet (an event of theirs
    inside the window, counted at least once). Given `actions` (ids), now and then it counts one of
    them instead of an event (in a window holding one of the witness's events)."""
    own = [e for e in evs if e.person_id == witness and e.timestamp <= now]
    if actions and draw(st.integers(0, 2)) == 0:
        counted: dict[str, Any] = {"action_id": draw(st.sampled_from(actions))}
        if own:
            counted["time_value"] = (
                (now - draw(st.sampled_from(own)).timestamp).days + 1 + draw(st.integers(0, 5))
            )
        else:
            counted["time_value"] = draw(st.integers(1, 45))
        if draw(st.booleans()):
            counted["operator"] = draw(st.sampled_from(["gte", "exact", "lte"]))
            counted["count"] = draw(st.integers(0, 2))
        return counted
    if own and draw(st.integers(0, 3)) < 3:
        e = draw(st.sampled_from(own))
        days = (now - e.timestamp).days + 1
        out: dict[str, Any] = {"event": e.event}
        start, end = now - dt.timedelta(days=days + 1), now
        form = draw(st.sampled_from(["relative", "from", "between"]))
        if form == "relative":
            out["time_value"] = days + draw(st.integers(0, 5))
            start = now - dt.timedelta(days=out["time_value"])
        else:
            start = e.timestamp - dt.timedelta(days=draw(st.integers(1, 3)))
            out["date_from"] = _iso(start, False)
            if form == "between":
                # Often the event's own day: a bare end date counts through its last instant.
                end = e.timestamp + dt.timedelta(days=draw(st.integers(0, 2)))
                out["date_to"] = _iso(end, False)
        # The witness's own count (in UTC days: near a window's edge it may be off by one, so the
        # witness then fails the criterion, which the comparison does not mind).
        own_count = sum(1 for o in own if o.event == e.event and start <= o.timestamp <= end)
        operator = draw(st.sampled_from(["gte", "exact", "lte", None]))
        if operator:
            out["operator"] = operator
        if operator in ("exact", "lte") or (operator == "gte" and draw(st.booleans())):
            out["count"] = own_count
        return out
    out = {"event": draw(st.sampled_from(EVENT_NAMES))}
    operator = draw(st.sampled_from([None, "gte", "lte", "exact"]))
    if operator:
        out["operator"] = operator
    count = draw(st.sampled_from([None, 0, 1, 2, 3]))
    if count is not None:
        out["count"] = count
    form = draw(st.sampled_from(["relative", "from", "between"]))
    if form == "relative":
        unit = draw(st.sampled_from([None, "day", "week", "month", "year"]))
        out["time_value"] = (
            draw(st.integers(1, 6)) if unit in ("week", "month", "year") else draw(st.integers(1, 45))
        )
        if unit:
            out["time_interval"] = unit
        return out
    start = now - dt.timedelta(days=draw(st.integers(0, 45)), hours=draw(st.integers(0, 23)))
    starts = [_iso(start, False), _iso(start, True)]
    if form == "from":
        # A relative start only without an end: with an absolute end it could fall after it, a
        # definition the service refuses (so no stored cohort holds one).
        starts.append(f"-{draw(st.integers(1, 40))}d")
    out["date_from"] = draw(st.sampled_from(starts))
    if form == "between":
        end = start + dt.timedelta(days=draw(st.integers(0, 30)), hours=draw(st.integers(0, 23)))
        out["date_to"] = draw(st.sampled_from([_iso(end, False), _iso(end, True)]))
    return out


@st.composite
def person_filter(draw: st.DrawFn, now: dt.datetime, props: dict[str, Any]) -> dict[str, Any]:
    """A person property filter; usually one that `props` passes and that tells persons apart
    (compares a value they hold, rather than the absence of a key nobody has)."""
    present = [k for k in PERSON_KEYS if props.get(k) not in (None, "")]
    if not present or draw(st.integers(0, 3)) == 3:
        probe = Event("", "", "", "", now, props, props)
        return {**draw(property_filter(probe)), "type": "person"}
    key = draw(st.sampled_from(present))
    raw = props[key]
    options: list[tuple[str, Any]] = [("exact", raw), ("in", [raw, "zzz-absent"]), ("is_set", None)]
    if isinstance(raw, str):
        options += [("icontains", raw[: draw(st.integers(1, len(raw)))].upper()), ("not_icontains", "zzz")]
        if raw[0].isalnum() and raw[0].isascii():
            options.append(("regex", "^" + raw[0]))
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        options += [("gte", raw), ("lte", raw), ("gt", raw - 1), ("between", [raw - 1, raw + 1])]
    op, value = draw(st.sampled_from(options))
    f: dict[str, Any] = {"key": key, "type": "person", "operator": op}
    if value is not None:
        f["value"] = value
    return f


@st.composite
def criterion(
    draw: st.DrawFn,
    now: dt.datetime,
    persons: list[Person],
    evs: list[Event],
    earlier: list[int],
    witness: Person,
    actions: list[int] | None = None,
) -> dict[str, Any]:
    """A criterion of any kind; most are built so that the `witness` person meets them."""
    kinds = ["property", "behavioral", "behavioral"] + (["cohort"] if earlier else [])
    kind = draw(st.sampled_from(kinds))
    meets = draw(st.integers(0, 3)) < 3
    if kind == "property":
        props = witness.properties if meets else draw(st.sampled_from([p.properties for p in persons]))
        item: dict[str, Any] = {"person_property": draw(person_filter(now, props))}
    elif kind == "behavioral":
        item = {"behavioral": draw(behavioral(now, evs, witness.id if meets else None, actions))}
    else:
        item = {"in_cohort": {"cohort_id": draw(st.sampled_from(earlier))}}
    if not meets and draw(st.booleans()):
        item["negation"] = True
    return item


@st.composite
def loaded_persons(draw: st.DrawFn) -> list[Person]:
    """Rows of `persons` with properties for some of PERSONS (ingestion gives the others a row
    without any when they have events); most have a tier, which filters tell apart."""
    chosen = draw(st.lists(st.sampled_from(PERSONS), min_size=3, max_size=len(PERSONS), unique=True))
    persons = []
    for p in sorted(chosen):
        props = draw(person_property_dicts)
        if draw(st.integers(0, 4)) < 4:
            props.setdefault("tier", draw(st.sampled_from(TIERS)))
        persons.append(Person(p, props))
    return persons


@st.composite
def cohort_definitions(
    draw: st.DrawFn,
    now: dt.datetime,
    persons: list[Person],
    evs: list[Event],
    witness: Person | None = None,
    actions: list[int] | None = None,
) -> list[OracleCohort]:
    """One to three cohorts with ids 1, 2, 3 (a later one may be "in" an earlier one): now and then
    static, else groups of criteria most of which a witness meets (`witness`, mostly, when given)."""
    cohorts: list[OracleCohort] = []
    for cohort_id in range(1, draw(st.integers(1, 3)) + 1):
        earlier = [c.id for c in cohorts]
        name = f"{draw(st.sampled_from(COHORT_NAMES))} {cohort_id}"
        if draw(st.integers(0, 5)) == 5:
            listed = draw(st.lists(st.sampled_from([*PERSONS, "p-static"]), min_size=1, max_size=4))
            cohorts.append(OracleCohort(cohort_id, is_static=True, members=frozenset(listed), name=name))
            continue
        chosen = witness if witness is not None and draw(st.integers(0, 3)) < 3 else None
        who = chosen or draw(st.sampled_from(persons))
        groups = [
            {
                "type": draw(st.sampled_from(["AND", "OR"])),
                "values": [
                    draw(criterion(now, persons, evs, earlier, who, actions))
                    for _ in range(draw(st.integers(1, 3)))
                ],
            }
            for _ in range(draw(st.integers(1, 2)))
        ]
        filters = {"properties": {"type": draw(st.sampled_from(["AND", "OR"])), "values": groups}}
        cohorts.append(OracleCohort(cohort_id, filters=filters, name=name))
    return cohorts


def everyone(persons: list[Person], evs: list[Event]) -> list[Person]:
    """The environment's `persons` as the engine has them: the loaded rows, and a row without
    properties for every other person with events (ingestion makes it)."""
    loaded = {p.id for p in persons}
    return [*persons, *(Person(pid, {}) for pid in sorted({e.person_id for e in evs} - loaded))]


@dataclass(frozen=True)
class CohortCase:
    """A trends example over stored cohorts: the trends case (whose query names them), the
    `persons` rows loaded, the cohorts, and the environment's test-account filters."""

    case: Case
    persons: list[Person]
    cohorts: list[OracleCohort]
    test_account_filters: list[dict[str, Any]] = field(default_factory=list)


def _members_or_none(
    cohort: OracleCohort, cohorts: list[OracleCohort], case: Case, persons: list[Person]
) -> set[str] | None:
    try:
        return members(
            cohort,
            {c.id: c for c in cohorts},
            everyone(persons, case.events),
            case.events,
            timezone=case.timezone,
            now=case.now,
            actions=case.actions,
        )
    except (OracleError, CohortUnavailable):
        return None


@st.composite
def cohort_filter(
    draw: st.DrawFn, ids: list[int], inside: dict[int, set[str] | None], witness: str | None
) -> dict[str, Any]:
    """A cohort filter the witness person usually passes, half of them excluding a cohort (one the
    witness is not in, when there is one), in the reference's forms: operator in / not_in / unset,
    negation (with either operator), the id as text."""
    excluded = draw(st.booleans())
    passing = [
        c for c in ids if witness is not None and inside[c] is not None and (witness in inside[c]) != excluded
    ]
    if draw(st.integers(0, 19)) == 19:
        cohort_id = MISSING_COHORT
    elif passing and draw(st.integers(0, 9)) < 9:
        cohort_id = draw(st.sampled_from(passing))
    else:
        cohort_id = draw(st.sampled_from(ids))
    f: dict[str, Any] = {"type": "cohort", "key": "id", "value": cohort_id}
    if draw(st.integers(0, 5)) == 0:
        f["value"] = str(cohort_id)
    if excluded:
        form = draw(st.sampled_from(["not_in", "negation", "negation and in", "both"]))
        if form != "negation":
            f["operator"] = "in" if form == "negation and in" else "not_in"
        if form != "not_in":
            f["negation"] = True  # with not_in too: still "not in", as the reference
    elif draw(st.booleans()):
        f["operator"] = "in"
    if draw(st.integers(0, 4)) == 0:
        f["cohort_name"] = "shown, not computed"
    return f


@st.composite
def cohort_cases(draw: st.DrawFn) -> CohortCase:
    """A trends example (plain, or over action series) whose query filters by stored cohorts (in
    the query's, a series' or the test-account filters) and/or breaks down by them; the cohorts are
    drawn around the witness event's person, so most results are not all zero. Cohort criteria may
    count the example's actions; now and then a cohort named is missing."""
    case = draw(st.one_of(cases(), cases(), action_cases()))
    persons = draw(loaded_persons())
    witness_id = case.witness.person_id if case.witness else None
    witness = next((p for p in everyone(persons, case.events) if p.id == witness_id), None)
    action_ids = sorted(case.actions) + ([3] if case.actions and draw(st.integers(0, 9)) == 0 else [])
    cohorts = draw(cohort_definitions(case.now, persons, case.events, witness, action_ids or None))
    inside = {c.id: _members_or_none(c, cohorts, case, persons) for c in cohorts}
    ids = [c.id for c in cohorts]
    query = case.query
    tests = list(TEST_ACCOUNT_FILTERS)
    where = draw(st.lists(st.sampled_from(["query", "series", "tests"]), max_size=2))
    by_cohort = draw(st.integers(0, 2)) == 0 or not where
    for place in where:
        f = draw(cohort_filter(ids, inside, witness_id))
        if place == "query":
            props = query.get("properties")
            if props is None:
                query["properties"] = [f]
            elif isinstance(props, list):
                props.append(f)
            else:
                props["values"].append({"type": "AND", "values": [f]})
        elif place == "series":
            node = query["series"][draw(st.integers(0, len(query["series"]) - 1))]
            node["properties"] = [*(node.get("properties") or []), f]
        else:
            tests.append(f)
            query["filterTestAccounts"] = True
    if by_cohort:
        # Mostly cohorts holding the witness (or all users), listed in the reference's forms.
        holding = [c for c in ids if witness_id is not None and witness_id in (inside[c] or set())]
        pool = [0, *ids] + ([MISSING_COHORT] if draw(st.integers(0, 19)) == 19 else [])
        first = draw(st.sampled_from([*holding, 0]))
        more = draw(st.lists(st.sampled_from(pool), max_size=2, unique=True))
        chosen = draw(st.permutations([first, *(c for c in more if c != first)]))
        given: list[Any] = [("all" if c == 0 and draw(st.booleans()) else c) for c in chosen]
        bf: dict[str, Any] = {"breakdown_type": "cohort"}
        bf["breakdown"] = given[0] if len(given) == 1 and draw(st.booleans()) else given
        if draw(st.integers(0, 4)) == 0:
            bf["breakdown_limit"] = 1  # no effect on cohorts (reference)
        query["breakdownFilter"] = bf
    return CohortCase(case, persons, cohorts, tests)
