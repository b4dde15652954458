"""Persons kept current by ingestion, on the real engine: created with the first event (the earliest
one), `$set` / `$set_once` folded in as if in event-time order whatever the arrival order and
batching, nothing applied twice, no update lost to concurrent batches, and reads that need no FINAL."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.events import EventRow, EventStore, PersonRow
from tests.engine.harness import next_team_id
from tests.hypothesis_profiles import examples
from tests.oracle.persons import PersonEvent, expected_persons

T0 = dt.datetime(2024, 6, 1, 9, 0, tzinfo=dt.UTC)


def person(team: int, name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.UUID(int=team), name)


def row(team: int, name: str, minutes: float, properties: dict[str, Any] | str = "{}", **kw: Any) -> EventRow:
    text = properties if isinstance(properties, str) else json.dumps(properties)
    return EventRow(
        team,
        kw.get("event_uuid") or uuid.uuid4(),
        kw.get("event", "$pageview"),
        name,
        person(team, name),
        T0 + dt.timedelta(minutes=minutes),
        text,
        "{}",
    )


def persons_of(store: EventStore, team: int) -> dict[uuid.UUID, tuple[dict[str, Any], dt.datetime]]:
    return {k: (json.loads(text), created) for k, (text, created) in store.current_persons(team).items()}


def state(store: EventStore, team: int, name: str) -> tuple[dict[str, Any], dt.datetime]:
    return persons_of(store, team)[person(team, name)]


def versions(store: EventStore, team: int) -> list[tuple[int, int]]:
    """(rows, highest version) of the team's person rows, merged or not."""
    found = store.query("SELECT count(), max(version) FROM persons WHERE team_id = {t:Int64}", {"t": team})
    return [(int(a), int(b)) for a, b in found]


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_the_first_event_creates_the_person_at_its_time(store: EventStore) -> None:
    team = next_team_id()
    assert persons_of(store, team) == {}
    store.insert_new_events([row(team, "ann", 30), row(team, "ann", 10), row(team, "bob", 20)])
    assert persons_of(store, team) == {person(team, "ann"): ({}, at(10)), person(team, "bob"): ({}, at(20))}
    # Later events of a known person write nothing.
    store.insert_new_events([row(team, "ann", 40), row(team, "bob", 50)])
    assert versions(store, team) == [(2, 1)]
    assert store.count_persons(team) == 2


def test_set_overwrites_and_set_once_keeps_in_event_time_order(store: EventStore) -> None:
    team = next_team_id()
    # One batch, listed out of time order: the order of the events' times decides.
    store.insert_new_events(
        [
            row(team, "ann", 3, {"$set": {"plan": "pro"}, "$set_once": {"first": "c", "ref": "x"}}),
            row(team, "ann", 1, {"$set": {"plan": "free", "email": "a@x.io"}, "$set_once": {"first": "a"}}),
            row(team, "ann", 2, {"$set_once": {"first": "b", "plan": "trial"}, "$set": {"n": 1}}),
        ]
    )
    assert state(store, team, "ann") == (
        {"plan": "pro", "email": "a@x.io", "first": "a", "ref": "x", "n": 1},
        at(1),
    )
    # Within one event, $set_once first, then $set: the $set wins.
    store.insert_new_events([row(team, "bob", 1, {"$set_once": {"k": "once"}, "$set": {"k": "set"}})])
    assert state(store, team, "bob")[0] == {"k": "set"}


def test_a_late_earlier_event_folds_in_as_if_it_had_come_in_time(store: EventStore) -> None:
    team = next_team_id()
    store.insert_new_events([row(team, "ann", 60, {"$set": {"a": "later"}, "$set_once": {"b": "later"}})])
    assert state(store, team, "ann") == ({"a": "later", "b": "later"}, at(60))
    store.insert_new_events(
        [row(team, "ann", 5, {"$set": {"a": "earlier", "c": 1}, "$set_once": {"b": "earlier"}})]
    )
    # created_at goes down; the earlier $set loses to the later one, the earlier $set_once wins.
    assert state(store, team, "ann") == ({"a": "later", "b": "earlier", "c": 1}, at(5))
    # A later $set_once never replaces a key a $set gave, however it arrives.
    store.insert_new_events([row(team, "ann", 1, {"$set_once": {"a": "first"}})])
    assert state(store, team, "ann") == ({"a": "later", "b": "earlier", "c": 1}, at(1))


