"""CSS-like selectors of action steps: a parser of the subset the reference matches against element chains.

The subset: tag names, `.class`, `#id`, `[attr="value"]` (the value in double or single quotes, or a
bare word), and the descendant (whitespace) and child (`>`) combinators. Everything else in CSS is
refused with a message saying what and where, so that no selector is ever silently read as
something it does not say. The parser is a single left-to-right pass (linear in the input, no
regular expressions), bounded in length and in elements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Longest selector text, and most elements (compounds) one selector may chain.
MAX_SELECTOR_LENGTH = 1000
MAX_SELECTOR_ELEMENTS = 30
# How much of the caller's text an error message repeats.
_SHOWN = 20

Combinator = Literal["descendant", "child"]

_HEX = frozenset("0123456789abcdefABCDEF")
_WHITESPACE = frozenset(" \t\n\r\f")
# What a caller most likely meant by characters outside the subset, for the error message.
_UNSUPPORTED = {
    ":": "pseudo-classes and pseudo-elements (':') are not supported",
    "*": "the universal selector '*' is not supported",
    "+": "the sibling combinator '+' is not supported",
    "~": "the sibling combinator '~' is not supported",
    ",": "selector lists (',') are not supported: save one step per selector",
    "|": "namespaces ('|') are not supported",
}


class SelectorError(ValueError):
    """A selector outside the supported subset; `position` is the 0-based character it was found at."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} (at character {position + 1})")
        self.position = position


@dataclass(frozen=True)
class Element:
    """What one element of the chain must have: every given part (tag, id, classes, attributes)."""

    tag: str | None = None
    id: str | None = None
    classes: tuple[str, ...] = ()
    # (name, value) pairs, in the selector's order.
    attributes: tuple[tuple[str, str], ...] = ()
    # How this element relates to the one before it in the selector (its ancestor): any ancestor
    # ("descendant") or the direct parent ("child"). None for the first element.
    combinator: Combinator | None = None


@dataclass(frozen=True)
class Selector:
    """A parsed selector: its elements from the outermost to the matched (last) one."""

    elements: tuple[Element, ...] = field(default_factory=tuple)


