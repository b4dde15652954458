"""The pure rules of person upkeep: update ranks, folding, what an event says, the memory of persons."""

from __future__ import annotations

import itertools

from storage.persons import (
    REMOVED,
    KnownPersons,
    PersonChange,
    StoredPerson,
    event_updates,
    merge,
    properties_text,
    set_once_rank,
    set_rank,
)


def test_ranks_order_updates_as_event_time_order_would() -> None:
    # Any $set beats any $set_once; later $set beats earlier; earlier $set_once beats later.
    assert set_rank(0) > set_once_rank(0) > set_once_rank(1)
    assert set_rank(2) > set_rank(1) > set_once_rank(0)
    assert set_once_rank(10**15) < 0 <= set_rank(0)


def test_folding_is_the_same_in_every_order() -> None:
    events = [
        (30, ({"a": '"once-30"'}, {"b": '"set-30"'})),
        (10, ({"a": '"once-10"', "b": '"once-10"'}, {})),
        (20, ({}, {"a": '"set-20"'})),
        (40, ({"c": "1"}, {})),
    ]
    results = set()
    for order in itertools.permutations(events):
        change = PersonChange(order[0][0])
        for at, updates in order:
            change.add(at, updates)
        results.add((change.created_us, properties_text(change.registers)))
    assert results == {(10, '{"a":"set-20","b":"set-30","c":1}')}


def test_merge_writes_only_what_changes() -> None:
    stored = StoredPerson(3, 100, {"a": '"x"'}, {"a": set_rank(100)})
    assert merge(stored, PersonChange(150)) is None  # later, no updates
    assert merge(stored, PersonChange(150, {"a": (set_once_rank(150), '"y"')})) is None  # key present
    assert merge(stored, PersonChange(150, {"a": (set_rank(90), '"y"')})) is None  # older $set
    lowered = merge(stored, PersonChange(50))
    assert lowered is not None and lowered[0] == 50
    new = merge(None, PersonChange(7, {"k": (set_rank(7), "1")}))
    assert new == (7, {"k": (set_rank(7), "1")})


def test_event_updates_reads_set_and_set_once_objects_only() -> None:
    assert event_updates('{"$browser": "x"}') is None
    assert event_updates('{"$set": {"a": 1}, "$set_once": {"b": [1, 2]}}') == ({"b": "[1,2]"}, {"a": "1"})
    assert event_updates('{"$set": "a=1", "$set_once": null}') is None
    assert event_updates('{"\\u0024set": {"a": "é"}}') == ({}, {"a": '"é"'})
    assert event_updates("not json with $set") is None


def test_unset_names_keys_removed_after_set_and_kept_as_a_timed_removal() -> None:
    assert event_updates('{"$unset": ["a", 3], "$set": {"a": 1, "b": 2}}') == ({}, {"a": REMOVED, "b": "2"})
    assert event_updates('{"$unset": {"c": null}}') == ({}, {"c": REMOVED})
    assert event_updates('{"$unset": "c"}') is None
    # A removal is left out of the text but keeps its rank: an older $set cannot bring the key back.
    stored = StoredPerson(2, 100, {"b": "2"}, {"a": set_rank(200), "b": set_rank(100)})
    assert merge(stored, PersonChange(150, {"a": (set_rank(150), "1")})) is None
    merged = merge(stored, PersonChange(150, {"a": (set_rank(250), "1"), "b": (set_rank(250), REMOVED)}))
    assert merged is not None and properties_text(merged[1]) == '{"a":1}'


def test_known_persons_skip_only_what_cannot_change_and_stay_bounded() -> None:
    known = KnownPersons(limit=2)
    known.remember([((1, 1), 100), ((1, 2), 200)])
    assert known.unchanged((1, 1), PersonChange(100))
    assert not known.unchanged((1, 1), PersonChange(99))  # earlier: may lower created_at
    assert not known.unchanged((1, 1), PersonChange(150, {"a": (set_rank(150), "1")}))  # updates
    assert not known.unchanged((2, 1), PersonChange(150))  # another environment
    known.remember([((1, 3), 300)])  # the oldest entry goes
    assert not known.unchanged((1, 1), PersonChange(100))
    assert known.unchanged((1, 2), PersonChange(250)) and known.unchanged((1, 3), PersonChange(300))
