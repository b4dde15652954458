"""Which rows of a batch are new (first copy wins, stored copies win), the day a look-up searches,
and the uuid the loader gives a file row that has none."""

from __future__ import annotations

import datetime as dt
import uuid

from server.cli.loader import line_uuid, with_line_uuid
from server.domain.ingest import IncomingEvent
from storage.event_dedup import LOOKUP_CHUNK, STORED_DAYS_FROM, new_positions, utc_day, uuid_number

U = [1001, 1002, 1003]  # uuids as their numbers
DAY = dt.date(2024, 3, 5)


def test_copies_in_a_batch_keep_the_first_and_stored_uuids_are_dropped_per_team() -> None:
    looked_up: list[tuple[int, list[dt.date], list[int]]] = []
    stored = {(7, U[2])}

    def existing(team: int, days: list[dt.date], uuids: list[int]) -> set[int]:
        looked_up.append((team, days, uuids))
        return {u for u in uuids if (team, u) in stored}

    teams = [7, 7, 7, 8, 7, 8]
    uuids = [U[0], U[1], U[0], U[2], U[2], U[2]]
    days = [DAY, DAY + dt.timedelta(days=1), DAY, DAY, DAY, DAY]
    # Row 2 repeats row 0; row 4 is stored already for team 7; row 5 repeats row 3 (team 8).
    assert new_positions(teams, uuids, days, existing) == [0, 1, 3]
    # Each team's first copies are looked up once, among their own days only.
    assert sorted(looked_up) == [
        (7, [DAY, DAY + dt.timedelta(days=1)], [U[0], U[2], U[1]]),
        (8, [DAY], [U[2]]),
    ]


def test_large_batches_are_looked_up_in_chunks_sorted_by_day() -> None:
    count = LOOKUP_CHUNK + 5
    uuids = list(range(count))
    days = [DAY + dt.timedelta(days=i % 2) for i in range(count)]
    calls: list[tuple[list[dt.date], int]] = []

    def existing(team: int, chunk_days: list[dt.date], chunk: list[int]) -> set[int]:
        calls.append((chunk_days, len(chunk)))
        return set()

    assert new_positions([1] * count, uuids, days, existing) == list(range(count))
    assert [n for _, n in calls] == [LOOKUP_CHUNK, 5]
    assert calls[1][0] == [DAY + dt.timedelta(days=1)]


def test_large_batches_look_up_only_the_uuids_of_days_that_hold_events() -> None:
    count = STORED_DAYS_FROM
    days = [DAY if i % 2 else DAY + dt.timedelta(days=1) for i in range(count)]
    looked_up: list[int] = []

    def existing(team: int, chunk_days: list[dt.date], chunk: list[int]) -> set[int]:
        assert chunk_days == [DAY]
        looked_up.extend(chunk)
        return {1}

    def stored_days(team: int, asked: list[dt.date]) -> set[dt.date]:
        assert asked == [DAY, DAY + dt.timedelta(days=1)]
        return {DAY}

    kept = new_positions([5] * count, list(range(count)), days, existing, stored_days)
    assert sorted(looked_up) == list(range(1, count, 2))
    assert kept == [p for p in range(count) if p != 1]
    # Small batches skip the extra statement: one look-up does.
    assert new_positions([5] * 3, [7, 8, 9], [DAY] * 3, lambda *_: set(), stored_days=None) == [0, 1, 2]


def test_days_and_uuids_in_every_form_the_insert_paths_take() -> None:
    late = dt.datetime(2024, 3, 5, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    assert utc_day(late) == dt.date(2024, 3, 6)
    assert utc_day(dt.datetime(2024, 3, 5, 23, 59)) == DAY
    microseconds = int(dt.datetime(2024, 3, 5, 12, tzinfo=dt.UTC).timestamp()) * 1_000_000
    assert utc_day(microseconds) == DAY
    some = uuid.uuid4()
    assert uuid_number(some) == uuid_number(some.int) == uuid_number(str(some)) == some.int


def test_a_file_row_without_uuid_gets_one_from_its_line_and_content() -> None:
    at = dt.datetime(2024, 3, 5, 10, tzinfo=dt.UTC)
    row = IncomingEvent("$pageview", "ann", at, properties='{"a": 1}')
    assert line_uuid(3, row) == line_uuid(3, IncomingEvent("$pageview", "ann", at, properties='{"a": 1}'))
    # Another line, or any other field, is another event.
    assert line_uuid(4, row) != line_uuid(3, row)
    assert line_uuid(3, row) != line_uuid(3, IncomingEvent("$pageview", "ann", at, properties='{"a": 2}'))
    assert line_uuid(3, row) != line_uuid(3, IncomingEvent("$pageview", "bob", at, properties='{"a": 1}'))
    assert with_line_uuid(3, row).uuid == str(line_uuid(3, row))
    # The elements chain is content too, and a row without one keeps the id earlier loads gave it.
    clicked = IncomingEvent("$pageview", "ann", at, properties='{"a": 1}', elements_chain='a:text="x"')
    assert line_uuid(3, clicked) != line_uuid(3, row)
    assert line_uuid(3, row) == uuid.UUID("cb7fb235-06ae-52a8-b1be-6231c2744157")  # as before chains existed
    given = IncomingEvent("$pageview", "ann", at, uuid=str(uuid.uuid4()))
    assert with_line_uuid(3, given) is given
