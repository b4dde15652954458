"""Independent reading of autocapture `elements_chain` texts, written from the grammar in
storage/elements.py's docstring (the reference's format) without its regular expressions: a
character-by-character parse into elements, and the values the derived columns should hold."""

from __future__ import annotations

from dataclasses import dataclass, field

USEFUL_TAGS = ("a", "button", "form", "input", "select", "textarea", "label")


@dataclass
class ParsedElement:
    """One element as the chain spells it."""

    tag_name: str
    classes: list[str]
    attributes: dict[str, str] = field(default_factory=dict)  # unescaped values


def _split_elements(chain: str) -> list[str]:
    """The chain cut at each `;` outside a quoted value (`\\"` does not end a value)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    i = 0
    while i < len(chain):
        char = chain[i]
        if quoted and char == "\\" and i + 1 < len(chain):
            current.append(chain[i : i + 2])
            i += 2
            continue
        if char == '"':
            quoted = not quoted
        if char == ";" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return [p for p in parts if p]


def _head_end(text: str) -> int:
    """Where the tag-and-classes part ends: the first `:` that a `key=` follows (classes may hold `:`)."""
    for i, char in enumerate(text):
        if char != ":":
            continue
        rest = text[i + 1 :]
        j = 0
        while j < len(rest) and (rest[j].isalnum() or rest[j] in "-_"):
            j += 1
        if j == len(rest) or rest[j] == "=":
            return i
    return len(text)


def parse_element(text: str) -> ParsedElement:
    end = _head_end(text)
    head, body = text[:end], text[end + 1 :]
    tag, *classes = head.split(".")
    attributes: dict[str, str] = {}
    i = 0
    while i < len(body):
        equals = body.find('="', i)
        if equals < 0:
            break
        key = body[i:equals]
        j = equals + 2
        value: list[str] = []
        while j < len(body) and body[j] != '"':
            if body[j] == "\\" and j + 1 < len(body) and body[j + 1] == '"':
                value.append('"')
                j += 2
                continue
            value.append(body[j])
            j += 1
        attributes[key] = "".join(value)
        i = j + 1
    return ParsedElement(tag, [c for c in classes if c], attributes)


def parse_chain(chain: str) -> list[ParsedElement]:
    """The elements of a chain, clicked element first."""
    return [parse_element(part) for part in _split_elements(chain)]


def _distinct(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


def derived(chain: str) -> tuple[str, list[str], list[str], list[str]]:
    """(href, texts, ids, useful tags) as the elements_chain_* columns should hold them."""
    elements = parse_chain(chain)
    hrefs = [e.attributes["href"] for e in elements if "href" in e.attributes]
    return (
        hrefs[0] if hrefs else "",
        _distinct([e.attributes["text"] for e in elements if "text" in e.attributes]),
        _distinct([e.attributes["attr_id"] for e in elements if "attr_id" in e.attributes]),
        _distinct([e.tag_name for e in elements if e.tag_name in USEFUL_TAGS]),
    )
