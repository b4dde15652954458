"""Actions evaluated in Python over one event: OR over the steps, each an AND of its given parts.

Written from docs/decisions.md ("Actions in queries") and the chain grammar: it parses the chain
with tests/oracle/elements.py and the selector with its own small parser (the subset the
strategies draw), and matches elements structurally, never by the engine's regular expressions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.oracle.elements import ParsedElement, derived, parse_chain

Pred = Callable[[Any], bool]


@dataclass
class _Wanted:
    tag: str | None = None
    id: str | None = None
    classes: list[str] = field(default_factory=list)
    attributes: list[tuple[str, str]] = field(default_factory=list)
    child: bool = False  # its relation to the element before it in the selector is `>`


def parse_selector(text: str) -> list[_Wanted]:
    """Elements outermost first: tag, `.class`, `#id`, `[k="v"]` (backslash escapes), ` ` and ` > `."""
    out: list[_Wanted] = []
    i, child = 0, False
    ident = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

    def word(start: int) -> int:
        end = start
        while end < len(text) and text[end] in ident:
            end += 1
        return end

    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        if text[i] == ">":
            child = True
            i += 1
            continue
        element = _Wanted(child=child)
        child = False
        if text[i].isalpha():
            end = word(i)
            element.tag = text[i:end].lower()
            i = end
        while i < len(text) and text[i] in ".#[":
            if text[i] in ".#":
                end = word(i + 1)
                if text[i] == ".":
                    element.classes.append(text[i + 1 : end])
                else:
                    element.id = text[i + 1 : end]
                i = end
            else:
                equals = text.index("=", i)
                key = text[i + 1 : equals]
                j, value = equals + 2, []
                while text[j] != '"':
                    if text[j] == "\\":
                        j += 1
                    value.append(text[j])
                    j += 1
                element.attributes.append((key, "".join(value)))
                i = j + 2  # past `"]`
        out.append(element)
    return out


def _element_matches(wanted: _Wanted, element: ParsedElement) -> bool:
    if wanted.tag is not None and element.tag_name != wanted.tag:
        return False
    if not set(wanted.classes) <= set(element.classes):
        return False
    if wanted.id is not None and element.attributes.get("attr_id") != wanted.id:
        return False
    return all(element.attributes.get(f"attr__{k}") == v for k, v in wanted.attributes)


def selector_matches(selector: list[_Wanted], chain: list[ParsedElement]) -> bool:
    """Some element of the chain (clicked first) matches the selector's last element, and its
    ancestors the ones before it (`>`: the very next element of the chain)."""

    def from_(s: int, at: int) -> bool:
        # selector[s] matched chain[at]; now match selector[s - 1] outward.
        if s == 0:
            return True
        outer, inner = selector[s - 1], selector[s]
        candidates = [at + 1] if inner.child else range(at + 1, len(chain))
        return any(
            c < len(chain) and _element_matches(outer, chain[c]) and from_(s - 1, c) for c in candidates
        )

    last = len(selector) - 1
    return any(_element_matches(selector[last], chain[k]) and from_(last, k) for k in range(len(chain)))


def _text_test(value: str, matching: str, compile_regex: Callable[[str], Any]) -> Callable[[str], bool]:
    if matching == "regex":
        pattern = compile_regex(value)
        return lambda t: pattern.search(t) is not None
    if matching == "exact":
        return lambda t: t == value
    return lambda t: value in t


def action_pred(
    action: dict[str, Any],
    compile_properties: Callable[[Any], Pred],
    prop_text: Callable[[dict[str, Any], str], str | None],
    compile_regex: Callable[[str], Any],
) -> Pred:
    """The predicate of an action (reference JSON: {"id", "name", "steps": [...]})."""
    steps = action.get("steps") or []
    if not steps:
        return lambda e: True
    preds: list[Pred] = []
    for step in steps:
        parts: list[Pred] = []
        if step.get("event"):
            parts.append(lambda e, name=step["event"]: e.event == name)
        if step.get("url"):
            test = _text_test(step["url"], step.get("url_matching") or "contains", compile_regex)
            parts.append(lambda e, test=test: test(prop_text(e.properties, "$current_url") or ""))
        if step.get("href"):
            test = _text_test(step["href"], step.get("href_matching") or "exact", compile_regex)
            parts.append(lambda e, test=test: test(derived(e.elements_chain)[0]))
        if step.get("text"):
            test = _text_test(step["text"], step.get("text_matching") or "exact", compile_regex)
            parts.append(lambda e, test=test: any(test(t) for t in derived(e.elements_chain)[1]))
        if step.get("tag_name"):
            tag = [_Wanted(tag=step["tag_name"].lower())]
            parts.append(lambda e, tag=tag: selector_matches(tag, parse_chain(e.elements_chain)))
        if step.get("selector"):
            selector = parse_selector(step["selector"])
            parts.append(lambda e, s=selector: selector_matches(s, parse_chain(e.elements_chain)))
        if step.get("properties"):
            parts.append(compile_properties(step["properties"]))
        preds.append(lambda e, parts=parts: all(p(e) for p in parts))
    return lambda e: any(p(e) for p in preds)
