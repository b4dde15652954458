"""Filter values as the engine compares them, and the regex dialect a filter may use (RE2's)."""

from __future__ import annotations

import pytest

from server.queries.common.properties import regex_problem, value_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-7, "-7"),
        (0.0, "0"),
        (-0.0, "-0"),
        (5.0, "5"),
        (-5.0, "-5"),
        (5.5, "5.5"),
        (1e20, "100000000000000000000"),
        (1e21, "1e21"),
        (1.5e-07, "1.5e-7"),
        (2.5e300, "2.5e300"),
        ("1.50", "1.50"),
        ("E", "E"),
    ],
)
def test_a_filter_value_compares_as_a_stored_propertys_canonical_text(
    value: str | int | float | bool, text: str
) -> None:
    # The canonical number text of docs/engine-semantics.md: the text ClickHouse's JSON parser
    # gives a stored number, so `= 5.0` matches a stored 5 and `= 1e21` a stored 1e+21.
    assert value_text(value) == text


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("(?=a)b", "unsupported group syntax '(?=a' (RE2 has no look-around)"),
        ("(?!a)b", "unsupported group syntax '(?!a' (RE2 has no look-around)"),
        ("(?<=a)b", "unsupported group syntax '(?<=' (RE2 has no look-around)"),
        ("(?<!a)b", "unsupported group syntax '(?<!' (RE2 has no look-around)"),
        ("(?>ab)", "unsupported group syntax '(?>a' (RE2 has no look-around)"),
        ("(?(1)a|b)", "unsupported group syntax '(?(1' (RE2 has no look-around)"),
        ("(?P=name)", "unsupported group syntax '(?P=' (RE2 has no look-around)"),
        ("(?#note)a", "unsupported group syntax '(?#n' (RE2 has no look-around)"),
        ("(a)\\1", "backreferences are not supported: '\\\\1'"),
        ("a\\ib", "invalid escape '\\\\i'"),
        ("a*+", "possessive quantifiers are not supported"),
        ("a++", "possessive quantifiers are not supported"),
        ("a?+", "possessive quantifiers are not supported"),
        ("a{2}+", "possessive quantifiers are not supported"),
        ("(?x)a", "unsupported regex flags 'x' (RE2 knows i, m, s, U)"),
        ("(?ims-x:a)", "unsupported regex flags 'ims-x' (RE2 knows i, m, s, U)"),
        ("(?a)b", "unsupported regex flags 'a' (RE2 knows i, m, s, U)"),
    ],
)
def test_what_re2_lacks_is_refused_with_the_reason(pattern: str, problem: str) -> None:
    assert regex_problem(pattern) == problem


@pytest.mark.parametrize(
    "pattern",
    [
        "(?i)banana|APPLE",
        "(?ims)a.b",
        "(?U)a+",  # RE2's ungreedy flag, unknown to Python: left to the engine
        "(?i:a)b",
        "(?-i:a)b",
        "(?P<word>a)b",
        "(?:a)b",
        "\\pL+",  # Unicode classes are RE2's, not Python's
        "\\PN",
        "\\QA.B\\E",
        "a\\z",
        "a\\C",
        "\\x41\\d\\w\\s\\b",
        "[]a]",  # a leading ']' is a literal
        "[^]a]",
        "[(]+",
        "[\\]]",
        "a\\0",  # \0 is an octal escape, not a backreference
        "[\\1]",  # inside a class \1 is no backreference either
        "a{2}",
        "a+?",
        "(a)(b)",
        "((a)b)",
    ],
)
def test_what_re2_accepts_passes(pattern: str) -> None:
    assert regex_problem(pattern) is None


@pytest.mark.parametrize("pattern", ["(a", "a)", "*a", "[b-a]"])
def test_broken_syntax_is_refused_by_the_compiler_check(pattern: str) -> None:
    assert (regex_problem(pattern) or "").startswith("invalid regex: ")


def test_a_repetition_whose_maximum_is_below_its_minimum_is_refused_saying_so() -> None:
    assert regex_problem("a{2,1}") == "the repetition {2,1} has its maximum below its minimum"
