"""Autocapture elements: the reference's text form of a clicked element and its ancestors
(`elements_chain`), how to write it, and the columns the engine derives from it.

The grammar (the reference's `elements_to_string` and its parser):
- chain     = element *( ";" element ), the clicked element first, then its ancestors outward;
- element   = [tag] *( "." class ) ":" *attribute  (classes sorted, `"` removed from them);
- attribute = key '="' value '"', keys sorted; values have `"` escaped as `\\"` (nothing else is
  escaped); `text`, `href`, `attr_id` (the element's id), `nth-child`, `nth-of-type` (always present,
  0 when unknown) and the element's HTML attributes as `attr__<name>` (e.g. `attr__class`,
  `attr__href`).
E.g. `a.btn.primary:attr__href="/signup"href="/signup"nth-child="1"nth-of-type="1"text="Sign up";div.hero:nth-child="2"nth-of-type="1"`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The most an event's chain may hold (UTF-8 bytes): a deep page with long texts stays well below it
# (the reference caps each text at a few hundred characters on the client), and it keeps one event
# far from gRPC's 4 MiB message limit.
MAX_ELEMENTS_CHAIN_BYTES = 65_536
# Tags the reference lists in `elements_chain_elements` (the ones actions and filters look for).
USEFUL_TAGS = ("a", "button", "form", "input", "select", "textarea", "label")

# A quoted value, escape-aware: `\"` does not end it (the reference's columns stop at the first
# quote, so `text="Say \"hi\""` gave them `Say \`; its Python parser reads the whole value, as we do).
_VALUE = r'"((?:[^"\\]|\\.)*)"'
# An attribute starts right after the element's ":" or the previous value's closing quote. As in the
# reference, a value that itself contains `:text=` right before its closing quote, or `;a:`, can be
# misread; values written by autocapture do not.
_TAG = r"(?:^|;)(" + "|".join(USEFUL_TAGS) + r")(?:\.|$|:)"


def _literal(text: str) -> str:
    """A ClickHouse string literal of a constant of ours (DDL takes no bound parameters)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _attribute(key: str) -> str:
    return _literal(r'(?::|")' + key + "=" + _VALUE)


def _unescape(expression: str) -> str:
    return f"replaceAll({expression}, {_literal(chr(92) + chr(34))}, {_literal(chr(34))})"


def _all_values(key: str) -> str:
    return f"arrayDistinct(arrayMap(v -> {_unescape('v')}, extractAll(elements_chain, {_attribute(key)})))"


_TAG_ENUM = "Enum8(" + ", ".join(f"{_literal(tag)} = {i}" for i, tag in enumerate(USEFUL_TAGS, 1)) + ")"

# (column, type and expression): the reference's materialized helpers, computed by the engine when a
# row is written (and on read for parts written before the column existed). Values come unescaped.
# Regular expressions like the reference's, not a full parse: a scan of every attribute costs ten
# times more per chain (measured: ~9 µs against ~1 µs), for the misreadings above only.
ELEMENTS_COLUMNS: tuple[tuple[str, str], ...] = (
    # The first href of the chain: the clicked element's or its nearest ancestor's ('' when none).
    (
        "elements_chain_href",
        "String MATERIALIZED " + _unescape(f"extract(elements_chain, {_attribute('href')})"),
    ),
    # Every distinct text of the chain's elements, clicked element first.
    ("elements_chain_texts", "Array(String) MATERIALIZED " + _all_values("text")),
    # Every distinct element id (`attr_id`).
    ("elements_chain_ids", "Array(String) MATERIALIZED " + _all_values("attr_id")),
    # Which of USEFUL_TAGS the chain holds.
    (
        "elements_chain_elements",
        f"Array({_TAG_ENUM}) MATERIALIZED arrayDistinct(extractAll(elements_chain, {_literal(_TAG)}))",
    ),
)


@dataclass(frozen=True)
class Element:
    """One element of a chain, as autocapture records it."""

    tag_name: str = ""
    classes: tuple[str, ...] = ()
    text: str = ""
    href: str = ""
    attr_id: str = ""
    nth_child: int = 0
    nth_of_type: int = 0
    attributes: Mapping[str, str] = field(default_factory=dict)  # attr__<name> -> value


def _escape(text: str) -> str:
    return text.replace('"', '\\"')


def element_text(element: Element) -> str:
    """One element in the chain's form."""
    head = element.tag_name + "".join("." + c.replace('"', "") for c in sorted(element.classes))
    attributes: dict[str, str] = {
        "nth-child": str(element.nth_child),
        "nth-of-type": str(element.nth_of_type),
        **dict(element.attributes),
    }
    for key, value in (("text", element.text), ("href", element.href), ("attr_id", element.attr_id)):
        if value:
            attributes[key] = value
    body = "".join(f'{_escape(k)}="{_escape(v)}"' for k, v in sorted(attributes.items()))
    return f"{head}:{body}"


def to_chain(elements: Iterable[Element]) -> str:
    """The chain text of elements given clicked element first."""
    return ";".join(element_text(e) for e in elements)
