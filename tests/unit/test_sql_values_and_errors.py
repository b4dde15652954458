"""SQL insights' pure parts: cells as typed JSON values (results.proto), engine messages cleaned."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from google.protobuf import json_format

from server.queries.sql.engine_errors import cleaned_message, tripped_limit
from server.queries.sql.values import row_value


def test_cells_become_the_json_values_results_proto_documents() -> None:
    row = row_value(
        [
            None,
            True,
            3,
            2**60,
            1.5,
            float("nan"),
            float("inf"),
            decimal.Decimal("2.25"),
            "text",
            uuid.UUID(int=1),
            dt.date(2026, 3, 2),
            dt.datetime(2026, 3, 2, 10, 30, tzinfo=dt.UTC),
            dt.datetime(2026, 3, 2, 10, 30),
            [1, [2, "x"]],
            (1, "a"),
            {"k": 1},
        ]
    )
    assert json_format.MessageToDict(row) == [
        None,
        True,
        3.0,
        str(2**60),
        1.5,
        None,
        None,
        2.25,
        "text",
        "00000000-0000-0000-0000-000000000001",
        "2026-03-02",
        "2026-03-02T10:30:00+00:00",
        "2026-03-02T10:30:00+00:00",
        [1.0, [2.0, "x"]],
        [1.0, "a"],
        {"k": 1.0},
    ]


class _EngineError(Exception):
    def __init__(self, text: str, code: int | None = None):
        super().__init__(text)
        self.code = code


def test_engine_messages_lose_the_sql_and_the_names_the_rewrite_added() -> None:
    text = (
        "Code: 47. DB::Exception: Unknown expression identifier `nosuch`. In scope SELECT nosuch FROM "
        "(SELECT __e.uuid FROM events AS __e WHERE __e.team_id = _CAST(7, 'Int64')). (UNKNOWN_IDENTIFIER)"
    )
    assert cleaned_message(_EngineError(text, 47)) == "Unknown expression identifier `nosuch`"
    typed = (
        "Code: 386. DB::Exception: There is no supertype for types String, UInt8: while executing function "
        "greater on arguments __table1.event String. (NO_COMMON_TYPE)"
    )
    cleaned = cleaned_message(_EngineError(typed, 386))
    assert "__" not in cleaned and "event String" in cleaned
    quoted = "Code: 1. DB::Exception: Table expression modifiers FINAL are not supported for subquery SELECT id AS id FROM x"
    assert "SELECT" not in cleaned_message(_EngineError(quoted, 1))
    assert "team_id" not in cleaned_message(_EngineError("Code: 2. DB::Exception: column team_id of __e is bad", 2))


def test_limit_codes_name_the_limit() -> None:
    assert tripped_limit(_EngineError("Code: 159. DB::Exception: Timeout exceeded", 159)) == "max_execution_time"
    assert tripped_limit(_EngineError("Code: 241. DB::Exception: memory", None)) == "max_memory_usage"
    assert tripped_limit(_EngineError("Code: 158. DB::Exception: rows")) == "max_rows_to_read"
    assert tripped_limit(_EngineError("Code: 47. DB::Exception: unknown", 47)) is None
