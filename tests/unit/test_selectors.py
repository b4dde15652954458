"""The selector parser of action steps: the supported subset parses to what it says, everything else
is refused with a message naming what and where, and no input makes it fail another way."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.queries.common.selectors import (
    MAX_SELECTOR_ELEMENTS,
    MAX_SELECTOR_LENGTH,
    Element,
    Selector,
    SelectorError,
    parse_selector,
)


def test_one_element_with_every_part() -> None:
    parsed = parse_selector('button.primary.large#save[data-attr="save-button"]')
    assert parsed == Selector(
        (
            Element(
                tag="button",
                id="save",
                classes=("primary", "large"),
                attributes=(("data-attr", "save-button"),),
            ),
        )
    )


def test_descendant_and_child_combinators_outermost_first() -> None:
    parsed = parse_selector("div#app  main > ul li.item>a")
    assert [(e.tag, e.combinator) for e in parsed.elements] == [
        ("div", None),
        ("main", "descendant"),
        ("ul", "child"),
        ("li", "descendant"),
        ("a", "child"),
    ]
    assert parsed.elements[0].id == "app"
    assert parsed.elements[3].classes == ("item",)


def test_tag_names_are_case_insensitive() -> None:
    assert parse_selector("BUTTON").elements[0].tag == "button"
    assert parse_selector("my-Widget").elements[0].tag == "my-widget"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('[data-attr="a b"]', "a b"),
        ("[data-attr='a b']", "a b"),
        ('[title="say \\"hi\\""]', 'say "hi"'),  # escaped quotes inside the value
        ("[title='it\\'s']", "it's"),
        ('[title="it\'s"]', "it's"),  # the other quote needs no escape
        ("[title='say \"hi\"']", 'say "hi"'),
        ('[title="a ] > b, c:hover"]', "a ] > b, c:hover"),  # selector syntax inside quotes is text
        ('[title="back\\\\slash"]', "back\\slash"),
        ('[title=""]', ""),
        ("[data-attr=bare-word_1]", "bare-word_1"),
        ("[  data-attr  =  'spaced'  ]", "spaced"),
        ('[title="\\31 23"]', "123"),  # a hex escape and the space that ends it
    ],
)
def test_attribute_values_quoted_or_bare(text: str, value: str) -> None:
    element = parse_selector(text).elements[0]
    assert element.tag is None
    assert element.attributes == ((element.attributes[0][0], value),)


def test_escaped_class_and_id_characters() -> None:
    element = parse_selector(".md\\:flex#\\31 23.w-1\\/2").elements[0]
    assert element.classes == ("md:flex", "w-1/2")
    assert element.id == "123"


@pytest.mark.parametrize(
    ("text", "said", "at"),
    [
        ("a:hover", "pseudo-classes", 2),
        ("li:nth-child(2)", "pseudo-classes", 3),
        ("a::before", "pseudo-classes", 2),
        ("*", "universal selector", 1),
        ("div > *", "universal selector", 7),
        ("a + b", "sibling combinator '+'", 3),
        ("a~b", "sibling combinator '~'", 2),
        ("a, b", "selector lists", 2),
        ("svg|a", "namespaces", 4),
        ("[data-x]", 'needs a value: [data-x="..."]', 1),
        ('[href^="http"]', "not '^='", 6),
        ('[class~="x"]', "not '~='", 7),
        ('[class*="x"]', "not '*='", 7),
        ('[data-x="y" i]', "case flags", 13),
        ('[data-x="unclosed]', 'the value opened with " is not closed', 9),
        ("[data-x='a\nb']", "line break", 11),
        ('[data-x="y"', "not closed by ']'", 1),
        ("[=x]", "expected an attribute name", 2),
        ("a#x#y", "one id", 4),
        ("> a", "starts with an element", 1),
        ("a >", "'>' needs an element after it", 3),
        ("a > > b", "two '>' in a row", 5),
        (".", "expected a class name", 2),
        ("#", "expected an id", 2),
        (".a\\", "escapes nothing", 3),
        ("", "empty", 1),
        ("   ", "empty", 4),
        ("a\x00b", "control characters", 2),
        ("div!", "not part of the supported selector syntax", 4),
    ],
)
def test_everything_else_is_refused_saying_what_and_where(text: str, said: str, at: int) -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector(text)
    assert said in str(caught.value)
    assert f"(at character {at})" in str(caught.value)


def test_length_and_chain_are_bounded() -> None:
    longest = "a " * (MAX_SELECTOR_ELEMENTS - 1) + "a"
    assert len(parse_selector(longest).elements) == MAX_SELECTOR_ELEMENTS
    with pytest.raises(SelectorError, match=f"at most {MAX_SELECTOR_ELEMENTS} elements"):
        parse_selector(longest + " a")
    with pytest.raises(SelectorError, match=f"at most {MAX_SELECTOR_LENGTH} characters"):
        parse_selector("." + "x" * MAX_SELECTOR_LENGTH)


def test_an_error_message_repeats_little_of_the_input() -> None:
    with pytest.raises(SelectorError) as caught:
        parse_selector("a!" + "x" * 900)
    assert len(str(caught.value)) < 200


@given(st.text(max_size=200))
def test_any_text_parses_or_is_a_selector_error(text: str) -> None:
    try:
        parsed = parse_selector(text)
    except SelectorError as exc:
        assert 0 <= exc.position <= len(text)
    else:
        assert parsed.elements and parsed.elements[0].combinator is None


_IDENT = st.text(st.sampled_from("abcXYZ019-_"), min_size=1, max_size=8).filter(lambda s: not s[0].isdigit())
_VALUE = st.text(st.sampled_from("ab \"'\\]>[,:#."), max_size=10)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["div", "a", "button", ""]),
            st.lists(_IDENT, max_size=2),
            st.lists(st.tuples(_IDENT, _VALUE), max_size=2),
            st.sampled_from([" ", " > ", ">", "  \t"]),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_what_a_selector_writes_is_what_it_parses_to(
    parts: list[tuple[str, list[str], list[tuple[str, str]], str]],
) -> None:
    text, expected = "", []
    for index, (tag, classes, attributes, joiner) in enumerate(parts):
        if not (tag or classes or attributes):
            tag = "span"
        element = tag + "".join(f".{c}" for c in classes)
        element += "".join(f"[{name}={_quote(value)}]" for name, value in attributes)
        text += (joiner if index else "") + element
        combinator = None if index == 0 else ("child" if ">" in joiner else "descendant")
        expected.append(Element(tag or None, None, tuple(classes), tuple(attributes), combinator))
    assert parse_selector(text) == Selector(tuple(expected))
