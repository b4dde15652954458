"""Hypothesis strategies for funnels broken down by cohorts: a funnel case (steps or trends
visualisation) whose persons are stored with properties, one to three cohorts drawn around a
person who entered (so they usually hold someone), and a cohort breakdown listing them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.engine.cohort_strategies import MISSING_COHORT, cohort_definitions
from tests.engine.funnel_strategies import (
    FunnelCase,
    funnel_actor_cases,
    funnel_cases,
    funnel_trends_cases,
    time_to_convert_cases,
)
from tests.oracle import OracleError
from tests.oracle.cohorts import CohortUnavailable, OracleCohort, Person, members


@dataclass
class FunnelCohortCase:
    """A funnel example over stored cohorts: the funnel case (whose query breaks down by them), the
    `persons` rows loaded (every person with events), and the cohorts."""

    case: FunnelCase
    persons: list[Person]
    cohorts: list[OracleCohort]


def _persons(case: FunnelCase) -> list[Person]:
    """A persons row per person with events, with the properties its events carry."""
    found: dict[str, dict[str, Any]] = {}
    for e in case.events:
        found.setdefault(e.person_id, dict(e.person_properties))
    return [Person(pid, props) for pid, props in sorted(found.items())]


def _inside(cohort: OracleCohort, cohorts: list[OracleCohort], case: FunnelCase, persons: list[Person]) -> set[str]:
    try:
        return members(
            cohort, {c.id: c for c in cohorts}, persons, case.events, timezone=case.timezone, now=case.now
        )
    except (OracleError, CohortUnavailable):
        return set()


@st.composite
def funnel_cohort_cases(draw: st.DrawFn) -> FunnelCohortCase:
    """A funnel (mostly steps, some of them with first-time steps or counting groups or sessions;
    one in four the trends visualisation; one in twenty-four time_to_convert, which takes no
    breakdown) broken down by cohorts: mostly ones holding a person who entered,
    all users ("all" or 0) now and then, as an id, its text or a list in any order; any attribution
    (none changes a cohort's funnel); a breakdown_limit now and then (no effect on cohorts); a
    cohort that is missing or deleted one time in fifteen."""
    viz = draw(st.sampled_from(["steps"] * 14 + ["actors"] * 4 + ["trends"] * 5 + ["time_to_convert"]))
    if viz == "actors":
        case = draw(funnel_actor_cases(breakdown=True))
    elif viz == "trends":
        case = draw(funnel_trends_cases())
    elif viz == "time_to_convert":
        case = draw(time_to_convert_cases())
    else:
        case = draw(funnel_cases(breakdown=True))
    persons = _persons(case)
    entry = case.query["series"][0].get("event")
    entered = sorted({e.person_id for e in case.events if entry is None or e.event == entry})
    witness_id = draw(st.sampled_from(entered)) if entered else None
    witness = next((p for p in persons if p.id == witness_id), None)
    if not persons:
        persons = [Person("p0", {"tier": "pro"})]
    cohorts = draw(cohort_definitions(case.now, persons, case.events, witness))
    if draw(st.integers(0, 14)) == 0:
        gone = draw(st.sampled_from(cohorts))
        cohorts = [OracleCohort(c.id, c.is_static, c.filters, c.members, True, c.name) if c is gone else c for c in cohorts]
    inside = {c.id: _inside(c, cohorts, case, persons) for c in cohorts}
    ids = [c.id for c in cohorts]
    holding = [c for c in ids if witness_id is not None and witness_id in inside[c]]
    pool = [0, *ids] + ([MISSING_COHORT] if draw(st.integers(0, 19)) == 0 else [])
    first = draw(st.sampled_from([*holding, *holding, 0]))
    more = draw(st.lists(st.sampled_from(pool), max_size=3, unique=True))
    chosen = draw(st.permutations([first, *(c for c in more if c != first)]))
    given: list[Any] = [
        ("all" if c == 0 and draw(st.booleans()) else str(c) if draw(st.integers(0, 5)) == 0 else c) for c in chosen
    ]
    bf: dict[str, Any] = {"breakdown_type": "cohort"}
    bf["breakdown"] = given[0] if len(given) == 1 and draw(st.booleans()) else given
    if draw(st.integers(0, 4)) == 0:
        bf["breakdown_limit"] = 1  # no effect on cohorts (reference)
    case.query["breakdownFilter"] = bf
    ff = case.query["funnelsFilter"]
    n = len(case.query["series"])
    attribution = draw(st.sampled_from(["first_touch", "last_touch", "all_events", "step", None]))
    ff.pop("breakdownAttributionType", None)
    ff.pop("breakdownAttributionValue", None)
    if attribution is not None:
        ff["breakdownAttributionType"] = attribution
    if attribution == "step":
        ff["breakdownAttributionValue"] = 0 if ff.get("funnelOrderType") == "unordered" else draw(st.integers(0, n - 1))
    return FunnelCohortCase(case, persons, cohorts)