def parse_selector(text: str) -> Selector:
    """The selector `text` names, or SelectorError saying what is outside the supported subset."""
    if len(text) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"a selector has at most {MAX_SELECTOR_LENGTH} characters (got {len(text)})", 0)
    return _Parser(text).selector()


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        for index, char in enumerate(text):
            if (ord(char) < 0x20 and char not in _WHITESPACE) or ord(char) == 0x7F:
                raise SelectorError("control characters are not allowed in a selector", index)

    # --- the grammar ---------------------------------------------------------------------------------

    def selector(self) -> Selector:
        self._skip_space()
        if self._at_end():
            raise SelectorError("the selector is empty", self.pos)
        if self._peek() == ">":
            raise SelectorError("a selector starts with an element, not '>'", self.pos)
        elements = [self._element(None)]
        while True:
            spaced = self._skip_space()
            if self._at_end():
                break
            combinator: Combinator = "descendant"
            if self._peek() == ">":
                combinator = "child"
                self.pos += 1
                self._skip_space()
                if self._at_end():
                    raise SelectorError("'>' needs an element after it", self.pos - 1)
                if self._peek() == ">":
                    raise SelectorError("two '>' in a row", self.pos)
            elif not spaced:
                raise self._unexpected()
            if len(elements) == MAX_SELECTOR_ELEMENTS:
                raise SelectorError(f"a selector chains at most {MAX_SELECTOR_ELEMENTS} elements", self.pos)
            elements.append(self._element(combinator))
        return Selector(tuple(elements))

    def _element(self, combinator: Combinator | None) -> Element:
        start = self.pos
        tag: str | None = None
        element_id: str | None = None
        classes: list[str] = []
        attributes: list[tuple[str, str]] = []
        if self._peek().isascii() and self._peek().isalpha():
            tag = self._tag()
        while not self._at_end():
            char = self._peek()
            if char == ".":
                self.pos += 1
                classes.append(self._identifier("a class name"))
            elif char == "#":
                at = self.pos
                self.pos += 1
                if element_id is not None:
                    raise SelectorError("an element has one id: '#' given twice", at)
                element_id = self._identifier("an id")
            elif char == "[":
                attributes.append(self._attribute())
            else:
                break
        if self.pos == start:
            raise self._unexpected()
        return Element(tag, element_id, tuple(classes), tuple(attributes), combinator)

    def _tag(self) -> str:
        start = self.pos
        self._skip_word("-")
        # HTML tag names are case-insensitive; element chains hold them in lowercase.
        return self.text[start : self.pos].lower()

    def _identifier(self, what: str) -> str:
        """A CSS identifier: letters, digits, '-', '_', non-ASCII characters and backslash escapes."""
        start = self.pos
        out: list[str] = []
        while not self._at_end():
            char = self._peek()
            if char == "\\":
                out.append(self._escape())
            elif char.isalnum() or char in "-_" or not char.isascii():
                out.append(char)
                self.pos += 1
            else:
                break
        if not out:
            raise SelectorError(f"expected {what} here, found {self._shown_here()}", start)
        return "".join(out)

    def _attribute(self) -> tuple[str, str]:
        opened = self.pos
        self.pos += 1  # "["
        self._skip_space()
        name_start = self.pos
        self._skip_word("-_:.")
        name = self.text[name_start : self.pos]
        if not name:
            raise SelectorError(f"expected an attribute name, found {self._shown_here()}", self.pos)
        self._skip_space()
        if self._at_end():
            raise SelectorError("'[' is not closed by ']'", opened)
        char = self._peek()
        if char == "]":
            raise SelectorError(f'an attribute selector needs a value: [{name}="..."]', opened)
        if char in "~|^$*!" and self.text[self.pos + 1 : self.pos + 2] == "=":
            raise SelectorError(
                f"only [name=\"value\"] attribute selectors are supported, not '{char}='", self.pos
            )
        if char != "=":
            raise SelectorError(
                f"expected '=' after the attribute name, found {self._shown_here()}", self.pos
            )
        self.pos += 1
        self._skip_space()
        if self._at_end():
            raise SelectorError("'[' is not closed by ']'", opened)
        value = self._quoted() if self._peek() in "\"'" else self._identifier("an attribute value")
        self._skip_space()
        if self._at_end():
            raise SelectorError("'[' is not closed by ']'", opened)
        if self._peek() != "]":
            raise SelectorError(
                f"expected ']' after the attribute value, found {self._shown_here()} "
                "(case flags such as ' i' are not supported)",
                self.pos,
            )
        self.pos += 1
        return name, value

    def _quoted(self) -> str:
        quote, opened = self._peek(), self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            if self._at_end():
                raise SelectorError(f"the value opened with {quote} is not closed", opened)
            char = self._peek()
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char in "\n\r\f":
                raise SelectorError("a quoted value cannot hold a line break (write it as \\a)", self.pos)
            if char == "\\":
                out.append(self._escape())
            else:
                out.append(char)
                self.pos += 1

    def _escape(self) -> str:
        """A backslash escape: 1-6 hex digits (and one optional space after them), or the next character."""
        at = self.pos
        self.pos += 1
        if self._at_end():
            raise SelectorError("a backslash at the end escapes nothing", at)
        start = self.pos
        while not self._at_end() and self.pos - start < 6 and self._peek() in _HEX:
            self.pos += 1
        if self.pos > start:
            code = int(self.text[start : self.pos], 16)
            if not self._at_end() and self._peek() in _WHITESPACE:
                self.pos += 1
            if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                return "\ufffd"  # as CSS: no NUL, surrogate or out-of-range code point
            return chr(code)
        char = self._peek()
        if char in "\n\r\f":
            raise SelectorError("a backslash cannot escape a line break", at)
        self.pos += 1
        return char

    # --- helpers -------------------------------------------------------------------------------------

    def _at_end(self) -> bool:
        return self.pos >= len(self.text)

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _skip_word(self, extra: str) -> None:
        """Moves past ASCII letters, digits and the `extra` characters."""
        while not self._at_end():
            char = self._peek()
            if not (char.isascii() and (char.isalnum() or char in extra)):
                return
            self.pos += 1

    def _skip_space(self) -> bool:
        start = self.pos
        while not self._at_end() and self._peek() in _WHITESPACE:
            self.pos += 1
        return self.pos > start

    def _shown_here(self) -> str:
        if self._at_end():
            return "the end"
        return repr(self.text[self.pos : self.pos + _SHOWN])

    def _unexpected(self) -> SelectorError:
        char = self._peek()
        if char in _UNSUPPORTED:
            return SelectorError(_UNSUPPORTED[char], self.pos)
        return SelectorError(
            f"unexpected {self._shown_here()}: not part of the supported selector syntax", self.pos
        )
