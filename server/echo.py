"""Short renderings of caller-supplied values for error messages: an error never repeats unbounded input."""

from __future__ import annotations

ECHO_LIMIT = 128  # characters: every id the service issues is shorter (query ids are 70)


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """`value` as text, cut to `limit` characters and marked with its full length when longer."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"
