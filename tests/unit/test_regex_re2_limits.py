"""RE2's repetition rules in the save-time regex check: what the engine would refuse is refused
before anything is saved or run (each verdict below was checked against chDB's RE2)."""

from __future__ import annotations

import pytest

from server.queries.common.properties import RE2_MAX_REPEAT, regex_problem


@pytest.mark.parametrize(
    "pattern",
    [
        "a{1000}",
        "a{1000}b{1000}",  # siblings do not multiply
        "(a{10}){100}",  # 10 x 100 = 1000, the limit itself
        "((a{10}){10}){10}",
        "(a{2}){500}",
        "(a{2,}){500}",  # an unbounded repetition counts its minimum
        "(a{1000}){0}",  # a count of 0 multiplies nothing
        "(a*){1000}",  # *, + and ? are not counted repetitions
        "(?:a{1000})*",
        "a{2}?b{3,5}?",  # lazy forms
        "\\p{Greek}{5}",  # the braces of \p{...} are not a repetition
        "[{]{2}",
        "(x+x+)+y",  # catastrophic in backtracking engines, linear in RE2
    ],
)
def test_repetitions_re2_compiles_are_accepted(pattern: str) -> None:
    assert regex_problem(pattern) is None


@pytest.mark.parametrize(
    ("pattern", "said"),
    [
        ("a{1001}", "at most 1000 times"),
        ("(a{10}){101}", "{101} goes past it"),
        ("(a{2}){501}", "nested ones multiplied"),
        ("(a{0,2}){501}", "nested ones multiplied"),  # a bounded repetition counts its maximum
        ("(?:a{2}|b{600}){2}", "{2} goes past it"),  # the largest alternative counts
        ("((a{10}){10}){11}", "goes past it"),
        ("\\pL{2}{3}", "a repetition of a repetition"),
        ("\\pLa**", "a repetition of a repetition"),
        ("\\pL{3}?{2}", "a repetition of a repetition"),
        ("\\pL{2,1}", "maximum below its minimum"),
        ("a{2}+", "possessive"),
    ],
)
def test_repetitions_re2_refuses_are_refused(pattern: str, said: str) -> None:
    problem = regex_problem(pattern)
    assert problem is not None and said in problem, problem


def test_a_huge_count_is_refused_without_building_anything() -> None:
    problem = regex_problem("a{" + "9" * 5000 + "}")
    assert problem is not None and str(RE2_MAX_REPEAT) in problem
