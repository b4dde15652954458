"""Hostile names, keys and values for the engines' rule tests, and the check that the SQL an engine
ran carries them only as bound parameters."""

from __future__ import annotations

import re

from storage.events import EventStore

# Quotes, a statement break, a NUL byte, a placeholder look-alike, a long value and non-ASCII text.
HOSTILE = ["'); DROP TABLE events; --", "{p0:String}", "a\x00b", "\\'", "x" * 5000, "ünïcødé 😀"]
_PLACEHOLDER = re.compile(r"\{p\d+:[A-Za-z0-9_(), ']+\}")


def assert_only_placeholders(sql: str, value: str) -> None:
    """`sql` holds no `value` (longer than two characters: shorter ones occur in any SQL) and no
    brace outside the `{pN:Type}` placeholders of bound parameters."""
    stripped = _PLACEHOLDER.sub("", sql)
    assert "{" not in stripped and "}" not in stripped.replace("{}", "")
    if len(value) > 2:
        assert value not in stripped


def assert_events_table_intact(store: EventStore) -> None:
    """The events table still exists (a value was never run as a statement)."""
    assert store.query("EXISTS TABLE events") == [(1,)]
