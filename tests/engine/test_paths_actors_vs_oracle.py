"""Property-based equality of the paths drill-down (InsightActorsQuery around a PathsQuery, through
the actors runner on chDB) and the independent pure-Python oracle (tests/oracle/paths.py
`paths_actors`): for each key kind (none, start, end, both, drop-off) one page of the actors.

The keys are drawn from the oracle's own path rows (one in eight is a key no path has), so most
examples pick someone; the tally counts an example as non-zero when its expected page is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event
from hypothesis import strategies as st

from storage.events import EventStore
from tests.engine.funnel_paths_strategies import funnel_paths_cases
from tests.engine.paths_harness import actor_ids, run_paths_actors_engine
from tests.engine.paths_strategies import TEST_ACCOUNT_FILTERS, PathsCase, paths_cases
from tests.engine.tally import NONZERO, ZERO, assert_mostly_nonzero, tally
from tests.oracle.paths import actor_paths, path_rows, paths_actors

KINDS = ("none", "start", "end", "both", "dropoff")
# Measured over 15 randomized seeds of 100 examples (ci profile, seeds 101 ... 1616): 0.49 to 0.86
# of the examples compare a non-empty page, mean 0.70 (the zeros: a key no path has, one in eight
# by design, and examples whose filters leave nobody a path); the floor leaves a tenth below the
# lowest seed.
MIN_NONZERO_SHARE = 0.38
# Funnel paths, measured likewise (15 seeds, 101 ... 1616): 0.35 to 0.76, mean 0.60 (drop-offs
# and paths between two steps are often empty); a tenth below the lowest seed.
MIN_FUNNEL_NONZERO_SHARE = 0.25


@dataclass
class ActorsCase:
    case: PathsCase
    kind: str
    pick: int  # which of the candidate keys (modulo their number); 0 mod 8 with `unknown`: none of them
    unknown: bool
    limit: int | None
    offset: int


def actors_cases(cases: st.SearchStrategy[PathsCase]) -> st.SearchStrategy[ActorsCase]:
    """A drill-down of each paths example: a key kind, which key, and a page."""
    return st.builds(
        ActorsCase,
        cases,
        st.sampled_from(KINDS),
        st.integers(0, 10_000),
        st.integers(0, 7).map(lambda n: n == 7),
        st.sampled_from([None, 1, 2, 3]),
        st.sampled_from([0, 0, 0, 1, 2]),
    )


def keys_of(actors: ActorsCase, kwargs: dict[str, Any]) -> dict[str, str]:
    """The drill-down keys of the example, chosen among the oracle's rows of its paths."""
    rows = [
        row
        for paths in actor_paths(actors.case.events, actors.case.query, **kwargs).values()
        for path in paths
        for row in path_rows(path)
    ]
    if actors.kind == "none":
        return {}
    if actors.unknown or not rows:
        return {"start": {"pathStartKey": "9_nowhere"}, "dropoff": {"pathDropoffKey": "9_nowhere"}}.get(
            actors.kind, {"pathEndKey": "9_nowhere"}
        )
    if actors.kind == "start":
        starts = sorted({last for last, _, _ in rows if last is not None}) or ["1_nowhere"]
        return {"pathStartKey": starts[actors.pick % len(starts)]}
    if actors.kind == "end":
        ends = sorted({key for _, key, _ in rows})
        return {"pathEndKey": ends[actors.pick % len(ends)]}
    if actors.kind == "both":
        edges = sorted({(last, key) for last, key, _ in rows if last is not None}) or [("1_nowhere", "2_nowhere")]
        start, end = edges[actors.pick % len(edges)]
        return {"pathStartKey": start, "pathEndKey": end}
    dropoffs = sorted({dropped for _, _, dropped in rows})
    return {"pathDropoffKey": dropoffs[actors.pick % len(dropoffs)]}


def check(store: EventStore, actors: ActorsCase) -> str:
    """Compares the engine's page with the oracle's on one example; returns what was compared."""
    kwargs: dict[str, Any] = {
        "timezone": actors.case.timezone,
        "now": actors.case.now,
        "test_account_filters": TEST_ACCOUNT_FILTERS,
    }
    query = dict(actors.case.query)
    query["pathsFilter"] = {**query["pathsFilter"], **keys_of(actors, kwargs)}
    everyone = actor_ids(query, paths_actors(actors.case.events, query, **kwargs))
    limit = 100 if actors.limit is None else actors.limit
    # Within the actors found, so that a page past the end (the rule tests' case) does not make
    # an example compare nothing.
    offset = actors.offset % len(everyone) if everyone else actors.offset
    expected = everyone[offset : offset + limit]
    got = run_paths_actors_engine(store, actors.case.events, query, limit=actors.limit, offset=offset or None, **kwargs)
    outcome = NONZERO if expected else ZERO
    event(f"{actors.kind}: {outcome}")
    assert got.ids == expected, f"keys {query['pathsFilter']}: oracle {expected} engine {got.ids}"
    assert got.has_more == (len(everyone) > offset + limit)
    return outcome


@pytest.mark.hypothesis
def test_paths_actors_engine_equals_oracle(store: EventStore) -> None:
    """Every key kind over the paths strategies' sessions, cuts, cleaning, groupings, groups,
    filters and time zones, one page (limit 1-3 or the default, offset 0-2) at a time."""
    assert_mostly_nonzero(tally(actors_cases(paths_cases()), lambda actors: check(store, actors)), MIN_NONZERO_SHARE)


@pytest.mark.hypothesis
def test_funnel_paths_actors_engine_equals_oracle(store: EventStore) -> None:
    """The same over funnel paths (the persons of a funnel step or drop-off, before / after /
    between their step times): the drill-down reads the funnel's walk as the edges do."""
    assert_mostly_nonzero(
        tally(actors_cases(funnel_paths_cases()), lambda actors: check(store, actors)), MIN_FUNNEL_NONZERO_SHARE
    )
