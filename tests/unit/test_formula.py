"""Formulas over series letters: precedence, unary minus, x / 0 = 0, and rejection of anything else."""

from __future__ import annotations

import pytest

from server.queries.common.errors import QueryError
from server.queries.common.formula import parse_formula

A = [1.0, 2.0, 3.0, 0.0]
B = [4.0, 0.0, 6.0, 0.0]
C = [2.0, 2.0, 2.0, 2.0]


def run(text: str, series: list[list[float]] | None = None) -> list[float]:
    data = series if series is not None else [A, B, C]
    return parse_formula(text, len(data), "formula").evaluate(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A + B * C", [9.0, 2.0, 15.0, 0.0]),
        ("(A + B) * C", [10.0, 4.0, 18.0, 0.0]),
        ("A - B - C", [-5.0, 0.0, -5.0, -2.0]),
        ("A / C / C", [0.25, 0.5, 0.75, 0.0]),
        ("-A + 2", [1.0, 0.0, -1.0, 2.0]),
        ("--A", A),
        ("-(A + B) * -1", [5.0, 2.0, 9.0, 0.0]),
        ("A * -B", [-4.0, 0.0, -18.0, 0.0]),
        ("a + b", [5.0, 2.0, 9.0, 0.0]),
        ("A/B", [0.25, 0.0, 0.5, 0.0]),
        ("(A + 1) / (B - B)", [0.0, 0.0, 0.0, 0.0]),
        ("1.5e1 + .5 + 2.", [17.5] * 4),
        ("  A\t*100 ", [100.0, 200.0, 300.0, 0.0]),
        ("C", C),
    ],
)
def test_evaluates_elementwise(text: str, expected: list[float]) -> None:
    assert run(text) == pytest.approx(expected)


def test_division_by_zero_is_zero_inside_a_larger_expression() -> None:
    assert run("A / (B - 4) + 1") == pytest.approx([1.0, 1 + 2 / -4, 1 + 3 / 2, 1.0])


def test_letters_are_the_used_series_upper_cased() -> None:
    assert parse_formula("a + C * a", 3, "f").letters == frozenset({"A", "C"})


def test_shorter_series_read_zero_past_their_end() -> None:
    assert parse_formula("A + B", 2, "f").evaluate([[1.0, 2.0], [5.0]]) == [6.0, 2.0]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "A +",
        "(A + B",
        "A + B)",
        "A B",
        "A ** B",
        "A % B",
        "A ^ B",
        "__import__('os')",
        "A.real",
        "AB",
        "sum(A)",
        "A; B",
        "1e999",
        "()",
        "A == B",
        "D",
        "a + d",
        "é",
        "-" * 500 + "A",
        "(" * 300 + "A" + ")" * 300,
    ],
)
def test_rejects_bad_formulas_naming_the_path(text: str) -> None:
    with pytest.raises(QueryError) as raised:
        parse_formula(text, 3, "trends_filter.formula_nodes[1].formula")
    assert raised.value.path == "trends_filter.formula_nodes[1].formula"


def test_unknown_letter_message_names_it() -> None:
    with pytest.raises(QueryError, match="uses D but there are only 3 series"):
        parse_formula("A + d", 3, "f")