def test_unset_removes_a_key_in_event_time_order(store: EventStore) -> None:
    team = next_team_id()
    store.insert_new_events([row(team, "ann", 10, {"$set": {"plan": "pro", "email": "a@x.io", "n": 1}})])
    store.insert_new_events([row(team, "ann", 20, {"$unset": ["plan", "absent"]})])
    assert state(store, team, "ann")[0] == {"email": "a@x.io", "n": 1}
    # An older $set arriving late does not bring it back; a newer one does.
    store.insert_new_events([row(team, "ann", 15, {"$set": {"plan": "free"}})])
    assert state(store, team, "ann")[0] == {"email": "a@x.io", "n": 1}
    store.insert_new_events([row(team, "ann", 30, {"$set": {"plan": "team"}})])
    assert state(store, team, "ann")[0] == {"email": "a@x.io", "n": 1, "plan": "team"}
    # Within one event $unset comes last; an object's keys are names too.
    store.insert_new_events([row(team, "ann", 40, {"$set": {"n": 2}, "$unset": {"n": None, "email": 1}})])
    assert state(store, team, "ann")[0] == {"plan": "team"}
    # The documented difference: a later $set_once does not set a removed key again.
    store.insert_new_events([row(team, "ann", 50, {"$set_once": {"email": "b@x.io"}})])
    assert state(store, team, "ann")[0] == {"plan": "team"}


def test_redelivery_of_an_event_applies_nothing_twice(store: EventStore) -> None:
    team = next_team_id()
    first = row(team, "ann", 10, {"$set": {"plan": "pro"}})
    store.insert_new_events([first])
    before = versions(store, team)
    # The same event again (a retry), alone and inside a batch: no new person row.
    assert store.insert_new_events([first]).duplicates == 1
    assert store.insert_new_events([first, first]).duplicates == 2
    assert versions(store, team) == before
    # A copy with the same uuid but other content: the stored copy wins, its $set is not applied.
    changed = first._replace(properties=json.dumps({"$set": {"plan": "free", "x": 1}}))
    assert store.insert_new_events([changed]).duplicates == 1
    assert state(store, team, "ann") == ({"plan": "pro"}, at(10))
    # The column path follows the same rule.
    assert store.insert_event_columns([[value] for value in changed]) == 0
    assert state(store, team, "ann") == ({"plan": "pro"}, at(10))
    assert versions(store, team) == before


