"""The elements_chain columns the engine derives (href, texts, ids, useful tags) hold what the
grammar says, for chains written by our serializer and for the reference's own examples."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.elements import MAX_ELEMENTS_CHAIN_BYTES, USEFUL_TAGS, Element, to_chain
from storage.events import EventRow, EventStore
from tests.engine.harness import next_team_id
from tests.hypothesis_profiles import examples
from tests.oracle.elements import derived, parse_chain

WHEN = dt.datetime(2024, 5, 1, 12, tzinfo=dt.UTC)
_COLUMNS = "elements_chain_href, elements_chain_texts, elements_chain_ids, elements_chain_elements"


def stored_columns(
    store: EventStore, chains: Sequence[str]
) -> list[tuple[str, list[str], list[str], list[str]]]:
    """Inserts one event per chain and reads the derived columns back, in the same order."""
    team = next_team_id()
    rows = [
        EventRow(
            team,
            uuid.uuid4(),
            "$autocapture",
            "d",
            uuid.uuid4(),
            WHEN + dt.timedelta(seconds=i),
            "{}",
            "{}",
            c,
        )
        for i, c in enumerate(chains)
    ]
    store.insert_new_events(rows)
    found = store.query(
        f"SELECT {_COLUMNS} FROM events WHERE team_id = {{team:Int64}} ORDER BY timestamp", {"team": team}
    )
    return [(href, list(texts), list(ids), [str(t) for t in tags]) for href, texts, ids, tags in found]


def test_the_reference_examples(store: EventStore) -> None:
    chains = [
        # The example (attributes as the reference's older clients ordered them).
        'a.btn.primary:attr__href="/signup"nth-child="1"nth-of-type="1"href="/signup"text="Sign up";'
        'div.hero:nth-child="2"nth-of-type="1"',
        # A nested click: the span's text and the enclosing link's href.
        'span:nth-child="1"nth-of-type="1"text="Start";a.cta:attr__href="/trial"href="/trial"nth-child="2"'
        'nth-of-type="1"text="Start";form:attr_id="signup"nth-child="1"nth-of-type="1";body:nth-child="2"nth-of-type="1"',
        # Escaped quotes inside values, a text holding separators, ids, an input inside a label.
        'input.field:attr__type="email"attr_id="email"nth-child="1"nth-of-type="1";'
        'label:nth-child="1"nth-of-type="1"text="Your \\"work\\" e-mail; a:b";'
        'form:attr_id="f"nth-child="3"nth-of-type="1"',
        "",
        # No tag, no attributes beyond position: nothing to derive.
        ':nth-child="1"nth-of-type="1"',
        # Tags that merely start like useful ones are not them.
        'abbr:nth-child="1"nth-of-type="1";article.a:nth-child="1"nth-of-type="1";buttons:nth-child="1"nth-of-type="1"',
    ]
    assert stored_columns(store, chains) == [
        ("/signup", ["Sign up"], [], ["a"]),
        ("/trial", ["Start"], ["signup"], ["a", "form"]),
        ("", ['Your "work" e-mail; a:b'], ["email", "f"], ["input", "label", "form"]),
        ("", [], [], []),
        ("", [], [], []),
        ("", [], [], []),
    ]
    assert [derived(c) for c in chains] == stored_columns(store, chains)


# Values: anything but a backslash (the grammar escapes quotes, not backslashes, so a value ending in
# one is ambiguous) — quotes, separators, `=`, unicode included.
_VALUE_TEXT = st.text(alphabet=st.sampled_from([*'abcXYZ019 -_.:;="/#?&é中😀\t']), min_size=0, max_size=12)
_MISREAD = re.compile(r'[:"](?:text|href|attr_id)=$|;(?:' + "|".join(USEFUL_TAGS) + r")[.:]")


def _plain(value: str) -> bool:
    """A value the derived columns read right: not one that ends like an attribute's start
    (`…:text=`) nor holds an element's start (`;a:`): documented misreadings, as in the reference."""
    return not _MISREAD.search(value)


_VALUE = _VALUE_TEXT.filter(_plain)
_CLASS = st.text(alphabet=st.sampled_from(list("abcxyz-_0189")), min_size=1, max_size=6)
_TAG = st.sampled_from([*USEFUL_TAGS, "div", "span", "li", "ul", "nav", "body", "svg", "abbr", ""])
_ELEMENT = st.builds(
    Element,
    tag_name=_TAG,
    classes=st.lists(_CLASS, max_size=3).map(tuple),
    text=_VALUE,
    href=st.one_of(st.just(""), _VALUE),
    attr_id=st.one_of(st.just(""), _VALUE),
    nth_child=st.integers(0, 20),
    nth_of_type=st.integers(0, 20),
    attributes=st.dictionaries(
        st.sampled_from(["attr__class", "attr__data-x", "attr__aria-label", "attr__title", "attr__href"]),
        _VALUE,
        max_size=3,
    ),
)
_CHAIN = st.lists(_ELEMENT, min_size=1, max_size=6).map(to_chain)


def test_derived_columns_follow_the_grammar(store: EventStore) -> None:
    @settings(max_examples=examples(60))
    @given(chains=st.lists(_CHAIN, min_size=1, max_size=25))
    def compare(chains: list[str]) -> None:
        assert stored_columns(store, chains) == [derived(c) for c in chains]

    compare()


def test_the_serializer_writes_the_grammar() -> None:
    @settings(max_examples=examples(300))
    @given(elements=st.lists(_ELEMENT.filter(lambda e: e.tag_name != ""), min_size=1, max_size=6))
    def round_trip(elements: list[Element]) -> None:
        chain = to_chain(elements)
        assert len(chain.encode()) <= MAX_ELEMENTS_CHAIN_BYTES
        parsed = parse_chain(chain)
        assert [p.tag_name for p in parsed] == [e.tag_name for e in elements]
        assert [p.classes for p in parsed] == [sorted(e.classes) for e in elements]
        for element, found in zip(elements, parsed, strict=True):
            expected = {"nth-child": str(element.nth_child), "nth-of-type": str(element.nth_of_type)}
            expected |= dict(element.attributes)
            expected |= {
                k: v
                for k, v in (("text", element.text), ("href", element.href), ("attr_id", element.attr_id))
                if v
            }
            assert found.attributes == expected
            # Attributes are written in key order, as the reference writes them.
            assert list(found.attributes) == sorted(found.attributes)

    round_trip()


def test_columns_are_computed_for_rows_stored_before_a_chain_was_known(store: EventStore) -> None:
    """Rows inserted without the column read '' and empty arrays (the column's default)."""
    team = next_team_id()
    with store.client() as client:
        client.insert(
            "events",
            [[team, uuid.uuid4(), "$pageview", "d", uuid.uuid4(), WHEN, "{}", "{}"]],
            column_names=[
                "team_id",
                "uuid",
                "event",
                "distinct_id",
                "person_id",
                "timestamp",
                "properties",
                "person_properties",
            ],
        )
    rows = store.query(
        f"SELECT elements_chain, {_COLUMNS} FROM events WHERE team_id = {{t:Int64}}", {"t": team}
    )
    assert rows == [("", "", [], [], [])]
