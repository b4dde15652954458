"""Property: the `sessions` table of SQL insights equals the oracle's sessions (tests/oracle/sessions.py)
on generated events: ties in time, sub-second boundaries, URLs missing or empty, several distinct ids
in a session, events without a session, and another environment holding sessions of the same ids."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from google.protobuf import json_format
from hypothesis import strategies as st

from storage.events import EventRow, EventStore
from tests.engine.harness import next_team_id
from tests.engine.sql_kit import T0, run
from tests.engine.tally import NONZERO, ZERO, assert_mostly_nonzero, tally
from tests.oracle.sessions import sessions

_COLUMNS = (
    "session_id, distinct_id, person_id, $start_timestamp, $end_timestamp, $session_duration, "
    "$entry_current_url, $end_current_url, $entry_pathname, $end_pathname, $pageview_count, "
    "$autocapture_count, $screen_count, $event_count, $is_bounce"
)
# Absent, empty or absolute URLs (the table reads `$current_url` as a string).
_URLS: list[Any] = [None, "", "https://x.io/a", "https://x.io/b?q=1", "https://x.io/"]


@st.composite
def event_specs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Events of one environment, mostly in a few sessions, within a minute (so durations straddle
    the 10 s bounce rule), some at the very same instant."""
    count = draw(st.integers(1, 12))
    uuids = draw(st.lists(st.integers(1, 2**128 - 1), min_size=count, max_size=count, unique=True))
    specs = []
    for number in uuids:
        specs.append(
            {
                "uuid": uuid.UUID(int=number),
                "event": draw(st.sampled_from(["$pageview", "$pageview", "$autocapture", "$screen", "click"])),
                "distinct_id": draw(st.sampled_from(["d1", "d2"])),
                "session": draw(st.sampled_from(["s1", "s1", "s2", "s3", None])),
                "at": T0
                + dt.timedelta(
                    seconds=draw(st.integers(0, 40)), microseconds=draw(st.sampled_from([0, 1, 500_000, 999_999]))
                ),
                "url": draw(st.sampled_from(_URLS)),
            }
        )
    return specs


def _rows(team: int, specs: list[dict[str, Any]], marker: str) -> list[EventRow]:
    rows = []
    for spec in specs:
        props: dict[str, Any] = {"marker": marker}
        if spec["session"] is not None:
            props["$session_id"] = spec["session"]
        if spec["url"] is not None:
            props["$current_url"] = spec["url"]
        person = uuid.uuid5(uuid.NAMESPACE_OID, f"{team}/{spec['distinct_id']}")
        rows.append(
            EventRow(team, spec["uuid"], spec["event"], spec["distinct_id"], person, spec["at"], json.dumps(props), "{}")
        )
    return rows


def _engine_rows(outcome: Any) -> list[list[Any]]:
    found = json_format.MessageToDict(outcome.result.hogql).get("results", [])
    return [[int(c) if isinstance(c, float) and c.is_integer() else c for c in row] for row in found]


def test_sessions_table_equals_the_oracle(store: EventStore) -> None:
    def check(specs: list[dict[str, Any]]) -> str:
        mine, other = next_team_id(), next_team_id()
        events = _rows(mine, specs, "mine")
        # The other environment: the same session ids, its own events (a leak would change the rows).
        theirs = [{**s, "uuid": uuid.uuid4(), "at": s["at"] - dt.timedelta(seconds=30)} for s in specs]
        store.insert_events(events + _rows(other, theirs, "theirs"))
        got = _engine_rows(run(store, mine, f"SELECT {_COLUMNS} FROM sessions ORDER BY session_id"))
        want = [
            [
                s.session_id,
                s.distinct_id,
                str(s.person_id),
                s.start_timestamp.isoformat(),
                s.end_timestamp.isoformat(),
                s.session_duration,
                s.entry_current_url,
                s.end_current_url,
                s.entry_pathname,
                s.end_pathname,
                s.pageview_count,
                s.autocapture_count,
                s.screen_count,
                s.event_count,
                s.is_bounce,
            ]
            for _, s in sorted(sessions(events).items())
        ]
        assert got == want
        return NONZERO if want else ZERO

    assert_mostly_nonzero(tally(event_specs(), check, budget=60), 0.6)