def test_concurrent_batches_for_a_new_person_lose_nothing(store: EventStore) -> None:
    """Two batches racing for the same new persons: one created_at (the earliest), every key."""
    team = next_team_id()
    names = [f"p{i}" for i in range(12)]
    batches = [
        [
            row(team, n, 20 + i, {"$set": {"from_a": i}, "$set_once": {"first": "a"}})
            for i, n in enumerate(names)
        ],
        [
            row(team, n, 10 + i, {"$set": {"from_b": i}, "$set_once": {"first": "b"}})
            for i, n in enumerate(names)
        ],
    ]
    for _ in range(3):  # several rounds, so that the two batches overlap in different places
        start = threading.Barrier(2)

        def send(batch: Sequence[EventRow], start: threading.Barrier = start) -> None:
            start.wait()
            store.insert_new_events(batch)

        threads = [threading.Thread(target=send, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        found = persons_of(store, team)
        assert found == {
            person(team, n): ({"from_a": i, "from_b": i, "first": "b"}, at(10 + i))
            for i, n in enumerate(names)
        }
        team = next_team_id()
        batches = [
            [r._replace(team_id=team, uuid=uuid.uuid4(), person_id=person(team, r.distinct_id)) for r in b]
            for b in batches
        ]


def test_reads_see_the_latest_state_merged_or_not(store: EventStore) -> None:
    team = next_team_id()
    # Merges held back, so that every version is still there when read.
    store.query("SYSTEM STOP MERGES persons")
    try:
        for i in range(5):
            store.insert_new_events(
                [row(team, "ann", 100 - i, {"$set": {"n": i}, "$set_once": {"first": i}})]
            )
        assert versions(store, team) == [(5, 5)]
        # The highest version is the state: n from the latest event (i = 0), first from the earliest.
        assert state(store, team, "ann") == ({"n": 0, "first": 4}, at(96))
    finally:
        store.query("SYSTEM START MERGES persons")
    store.query("OPTIMIZE TABLE persons FINAL")
    assert versions(store, team) == [(1, 5)]
    assert state(store, team, "ann") == ({"n": 0, "first": 4}, at(96))


def test_updates_that_are_not_objects_are_ignored_and_values_keep_their_json(store: EventStore) -> None:
    team = next_team_id()
    store.insert_new_events(
        [
            row(team, "ann", 1, {"$set": "plan=pro", "$set_once": ["x"]}),
            row(
                team,
                "ann",
                2,
                {"$set": {"n": 12345678901234567890, "f": 0.1, "no": None, "o": {"a": [1, True]}}},
            ),
            # A key may spell `$` as an escape; it is still `$set`.
            row(team, "ann", 3, '{"\\u0024set": {"esc": "yes"}, "props": "ünï"}'),
        ]
    )
    properties, _ = state(store, team, "ann")
    assert properties == {
        "n": 12345678901234567890,
        "f": 0.1,
        "no": None,
        "o": {"a": [1, True]},
        "esc": "yes",
    }


def test_equal_times_settle_the_same_whichever_arrives_first(store: EventStore) -> None:
    outcomes = []
    for order in ((0, 1), (1, 0)):
        team = next_team_id()
        pair = [row(team, "ann", 5, {"$set": {"k": "x"}}), row(team, "ann", 5, {"$set": {"k": "y"}})]
        for i in order:
            store.insert_new_events([pair[i]])
        outcomes.append(state(store, team, "ann"))
    assert outcomes[0] == outcomes[1]


def test_persons_loaded_as_snapshots_take_updates(store: EventStore) -> None:
    """Rows written by insert_persons (version 0, no update times): keys as if $set before any event."""
    team = next_team_id()
    store.insert_persons(
        [PersonRow(team, person(team, "ann"), '{"plan": "free", "email": "a@x.io"}', at(50))]
    )
    store.insert_new_events(
        [row(team, "ann", 60, {"$set_once": {"plan": "trial", "ref": "r"}, "$set": {"email": "b@x.io"}})]
    )
    assert state(store, team, "ann") == ({"plan": "free", "email": "b@x.io", "ref": "r"}, at(50))
    store.insert_new_events([row(team, "ann", 40)])
    assert state(store, team, "ann") == ({"plan": "free", "email": "b@x.io", "ref": "r"}, at(40))


def test_environments_keep_their_own_persons(store: EventStore) -> None:
    one, two = next_team_id(), next_team_id()
    shared = uuid.uuid4()  # a caller-given person id used in two environments
    store.insert_new_events(
        [
            row(one, "ann", 1, {"$set": {"env": 1}})._replace(person_id=shared),
            row(two, "ann", 2, {"$set": {"env": 2}})._replace(person_id=shared),
        ]
    )
    assert persons_of(store, one) == {shared: ({"env": 1}, at(1))}
    assert persons_of(store, two) == {shared: ({"env": 2}, at(2))}


_KEYS = st.sampled_from(["a", "b", "c"])
_UPDATES = st.dictionaries(_KEYS, st.integers(0, 3), max_size=2)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[PersonEvent], list[int], list[int]]:
    """Events of a few persons at distinct times, an arrival order and where batches are cut."""
    count = draw(st.integers(1, 14))
    minutes = draw(st.lists(st.integers(0, 10_000), min_size=count, max_size=count, unique=True))
    events = [
        PersonEvent(
            draw(st.sampled_from(["ann", "bob", "cy"])),
            at(m),
            draw(_UPDATES),
            draw(_UPDATES),
            tuple(draw(st.lists(_KEYS, max_size=2, unique=True))) if draw(st.integers(0, 2)) == 0 else (),
        )
        for m in minutes
    ]
    order = draw(st.permutations(range(count)))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, count - 1)), max_size=3)))
    return events, list(order), cuts


def test_any_arrival_order_and_batching_ends_as_event_time_order(store: EventStore) -> None:
    @settings(max_examples=examples(40))
    @given(history=histories())
    def compare(history: tuple[list[PersonEvent], list[int], list[int]]) -> None:
        events, order, cuts = history
        team = next_team_id()
        rows = []
        for e in (events[i] for i in order):
            updates: dict[str, Any] = {"$set_once": e.set_once, "$set": e.set}
            if e.unset:
                updates["$unset"] = list(e.unset)
            minutes = (e.timestamp - T0) / dt.timedelta(minutes=1)
            rows.append(row(team, e.person, minutes, updates))
        for lo, hi in zip([0, *cuts], [*cuts, len(rows)], strict=True):
            store.insert_new_events(rows[lo:hi])
        expected = {person(team, name): value for name, value in expected_persons(events).items()}
        assert persons_of(store, team) == expected

    compare()


def test_a_person_lowered_by_another_writer_is_read_again(store: EventStore, events_dsn: str) -> None:
    """Another process's store (its own locks and memory of persons) lowers created_at: this store's
    memory is only an upper bound, so an earlier event is still looked up and applied."""
    other = EventStore(events_dsn)
    try:
        team = next_team_id()
        store.insert_new_events([row(team, "ann", 50)])
        other.insert_new_events([row(team, "ann", 10, {"$set": {"a": 1}})])
        # Between the two: nothing changes (this store looks it up and finds 10).
        store.insert_new_events([row(team, "ann", 60), row(team, "ann", 30)])
        assert state(store, team, "ann") == ({"a": 1}, at(10))
        store.insert_new_events([row(team, "ann", 5), row(team, "bob", 70)])
        assert state(store, team, "ann") == ({"a": 1}, at(5))
        assert versions(store, team)[0][1] == 3
    finally:
        other.close()
