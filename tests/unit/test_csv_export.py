"""CSV chunking and cells: any rows cut at any limit concatenate back to the same document, every
chunk within the limit and never inside a character; text cells with a formula start are made
inert while numbers (negative ones too) stay numbers."""

from __future__ import annotations

import csv
import io

from hypothesis import given
from hypothesis import strategies as st

from generated.insights.v1 import query_pb2, results_pb2
from server.services.convert import csv_export

_cells = st.one_of(st.text(max_size=40), st.integers(-1000, 1000))


@given(rows=st.lists(st.lists(_cells, min_size=1, max_size=5), min_size=1, max_size=20), limit=st.integers(4, 200))
def test_chunks_concatenate_to_the_document_within_the_limit(rows: list[list[object]], limit: int) -> None:
    pieces = list(csv_export.chunks(rows, limit))
    whole = io.StringIO()
    csv.writer(whole).writerows(rows)
    assert "".join(pieces) == whole.getvalue()
    assert all(0 < len(p.encode()) <= limit for p in pieces)
    parsed = list(csv.reader(io.StringIO("".join(pieces), newline="")))
    assert parsed == [[str(c) for c in row] for row in rows]


def test_a_row_larger_than_the_limit_is_cut_between_characters() -> None:
    row = ["é" * 10, "€" * 3]
    pieces = list(csv_export.chunks([["a"], row, ["b"]], 7))
    assert pieces[0] == "a\r\n" and pieces[-1] == "b\r\n"
    assert "".join(pieces) == "a\r\n" + ",".join(row) + "\r\nb\r\n"
    assert all(len(p.encode()) <= 7 for p in pieces)


def test_text_cells_with_a_formula_start_are_inert_numbers_are_not() -> None:
    assert [csv_export.text(v) for v in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "a=b", "")] == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "'\tx",
        "a=b",
        "",
    ]
    assert [csv_export.number(v) for v in (-3.0, 2.5, 7, -0.25)] == ["-3", "2.5", "7", "-0.25"]
    lifecycle = results_pb2.LifecycleResult(
        series=[results_pb2.LifecycleSeries(label="=x - dormant", days=["2024-01-02", "2024-01-01"], data=[-2, -1])]
    )
    assert list(csv_export.lifecycle_rows(lifecycle)) == [
        ["series", "2024-01-01", "2024-01-02"],
        ["'=x - dormant", "-1", "-2"],
    ]
    assert csv_export.scalar(query_pb2.Scalar(string_value="-5")) == "'-5"
